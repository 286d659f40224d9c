"""Horovod for real: 2 CPU workers over Gloo on loopback, training Mult-DAE on ML-100K through main.py.

Skipped when Horovod is not installed (CI builds it: scripts/install_horovod.sh). One 2-worker job
(`horovodrun -np 2 ... python main.py`) is checked against single-process references computed here:

* both ranks end with identical weights (each rank dumps its variables before every broadcast when
  ``TFCF_TEST_DUMP_WEIGHTS`` is set; the last broadcast is after training, before the chief's best
  weights are handed out);
* the ranks' shards are disjoint and cover the training users; the run took the sharded steps per epoch;
* the reported test metrics equal `python main.py --test` on the exported model in one process;
* the loss trajectory and final weights equal one process fed the same global batches (the two ranks'
  batches concatenated), and track a plain one-process run with twice the batch size.

Then a worker is killed mid-run: the job ends with a clear message, and rerunning the command resumes.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

hvd = pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed (bash scripts/install_horovod.sh)")

import tensorflow as tf  # noqa: E402

from data import pipeline  # noqa: E402
from data.errors import ConfigError  # noqa: E402
from training import distribute, families, precision  # noqa: E402
from training.config import DataConfig, OptimConfig  # noqa: E402
from training.fit import build_model, make_datasets, make_optimizer  # noqa: E402
from data.prepare import prepare  # noqa: E402
from training.trainer import TrainConfig, Trainer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
HOROVODRUN = shutil.which("horovodrun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])

# Mult-DAE without dropout is deterministic, and plain SGD makes the gradient's scale matter (Adam would
# hide a sum-instead-of-average bug). The DAE loss is a mean over the batch's users (plus an L2 term), so
# the average of two equal halves' gradients is the whole batch's gradient.
BATCH, EPOCHS, LR, SEED = 100, 3, 0.05, 0
MODEL_FLAGS = ["--model", "dae", "--dropout", "0", "--optimizer", "sgd", "--lr", str(LR), "--seed", str(SEED),
               "--batch_size_train", str(BATCH), "--dataset", "ml-100k"]


def _env(mirror, data_dir, **extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFCF_DATA_MIRROR": str(mirror),
            "TFCF_DATA_DIR": str(data_dir), **extra}


def _run(command, env, timeout=300):
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def job(mirror, tmp_path_factory):
    """A 2-worker train+test run launched with horovodrun; its export dir, rank dumps and data cache."""
    if HOROVODRUN is None:
        pytest.skip("horovodrun is not on PATH")
    root = tmp_path_factory.mktemp("hvd")
    data_dir, export, dumps = root / "data", root / "run", root / "dumps"
    command = [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", "--gloo-timeout-seconds", "120",
               sys.executable, str(REPO / "main.py"), *MODEL_FLAGS, "--train", "--test",
               "--number_of_epochs", str(EPOCHS), "--validation_step", str(EPOCHS + 1), "--export_dir", str(export)]
    proc = _run(command, _env(mirror, data_dir, TFCF_TEST_DUMP_WEIGHTS=str(dumps)))
    return {"export": export, "dumps": dumps, "data_dir": data_dir, "mirror": mirror, "proc": proc,
            "results": json.loads((export / "results.json").read_text())}


@pytest.fixture(scope="module")
def split(job):
    """The heldout split the job trained on (the same cache key: main.py's defaults)."""
    cfg = DataConfig(dataset="ml-100k", data_dir=str(job["data_dir"]), mirror=str(job["mirror"]))
    return prepare(cfg, "topk", SEED, verbose=False)[0]


def _dump(job, rank, k):
    return np.load(job["dumps"] / f"rank{rank}-broadcast{k}.npz")


def _arrays(npz):
    return [npz[f"v{i:04d}"] for i in range(len(npz["names"]))]


def test_the_job_ran_two_workers_and_only_the_chief_wrote(job):
    results, out = job["results"], job["proc"].stdout
    assert results["workers"] == 2 and results["train"]["epochs"] == EPOCHS
    # horovodrun prefixes each worker's lines with its rank: progress is printed by rank 0 only.
    assert f"[0]<stdout>:epoch {EPOCHS}/{EPOCHS}" in out and "[1]<stdout>:epoch" not in out
    assert "[0]<stdout>:test:" in out and "[1]<stdout>:test:" not in out
    # One process writes TensorBoard events: each events file is named ...tfevents.<time>.<host>.<pid>.<n>.v2,
    # and a second rank's writer would add a file with its own pid (the chief writes two: curves, then HParams).
    files = list((job["export"] / "logs").glob("events.out.tfevents.*"))
    assert files and len({f.name.split(".")[-3] for f in files}) == 1


def test_both_ranks_end_with_identical_weights(job):
    start0, start1 = _dump(job, 0, 0), _dump(job, 1, 0)
    end0, end1 = _dump(job, 0, 1), _dump(job, 1, 1)
    assert list(end0["names"]) == list(end1["names"])
    assert any("kernel" in n for n in end0["names"])
    # Rank 1's weights after training, before the chief's best weights are broadcast, are rank 0's
    # bit for bit: both applied the same averaged gradients. (Validation ran after the last epoch only,
    # so the chief's best weights are its final ones.)
    for name, a, b in zip(end0["names"][:-1], _arrays(end0)[:-1], _arrays(end1)[:-1]):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # Training moved the weights: the check above compares something.
    kernel = [i for i, n in enumerate(start0["names"]) if n.endswith("kernel")][0]
    assert np.abs(_arrays(end0)[kernel] - _arrays(start0)[kernel]).max() > 1e-3
    # Two broadcasts per rank (start, best weights); only the chief read best/ (found flag 1).
    assert sorted(p.name for p in job["dumps"].iterdir()) == [f"rank{r}-broadcast{k}.npz" for r in (0, 1)
                                                               for k in (0, 1)]
    assert _arrays(end0)[-1] == 1 and _arrays(end1)[-1] == 0
    np.testing.assert_array_equal(_arrays(start0)[kernel], _arrays(start1)[kernel])


def test_ranks_read_disjoint_users_that_cover_the_training_set(job, split):
    n = split.train.shape[0]
    # Mark each row with its id + 1 in a one-column matrix batched along with the training rows.
    marker = sp.csr_matrix((np.arange(1, n + 1, dtype=np.float32), (np.arange(n), np.zeros(n))), shape=(n, 1))
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ids = [b[1].values.numpy().astype(np.int64) - 1
                   for b in pipeline.row_batches((split.train, marker), BATCH, shuffle=True, seed=SEED, epoch=epoch,
                                                 shard_index=rank, num_shards=2)]
            seen.append(np.concatenate(ids))
        assert len(seen[0]) == len(seen[1]) == n // 2
        assert not set(seen[0]) & set(seen[1])
        assert len(set(seen[0]) | set(seen[1])) == n - n % 2
    # The real run took ceil((n // 2) / BATCH) steps per epoch (one process would take ceil(n / BATCH)).
    ckpt = tf.train.latest_checkpoint(str(job["export"] / "checkpoints"))
    updates = tf.train.load_checkpoint(ckpt).get_tensor("updates/.ATTRIBUTES/VARIABLE_VALUE")
    assert updates == EPOCHS * -(-(n // 2) // BATCH) != EPOCHS * -(-n // BATCH)


def test_reported_metrics_equal_a_single_process_evaluation_of_the_export(job, tmp_path):
    exported = tmp_path / "run"
    shutil.copytree(job["export"], exported)
    _run([sys.executable, str(REPO / "main.py"), *MODEL_FLAGS, "--test", "--export_dir", str(exported)],
         _env(job["mirror"], job["data_dir"]))
    alone = json.loads((exported / "results.json").read_text())
    assert alone["workers"] == 1
    reported = job["results"]["test"]
    assert set(reported) == set(alone["test"]) and "ndcg@100" in reported
    for name, value in reported.items():
        # Per-batch sums are float32 (the model's evaluate_step) over different batches (each rank
        # batches its own block of users): equal to float32 rounding (measured 4e-8 relative).
        assert value == pytest.approx(alone["test"][name], rel=1e-6, abs=1e-9), name
    assert reported["ndcg@100/count"] == alone["test"]["ndcg@100/count"] > 0


def _train_alone(split, train_data, steps, batch_size, folder):
    """One-process training of the job's model; returns (epoch losses, final model variables)."""
    family = families.get("dae")
    model = build_model(family, split, {"dropout": 0.0, "seed": SEED}, precision.FLOAT32)
    optim = OptimConfig(optimizer="sgd", lr=LR, batch_size_train=batch_size)
    trainer = Trainer(model, make_optimizer(optim, steps), TrainConfig(
        epochs=EPOCHS, export_dir=str(folder), verbose=False), distribute.Distribution())
    history = trainer.fit(train_data, steps, split.train.shape[0])
    return [e["loss"] for e in history.epochs], [v.numpy() for v in model.variables]


def test_loss_trajectory_matches_one_process_with_the_same_global_batch(job, split, tmp_path):
    hvd_losses = [e["loss"] for e in job["results"]["train"]["history"]]
    end = _arrays(_dump(job, 0, 1))

    def global_batches(epoch):
        # Step s of one process sees rank 0's and rank 1's step-s batches together (2 x BATCH users).
        halves = [pipeline.row_batches(split.train, BATCH, shuffle=True, seed=SEED, epoch=epoch, shard_index=r,
                                       num_shards=2) for r in (0, 1)]
        return tf.data.Dataset.zip(*halves).map(lambda a, b: {"input": tf.sparse.concat(0, [a, b])})

    steps = pipeline.steps_per_epoch(split.train.shape[0], BATCH, 2)
    same_losses, same_weights = _train_alone(split, global_batches, steps, 2 * BATCH, tmp_path / "same")
    # Averaging the halves' gradients equals the whole batch's gradient up to float32 summation order.
    np.testing.assert_allclose(hvd_losses, same_losses, rtol=1e-5)
    for a, b in zip(end, same_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # A plain one-process run with batch 2 x BATCH groups the users differently (consecutive blocks of
    # the epoch's permutation instead of one block from each half), so its losses only track the job's:
    # measured within 0.6% per epoch; asserted within 1%.
    data = make_datasets(families.get("dae").cls, split, OptimConfig(batch_size_train=2 * BATCH),
                                SEED, distribute.Distribution())
    plain_losses, _ = _train_alone(split, data.train, data.steps_per_epoch, 2 * BATCH, tmp_path / "plain")
    np.testing.assert_allclose(hvd_losses, plain_losses, rtol=0.01)
    assert plain_losses[-1] < plain_losses[0] and hvd_losses[-1] < hvd_losses[0]


def _pids_of_rank(rank: int, token: str) -> list[int]:
    """Processes started with HOROVOD_RANK=<rank> and our TFCF_TEST_RUN token in their environment."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"HOROVOD_RANK={rank}".encode() in env and f"TFCF_TEST_RUN={token}".encode() in env:
            pids.append(int(proc.name))
    return pids


def test_a_dead_worker_ends_the_job_and_a_rerun_resumes(mirror, tmp_path):
    export, token = tmp_path / "run", uuid.uuid4().hex
    epochs = 30
    command = [sys.executable, str(REPO / "main.py"), *MODEL_FLAGS, "--train", "--number_of_gpus", "2",
               "--number_of_epochs", str(epochs), "--validation_step", "100", "--export_dir", str(export)]
    env = _env(mirror, tmp_path / "data", TFCF_TEST_RUN=token)
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (export / "checkpoints" / "ckpt-2.index").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the job ended before epoch 2"
            time.sleep(0.05)
        victims = _pids_of_rank(1, token)
        assert victims, "rank 1 not found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Bounded: horovodrun stops the surviving worker as soon as one exits non-zero (measured 0.3-1.2 s),
    # instead of leaving it waiting in a collective.
    assert time.monotonic() - killed < 60
    assert proc.returncode != 0
    assert "Terminating remaining workers after failure of Process 1" in out + err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("error: the 2-worker Horovod job failed") and str(export) in last_line
    saved = int(tf.train.latest_checkpoint(str(export / "checkpoints")).rsplit("-", 1)[1])
    assert 2 <= saved < epochs

    rerun = _run(command, env)
    assert f"resuming from epoch {saved}" in rerun.stdout
    results = json.loads((export / "results.json").read_text())
    assert results["train"]["resumed_from_epoch"] == saved and results["train"]["epochs"] == epochs
    # The record of the whole run survives the dead worker: every epoch once, those before the kill included.
    assert [e["epoch"] for e in results["train"]["history"]] == list(range(1, epochs + 1))


# --- the distribution itself, in this process (a world of one) ----------------------------------------------
@pytest.fixture(scope="module")
def alone():
    return distribute.get("horovod")


def test_get_picks_the_distribution(monkeypatch, alone):
    assert type(distribute.get("single")) is distribute.Distribution
    monkeypatch.delenv("HOROVOD_RANK", raising=False)
    assert type(distribute.get("auto")) is distribute.Distribution
    monkeypatch.setenv("HOROVOD_RANK", "0")
    assert distribute.get("auto") is alone and alone.name == "horovod"
    with pytest.raises(ConfigError, match="unknown distribution 'mpi'; use auto, single or horovod"):
        distribute.get("mpi")


def test_world_of_one_collectives_are_exact(alone, tmp_path, monkeypatch):
    assert (alone.rank, alone.size, alone.is_chief) == (0, 1, True)
    dense = tf.constant([[1.0, -2.0], [0.5, 3.0]])
    rows = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([1]), tf.constant([3, 2]))
    out = alone.allreduce_gradients([dense, None, rows])
    np.testing.assert_array_equal(out[0], dense)
    assert out[1] is None
    np.testing.assert_array_equal(tf.convert_to_tensor(out[2]), [[0, 0], [1, 2], [0, 0]])
    sums = alone.sum({"a/sum": tf.constant(2.5, tf.float64), "a/count": tf.constant(4.0, tf.float64)})
    assert {k: float(v) for k, v in sums.items()} == {"a/sum": 2.5, "a/count": 4.0}
    alone.barrier()

    # Values of every dtype survive the broadcast (uint32 and bool travel re-typed), and the dump holds them.
    monkeypatch.setattr(alone, "_dump_dir", str(tmp_path))
    monkeypatch.setattr(alone, "_broadcasts", 0)
    values = [np.array([[1.5, -2.0]], np.float32), np.array([2 ** 40 + 3], np.int64),
              np.array([2 ** 32 - 1, 7], np.uint32), np.array([True, False]), np.array(0.25, np.float64)]
    variables = [tf.Variable(v) for v in values]
    alone.broadcast_variables(variables)
    dumped = np.load(tmp_path / "rank0-broadcast0.npz")
    for v, value, saved in zip(variables, values, _arrays(dumped)):
        np.testing.assert_array_equal(v.numpy(), value)
        np.testing.assert_array_equal(saved, value)


def test_xla_compiled_steps_are_refused_with_a_clear_message(alone):
    grad = tf.ones([2])
    with pytest.raises(ConfigError) as err:
        tf.function(lambda g: alone.allreduce_gradients([g]), jit_compile=True)(grad)
    # The message alone (one line for main.py), not autograph's trace in front of it.
    assert str(err.value) == ("--xla compiles the whole training step and Horovod's allreduce has no XLA kernel: "
                              "drop --xla when training on several workers")
    np.testing.assert_array_equal(tf.function(lambda g: alone.allreduce_gradients([g])[0])(grad), [1, 1])


def test_main_without_horovod_says_how_to_install(monkeypatch, capsys):
    import importlib.util

    import main

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert main._horovodrun(2) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --number_of_gpus 2 trains with Horovod, which is not installed with TensorFlow support: "
                   "run `bash scripts/install_horovod.sh` (or use --number_of_gpus 1)")
