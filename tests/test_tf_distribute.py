"""tf.distribute for real: MultiWorkerMirroredStrategy over loopback and MirroredStrategy over two CPU devices.

A 2-worker job (two `python main.py --distribution multiworker` processes, the cluster in TF_CONFIG) passes
the checks every backend passes (tests/distributed_checks.py, the same as the Horovod job's): identical
weights on both workers, disjoint shards covering the training users, test metrics equal to a one-process
evaluation, the loss trajectory of one process fed the same global batches. A one-process MirroredStrategy
job over two logical CPU devices trains on the same two shards, so its losses equal the 2-worker job's.
Then a worker is killed mid-run: the other ends with one line, and rerunning both resumes.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import distributed_checks as checks
from conftest import main_process
from data.errors import ConfigError
from data.prepare import prepare
from training import distribute, families, precision
from training.config import DataConfig, OptimConfig
from training.fit import build_model, make_datasets, make_optimizer
from training.trainer import TrainConfig, Trainer

REPO = checks.REPO


def _start_workers(flags, export: Path, environment: dict) -> list[subprocess.Popen]:
    ports = checks.free_ports(2)
    return [subprocess.Popen([sys.executable, str(REPO / "main.py"), *flags, "--distribution", "multiworker",
                              "--export_dir", str(export)], cwd=REPO, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**environment, "TF_CONFIG": checks.tf_config(ports, i)})
            for i in range(2)]


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    out = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            out.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return out


@pytest.fixture(scope="module")
def job(mirror, tmp_path_factory):
    """A 2-worker MultiWorkerMirroredStrategy train+test run; its export dir, worker dumps and outputs."""
    root = tmp_path_factory.mktemp("multiworker")
    data_dir, export, dumps = root / "data", root / "run", root / "dumps"
    environment = checks.env(mirror, data_dir, TFCF_TEST_DUMP_WEIGHTS=str(dumps))
    # Prepare the split once first: two workers preparing the same cache at once would race for it.
    prepare(DataConfig(dataset="ml-100k", data_dir=str(data_dir), mirror=str(mirror)), "topk", checks.SEED,
            verbose=False)
    outputs = _finish(_start_workers(checks.JOB_FLAGS, export, environment))
    for status, stdout, stderr in outputs:
        assert status == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
    return {"export": export, "dumps": dumps, "data_dir": data_dir, "mirror": mirror, "outputs": outputs,
            "results": json.loads((export / "results.json").read_text())}


@pytest.fixture(scope="module")
def split(job):
    cfg = DataConfig(dataset="ml-100k", data_dir=str(job["data_dir"]), mirror=str(job["mirror"]))
    return prepare(cfg, "topk", checks.SEED, verbose=False)[0]


def test_the_job_ran_two_workers_and_only_the_chief_wrote(job):
    results = job["results"]
    assert results["workers"] == 2 and results["train"]["epochs"] == checks.EPOCHS
    (_, out0, err0), (_, out1, err1) = job["outputs"]
    assert f"epoch {checks.EPOCHS}/{checks.EPOCHS}" in out0 and "test:" in out0
    assert out1 == ""  # the other worker says nothing, not even the settings line
    # The cluster's start-up lines (gRPC server, coordination service) and eager-collective warnings are
    # kept off the console: nothing on stderr.
    assert err0 == "" and err1 == "", err0 + err1
    assert checks.one_writer(job["export"])


class TestMultiWorkerJob(checks.JobContract):
    """Identical weights, disjoint shards, one-process metrics and loss trajectory (tests/distributed_checks.py)."""


def test_mirrored_over_two_cpu_devices_trains_the_same_two_shards(job, split, tmp_path):
    export, dumps = tmp_path / "run", tmp_path / "dumps"
    proc = checks.run([sys.executable, str(REPO / "main.py"), *checks.JOB_FLAGS, "--distribution", "mirrored",
                       "--number_of_gpus", "2", "--export_dir", str(export)],
                      checks.env(job["mirror"], job["data_dir"], TFCF_TEST_DUMP_WEIGHTS=str(dumps)))
    assert proc.stderr == ""
    results = json.loads((export / "results.json").read_text())
    assert results["workers"] == 2
    checks.check_disjoint_shards(split, export)  # the sharded steps
    # Replica r of the one process reads shard r, as worker r of the 2-worker job did: the same global
    # batches, the same averaged gradients, so the same losses and weights (up to summation order).
    np.testing.assert_allclose([e["loss"] for e in results["train"]["history"]],
                               [e["loss"] for e in job["results"]["train"]["history"]], rtol=1e-6)
    for a, b in zip(checks.arrays(checks.dump(dumps, 0, 1))[:-1], checks.arrays(checks.dump(job["dumps"], 0, 1))[:-1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for name, value in results["test"].items():
        assert value == pytest.approx(job["results"]["test"][name], rel=1e-5), name


def test_a_dead_worker_ends_the_job_and_a_rerun_resumes(mirror, tmp_path):
    export, data_dir = tmp_path / "run", tmp_path / "data"
    prepare(DataConfig(dataset="ml-100k", data_dir=str(data_dir), mirror=str(mirror)), "topk", checks.SEED,
            verbose=False)
    epochs = 30
    flags = [*checks.MODEL_FLAGS, "--train", "--number_of_epochs", str(epochs), "--validation_step", "100"]
    environment = checks.env(mirror, data_dir)
    procs = _start_workers(flags, export, environment)
    try:
        deadline = time.monotonic() + 240
        while not (export / "checkpoints" / "ckpt-2.index").exists():
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "the job ended early"
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        status, out, err = _finish(procs[:1], timeout=120)[0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    # The chief's next collective fails at once (the peer's connection is reset): measured under 1 s.
    assert time.monotonic() - killed < 60
    assert status == 2
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("error: the 2-worker multiworker job lost a worker (") and str(export) in last_line
    saved = int(tf.train.latest_checkpoint(str(export / "checkpoints")).rsplit("-", 1)[1])
    assert 2 <= saved < epochs

    outputs = _finish(_start_workers(flags, export, environment))
    assert [o[0] for o in outputs] == [0, 0], outputs
    assert f"resuming from epoch {saved}" in outputs[0][1]
    results = json.loads((export / "results.json").read_text())
    assert results["train"]["resumed_from_epoch"] == saved and results["train"]["epochs"] == epochs
    assert [e["epoch"] for e in results["train"]["history"]] == list(range(1, epochs + 1))


# --- in this process ------------------------------------------------------------------------------------------
def test_a_mirrored_world_of_one_trains_bit_for_bit_like_no_distribution(mirror, tmp_path):
    """The strategy path (mirrored variables, strategy.run, the optimizer's own replica sum) adds nothing."""
    split = prepare(DataConfig(dataset="ml-100k", data_dir=str(tmp_path / "data"), mirror=str(mirror)), "topk",
                    checks.SEED, verbose=False)[0]
    family = families.get("vae")  # dropout, sampling noise and KL annealing: every kind of model state
    weights = []
    for dist in (distribute.Distribution(), distribute.StrategyDistribution("mirrored", 1)):
        optim = OptimConfig(batch_size_train=100)
        data = make_datasets(family.cls, split, optim, 0, dist)
        with dist.scope():
            model = build_model(family, split, {"seed": 0}, precision.FLOAT32)
            optimizer = make_optimizer(optim, data.steps_per_epoch)
        # Several steps a call loop on the device without a strategy; under one, steps go one a call (see
        # StrategyDistribution.loops_on_device): the same results either way.
        trainer = Trainer(model, optimizer, TrainConfig(epochs=2, export_dir=str(tmp_path / dist.name),
                                                        verbose=False, steps_per_call=4), dist)
        assert trainer.steps_per_call == (4 if dist.loops_on_device else 1)
        trainer.fit(data.train, data.steps_per_epoch, data.rows_per_epoch)
        weights.append([np.asarray(tf.convert_to_tensor(v)) for v in model.variables])
    assert len(weights[0]) == len(weights[1])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_strategy_collectives_of_one_process_are_exact():
    dist = distribute.StrategyDistribution("mirrored", 1)
    assert (dist.rank, dist.size, dist.shards, dist.local_shards, dist.is_chief) == (0, 1, 1, (0,), True)
    sums = dist.sum({"a/sum": tf.constant(2.5, tf.float64), "a/count": tf.constant(4.0, tf.float64)})
    assert {k: float(v) for k, v in sums.items()} == {"a/sum": 2.5, "a/count": 4.0}
    dist.barrier()
    # Outside strategy.run the optimizer would not sum the replicas' gradients: refused, not silently wrong.
    with pytest.raises(ConfigError, match="outside Distribution.run"):
        dist.allreduce_gradients([tf.ones([2])])
    # Inside it, each gradient is divided by the replica count (the optimizer sums them).
    out = dist.run(lambda b: {"g": dist.allreduce_gradients([b])[0][0]}, tf.constant([3.0]))
    assert float(out["g"]) == 3.0


def test_get_resolves_auto_and_refuses_what_cannot_run(monkeypatch):
    monkeypatch.delenv("HOROVOD_RANK", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.resolve_kind("auto") == "none" and distribute.resolve_kind("single") == "none"
    monkeypatch.setenv("TF_CONFIG", checks.tf_config([1, 2], 0))
    assert distribute.resolve_kind("auto") == "multiworker"
    monkeypatch.setenv("HOROVOD_RANK", "0")
    assert distribute.resolve_kind("auto") == "horovod"
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(ConfigError, match="^--distribution multiworker needs TF_CONFIG"):
        distribute.StrategyDistribution("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="^TF_CONFIG is not valid JSON"):
        distribute.StrategyDistribution("multiworker")


@pytest.mark.parametrize("flags, message", [
    (["--distribution", "mirrored", "--number_of_gpus", "2", "--xla"],
     "error: --xla does not apply to --distribution mirrored: tf.distribute's replicated step is not compiled "
     "whole; drop --xla (or train with --distribution horovod)"),
    (["--distribution", "mirrored", "--steps_per_call", "8"],
     "error: --steps_per_call 8 does not apply to --distribution mirrored: tf.distribute runs one step per call here; "
     "drop it (or train with --distribution horovod)"),
    (["--distribution", "none", "--number_of_gpus", "2"],
     "error: --number_of_gpus 2 trains 2 replicas: choose --distribution horovod or mirrored (--distribution none "
     "trains one)"),
    (["--distribution", "mirrored", "--number_of_gpus", "0"],
     "error: --distribution mirrored needs --number_of_gpus 1 or more (the devices it mirrors over)"),
    (["--distribution", "multiworker"],
     "error: --distribution multiworker needs TF_CONFIG (the cluster's worker addresses and this worker's index) "
     "set on every worker; see the README's multi-worker section"),
])
def test_main_refuses_a_distribution_that_cannot_run_in_one_line(flags, message, tmp_path):
    proc = main_process("--model", "dae", "--dataset", "ml-100k", "--train", "--export_dir", str(tmp_path / "run"),
                        *flags, check=False, env_extra={"TF_CONFIG": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip() == message
