"""tfcf command line: flags -> config objects -> one library call per mode.

    python main.py --train --test                      # Mult-VAE on ml-100k
    python main.py --train --test --benchmark --use_tf_amp --dataset ml-latest-small
    python main.py --recommend 1,50,181 --export_dir runs/ml-100k-vae
    python main.py --train --test --model mf --dataset my_ratings.csv    # your own file
    python main.py --predict pairs.csv --output predictions.csv --export_dir runs/my_ratings.csv-mf
    python main.py --recommend_users 1,2,3 --format csv --export_dir runs/ml-100k-vae
    python main.py --compare popularity,ease,vae,dae --dataset ml-latest-small

Modes run in the order train, test, benchmark (any subset, at least one); a
second run of the same command resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from absl import app, flags, logging

from cli import groups  # defines the flags, one module per --help group (cli/*.py)
from cli import tf_logs

tf_logs.default_level()  # before TensorFlow is imported

FLAGS = flags.FLAGS


# Flag -> the RunConfig key it sets (dotted; see training.config.flatten). A run-reading mode
# (--test alone) refuses the flags given here that contradict the run folder's manifest.
FLAG_KEYS = {
    "model": ("model",), "seed": ("seed",), "use_tf_amp": ("use_amp",), "xla": ("train.xla",),
    "lr": ("optim.lr",), "optimizer": ("optim.optimizer",), "weight_decay": ("optim.weight_decay",),
    "batch_size_train": ("optim.batch_size_train",), "batch_size_validation": ("optim.batch_size_validation",),
    "lr_milestones": ("optim.lr_milestones",), "lr_gamma": ("optim.lr_gamma",),
    "number_of_epochs": ("train.epochs",), "validation_step": ("train.validation_step",),
    "patience": ("train.patience",), "warm_start": ("warm_start",), "steps_per_call": ("train.steps_per_call",),
    "dataset": ("data.dataset",), "protocol": ("data.protocol",), "threshold": ("data.threshold",),
    "heldout_users": ("data.val_users", "data.test_users"), "val_users": ("data.val_users",),
    "test_users": ("data.test_users",), "min_uc": ("data.min_uc",), "fold": ("data.fold",),
    "test_fraction": ("data.test_fraction",), "val_fraction": ("data.val_fraction",),
    "time_window": ("data.time_window",), "user_col": ("data.user_col",), "item_col": ("data.item_col",),
    "rating_col": ("data.rating_col",), "time_col": ("data.time_col",), "sep": ("data.sep",),
}
# Model hyper-parameter flags -> the model config field (or baseline parameter) they set.
PARAM_FLAGS = {
    "total_anneal_steps": "total_anneal_steps", "anneal_cap": "anneal_cap", "lam": "lam", "hidden_layers": "hidden",
    "latent_dim": "latent", "dropout": "dropout", "ease_lambda": "ease_lambda", "activation": "activation",
    "drop_prob": "drop_prob", "noise_prob": "noise_prob", "constrained": "constrained",
    "last_layer_activations": "last_layer_activations", "aug_step": "aug_step", "major": "major", "rank": "rank",
    "use_bias": "use_bias", "embedding_dim": "embedding_dim", "layer_sizes": "layer_sizes",
    "factorization_weight": "factorization_weight", "regression_weight": "regression_weight",
    "no_shared_embeddings": "shared_embeddings", "bpr_form": "bpr_form", "kl_gamma": "kl_gamma",
    "encoder_epochs": "encoder_epochs", "decoder_epochs": "decoder_epochs",
}
FLAG_KEYS.update({flag: (f"model_params.{param}",) for flag, param in PARAM_FLAGS.items()})
# Flags only models with a training loop use.
TRAINING_FLAGS = ("lr", "optimizer", "weight_decay", "batch_size_train", "lr_milestones", "lr_gamma",
                  "number_of_epochs", "validation_step", "patience", "xla", "use_tf_amp", "warm_start", "logdir",
                  "steps_per_call")
# Flags of one preparation protocol.
PROTOCOL_FLAGS = {"fold": ("fold",), "test_fraction": ("random",), "time_window": ("time",),
                  "heldout_users": ("heldout",), "val_users": ("heldout",), "test_users": ("heldout",),
                  "min_uc": ("heldout",), "val_fraction": ("random", "fold", "prepared")}


def _check_applicable(models: list[str]) -> None:
    """Refuses flags that none of ``models`` uses (they would be silently ignored)."""
    from data.errors import ConfigError
    from data.prepare import default_protocol
    from training import families

    fams = [families.get(m) for m in models]
    what = models[0] if len(models) == 1 else ", ".join(models)
    for flag, param in PARAM_FLAGS.items():
        if not FLAGS[flag].present:
            continue
        used = False
        for fam in fams:
            used |= param in fam.cls.param_names()
        if not used:
            raise ConfigError(f"--{flag} does not apply to {what}; drop it (--help lists each model's flags)")
    if FLAGS["metrics"].present:
        if any(fam.task != "topk" for fam in fams):
            raise ConfigError(f"--metrics names ranking metrics of top-k models; {what} report RMSE")
        from training import metrics

        metrics.parse_ranking(FLAGS.metrics)
    if all(fam.closed_form for fam in fams):
        for flag in TRAINING_FLAGS:
            if FLAGS[flag].present:
                raise ConfigError(f"--{flag} does not apply to {what}: a closed-form model has no training loop")
    protocol = FLAGS.protocol or default_protocol(fams[0].task, FLAGS.dataset)
    for flag, protocols in PROTOCOL_FLAGS.items():
        if FLAGS[flag].present and protocol not in protocols:
            raise ConfigError(f"--{flag} applies to --protocol {' or '.join(protocols)}, not to this run's "
                              f"protocol {protocol}")


def _settings(presets: bool = True):
    """Applies ``--config`` (or a training run's preset for its model and dataset) under the command line's flags.

    Args:
      presets: look for a preset when no ``--config`` is given (``--compare``
        runs several models and reads none).

    Returns:
      The :class:`cli.config_file.Settings` applied, or None.
    """
    from cli import config_file

    if FLAGS.config == "none":
        return None
    if FLAGS.config is not None:
        settings = config_file.read(FLAGS.config)
    elif presets and (FLAGS.train or FLAGS.benchmark or FLAGS.seeds is not None or FLAGS.tune):
        settings = config_file.preset_for(FLAGS.model, FLAGS.dataset)
        if settings is None:
            _say(f"settings: no preset for {FLAGS.model} on {os.path.basename(FLAGS.dataset)}; the built-in "
                 f"defaults and the command line's flags")
            return None
    else:
        return None
    config_file.apply(settings, FLAGS)
    _say(settings.describe())
    return settings


def _preset_configs(models: list[str]) -> dict:
    """--compare without --config: each model's run settings with its preset for the dataset, if any.

    The preset's data flags (protocol, validation slice...) are left out: the
    models of a comparison share one split, the command line's.
    """
    from cli import config_file, data, own_file

    shared = {f.name for module in (data, own_file) for f in FLAGS.get_flags_for_module(module)}
    out = {}
    for model in models:
        preset = config_file.preset_for(model, FLAGS.dataset)
        if preset is None:
            continue
        kept = {k: v for k, v in preset.flags.items() if k not in shared}
        left_out = sorted(set(preset.flags) - set(kept))
        preset = dataclasses.replace(preset, flags=kept)
        saved = {name: (FLAGS[name].value, FLAGS[name].present) for name in kept}
        saved["model"] = (FLAGS.model, FLAGS["model"].present)
        try:
            FLAGS.model = model
            config_file.apply(preset, FLAGS)
            _say(f"compare: {model}: " + preset.describe().replace("settings: ", "", 1) +
                 (f"; its data settings ({', '.join(left_out)}) left out: one split for all models" if left_out
                  else ""))
            out[model] = configs(preset)
        finally:
            for name, (value, present) in saved.items():
                FLAGS[name].value, FLAGS[name].present = value, present
    return out


def _tune() -> int:
    """--tune: the study of training.tune, then its best settings as a preset file (flag names)."""
    import datetime

    from cli import config_file
    from data.errors import ConfigError
    from training import families, tune

    if FLAGS.train or FLAGS.test or FLAGS.benchmark or FLAGS.seeds is not None:
        raise ConfigError("--tune runs alone: it trains on validation data only; drop --train, --test, --benchmark "
                          "and --seeds (then run the preset it writes)")
    # The study starts from what a run would use (--config, else the dataset's preset or the model's
    # default.toml); the preset it writes holds those settings too, so that it stands on its own.
    settings = _settings()
    _check_applicable([FLAGS.model])
    out = FLAGS.export_dir or os.path.join("runs", f"{os.path.basename(FLAGS.dataset)}-{FLAGS.model}-tune")
    result = tune.tune(configs(settings), families.get(FLAGS.model).space, FLAGS.trials, out)
    fixed = {name: FLAGS[name].value for name in FLAG_KEYS if FLAGS[name].present and name not in NOT_PRESET}
    started = {k: v for k, v in (settings.flags if settings is not None else {}).items() if k not in NOT_PRESET}
    found = {**started, **fixed, **_as_flags(result.best_params)}
    path = Path(out) / "preset.toml"
    config_file.write(path, found, {
        "chosen_by": "python main.py " + " ".join(sys.argv[1:]),
        "started_from": config_file.shipped_name(settings.path) if settings else "the built-in defaults",
        "validation": f"{result.metric} {result.best_value:.4f} (best of {result.complete} complete and "
                      f"{result.pruned} pruned trials; {out}/trials.md)",
        "date": datetime.date.today().isoformat()})
    _say(f"tune: best validation {result.metric} {result.best_value:.4f}; wrote {path}, trials.md, trials.csv and "
         f"tune.png in {out}. Use it with --config {path}, or copy it to configs/{FLAGS.model}/"
         f"{os.path.basename(FLAGS.dataset)}.toml to make it the preset")
    return 0


# Flags a tuned preset leaves out: what runs, where, and on which data it was tuned.
NOT_PRESET = ("model", "dataset", "seed", "warm_start", "user_col", "item_col", "rating_col", "time_col", "sep")


def _as_flags(params: dict) -> dict:
    """Run settings (``model_params.hidden``, ``optim.lr``) as main.py flag values."""
    by_key = {keys[0]: flag for flag, keys in FLAG_KEYS.items() if len(keys) == 1}
    out = {}
    for key, value in params.items():
        if key == "model_params.shared_embeddings":
            out["no_shared_embeddings"] = not value
            continue
        flag = by_key[key]
        out[flag] = list(value) if isinstance(value, tuple) else value
    return out


def _worker_index() -> int:
    """This process's index in a multi-worker run (Horovod's rank, or TF_CONFIG's task index), 0 alone."""
    if "HOROVOD_RANK" in os.environ:
        return int(os.environ["HOROVOD_RANK"])
    try:
        return int(json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


def _say(text: str) -> None:
    """A line of the command's own, from one process of a multi-worker run."""
    if _worker_index() == 0:
        print(text, flush=True)


def _distribution() -> tuple[str, int]:
    """--distribution and --number_of_gpus as (backend, devices to mirror over), checked together.

    Raises:
      ConfigError: a combination that cannot run (XLA under tf.distribute, several GPUs with a backend of one).
    """
    from data.errors import ConfigError
    from training import distribute

    n = FLAGS.number_of_gpus
    kind = distribute.resolve_kind(FLAGS.distribution)
    if FLAGS.distribution == "auto" and kind == "none" and n > 1:
        kind = "horovod"  # --number_of_gpus N re-launches this command under horovodrun
    if kind in ("mirrored", "multiworker") and FLAGS.xla:
        raise ConfigError(f"--xla does not apply to --distribution {kind}: tf.distribute's replicated step is not "
                          f"compiled whole; drop --xla (or train with --distribution horovod)")
    if kind in ("mirrored", "multiworker") and (FLAGS.steps_per_call or 1) > 1:
        raise ConfigError(f"--steps_per_call {FLAGS.steps_per_call} does not apply to --distribution {kind}: "
                          f"tf.distribute runs one step per call here; drop it (or train with --distribution "
                          f"horovod)")
    if kind == "none" and n > 1:
        raise ConfigError(f"--number_of_gpus {n} trains {n} replicas: choose --distribution horovod or mirrored "
                          f"(--distribution none trains one)")
    if kind == "multiworker" and n > 1:
        raise ConfigError(f"--number_of_gpus {n} does not apply to --distribution multiworker: each worker mirrors "
                          f"over the GPUs it sees (set CUDA_VISIBLE_DEVICES per worker)")
    if kind == "mirrored" and n < 1:
        raise ConfigError("--distribution mirrored needs --number_of_gpus 1 or more (the devices it mirrors over)")
    return kind, (n if kind == "mirrored" else 1)


def configs(settings=None):
    """Turns the flags into a :class:`training.config.RunConfig` (``settings``: the config file they came from)."""
    from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig

    modes = tuple(m for m in ("train", "test", "benchmark") if getattr(FLAGS, m))
    export_dir = FLAGS.export_dir or os.path.join("runs", f"{os.path.basename(FLAGS.dataset)}-{FLAGS.model}")
    params = {param: FLAGS[flag].value for flag, param in PARAM_FLAGS.items()}
    params["hidden"] = tuple(int(h) for h in FLAGS.hidden_layers) if FLAGS.hidden_layers is not None else None
    params["layer_sizes"] = tuple(int(s) for s in FLAGS.layer_sizes) if FLAGS.layer_sizes else None
    params["shared_embeddings"] = False if FLAGS.no_shared_embeddings else None
    users = lambda v: v if v < 1 else int(v)  # a fraction, or a count
    heldout = users(FLAGS.heldout_users)
    val_users = heldout if FLAGS.val_users is None else users(FLAGS.val_users)
    test_users = heldout if FLAGS.test_users is None else users(FLAGS.test_users)
    explicit = {key: f"--{flag}" for flag, keys in FLAG_KEYS.items() if FLAGS[flag].present for key in keys}
    distribution, devices = _distribution()
    return RunConfig(
        model=FLAGS.model, modes=modes, seed=FLAGS.seed, export_dir=export_dir, use_amp=FLAGS.use_tf_amp,
        data=DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, mirror=FLAGS.data_mirror,
                        protocol=FLAGS.protocol, threshold=FLAGS.threshold, min_uc=FLAGS.min_uc,
                        val_users=val_users, test_users=test_users, time_window=FLAGS.time_window,
                        fold=FLAGS.fold, test_fraction=FLAGS.test_fraction, val_fraction=FLAGS.val_fraction,
                        user_col=FLAGS.user_col, item_col=FLAGS.item_col, rating_col=FLAGS.rating_col,
                        time_col=FLAGS.time_col, sep=FLAGS.sep),
        optim=OptimConfig(optimizer=FLAGS.optimizer, lr=FLAGS.lr, weight_decay=FLAGS.weight_decay,
                          batch_size_train=FLAGS.batch_size_train, batch_size_validation=FLAGS.batch_size_validation,
                          lr_milestones=tuple(int(m) for m in FLAGS.lr_milestones or ()), lr_gamma=FLAGS.lr_gamma),
        train=TrainConfig(epochs=FLAGS.number_of_epochs, validation_step=FLAGS.validation_step,
                          export_dir=export_dir, xla=FLAGS.xla, fresh=FLAGS.fresh, patience=FLAGS.patience,
                          log_dir=FLAGS.logdir, steps_per_call=FLAGS.steps_per_call),
        model_params={k: v for k, v in params.items() if v is not None},
        warm_up_epochs=FLAGS.warm_up_epochs, benchmark_epochs=FLAGS.benchmark_epochs,
        warm_start=FLAGS.warm_start, distribution=distribution, devices=devices, explicit=explicit,
        command=("main.py", *sys.argv[1:]),
        metrics=tuple(FLAGS.metrics) if FLAGS.metrics else None,
        settings=settings.record() if settings is not None else None)


def _select_devices() -> None:
    if FLAGS.number_of_gpus == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    elif FLAGS.gpu_number is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(FLAGS.gpu_number)


def _horovodrun(n: int) -> int:
    """Runs this same command as ``n`` Horovod workers on this host; returns their exit status."""
    import glob
    import importlib.util
    import shutil
    import subprocess

    spec = importlib.util.find_spec("horovod")
    built = spec is not None and glob.glob(os.path.join(os.path.dirname(spec.origin), "tensorflow", "mpi_lib*"))
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    launcher = shutil.which("horovodrun", path=path)
    if not built or launcher is None:
        print(f"error: --number_of_gpus {n} trains with Horovod, which is not installed with TensorFlow support: "
              f"run `bash scripts/install_horovod.sh` (or use --number_of_gpus 1)", file=sys.stderr)
        return 2
    script = os.path.abspath(sys.argv[0]) if os.path.isfile(sys.argv[0]) else sys.argv[0]
    # --gloo: the controller scripts/install_horovod.sh builds (no MPI); GPU tensors still go through NCCL.
    # Workers that start more than Gloo's default 30 s apart (TensorFlow imports on a busy host) abort in
    # hvd.init(); 120 s also bounds how long a frozen (not dead) worker can stall the others.
    command = [launcher, "-np", str(n), "-H", f"localhost:{n}", "--gloo", "--gloo-timeout-seconds", "120",
               sys.executable, script, *sys.argv[1:]]
    proc = subprocess.Popen(command)
    try:
        status = proc.wait()
    except KeyboardInterrupt:
        # horovodrun got the same SIGINT and stops its workers: let it finish that.
        try:
            status = proc.wait(timeout=60)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            proc.kill()
            status = 130
    if status:
        where = FLAGS.export_dir or configs().export_dir
        print(f"error: the {n}-worker Horovod job failed (status {status}): see the workers' messages above; "
              f"if a worker crashed, rerunning the same command resumes from the latest checkpoint in {where}",
              file=sys.stderr)
    return status


def _start_distribution() -> None:
    """Starts a tf.distribute backend now, before TensorFlow runs an op (devices and the cluster are fixed then)."""
    kind, devices = _distribution()
    if kind in ("mirrored", "multiworker"):
        from training import distribute

        start = lambda: distribute.get(kind, devices)  # noqa: E731
        start() if FLAGS.tf_logs else tf_logs.quietly(start)


def _reads_an_export() -> bool:
    """Whether this command only reads an exported model (one process, no training)."""
    return any(v is not None for v in (FLAGS.recommend, FLAGS.recommend_users, FLAGS.recommend_users_file,
                                       FLAGS.predict))


def _export_tools() -> None:
    """--predict, --recommend_users(_file), --recommend: one library call each."""
    from data.custom import CustomFormat
    from serving import predict, recommend

    export_dir = FLAGS.export_dir or configs().export_dir
    if FLAGS.output is not None:
        predict.check_output(FLAGS.output)  # before any model work
    if FLAGS.predict is not None:
        fmt = CustomFormat(user_col=FLAGS.user_col, item_col=FLAGS.item_col, rating_col=FLAGS.rating_col,
                           time_col="none", sep=FLAGS.sep)
        predict.predict_file(export_dir, FLAGS.predict, FLAGS.output, fmt, FLAGS.unseen, FLAGS.clip_predictions)
    elif FLAGS.recommend is None:
        users = FLAGS.recommend_users or recommend.read_user_ids(FLAGS.recommend_users_file)
        recs = recommend.recommend_users(export_dir, users, FLAGS.top_k)
        recommend.write_recommendations(recs, FLAGS.format, FLAGS.output)
    else:
        items = [s.strip() for s in FLAGS.recommend.split(",") if s.strip()]
        if FLAGS.format == "text" and FLAGS.output is None:
            recommend.print_recommendations(export_dir, items, FLAGS.top_k)
        else:
            recommend.write_recommendations(recommend.recommend(export_dir, items, FLAGS.top_k), FLAGS.format,
                                            FLAGS.output)


def main(argv) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (every setting is a --flag; a boolean is --flag "
              f"or --noflag; --help lists them)", file=sys.stderr)
        return 2
    if (FLAGS.number_of_gpus > 1 and FLAGS.distribution in ("auto", "horovod") and not _reads_an_export()
            and "HOROVOD_RANK" not in os.environ and not os.environ.get("TF_CONFIG")):
        return _horovodrun(FLAGS.number_of_gpus)
    _select_devices()
    tf_logs.import_tensorflow(show=FLAGS.tf_logs, xla=FLAGS.xla)  # after CUDA_VISIBLE_DEVICES is set
    # TensorFlow's savers log every checkpoint at INFO through absl: keep the console to our own lines.
    logging.set_verbosity(logging.WARNING)
    from data.errors import ConfigError, TfcfError

    try:
        if _reads_an_export():
            _export_tools()
            return 0
        _start_distribution()
        if FLAGS.compare is not None:
            from training import compare

            settings = _settings(presets=False)
            _check_applicable(compare.parse_models(FLAGS.compare))
            seeds = None
            if FLAGS.seeds is not None:
                from training import repeats

                seeds = repeats.parse_seeds(FLAGS.seeds)
            models = compare.parse_models(FLAGS.compare)
            compare.compare(models, configs(settings), FLAGS.export_dir or compare.default_dir(FLAGS.dataset,
                                                                                      FLAGS.compare),
                            seeds=seeds, per_model=None if FLAGS.config is not None else _preset_configs(models))
            return 0
        from training import runner

        if FLAGS.tune:
            return _tune()
        settings = _settings()
        if FLAGS.seeds is not None:
            from training import repeats

            _check_applicable([FLAGS.model])
            if FLAGS["seed"].present or FLAGS.benchmark:
                raise ConfigError("--seeds runs --train and --test for each seed: drop --seed and --benchmark")
            seeds = repeats.parse_seeds(FLAGS.seeds)
            out = FLAGS.export_dir or os.path.join("runs", f"{os.path.basename(FLAGS.dataset)}-{FLAGS.model}-seeds")
            repeats.repeat(configs(settings), seeds, out)
            return 0
        if FLAGS.train or FLAGS.benchmark or settings is not None:
            _check_applicable([FLAGS.model])
        runner.run(configs(settings))
    except TfcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume from the latest checkpoint", file=sys.stderr)
        return 130
    return 0


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, with a bad flag value as one line and exit status 2 (absl prints usage and exits 1)."""
    try:
        return FLAGS(argv)
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run() -> None:
    """Console-script entry point."""
    from cli import help as grouped_help

    grouped_help.install("usage: python main.py [flags]\n" + __doc__.split("\n", 1)[1], groups.GROUPS)
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
