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

import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import app, flags, logging

FLAGS = flags.FLAGS

# --- modes (names as in the thesis) ---
flags.DEFINE_bool("train", False, "Train the model (resumes from the latest checkpoint in --export_dir).")
flags.DEFINE_bool("test", False, "Report test metrics; without --train, of the model exported in --export_dir.")
flags.DEFINE_bool("benchmark", False, "Time training and validation epochs after --warm_up_epochs; writes benchmark.json.")
flags.DEFINE_string("recommend", None, "Comma-separated item ids (original ids): print the top --top_k items "
                    "recommended for a user who has them, from the model in --export_dir.")
flags.DEFINE_integer("top_k", 10, "How many items --recommend prints.", lower_bound=1)
flags.DEFINE_list("recommend_users", None, "Comma-separated user ids (original ids): the top --top_k items for each, "
                  "without the items they already have, from the model in --export_dir.")
flags.DEFINE_string("recommend_users_file", None, "Like --recommend_users, from a file of user ids (one a line, or "
                    "the user column of a CSV).")
flags.DEFINE_enum("format", "text", ["text", "csv"], "Recommendations as text or as CSV user,rank,item,title,score.")
flags.DEFINE_string("predict", None, "A file of (user, item) pairs in original ids (CSV/TSV/Parquet, header "
                    "optional; read with --user_col/--item_col/--sep): write user,item,prediction from the rating "
                    "model in --export_dir.")
flags.DEFINE_enum("unseen", "fallback", ["fallback", "model"], "--predict: a pair whose user or item has no "
                  "training rating gets the item's mean rating, else the global mean (fallback), or the model's "
                  "output as --test scores it (model).")
flags.DEFINE_bool("clip_predictions", False, "--predict: clip predictions to the training rating range.")
flags.DEFINE_string("output", None, "--predict/--recommend*: the file to write (default stdout).")
flags.DEFINE_list("compare", None, "Train and test these models on one dataset, protocol and seed, e.g. "
                  "popularity,ease,vae,dae or mf,deeprec,multitask; writes compare.md/.json/.png into --export_dir "
                  "(default runs/<dataset>-compare-topk or -rating); models with test results there are not "
                  "retrained.")
# --- model ---
flags.DEFINE_string("model", "vae", "Model: vae, dae, ease, popularity (top-k); deeprec, mf, multitask (ratings).")
flags.DEFINE_bool("use_tf_amp", False, "Mixed precision: float16 with loss scaling on GPU, bfloat16 on CPU.")
flags.DEFINE_bool("xla", False, "Compile the training step with XLA (jit_compile).")
flags.DEFINE_integer("total_anneal_steps", 200000, "Mult-VAE: updates until the KL weight reaches --anneal_cap.")
flags.DEFINE_float("anneal_cap", 0.2, "Mult-VAE: the largest KL weight.")
flags.DEFINE_float("lam", None, "L2 regularization weight on the weight matrices (Mult-VAE default 0, Mult-DAE 0.001; also mf and deeprec).")
flags.DEFINE_list("hidden_layers", None, "Hidden layer widths, e.g. 600 for Mult-VAE [I-600-200-600-I].")
flags.DEFINE_integer("latent_dim", None, "Latent code width (Mult-VAE 200).")
flags.DEFINE_float("dropout", None, "Input dropout rate (Mult-VAE 0.5).")
flags.DEFINE_float("ease_lambda", None, "EASE: L2 regularization lambda (default 500).")
# DeepRec
flags.DEFINE_string("activation", None, "DeepRec: selu, elu, relu, relu6, lrelu, sigmoid, tanh or swish.")
flags.DEFINE_float("drop_prob", None, "DeepRec: dropout rate on the code layer.")
flags.DEFINE_float("noise_prob", None, "DeepRec: dropout rate on the input.")
flags.DEFINE_bool("constrained", None, "DeepRec: tied decoder (transposed encoder weights).")
flags.DEFINE_bool("last_layer_activations", None, "DeepRec: apply the activation on the output layer too.")
flags.DEFINE_integer("aug_step", None, "DeepRec: dense re-feeding steps per batch (0: off).")
flags.DEFINE_enum("major", "users", ["users", "items"], "DeepRec: rows are users (user-based) or items.")
flags.DEFINE_list("lr_milestones", None, "Epochs at which the learning rate is multiplied by --lr_gamma.")
flags.DEFINE_float("lr_gamma", 0.1, "Learning-rate factor at each milestone.")
# matrix factorization
flags.DEFINE_integer("rank", None, "mf: rank of the factorization (25).")
flags.DEFINE_bool("use_bias", None, "mf: user/item biases and a global mean.")
flags.DEFINE_integer("embedding_dim", None, "multitask: embedding size (32).")
flags.DEFINE_list("layer_sizes", None, "multitask: rating MLP widths (96,64).")
flags.DEFINE_float("factorization_weight", None, "multitask: weight of the BPR loss (0.99).")
flags.DEFINE_float("regression_weight", None, "multitask: weight of the rating MSE (0.01).")
flags.DEFINE_bool("no_shared_embeddings", False, "multitask: separate embeddings for the two tasks.")
flags.DEFINE_enum("bpr_form", None, ["homework", "log"], "multitask: mean(1 - sigmoid(d)) or -log sigmoid(d).")
flags.DEFINE_string("logdir", None, "TensorBoard folder (default <export_dir>/logs).")
# --- optimization ---
flags.DEFINE_float("lr", 1e-3, "Learning rate.")
flags.DEFINE_string("optimizer", "adam", "adam, momentum, sgd, adagrad or rmsprop.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay.")
flags.DEFINE_integer("number_of_epochs", 200, "Epochs to train.", lower_bound=1)
flags.DEFINE_integer("batch_size_train", 100, lower_bound=1, help="Users per training step (per worker with several GPUs); 100 chosen by "
                     "ML-100K validation NDCG@100 (0.4350 vs 0.4330 for 500); raise it for ML-20M-sized data.")
flags.DEFINE_integer("batch_size_validation", 2000, "Users per evaluation batch.", lower_bound=1)
flags.DEFINE_integer("validation_step", 5, "Validate every this many epochs (and after the last).", lower_bound=1)
flags.DEFINE_integer("patience", None, "Stop after this many validations without improvement.", lower_bound=1)
flags.DEFINE_integer("warm_up_epochs", 1, "Benchmark: epochs left out of the timing.", lower_bound=0)
flags.DEFINE_integer("benchmark_epochs", 3, "Benchmark: epochs timed after the warm-up.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the data split, data order, weights and noise.")
# --- data ---
flags.DEFINE_string("dataset", "ml-100k", "Dataset name (ml-100k, ml-1m, ml-20m, ml-latest-small, netflix, "
                    "lastfm-2k, lastfm-360k, pinterest-20, ml-10m).")
flags.DEFINE_string("data_dir", None, "Download and cache folder (default $TFCF_DATA_DIR or ~/.cache/tfcf).")
flags.DEFINE_string("data_mirror", None, "Folder of already-extracted datasets (default $TFCF_DATA_MIRROR).")
flags.DEFINE_string("protocol", None, "Split protocol: heldout (top-k models), fold, random, time (rating models).")
flags.DEFINE_float("threshold", None, "Binarize ratings >= threshold (default: the dataset's, 4 for MovieLens).")
flags.DEFINE_float("heldout_users", 0.1, "Validation and test users each: a fraction (<1) or a count.")
flags.DEFINE_integer("min_uc", 5, "Keep users with at least this many positives.")
flags.DEFINE_string("fold", "u1", "--protocol fold: ML-100K's official fold u1..u5, ua or ub.")
flags.DEFINE_float("test_fraction", 0.05, "--protocol random: fraction of the ratings held out for testing.")
flags.DEFINE_float("val_fraction", 0.0, "--protocol random/fold: fraction of the training ratings moved to a "
                   "validation slice (best checkpoint, early stopping).")
flags.DEFINE_string("time_window", "3m", "--protocol time: full, 3m, 6m, 1y (DeepRec's Netflix windows) or dates "
                    "TRAIN_START..TRAIN_END,TEST_START..TEST_END for your own data.")
# --- your own file (--dataset path/to/file.csv|.tsv|.dat|.parquet) ---
flags.DEFINE_string("user_col", None, "The user column: a header name or a field number from 1 (default: detected).")
flags.DEFINE_string("item_col", None, "The item column (default: detected).")
flags.DEFINE_string("rating_col", None, "The rating column; 'none': implicit data, every row a positive "
                    "(default: detected; implicit when there is none).")
flags.DEFINE_string("time_col", None, "The time column (unix seconds or dates); 'none': ignore (default: detected).")
flags.DEFINE_string("sep", None, "Field separator: ',', tab, '::', ';', '|' or space (default: detected).")
# --- run ---
flags.DEFINE_string("export_dir", None, "Run folder: checkpoints, best model, logs, results.json "
                    "(default runs/<dataset>-<model>).")
flags.DEFINE_bool("fresh", False, "Start over instead of resuming: the run in --export_dir is moved aside to "
                  "<export_dir>.replaced-<time>, never deleted.")
flags.DEFINE_string("warm_start", None, "A finished run folder of the same model and split whose exported weights "
                    "start this run (e.g. to continue a diverged run at a lower --lr in a new --export_dir).")
flags.DEFINE_integer("gpu_number", None, "Which GPU to use (sets CUDA_VISIBLE_DEVICES).")
flags.DEFINE_integer("number_of_gpus", 1, "GPUs to train on; 0 forces the CPU; N > 1 re-launches this command "
                     "as N Horovod workers on this host (CPU workers where there is no GPU).")


# Flag -> the RunConfig key it sets (dotted; see training.config.flatten). A run-reading mode
# (--test alone) refuses the flags given here that contradict the run folder's manifest.
FLAG_KEYS = {
    "model": ("model",), "seed": ("seed",), "use_tf_amp": ("use_amp",), "xla": ("train.xla",),
    "lr": ("optim.lr",), "optimizer": ("optim.optimizer",), "weight_decay": ("optim.weight_decay",),
    "batch_size_train": ("optim.batch_size_train",), "batch_size_validation": ("optim.batch_size_validation",),
    "lr_milestones": ("optim.lr_milestones",), "lr_gamma": ("optim.lr_gamma",),
    "number_of_epochs": ("train.epochs",), "validation_step": ("train.validation_step",),
    "patience": ("train.patience",), "warm_start": ("warm_start",),
    "dataset": ("data.dataset",), "protocol": ("data.protocol",), "threshold": ("data.threshold",),
    "heldout_users": ("data.val_users", "data.test_users"), "min_uc": ("data.min_uc",), "fold": ("data.fold",),
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
    "no_shared_embeddings": "shared_embeddings", "bpr_form": "bpr_form",
}
FLAG_KEYS.update({flag: (f"model_params.{param}",) for flag, param in PARAM_FLAGS.items()})
# Flags only models with a training loop use.
TRAINING_FLAGS = ("lr", "optimizer", "weight_decay", "batch_size_train", "lr_milestones", "lr_gamma",
                  "number_of_epochs", "validation_step", "patience", "xla", "use_tf_amp", "warm_start", "logdir")
# Flags of one preparation protocol.
PROTOCOL_FLAGS = {"fold": ("fold",), "test_fraction": ("random",), "time_window": ("time",),
                  "heldout_users": ("heldout",), "min_uc": ("heldout",), "val_fraction": ("random", "fold")}


def _fraction(value) -> bool:
    return value is None or 0.0 <= value < 1.0


def _positive_ints(values) -> bool:
    return values is None or all(v.strip().isdigit() and int(v) > 0 for v in values)


for _name in ("dropout", "drop_prob", "noise_prob"):
    flags.register_validator(_name, _fraction, message=f"--{_name} must be in [0, 1)")
for _name in ("hidden_layers", "layer_sizes", "lr_milestones"):
    flags.register_validator(_name, _positive_ints, message=f"--{_name} takes whole numbers > 0 separated by commas, "
                                                            f"e.g. 600,200")
flags.register_validator("lr", lambda v: math.isfinite(v) and v > 0, message="--lr must be a finite number > 0")
flags.register_validator("heldout_users", lambda v: math.isfinite(v) and v > 0,
                         message="--heldout_users must be a fraction in (0, 1) or a count >= 1")


def _check_applicable(models: list[str]) -> None:
    """Refuses flags that none of ``models`` uses (they would be silently ignored)."""
    import dataclasses

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
            if param == "major":
                used |= fam.name == "deeprec"
            elif fam.trainable:
                used |= param in {f.name for f in dataclasses.fields(fam.cls().config_class)}
            else:
                used |= param in dict(fam.baseline_params)
        if not used:
            raise ConfigError(f"--{flag} does not apply to {what}; drop it (--help lists each model's flags)")
    if not any(fam.trainable for fam in fams):
        for flag in TRAINING_FLAGS:
            if FLAGS[flag].present:
                raise ConfigError(f"--{flag} does not apply to {what}: a closed-form model has no training loop")
    protocol = FLAGS.protocol or default_protocol(fams[0].task, FLAGS.dataset)
    for flag, protocols in PROTOCOL_FLAGS.items():
        if FLAGS[flag].present and protocol not in protocols:
            raise ConfigError(f"--{flag} applies to --protocol {' or '.join(protocols)}, not to this run's "
                              f"protocol {protocol}")


def configs():
    """Turns the flags into a :class:`training.config.RunConfig`."""
    from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig

    modes = tuple(m for m in ("train", "test", "benchmark") if getattr(FLAGS, m))
    export_dir = FLAGS.export_dir or os.path.join("runs", f"{os.path.basename(FLAGS.dataset)}-{FLAGS.model}")
    params = {param: FLAGS[flag].value for flag, param in PARAM_FLAGS.items()}
    params["hidden"] = tuple(int(h) for h in FLAGS.hidden_layers) if FLAGS.hidden_layers is not None else None
    params["layer_sizes"] = tuple(int(s) for s in FLAGS.layer_sizes) if FLAGS.layer_sizes else None
    params["shared_embeddings"] = False if FLAGS.no_shared_embeddings else None
    heldout = FLAGS.heldout_users if FLAGS.heldout_users < 1 else int(FLAGS.heldout_users)
    explicit = {key: f"--{flag}" for flag, keys in FLAG_KEYS.items() if FLAGS[flag].present for key in keys}
    return RunConfig(
        model=FLAGS.model, modes=modes, seed=FLAGS.seed, export_dir=export_dir, use_amp=FLAGS.use_tf_amp,
        data=DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, mirror=FLAGS.data_mirror,
                        protocol=FLAGS.protocol, threshold=FLAGS.threshold, min_uc=FLAGS.min_uc,
                        val_users=heldout, test_users=heldout, time_window=FLAGS.time_window,
                        fold=FLAGS.fold, test_fraction=FLAGS.test_fraction, val_fraction=FLAGS.val_fraction,
                        user_col=FLAGS.user_col, item_col=FLAGS.item_col, rating_col=FLAGS.rating_col,
                        time_col=FLAGS.time_col, sep=FLAGS.sep),
        optim=OptimConfig(optimizer=FLAGS.optimizer, lr=FLAGS.lr, weight_decay=FLAGS.weight_decay,
                          batch_size_train=FLAGS.batch_size_train, batch_size_validation=FLAGS.batch_size_validation,
                          lr_milestones=tuple(int(m) for m in FLAGS.lr_milestones or ()), lr_gamma=FLAGS.lr_gamma),
        train=TrainConfig(epochs=FLAGS.number_of_epochs, validation_step=FLAGS.validation_step,
                          export_dir=export_dir, xla=FLAGS.xla, fresh=FLAGS.fresh, patience=FLAGS.patience,
                          log_dir=FLAGS.logdir),
        model_params={k: v for k, v in params.items() if v is not None},
        warm_up_epochs=FLAGS.warm_up_epochs, benchmark_epochs=FLAGS.benchmark_epochs,
        warm_start=FLAGS.warm_start, explicit=explicit, command=("main.py", *sys.argv[1:]))


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
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.number_of_gpus > 1 and not _reads_an_export() and "HOROVOD_RANK" not in os.environ:
        return _horovodrun(FLAGS.number_of_gpus)
    _select_devices()
    # TensorFlow's savers log every checkpoint at INFO through absl: keep the console to our own lines.
    logging.set_verbosity(logging.WARNING)
    from data.errors import TfcfError

    try:
        if _reads_an_export():
            _export_tools()
            return 0
        if FLAGS.compare is not None:
            from training import compare

            _check_applicable(compare.parse_models(FLAGS.compare))
            compare.compare(FLAGS.compare, configs(), FLAGS.export_dir or compare.default_dir(FLAGS.dataset,
                                                                                             FLAGS.compare))
            return 0
        from training import runner

        if FLAGS.train or FLAGS.benchmark:
            _check_applicable([FLAGS.model])
        runner.run(configs())
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
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
