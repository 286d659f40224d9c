"""Run folders know what they are: manifest rules, the lock, the complete record, divergence, warm starts."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import main_process
from data.errors import ConfigError, TrainingError
from training import compare, runner
from data.prepare import prepare
from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig
from training.run_folder import RunFolder, differences
from training.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent


def _main(*args, check=True):
    return main_process(*args, check=check, log_level="3")


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _cfg(folder, mirror, data_dir, model="dae", epochs=2, lr=1e-3, seed=0, modes=("train", "test"), **kw):
    return RunConfig(model=model, modes=modes, seed=seed, export_dir=str(folder),
                     data=DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(data_dir)),
                     optim=OptimConfig(lr=lr, batch_size_train=100),
                     train=TrainConfig(epochs=epochs, validation_step=1, export_dir=str(folder), verbose=False), **kw)


def _weights(folder) -> dict:
    reader = tf.train.load_checkpoint(str(Path(folder) / "model" / "weights"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/")}


def test_differences_ignore_run_length_and_locations():
    old = {"seed": 0, "train": {"epochs": 10, "validation_step": 5}, "data": {"mirror": "/a", "dataset": "x"},
           "optim": {"lr": 0.001}, "created": "yesterday"}
    new = {"seed": 0, "train": {"epochs": 20, "validation_step": 1}, "data": {"mirror": "/b", "dataset": "x"},
           "optim": {"lr": 0.01}, "created": "today"}
    assert differences(old, new) == ["optim.lr: 0.001 -> 0.01"]


def test_a_changed_learning_rate_never_resumes_the_old_checkpoint(tmp_path, mirror):
    folder = tmp_path / "run"
    runner.run(_cfg(folder, mirror, tmp_path / "data"))
    before = sorted(p.name for p in (folder / "checkpoints").iterdir())
    weights = _weights(folder)
    with pytest.raises(ConfigError, match=r"holds another run \(optim\.lr: 0\.001 -> 0\.01\).*--fresh"):
        runner.run(_cfg(folder, mirror, tmp_path / "data", lr=1e-2))
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == before
    # --fresh moves the finished run aside instead of deleting it.
    runner.run(dataclasses.replace(_cfg(folder, mirror, tmp_path / "data", lr=1e-2),
                                   train=TrainConfig(epochs=2, export_dir=str(folder), fresh=True, verbose=False)))
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1 and json.loads((aside[0] / "run.json").read_text())["optim"]["lr"] == 1e-3
    for k, v in _weights(aside[0]).items():
        np.testing.assert_array_equal(v, weights[k])
    assert json.loads((folder / "run.json").read_text())["optim"]["lr"] == 1e-2


def test_three_interrupted_invocations_record_every_epoch_once(tmp_path, mirror, monkeypatch):
    folder = tmp_path / "run"
    runner.run(_cfg(folder, mirror, tmp_path / "data", epochs=2))  # 1: ends at its epoch count
    summaries = Trainer._summaries

    def killed_after_saving(self, record):
        if record["epoch"] == 4:
            raise KeyboardInterrupt  # 2: killed right after epoch 4's checkpoint
        summaries(self, record)

    monkeypatch.setattr(Trainer, "_summaries", killed_after_saving)
    with pytest.raises(KeyboardInterrupt):
        runner.run(_cfg(folder, mirror, tmp_path / "data", epochs=6))
    monkeypatch.setattr(Trainer, "_summaries", summaries)
    runner.run(_cfg(folder, mirror, tmp_path / "data", epochs=5))  # 3: resumes at 4, trains 5
    results = runner.run(_cfg(folder, mirror, tmp_path / "data", epochs=6))  # 4: trains 6
    history = json.loads((folder / "results.json").read_text())["train"]["history"]
    assert [e["epoch"] for e in history] == [1, 2, 3, 4, 5, 6]
    assert results["train"]["train_seconds"] == pytest.approx(sum(e["train_seconds"] for e in history))
    assert results["train"]["resumed_from_epoch"] == 5 and results["train"]["train_seconds"] > 0


def test_test_alone_adds_its_section_and_keeps_the_training_record(tmp_path, mirror):
    folder = tmp_path / "run"
    trained = runner.run(_cfg(folder, mirror, tmp_path / "data"))
    tested = runner.run(dataclasses.replace(_cfg(folder, mirror, tmp_path / "data"), modes=("test",)))
    record = json.loads((folder / "results.json").read_text())
    assert record["modes"] == ["train", "test"] and len(record["train"]["history"]) == 2
    assert tested["test"] == pytest.approx(trained["test"])


def test_the_folder_lock_refuses_a_second_holder_and_never_outlives_its_process(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with folder.lock("python main.py --train"):
        with pytest.raises(ConfigError, match=rf"in use by PID {os.getpid()} \(python main.py --train\)"):
            with RunFolder(tmp_path / "run").lock("second"):
                pass
    # A holder killed with SIGKILL leaves the lock file, but the kernel dropped its flock.
    code = ("import sys, time; sys.path.insert(0, %r); from training.run_folder import RunFolder\n"
            "with RunFolder(%r).lock('victim'):\n    print('locked', flush=True); time.sleep(60)") % (
        str(REPO), str(tmp_path / "run"))
    victim = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert victim.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=rf"in use by PID {victim.pid}"):
        with folder.lock("me"):
            pass
    victim.kill()
    victim.wait()
    with folder.lock("me"):
        assert (tmp_path / "run" / ".lock").read_text().startswith(f"PID {os.getpid()}")


def test_two_concurrent_runs_into_one_folder(tmp_path, mirror):
    args = ["--train", "--model", "dae", "--number_of_epochs", "4", "--data_mirror", str(mirror), "--data_dir",
            str(tmp_path / "data")]
    _main(*args, "--export_dir", str(tmp_path / "lone"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, str(REPO / "main.py"), *args, "--export_dir", str(tmp_path / "run")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 2], outs
    refused = next(err for code, _, err in outs if code == 2)
    assert "is in use by PID" in refused and "Traceback" not in refused
    lone, shared = _weights(tmp_path / "lone"), _weights(tmp_path / "run")
    assert lone.keys() == shared.keys()
    for k in lone:
        np.testing.assert_array_equal(lone[k], shared[k])


def test_test_reads_the_run_and_refuses_contradicting_flags(tmp_path, mirror):
    run = tmp_path / "run"
    common = ["--data_mirror", str(mirror), "--data_dir", str(tmp_path / "data"), "--export_dir", str(run)]
    trained = _main("--train", "--test", "--model", "dae", "--seed", "3", "--number_of_epochs", "3", *common)
    alone = _main("--test", *common)  # no other flag: model, data and seed come from run.json
    assert alone.stdout.strip().splitlines()[-1] == trained.stdout.strip().splitlines()[-1]
    for flags, message in ((["--seed", "0"], "--seed 0 (the run has 3)"),
                           (["--dataset", "ml-latest-small"], '--dataset "ml-latest-small" (the run has "ml-100k")'),
                           (["--model", "vae"], '--model "vae" (the run has "dae")'),
                           (["--hidden_layers", "100"], "--hidden_layers [100] (the run has [])")):
        proc = _main("--test", *flags, *common, check=False)
        assert proc.returncode == 2 and len(_errors(proc)) == 1 and message in _errors(proc)[0], proc.stderr
    record = json.loads((run / "results.json").read_text())
    assert record["config"]["seed"] == 3 and "train" in record


def test_compare_reuses_only_the_same_run(tmp_path, mirror, capsys):
    out = tmp_path / "cmp"
    base = _cfg(out, mirror, tmp_path / "data", epochs=2)
    compare.compare(["popularity", "dae"], base, out)
    capsys.readouterr()
    again = compare.compare(["popularity", "dae"], base, out)
    assert [m["reused"] for m in again["models"]] == [True, True]
    longer = compare.compare(["popularity", "dae"], dataclasses.replace(
        base, train=dataclasses.replace(base.train, epochs=3)), out)
    assert [m["reused"] for m in longer["models"]] == [True, False]
    assert longer["models"][1]["epochs"] == 3
    capsys.readouterr()
    other = compare.compare(["dae"], dataclasses.replace(base, optim=dataclasses.replace(base.optim, lr=3e-3)), out)
    assert other["models"][0]["reused"] is False
    said = capsys.readouterr().out
    assert "dae: retraining" in said and "optim.lr: 0.001 -> 0.003" in said, said
    assert json.loads((out / "dae" / "run.json").read_text())["optim"]["lr"] == 3e-3


def test_divergence_exports_the_last_good_weights_and_the_suggested_command_runs(tmp_path, mirror, monkeypatch):
    folder = tmp_path / "run"
    step = Trainer._train_step

    def poisoned(self, batch, updater):  # a NaN loss from the third epoch on
        logs = step(self, batch, updater)
        return {**logs, "loss": tf.where(self.epoch >= 2, tf.constant(np.nan, logs["loss"].dtype), logs["loss"])}

    monkeypatch.setattr(Trainer, "_train_step", poisoned)
    command = ("main.py", "--train", "--model", "dae", "--number_of_epochs", "3", "--lr", "0.001", "--data_mirror",
               str(mirror), "--data_dir", str(tmp_path / "data"), "--export_dir", str(folder))
    cfg = dataclasses.replace(_cfg(folder, mirror, tmp_path / "data", epochs=3, modes=("train",)), command=command)
    with pytest.raises(TrainingError, match="the loss became nan at epoch 3, step 1; the weights of epoch 2 are "
                                            "exported") as err:
        runner.run(cfg)
    message = str(err.value)
    assert "\n" not in message
    record = json.loads((folder / "results.json").read_text())
    assert record["train"]["diverged"]["epoch"] == 3 and len(record["train"]["history"]) == 2
    tested = _main("--test", "--export_dir", str(folder), "--data_mirror", str(mirror), "--data_dir",
                   str(tmp_path / "data"))
    assert "test: {" in tested.stdout
    suggested = shlex.split(message.split("at a lower learning rate: ", 1)[1])
    assert suggested[:2] == ["python", "main.py"] and "--warm_start" in suggested
    monkeypatch.setattr(Trainer, "_train_step", step)
    proc = _main(*suggested[2:])
    target = Path(suggested[suggested.index("--export_dir") + 1])
    manifest = json.loads((target / "run.json").read_text())
    assert manifest["warm_start"]["from"] == str(folder.resolve()) and manifest["optim"]["lr"] == pytest.approx(2e-4)
    assert "test: {" in proc.stdout


def test_a_warm_start_from_another_split_is_refused(tmp_path, mirror):
    source = tmp_path / "src"
    runner.run(_cfg(source, mirror, tmp_path / "data", seed=1, epochs=1))
    with pytest.raises(ConfigError, match="--warm_start .*another split"):
        runner.run(_cfg(tmp_path / "run", mirror, tmp_path / "data", seed=2, epochs=1, warm_start=str(source)))


def test_a_folder_from_an_older_tfcf_is_not_resumed(tmp_path, mirror):
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds a run without run.json"):
        runner.run(_cfg(folder, mirror, tmp_path / "data"))


def test_export_dir_that_is_a_file_or_read_only(tmp_path, mirror, monkeypatch):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        runner.run(_cfg(path, mirror, tmp_path / "data"))
    folder = tmp_path / "ro"
    folder.mkdir()
    # root may write into a 0555 folder, so the permission the kernel would report is simulated.
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != folder)
    with pytest.raises(ConfigError, match="is read-only"):
        runner.run(_cfg(folder, mirror, tmp_path / "data"))


def test_deeprec_lr_milestones_count_epochs_with_refeeding(tmp_path, mirror):
    from training import fit

    cfg = RunConfig(model="deeprec", export_dir=str(tmp_path), data=DataConfig(dataset="ml-100k"),
                    optim=OptimConfig(lr=0.01, lr_milestones=(2,), lr_gamma=0.1, batch_size_train=200),
                    train=TrainConfig(epochs=3, export_dir=str(tmp_path), verbose=False, max_steps_per_epoch=None),
                    model_params={"aug_step": 1, "hidden": (16,)})
    split, _ = prepare(dataclasses.replace(cfg.data, mirror=str(mirror), data_dir=str(tmp_path / "d")),
                              "rating", 0, verbose=False)
    result = fit.fit(cfg, split)
    # MultiStepLR(milestones=[2]): epochs 1 and 2 at 0.01, epoch 3 at 0.001, although each step makes 2 updates.
    assert [round(e["learning_rate"], 6) for e in result.summary["history"]] == [0.01, 0.01, 0.001]
    assert int(result.trainer.updater.updates.numpy()) == 3 * 2 * result.data.steps_per_epoch


def test_tensorboard_holds_hyper_parameters_and_test_metrics(tmp_path, mirror):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    folder = tmp_path / "run"
    results = runner.run(_cfg(folder, mirror, tmp_path / "data", epochs=2, lr=2e-3))
    events = EventAccumulator(str(folder / "logs"), size_guidance={"tensors": 0})
    events.Reload()
    assert events.Tensors("test/ndcg@100")[-1].step == 2
    assert float(tf.make_ndarray(events.Tensors("test/ndcg@100")[-1].tensor_proto)) == pytest.approx(
        results["test"]["ndcg@100"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["optim.lr"].number_value == pytest.approx(2e-3)
    assert info.hparams["model.family"].string_value == "dae" and info.hparams["data.dataset"].string_value == "ml-100k"
    assert events.Tensors("validation/ndcg@100")  # the trainer's curves share the folder
