"""Horovod for real: 2 CPU workers over Gloo on loopback, training Mult-DAE on ML-100K through main.py.

Skipped when Horovod is not installed (CI builds it: scripts/install_horovod.sh). One 2-worker job
(`horovodrun -np 2 ... python main.py`) passes the checks every backend passes (tests/distributed_checks.py:
identical weights on both ranks, disjoint shards covering the training users, test metrics equal to a
one-process evaluation, the loss trajectory of one process fed the same global batches). Then a worker is
killed mid-run: the job ends with a clear message, and rerunning the command resumes.
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

hvd = pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed (bash scripts/install_horovod.sh)")

import tensorflow as tf  # noqa: E402

import distributed_checks as checks  # noqa: E402
from data.errors import ConfigError  # noqa: E402
from data.prepare import prepare  # noqa: E402
from training import distribute  # noqa: E402
from training.config import DataConfig  # noqa: E402

REPO = checks.REPO
HOROVODRUN = shutil.which("horovodrun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
MODEL_FLAGS, EPOCHS, SEED = checks.MODEL_FLAGS, checks.EPOCHS, checks.SEED
_env, _run = checks.env, checks.run


@pytest.fixture(scope="module")
def job(mirror, tmp_path_factory):
    """A 2-worker train+test run launched with horovodrun; its export dir, rank dumps and data cache."""
    if HOROVODRUN is None:
        pytest.skip("horovodrun is not on PATH")
    root = tmp_path_factory.mktemp("hvd")
    data_dir, export, dumps = root / "data", root / "run", root / "dumps"
    command = [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo", "--gloo-timeout-seconds", "120",
               sys.executable, str(REPO / "main.py"), *checks.JOB_FLAGS, "--export_dir", str(export)]
    proc = _run(command, _env(mirror, data_dir, TFCF_TEST_DUMP_WEIGHTS=str(dumps)))
    return {"export": export, "dumps": dumps, "data_dir": data_dir, "mirror": mirror, "proc": proc,
            "results": json.loads((export / "results.json").read_text())}


@pytest.fixture(scope="module")
def split(job):
    """The heldout split the job trained on (the same cache key: main.py's defaults)."""
    cfg = DataConfig(dataset="ml-100k", data_dir=str(job["data_dir"]), mirror=str(job["mirror"]))
    return prepare(cfg, "topk", SEED, verbose=False)[0]


def test_the_job_ran_two_workers_and_only_the_chief_wrote(job):
    results, out = job["results"], job["proc"].stdout
    assert results["workers"] == 2 and results["train"]["epochs"] == EPOCHS
    # horovodrun prefixes each worker's lines with its rank: progress is printed by rank 0 only.
    assert f"[0]<stdout>:epoch {EPOCHS}/{EPOCHS}" in out and "[1]<stdout>:epoch" not in out
    assert "[0]<stdout>:test:" in out and "[1]<stdout>:test:" not in out
    assert checks.one_writer(job["export"])


class TestHorovodJob(checks.JobContract):
    """Identical weights, disjoint shards, one-process metrics and loss trajectory (tests/distributed_checks.py)."""


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
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert type(distribute.get("auto")) is distribute.Distribution
    monkeypatch.setenv("HOROVOD_RANK", "0")
    assert distribute.get("auto") is alone and alone.name == "horovod"
    with pytest.raises(ConfigError, match="unknown distribution 'mpi'; use auto, none, horovod, mirrored, multiworker"):
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
    monkeypatch.setenv("TFCF_TEST_DUMP_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(alone, "_broadcasts", 0)
    values = [np.array([[1.5, -2.0]], np.float32), np.array([2 ** 40 + 3], np.int64),
              np.array([2 ** 32 - 1, 7], np.uint32), np.array([True, False]), np.array(0.25, np.float64)]
    variables = [tf.Variable(v) for v in values]
    alone.broadcast_variables(variables)
    dumped = np.load(tmp_path / "rank0-broadcast0.npz")
    for v, value, saved in zip(variables, values, checks.arrays(dumped)):
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
