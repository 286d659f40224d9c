"""One library call per ``main.py`` mode: train, test, benchmark, over the one fit wiring.

``main.py`` turns flags into a :class:`training.config.RunConfig` and calls
:func:`run`; notebooks and scripts call the same function. The run folder's
rules (manifest, lock, one results record) are applied here, once, through
:mod:`training.run_folder`; training itself is :func:`training.fit.fit`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from data import files
from data.errors import ConfigError, TrainingError
from data.prepare import DataConfig, prepare
from data.prepare import titles as data_titles
from serving import export, loader
from training import distribute, families, fit, intervals, precision
from training.config import LOCATION_KEYS, RUN_LENGTH_KEYS, OptimConfig, RunConfig, jsonable
from training.run_folder import (_MISSING, RunFolder, differences, manifest_of, manifest_value,
                                 split_fingerprint)

# Manifest sections that say how a run trains, not what model on what data it is: --test ignores them.
_TRAINING_SECTIONS = frozenset({"optim", "train", "precision", "workers", "warm_start"})


def _say(dist, cfg: RunConfig, text: str) -> None:
    if dist.is_chief and cfg.train.verbose:
        print(text, flush=True)


def _notice(dist, text: str) -> None:
    """What happened to a run folder (moved aside, reused): said even when training is quiet."""
    if dist.is_chief:
        print(text, flush=True)


# --- reading a run's settings from its folder ----------------------------------------
def _config_value(cfg: RunConfig, key: str) -> Any:
    if key.startswith("model_params."):
        return cfg.model_params.get(key.split(".", 1)[1])
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
    return node


def _given_keys(cfg: RunConfig) -> dict[str, str]:
    """The config keys the caller set (main.py: the flags on the command line), key -> how to name it."""
    if cfg.explicit is not None:
        return dict(cfg.explicit)
    keys = {"model": "model", "seed": "seed", "use_amp": "use_amp"}
    for section in ("data", "optim"):
        keys.update({f"{section}.{f.name}": f"{section}.{f.name}" for f in dataclasses.fields(getattr(cfg, section))})
    keys.update({f"model_params.{k}": f"model_params.{k}" for k in cfg.model_params})
    return keys


def adopt_manifest(cfg: RunConfig, manifest: dict) -> RunConfig:
    """``cfg`` with the model, data and training settings of the run in its folder.

    Raises:
      ConfigError: a setting the caller gave contradicts the run (one line naming each).
    """
    clashes = []
    for key, name in _given_keys(cfg).items():
        if key in RUN_LENGTH_KEYS or key in LOCATION_KEYS:
            continue
        want, have = _config_value(cfg, key), manifest_value(manifest, key)
        if want is not None and have is _MISSING and key.startswith("model_params."):
            clashes.append(f"{name} (the run's {manifest['model']['family']} model has no such setting)")
            continue
        if want is None or have is _MISSING or jsonable(want) == jsonable(have):
            continue
        clashes.append(f"{name} {json.dumps(jsonable(want))} (the run has {json.dumps(jsonable(have))})")
    if clashes:
        raise ConfigError(f"{cfg.export_dir} holds a run with other settings: {', '.join(clashes)}; drop those "
                          f"flags (the run's settings are read from its run.json) or use another --export_dir")
    model = manifest["model"]
    family = families.get(model["family"])
    params = {k: v for k, v in model["config"].items() if k not in ("n_items", "n_users", "seed")}
    if family.task == "rating":
        params["major"] = model.get("major", "users")
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    data = DataConfig(**{**{k: v for k, v in manifest["data"].items() if k in fields},
                         **{k: getattr(cfg.data, k) for k in ("data_dir", "mirror", "cache")}})
    optim, train = cfg.optim, cfg.train
    if "optim" in manifest:
        optim = OptimConfig(**{**manifest["optim"], "lr_milestones": tuple(manifest["optim"]["lr_milestones"]),
                               "batch_size_validation": cfg.optim.batch_size_validation})
        train = dataclasses.replace(cfg.train, xla=manifest["train"]["xla"],
                                    max_steps_per_epoch=manifest["train"]["max_steps_per_epoch"])
    return dataclasses.replace(cfg, model=model["family"], seed=manifest["seed"], data=data, optim=optim,
                               train=train, model_params=params,
                               use_amp=manifest.get("precision", "float32") != "float32",
                               warm_start=(manifest.get("warm_start") or {}).get("from"))


def split_of_run(export_dir: str | Path, data_dir: Optional[str] = None, mirror: Optional[str] = None):
    """The split a run folder's model was trained on, rebuilt from its manifest and checked.

    Returns:
      (split, manifest): the split in the model's orientation (transposed for
      item-based DeepRec) and the run's manifest.

    Raises:
      ConfigError: no manifest there, or the data changed since the run (fingerprint).
    """
    folder = RunFolder(export_dir)
    manifest = folder.manifest()
    if manifest is None:
        raise ConfigError(f"{folder.path} holds no run (no run.json): point --export_dir at a finished run")
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    data = DataConfig(**{k: v for k, v in manifest["data"].items() if k in fields})
    data.data_dir, data.mirror = data_dir or data.data_dir, mirror or data.mirror
    family = families.get(manifest["model"]["family"])
    split, _ = prepare(data, family.task, manifest["seed"], verbose=False)
    if family.task == "rating" and manifest["model"].get("major") == "items":
        split = split.transpose()
    if split_fingerprint(split) != manifest["data"]["split_fingerprint"]:
        raise ConfigError(f"the data of the run in {folder.path} changed since it was trained (its split "
                          f"fingerprint differs); retrain it (--train --fresh) or restore the data")
    return split, manifest


# --- modes --------------------------------------------------------------------------
def _export(cfg: RunConfig, family: families.Family, model, split, titles: dict, info: dict) -> None:
    export_dir = Path(cfg.export_dir)
    export.save(model, export_dir, cfg.model, split.item_ids, split.user_ids if split.task == "rating" else None, titles,
                extra={"task": family.task, "dataset": info["dataset"], "protocol": info["protocol"],
                       "major": info.get("major", "users")})
    export.save_known(export_dir, split, info.get("major", "users"))
    export.write_saved_model(model, split, export_dir, info.get("major", "users"))


def _continue_command(cfg: RunConfig) -> str:
    """The command that continues a diverged run from its exported weights at a fifth of the learning rate."""
    lr = cfg.optim.lr / 5
    target = f"{cfg.export_dir.rstrip('/')}-lr{lr:g}"
    drop = ("--lr", "--export_dir", "--warm_start", "--fresh", "--nofresh", "--test", "--notest", "--benchmark")
    args, skip = [], False
    for arg in (cfg.command or ("main.py", "--train"))[1:]:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = "=" not in arg and name in ("--lr", "--export_dir", "--warm_start")
            continue
        args.append(arg)
    args += ["--test", "--lr", f"{lr:g}", "--warm_start", cfg.export_dir, "--export_dir", target]
    return "python main.py " + " ".join(shlex.quote(a) for a in args)


def _tensorboard_record(cfg: RunConfig, manifest: dict, results: dict) -> None:
    """The run's hyper-parameters (HParams plugin) and test metrics beside the training curves.

    One view compares runs: ``tensorboard --logdir runs`` lists every run folder with its settings and
    final metrics in the HPARAMS tab.
    """
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    from training.config import flatten

    keep = {k: v for k, v in flatten({"model": manifest["model"], "seed": manifest["seed"],
                                      "data": {k: manifest["data"].get(k) for k in ("dataset", "protocol")},
                                      "optim": manifest.get("optim", {}), "precision": manifest.get("precision")}).items()}
    hparams = {k: (v if isinstance(v, (bool, int, float, str)) else json.dumps(v)) for k, v in keep.items()
               if v is not None}
    step = int(results.get("train", {}).get("epochs") or 0)
    writer = tf.summary.create_file_writer(cfg.train.log_dir or str(Path(cfg.export_dir) / "logs"))
    with writer.as_default(step=step):
        hp.hparams(hparams, trial_id=str(Path(cfg.export_dir).resolve()))
        for name, value in results.get("test", {}).items():
            if not name.endswith("/count"):
                tf.summary.scalar(f"test/{name}", value)
    writer.close()


def train(cfg: RunConfig, split, dist: distribute.Distribution, policy: str, titles: dict, info: dict,
          on_validation=None):
    """Trains (or fits) the model and exports the best one. Returns (model, summary dict).

    Raises:
      TrainingError: the loss diverged; the last good weights are exported first, and the
        message gives the command that continues from them at a lower learning rate.
    """
    family = families.get(cfg.model)
    result = fit.fit(cfg, split, dist, policy, on_validation=on_validation)
    diverged = result.diverged
    usable = diverged is None or diverged.last_checkpoint is not None or (result.summary.get("best") is not None)
    if dist.is_chief and usable:
        _export(cfg, family, result.model, split, titles, info)
    if diverged is not None:
        where = (f"the weights of epoch {result.summary['epochs']} are exported (so --test works); to continue "
                 f"from them at a lower learning rate: {_continue_command(cfg)}" if usable else
                 "nothing was exported (no epoch finished); rerun with a lower --lr and --fresh")
        raise _DivergedRun(f"the loss became {diverged.loss} at epoch {diverged.epoch}, step {diverged.step}; "
                           f"{where}", result.summary)
    return result.model, result.summary


def _test_interval(step, data: fit.Datasets, cfg: RunConfig) -> dict:
    """The bootstrap interval of every test metric over the test rows (:mod:`training.intervals`).

    ``step``: the compiled evaluation step the test metrics were computed with (traced once for both).
    """
    rows = intervals.row_stats(step, data.test_rows())
    units = len(next(iter(rows.values()))[0]) if rows else 0
    return {"confidence": intervals.CONFIDENCE, "resamples": intervals.RESAMPLES, "units": units,
            **intervals.bootstrap(rows, seed=cfg.seed)}


def _show_interval(interval: dict) -> str:
    shown = {k: f"{v[0]:.4f}..{v[1]:.4f}" for k, v in interval.items() if isinstance(v, list) and k != "mse"}
    return f"(bootstrap over {interval['units']} test rows): {json.dumps(shown)}"


class _DivergedRun(TrainingError):
    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


def benchmark(cfg: RunConfig, split, dist: distribute.Distribution, policy: str) -> dict:
    """Average epoch training and validation time after ``warm_up_epochs``, and users/s.

    Users/s counts every pass over the data (a RecVAE epoch makes several).

    Trains a fresh model in a temporary folder: the run's checkpoints are untouched.
    """
    family = families.get(cfg.model)
    if family.closed_form:
        raise ConfigError(f"--benchmark times training epochs; '{cfg.model}' has no training loop")
    epochs = cfg.warm_up_epochs + cfg.benchmark_epochs
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = dataclasses.replace(cfg.train, epochs=epochs, validation_step=1, export_dir=tmp, fresh=True,
                                   patience=None, log_dir=None)
        result = fit.fit(dataclasses.replace(cfg, train=tcfg, warm_start=None), split, dist, policy)
    timed = result.summary["history"][cfg.warm_up_epochs:]
    train_s = float(np.mean([e["train_seconds"] for e in timed]))
    val_s = [e["validation_seconds"] for e in timed if "validation_seconds" in e]
    summary = {"model": cfg.model, "dataset": cfg.data.dataset, "precision": policy, "xla": cfg.train.xla,
               "workers": dist.shards, "warm_up_epochs": cfg.warm_up_epochs, "timed_epochs": len(timed),
               "batch_size_train": cfg.optim.batch_size_train,
               "mean_epoch_train_seconds": train_s,
               "mean_epoch_validation_seconds": float(np.mean(val_s)) if val_s else None,
               "passes_per_epoch": result.trainer.passes_per_epoch,
               "rows_per_second": result.data.rows_per_epoch * result.trainer.passes_per_epoch / train_s}
    if dist.is_chief:
        files.write_json(Path(cfg.export_dir) / "benchmark.json", summary)
    _say(dist, cfg, f"benchmark: {train_s:.3f} s/epoch training ({summary['rows_per_second']:,.0f} rows/s), "
                    f"{summary['mean_epoch_validation_seconds'] or 0:.3f} s/epoch validation, {policy}"
                    f"{', xla' if cfg.train.xla else ''}")
    return summary


def run(cfg: RunConfig, on_validation=None) -> dict:
    """Runs the modes of ``cfg`` in order (train, test, benchmark) in its run folder.

    The folder is locked for the whole call; its manifest decides whether this
    run may resume there (``--train``) or supplies the settings (``--test``,
    ``--benchmark``); ``results.json`` gets one section per mode.

    Returns:
      The results dict that was written.

    Raises:
      ConfigError: the folder holds another run, is in use, or a flag contradicts it.
      TrainingError: training diverged (after exporting the last good weights).
    """
    modes = [m for m in ("train", "test", "benchmark") if m in cfg.modes]
    if not modes:
        raise ConfigError("nothing to do: give at least one of --train, --test, --benchmark")
    families.get(cfg.model)
    dist = distribute.get(cfg.distribution, cfg.devices)
    if not dist.is_chief:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, verbose=False))
    folder = RunFolder(cfg.export_dir)
    command = " ".join(cfg.command) if cfg.command else "a tfcf run"
    with folder.lock(command) if dist.is_chief else contextlib.nullcontext(), dist.guard(cfg.export_dir):
        return _run_in_folder(cfg, modes, dist, folder, on_validation)


def _check_warm_start(source_dir: str, manifest: dict) -> None:
    """A warm start needs a finished run of the same model on the same split."""
    source = RunFolder(source_dir).manifest()
    if source is None:
        raise ConfigError(f"--warm_start {source_dir} holds no run (no run.json)")
    if source["data"]["split_fingerprint"] != manifest["data"]["split_fingerprint"]:
        raise ConfigError(f"--warm_start {source_dir} was trained on another split (other data, protocol or seed); "
                          f"a warm start continues a run on the same split")
    if source["model"] != manifest["model"]:
        changed = differences(source["model"], manifest["model"])
        raise ConfigError(f"--warm_start {source_dir} holds another model ({'; '.join(changed)}); its weights do "
                          f"not fit this one")


def _run_in_folder(cfg: RunConfig, modes: list[str], dist, folder: RunFolder, on_validation=None) -> dict:
    t0 = time.perf_counter()
    # Training: the chief alone judges the folder (workers would race its move-aside); the others
    # follow it through the trainer's barrier and broadcast. Reading modes: every worker adopts the manifest.
    old = folder.manifest() if dist.is_chief or "train" not in modes else None
    if "train" in modes:
        if dist.is_chief and cfg.train.fresh:
            moved = folder.move_aside()
            if moved is not None:
                _notice(dist, f"--fresh: moved the previous run to {moved}")
            old = None
        elif dist.is_chief and old is None and folder.has_run():
            raise ConfigError(f"{folder.path} holds a run without run.json (an older tfcf or another tool wrote it); "
                              f"use another --export_dir, or --fresh to move it aside and start over")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, fresh=False))
    elif old is not None:
        cfg = adopt_manifest(cfg, old)
    elif "test" in modes:
        raise ConfigError(f"{folder.path} holds no run (no run.json): train one first (--train), or point "
                          f"--export_dir at a run folder")
    family = families.get(cfg.model)
    policy = precision.policy_name(cfg.use_amp)
    split, info = prepare(cfg.data, family.task, cfg.seed, verbose=dist.is_chief and cfg.train.verbose)
    titles = data_titles(cfg.data)
    if family.task == "rating" and cfg.model_params.get("major") == "items":
        # Item-based autoencoder: rows are items; ids and titles follow the transpose.
        split = split.transpose()
        info["major"] = "items"
    if "train" in modes:
        cfg, rules = fit.resolve(cfg, split, dist.shards)
        if rules:
            _say(dist, cfg, "defaults by data size: " + "; ".join(rules))
    manifest = manifest_of(cfg, fit.model_config(family, split, cfg.model_params, cfg.seed), info,
                           split_fingerprint(split), policy, dist.shards, not family.closed_form)
    if cfg.warm_start and "train" in modes and old is None:
        _check_warm_start(cfg.warm_start, manifest)
    if old is not None:
        if "train" in modes:
            changed = differences(old, manifest)
            if changed and cfg.replace_mismatch:
                moved = folder.move_aside() if dist.is_chief else None
                _notice(dist, f"{cfg.model}: retraining, {folder.path} held another run ({'; '.join(changed)}); "
                                f"moved it to {moved}")
                old = None
            elif changed:
                raise ConfigError(f"{folder.path} holds another run ({'; '.join(changed)}): use another "
                                  f"--export_dir, or --fresh to move that run aside and start over")
        else:
            changed = differences(old, manifest, RUN_LENGTH_KEYS | _TRAINING_SECTIONS)
            if changed:
                raise ConfigError(f"the data of the run in {folder.path} changed since it was trained "
                                  f"({'; '.join(changed)}); retrain it (--train --fresh) or restore the data")
    results = folder.results() if old is not None else {}
    if (cfg.reuse_finished and old is not None and "test" in results
            and not differences(old, manifest, frozenset({"train.verbose", "train.progress_seconds"}))):
        _notice(dist, f"{cfg.model}: test metrics already in {folder.path / 'results.json'}; not retrained")
        return {**results, "reused": True}
    if dist.is_chief and ("train" in modes or old is None):
        if old is not None:
            manifest["created"] = old.get("created", manifest["created"])
        folder.write_manifest(manifest)
    results.update({"config": jsonable(dataclasses.asdict(dataclasses.replace(cfg, explicit=None))),
                    "data": info, "precision": policy, "workers": dist.shards,
                    "modes": list(dict.fromkeys([*results.get("modes", []), *modes]))})
    model = None
    if "train" in modes:
        results.pop("test", None)  # it scored the weights this training replaces
        try:
            model, summary = train(cfg, split, dist, policy, titles, info, on_validation)
        except _DivergedRun as err:
            results["train"] = err.summary
            results.pop("validation", None)
            if dist.is_chief:
                folder.write_results(results)
            raise
        results["train"] = summary
        if "validation" in summary:
            results["validation"] = summary["validation"]
    if "test" in modes:
        if model is None:
            model, meta, _, _ = loader.load(cfg.export_dir)
            if meta["family"] != cfg.model:
                raise ConfigError(f"{cfg.export_dir} holds a '{meta['family']}' model, not '{cfg.model}'; "
                                  f"pass --model {meta['family']}")
        data = fit.datasets_for(family, split, cfg, dist)
        fit.set_metrics(model, cfg)
        step = fit.evaluation_step(model)
        results["test"] = fit.evaluate_model(model, data.test(), dist, step)
        shown = {k: round(v, 4) for k, v in results["test"].items() if not k.endswith("/count")}
        _say(dist, cfg, f"test: {json.dumps(shown)}")
        if dist.is_chief:
            results["test_interval"] = _test_interval(step, data, cfg)
            _say(dist, cfg, "test 95% interval " + _show_interval(results["test_interval"]))
    if "benchmark" in modes:
        results["benchmark"] = benchmark(cfg, split, dist, policy)
    results["seconds"] = time.perf_counter() - t0
    if dist.is_chief:
        folder.write_results(results)
        _tensorboard_record(cfg, manifest if "train" in modes or old is None else old, results)
    return results
