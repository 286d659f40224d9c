"""What every data-parallel backend must do, checked the same way for Horovod and tf.distribute.

A 2-replica job trains Mult-DAE on ML-100K through main.py (``MODEL_FLAGS``); each process saves its
variables before every broadcast when ``TFCF_TEST_DUMP_WEIGHTS`` is set (two broadcasts: the start, and the
chief's best weights after training). These helpers compare such a job with single-process references:

* identical weights on both workers after training;
* disjoint shards covering the training users, and the sharded number of steps per epoch;
* reported test metrics equal to a one-process evaluation of the export;
* the loss trajectory and final weights of one process fed the same global batches (both replicas'
  batches concatenated), and tracking a plain one-process run with twice the batch size.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data import pipeline
from training import distribute, families, precision
from training.config import OptimConfig
from training.fit import build_model, make_datasets, make_optimizer
from training.trainer import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent

# Mult-DAE without dropout is deterministic, and plain SGD makes the gradient's scale matter (Adam would
# hide a sum-instead-of-average bug). The DAE loss is a mean over the batch's users (plus an L2 term), so
# the average of two equal halves' gradients is the whole batch's gradient.
BATCH, EPOCHS, LR, SEED = 100, 3, 0.05, 0
MODEL_FLAGS = ["--model", "dae", "--dropout", "0", "--optimizer", "sgd", "--lr", str(LR), "--seed", str(SEED),
               "--batch_size_train", str(BATCH), "--dataset", "ml-100k"]
# One validation, after the last epoch: the chief's best weights are then its final ones.
JOB_FLAGS = [*MODEL_FLAGS, "--train", "--test", "--number_of_epochs", str(EPOCHS), "--validation_step",
             str(EPOCHS + 1)]


def env(mirror, data_dir, **extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFCF_DATA_MIRROR": str(mirror),
            "TFCF_DATA_DIR": str(data_dir), **extra}


def run(command, environment, timeout=300):
    proc = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (bound, read, released together so that they differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def dump(dumps: Path, rank: int, k: int):
    return np.load(dumps / f"rank{rank}-broadcast{k}.npz")


def arrays(npz):
    return [npz[f"v{i:04d}"] for i in range(len(npz["names"]))]


def check_identical_weights(dumps: Path) -> None:
    """Both ranks' weights after training are equal bit for bit, and training moved them."""
    start0, start1 = dump(dumps, 0, 0), dump(dumps, 1, 0)
    end0, end1 = dump(dumps, 0, 1), dump(dumps, 1, 1)
    assert list(end0["names"]) == list(end1["names"])
    assert any("kernel" in n for n in end0["names"])
    # The last variable of the second broadcast is the "found best/" flag: only the chief reads best/.
    for name, a, b in zip(end0["names"][:-1], arrays(end0)[:-1], arrays(end1)[:-1]):
        np.testing.assert_array_equal(a, b, err_msg=name)
    kernel = [i for i, n in enumerate(start0["names"]) if n.endswith("kernel")][0]
    assert np.abs(arrays(end0)[kernel] - arrays(start0)[kernel]).max() > 1e-3
    assert sorted(p.name for p in dumps.iterdir()) == [f"rank{r}-broadcast{k}.npz" for r in (0, 1) for k in (0, 1)]
    assert arrays(end0)[-1] == 1 and arrays(end1)[-1] == 0
    np.testing.assert_array_equal(arrays(start0)[kernel], arrays(start1)[kernel])


def check_disjoint_shards(split, export: Path) -> None:
    """The two shards are disjoint and cover the training users; the run took the sharded steps."""
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
    # The real run took ceil((n // 2) / BATCH) steps per epoch (one replica would take ceil(n / BATCH)).
    ckpt = tf.train.latest_checkpoint(str(export / "checkpoints"))
    updates = tf.train.load_checkpoint(ckpt).get_tensor("updates/.ATTRIBUTES/VARIABLE_VALUE")
    assert updates == EPOCHS * -(-(n // 2) // BATCH) != EPOCHS * -(-n // BATCH)


def check_metrics_equal_one_process(export: Path, reported: dict, mirror, data_dir, tmp_path: Path) -> None:
    """The job's test metrics equal `python main.py --test` on its export in one process."""
    exported = tmp_path / "alone"
    shutil.copytree(export, exported)
    run([sys.executable, str(REPO / "main.py"), *MODEL_FLAGS, "--test", "--export_dir", str(exported)],
        env(mirror, data_dir))
    alone = json.loads((exported / "results.json").read_text())
    assert alone["workers"] == 1
    assert set(reported) == set(alone["test"]) and "ndcg@100" in reported
    for name, value in reported.items():
        # Per-batch sums are float32 (the model's evaluate_step) over different batches (each process
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


def check_loss_trajectory(losses: list[float], end_weights: list, split, tmp_path: Path) -> None:
    """The job's losses and final weights equal one process fed the same global batches."""
    def global_batches(epoch):
        # Step s of one process sees replica 0's and replica 1's step-s batches together (2 x BATCH users).
        halves = [pipeline.row_batches(split.train, BATCH, shuffle=True, seed=SEED, epoch=epoch, shard_index=r,
                                       num_shards=2) for r in (0, 1)]
        return tf.data.Dataset.zip(*halves).map(lambda a, b: {"input": tf.sparse.concat(0, [a, b])})

    steps = pipeline.steps_per_epoch(split.train.shape[0], BATCH, 2)
    same_losses, same_weights = _train_alone(split, global_batches, steps, 2 * BATCH, tmp_path / "same")
    # Averaging the halves' gradients equals the whole batch's gradient up to float32 summation order.
    np.testing.assert_allclose(losses, same_losses, rtol=1e-5)
    for a, b in zip(end_weights, same_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # A plain one-process run with batch 2 x BATCH groups the users differently (consecutive blocks of
    # the epoch's permutation instead of one block from each half), so its losses only track the job's:
    # measured within 0.6% per epoch; asserted within 1%.
    data = make_datasets(families.get("dae").cls, split, OptimConfig(batch_size_train=2 * BATCH), SEED,
                         distribute.Distribution())
    plain_losses, _ = _train_alone(split, data.train, data.steps_per_epoch, 2 * BATCH, tmp_path / "plain")
    np.testing.assert_allclose(losses, plain_losses, rtol=0.01)
    assert plain_losses[-1] < plain_losses[0] and losses[-1] < losses[0]


def one_writer(export: Path) -> bool:
    """Whether one process wrote the TensorBoard events (files are ...tfevents.<time>.<host>.<pid>.<n>.v2)."""
    files = list((export / "logs").glob("events.out.tfevents.*"))
    return bool(files) and len({f.name.split(".")[-3] for f in files}) == 1


class JobContract:
    """The checks every backend's 2-replica job passes, as tests: a test module subclasses it as ``Test...``.

    The module provides the fixtures ``job`` (``export``, ``dumps``, ``mirror``, ``data_dir``, ``results``) and
    ``split`` (the split the job trained on).
    """

    def test_both_replicas_end_with_identical_weights(self, job):
        check_identical_weights(job["dumps"])

    def test_replicas_read_disjoint_users_that_cover_the_training_set(self, job, split):
        check_disjoint_shards(split, job["export"])

    def test_reported_metrics_equal_a_single_process_evaluation_of_the_export(self, job, tmp_path):
        check_metrics_equal_one_process(job["export"], job["results"]["test"], job["mirror"], job["data_dir"],
                                        tmp_path)

    def test_loss_trajectory_matches_one_process_with_the_same_global_batch(self, job, split, tmp_path):
        losses = [e["loss"] for e in job["results"]["train"]["history"]]
        check_loss_trajectory(losses, arrays(dump(job["dumps"], 0, 1)), split, tmp_path)
