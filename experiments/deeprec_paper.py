"""The DeepRec paper's experiments on MovieLens, one command each, and the inference command.

    python -m experiments.deeprec_paper activation --dataset ml-100k --out DIR  # Fig. 2: training RMSE per batch
    python -m experiments.deeprec_paper dropout    --dataset ml-100k --out DIR  # Fig. 4: evaluation RMSE per epoch
    python -m experiments.deeprec_paper depth      --dataset ml-100k --out DIR  # Table 2: 2..12 layers of 128
    python -m experiments.deeprec_paper refeeding  --dataset ml-100k --out DIR  # Fig. 5: re-feeding x lr 1e-3/5e-3
    python -m experiments.deeprec_paper tune       --dataset ml-100k --major items --out DIR
    python -m experiments.deeprec_paper predict --export_dir runs/ml-100k-deeprec --out predictions.txt

The flags are main.py's where the meaning is the same (``--number_of_epochs``,
``--batch_size_train``, ``--lr``, ``--optimizer``, ``--lr_milestones``...);
the optimizer flags default to each command's settings (``DEFAULTS``). A
mistake (an unknown command or flag, a bad value) is one ``error:`` line and
exit status 2.

Each experiment writes ``<experiment>_<dataset>.png`` (matplotlib, Agg),
``<experiment>_<dataset>.md`` (a markdown table) and ``<experiment>_<dataset>.json``
(the curves) into ``--out``. "Evaluation RMSE" is on a validation slice of
the training data, never on the test part: ML-100K uses the official fold u1
with ``--val_fraction`` of u1.base held out; other datasets a random split.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from data import files
from data.errors import ConfigError
from experiments import flags as cli_flags

# The paper's most promising model (Sec. 3.5): n, 512, 512, 1024, dp(0.8), 512, 512, n.
BASELINE = {"hidden": (512, 512, 1024), "drop_prob": 0.8, "activation": "selu"}


@dataclasses.dataclass
class Setup:
    """What every experiment shares: data, optimizer, length, seed, output folder."""

    dataset: str = "ml-100k"
    out: str = "runs/deeprec_paper"
    data_dir: Optional[str] = None
    mirror: Optional[str] = None
    major: str = "users"
    val_fraction: float = 0.05
    epochs: int = 40
    optimizer: str = "momentum"
    lr: float = 1e-3
    batch_size: int = 128
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    seed: int = 0
    verbose: bool = True


@dataclasses.dataclass
class Run:
    """One training run's curves and numbers."""

    label: str
    params: dict
    lr: float
    steps: list = dataclasses.field(default_factory=list)  # training RMSE of every mini-batch
    epochs: list = dataclasses.field(default_factory=list)  # validation RMSE after every epoch
    train_rmse: list = dataclasses.field(default_factory=list)  # mean training RMSE of every epoch
    n_params: int = 0
    diverged: Optional[str] = None
    test_rmse: Optional[float] = None
    seconds: float = 0.0

    @property
    def best(self) -> tuple[float, int]:
        """(best validation RMSE, its epoch), (nan, 0) when none was finite."""
        finite = [(v, i + 1) for i, v in enumerate(self.epochs) if np.isfinite(v)]
        return min(finite) if finite else (float("nan"), 0)


# --- data and training ------------------------------------------------------------------
def data_config(setup: Setup):
    """The rating split of the experiments: official fold u1 (ML-100K) or a random split, with a validation slice."""
    from data.prepare import DataConfig

    if not 0.0 < setup.val_fraction < 1.0:
        raise ConfigError(f"--val_fraction must be in (0, 1): the experiments select on a validation slice, "
                          f"got {setup.val_fraction}")
    if setup.dataset == "ml-100k":
        return DataConfig(dataset=setup.dataset, data_dir=setup.data_dir, mirror=setup.mirror, protocol="fold",
                          fold="u1", val_fraction=setup.val_fraction)
    return DataConfig(dataset=setup.dataset, data_dir=setup.data_dir, mirror=setup.mirror, protocol="random",
                      test_fraction=0.1, val_fraction=setup.val_fraction)


def load_split(setup: Setup):
    """The (cached) split, transposed for ``--major items``."""
    from data.prepare import prepare

    split, _ = prepare(data_config(setup), "rating", setup.seed, verbose=setup.verbose)
    return split.transpose() if setup.major == "items" else split


def train(setup: Setup, split, label: str, params: dict, lr: Optional[float] = None, record_steps: bool = False,
          test: bool = False) -> Run:
    """Trains one DeepRec on ``split`` with the engine; validates after every epoch.

    A diverging run (the trainer's NaN guard) is recorded, not raised: the
    paper's Fig. 5 has one.

    Args:
      params: DeepRecConfig fields (hidden, activation, drop_prob, aug_step...).
      lr: learning rate (default ``setup.lr``).
      record_steps: keep the training RMSE of every mini-batch.
      test: also report the test RMSE of the best validated weights.
    """
    from training import fit
    from training.config import OptimConfig, RunConfig, TrainConfig

    lr = setup.lr if lr is None else lr
    run = Run(label=label, params=dict(params), lr=lr)
    optim = OptimConfig(optimizer=setup.optimizer, lr=lr, batch_size_train=setup.batch_size,
                        weight_decay=setup.weight_decay, lr_milestones=tuple(setup.lr_milestones),
                        lr_gamma=setup.lr_gamma)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = TrainConfig(epochs=setup.epochs, validation_step=1, export_dir=tmp, verbose=False, patience=0,
                           record_steps=record_steps, keep_checkpoints=1)
        result = fit.fit(RunConfig(model="deeprec", seed=setup.seed, export_dir=tmp, optim=optim, train=tcfg,
                                   model_params=dict(params)), split)
        # A diverging run (the trainer's NaN guard) is recorded with the epochs before it: Fig. 5 has one.
        if result.diverged is not None:
            run.diverged = str(result.diverged)
        run.n_params = int(sum(np.prod(w.shape) for w in result.model.trainable_weights))
        run.steps = [s["rmse"] for s in result.summary.get("steps", [])]
        run.epochs = [r.get("validation", {}).get("rmse", float("nan")) for r in result.summary["history"]]
        run.train_rmse = [r.get("rmse", float("nan")) for r in result.summary["history"]]
        if test and result.summary.get("best"):
            run.test_rmse = result.trainer.evaluate(result.data.test())["rmse"]
    run.seconds = time.perf_counter() - t0
    if setup.verbose:
        best, epoch = run.best
        print(f"{label}: best val RMSE {best:.4f} (epoch {epoch}/{len(run.epochs)})"
              f"{f', test RMSE {run.test_rmse:.4f}' if run.test_rmse is not None else ''}"
              f"{' DIVERGED' if run.diverged else ''} [{run.seconds:.0f}s]", flush=True)
    return run


# --- output -------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Sequence[Run], path: Path, title: str, per: str = "epoch") -> Path:
    """A PNG of each run's validation RMSE per epoch (``per='epoch'``) or training RMSE per mini-batch."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        values = run.steps if per == "step" else run.epochs
        xs = np.arange(1, len(values) + 1)
        label = run.label + (" (diverged)" if run.diverged else "")
        ax.plot(xs, values, label=label, linewidth=1.0 if per == "step" else 1.5)
    ax.set_xlabel("mini-batch" if per == "step" else "epoch")
    ax.set_ylabel("training RMSE" if per == "step" else "evaluation RMSE")
    finite = [v for r in runs for v in (r.steps if per == "step" else r.epochs) if np.isfinite(v)]
    if finite:  # the first steps' RMSE of ~3.8 would flatten the interesting part
        ax.set_ylim(min(finite) - 0.02, min(max(finite), np.percentile(finite, 90) * 1.15) + 0.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A markdown table; floats with 4 decimals."""
    cell = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write(setup: Setup, name: str, runs: Sequence[Run], table: str, intro: str) -> Path:
    """Writes ``<name>_<dataset>.md`` and ``.json`` next to the PNG; returns the markdown path."""
    out = Path(setup.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{Path(setup.dataset).name}"
    settings = (f"dataset {setup.dataset} ({setup.major} as rows), validation slice {setup.val_fraction:g}, "
                f"{setup.optimizer} lr {setup.lr:g}, batch {setup.batch_size}, {setup.epochs} epochs, "
                f"seed {setup.seed}")
    md = out / f"{stem}.md"
    files.write_text(md, f"# {intro}\n\n{settings}; plot: {stem}.png\n\n{table}")
    files.write_json(out / f"{stem}.json",
                     {"setup": dataclasses.asdict(setup), "runs": [dataclasses.asdict(r) for r in runs]}, indent=1)
    if setup.verbose:
        print(md.read_text(), flush=True)
    return md


def _best_cells(run: Run) -> list:
    best, epoch = run.best
    last = run.epochs[-1] if run.epochs else float("nan")
    return [best, epoch, last, f"diverged at epoch {len(run.epochs) + 1}" if run.diverged else ""]


# --- the experiments ----------------------------------------------------------------------
def activation_experiment(setup: Setup) -> Path:
    """Paper Fig. 2: training RMSE per mini-batch of a 4-layer 128-unit AE for every activation."""
    from deeprec.config import ACTIVATIONS

    split = load_split(setup)
    runs = [train(setup, split, name, {"hidden": (128, 128), "activation": name, "drop_prob": 0.0, "aug_step": 0},
                  record_steps=True) for name in ACTIVATIONS]
    stem = f"activation_{Path(setup.dataset).name}"
    plot_curves(runs, Path(setup.out) / f"{stem}.png", "n-128-128-128-n, training RMSE per mini-batch", per="step")
    last_epoch = max(1, len(runs[0].steps) // max(len(runs[0].epochs), 1))
    rows = [[r.label, float(np.mean(r.steps[-last_epoch:])) if r.steps else float("nan"), *_best_cells(r)]
            for r in runs]
    return _write(setup, "activation", runs, markdown_table(
        ["activation", "training RMSE (last epoch)", "best eval RMSE", "epoch", "last eval RMSE", "note"], rows),
        "Activation functions (paper Fig. 2): 4-layer autoencoder, 128 units, no dropout")


def dropout_experiment(setup: Setup, probs: Sequence[float] = (0.0, 0.5, 0.65, 0.8)) -> Path:
    """Paper Fig. 4: evaluation RMSE per epoch of the n-512-512-1024-512-512-n model for each code dropout."""
    split = load_split(setup)
    runs = [train(setup, split, f"drop prob {p:g}", {**BASELINE, "drop_prob": p, "aug_step": 0}) for p in probs]
    stem = f"dropout_{Path(setup.dataset).name}"
    plot_curves(runs, Path(setup.out) / f"{stem}.png", "n-512-512-1024-dp-512-512-n, evaluation RMSE")
    rows = [[r.label, *_best_cells(r)] for r in runs]
    return _write(setup, "dropout", runs, markdown_table(
        ["model", "best eval RMSE", "epoch", "last eval RMSE", "note"], rows),
        "Dropout on the code layer (paper Fig. 4)")


def depth_experiment(setup: Setup, layers: Sequence[int] = (2, 4, 6, 8, 10, 12)) -> Path:
    """Paper Table 2: evaluation RMSE and parameters of 2..12-layer autoencoders with 128-unit layers."""
    split = load_split(setup)
    runs = [train(setup, split, f"{n} layers", {"hidden": (128,) * (n // 2), "drop_prob": 0.0, "aug_step": 0})
            for n in layers]
    stem = f"depth_{Path(setup.dataset).name}"
    plot_curves(runs, Path(setup.out) / f"{stem}.png", "2..12 layers of 128 units, evaluation RMSE")
    rows = [[r.label, *_best_cells(r)[:3], f"{r.n_params:,}"] for r in runs]
    return _write(setup, "depth", runs, markdown_table(
        ["layers", "best eval RMSE", "epoch", "last eval RMSE", "params"], rows),
        "Depth (paper Table 2): hidden layers of 128 units, no dropout")


def refeeding_experiment(setup: Setup) -> Path:
    """Paper Fig. 5: the baseline with and without one dense re-feeding step, at ``lr`` and 5 x ``lr`` (1e-3, 5e-3)."""
    split = load_split(setup)
    runs = [train(setup, split, f"baseline lr {lr:g}{' RF' if aug else ''}", {**BASELINE, "aug_step": aug}, lr=lr)
            for lr in (setup.lr, 5 * setup.lr) for aug in (0, 1)]
    stem = f"refeeding_{Path(setup.dataset).name}"
    plot_curves(runs, Path(setup.out) / f"{stem}.png", "dense re-feeding (RF), evaluation RMSE")
    rows = [[r.label, *_best_cells(r)] for r in runs]
    return _write(setup, "refeeding", runs, markdown_table(
        ["model", "best eval RMSE", "epoch", "last eval RMSE", "note"], rows),
        "Dense re-feeding (paper Fig. 5): n-512-512-1024-dp(0.8)-512-512-n")


EXPERIMENTS = {"activation": activation_experiment, "dropout": dropout_experiment, "depth": depth_experiment,
               "refeeding": refeeding_experiment}


# The configurations ``tune`` compares on the validation slice, the same for
# users and items as rows (with ``DEFAULTS['tune']``: Adam, lr 1e-3 dropped
# tenfold after epoch 25, 40 epochs, batch 128 unless an entry says otherwise).
# First the paper's Netflix models, then I-AutoRec-like single sigmoid layers
# with (decoupled) weight decay, which fit a dataset as small as ML-100K better.
TUNE_GRID: list[dict] = [
    {**BASELINE, "aug_step": 1},
    {"hidden": (256, 256), "activation": "selu", "drop_prob": 0.65, "aug_step": 0, "weight_decay": 3.0,
     "batch_size": 64},
    {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 0, "weight_decay": 3.0},
    {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 1, "weight_decay": 3.0,
     "batch_size": 64},
    {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 0, "weight_decay": 3.0,
     "batch_size": 64},
    {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 0, "weight_decay": 5.0,
     "batch_size": 64},
    {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 0, "weight_decay": 3.0,
     "batch_size": 32},
]


def tune(setup: Setup, grid: Optional[Sequence[dict]] = None) -> Path:
    """Picks a configuration on the validation slice, then reports the test RMSE of that one only.

    Each entry of ``grid`` holds DeepRecConfig fields plus optional ``lr``,
    ``weight_decay``, ``lr_milestones``, ``batch_size`` and ``epochs``. The
    chosen configuration is retrained (same seed) to report its test RMSE at
    the best validated epoch; the table also gives the ``main.py`` command that
    retrains it on all training ratings for that many epochs.
    """
    grid = list(TUNE_GRID if grid is None else grid)
    split = load_split(setup)

    def run_one(entry: dict, test: bool) -> Run:
        params = {k: v for k, v in entry.items() if k not in _OPTIM_KEYS}
        one = dataclasses.replace(setup, weight_decay=entry.get("weight_decay", setup.weight_decay),
                                  epochs=entry.get("epochs", setup.epochs),
                                  batch_size=entry.get("batch_size", setup.batch_size),
                                  lr_milestones=tuple(entry.get("lr_milestones", setup.lr_milestones)))
        return train(one, split, _describe(entry), params, lr=entry.get("lr"), test=test)

    runs = [run_one(entry, test=False) for entry in grid]
    plot_curves(runs, Path(setup.out) / f"tune_{setup.major}_{Path(setup.dataset).name}.png",
                f"tuning, {setup.major} as rows: validation RMSE")
    chosen = int(np.nanargmin([r.best[0] for r in runs]))
    final = run_one(grid[chosen], test=True)
    rows = [[r.label, *_best_cells(r)[:2], final.test_rmse if i == chosen else ""] for i, r in enumerate(runs)]
    command = main_command(setup, grid[chosen], final.best[1])
    table = markdown_table(["configuration", "best val RMSE", "epoch", "test RMSE (chosen only)"], rows)
    table += (f"\nChosen on validation: {final.label}; its retrained run: val {final.best[0]:.4f} at epoch "
              f"{final.best[1]}, test {final.test_rmse:.4f}.\n\nOn all of the training ratings:\n\n    {command}\n")
    return _write(setup, f"tune_{setup.major}", runs + [final], table,
                  f"Tuning DeepRec ({setup.major} as rows) on a validation slice")


_OPTIM_KEYS = ("lr", "weight_decay", "epochs", "lr_milestones", "batch_size")


def _describe(entry: dict) -> str:
    return ", ".join(f"{k}={'-'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                     for k, v in entry.items())


def main_command(setup: Setup, entry: dict, epochs: int) -> str:
    """The ``main.py`` command training ``entry`` on the whole training part for ``epochs`` epochs."""
    flags = {"model": "deeprec", "dataset": setup.dataset, "major": setup.major, "optimizer": setup.optimizer,
             "lr": entry.get("lr", setup.lr), "weight_decay": entry.get("weight_decay", setup.weight_decay),
             "batch_size_train": entry.get("batch_size", setup.batch_size), "number_of_epochs": epochs,
             "seed": setup.seed}
    milestones = entry.get("lr_milestones", setup.lr_milestones)
    if milestones:
        flags.update(lr_milestones=",".join(map(str, milestones)), lr_gamma=setup.lr_gamma)
    for key, flag in (("hidden", "hidden_layers"), ("activation", "activation"), ("drop_prob", "drop_prob"),
                      ("noise_prob", "noise_prob"), ("aug_step", "aug_step")):
        if key in entry:
            value = entry[key]
            flags[flag] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    for key in ("constrained", "last_layer_activations"):
        if key in entry:
            flags[key if entry[key] else f"no{key}"] = None
    parts = [f"--{k}" if v is None else f"--{k} {v}" for k, v in flags.items()]
    return f"python main.py --train --test {' '.join(parts)} --export_dir runs/{setup.dataset}-deeprec-{setup.major}"


# --- inference ------------------------------------------------------------------------------
def predict_command(export_dir: str, out: str, part: str = "test", batch_size: int = 1000,
                    data_dir: Optional[str] = None, mirror: Optional[str] = None) -> Path:
    """Writes ``user item prediction`` lines (original ids, sorted by user then item) for a split part's pairs.

    The split is rebuilt from the run's ``results.json`` (dataset, protocol and
    seed of the run), transposed back for item-based models.

    Args:
      export_dir: a finished ``main.py --model deeprec --train`` run folder.
      out: the text file to write.
      part: ``test`` or ``val``.
      batch_size: rows per forward pass.
      data_dir, mirror: override the run's data folders (None: the run's).
    """
    import pandas as pd
    import scipy.sparse as sp

    from deeprec.model import predict_pairs
    from serving import loader
    from training import runner

    if part not in ("test", "val"):
        raise ConfigError(f"--part must be test or val, got '{part}'")
    model, meta, ids, _ = loader.load(export_dir)
    if meta.get("task") != "rating":
        raise ConfigError(f"{export_dir} holds a '{meta.get('family')}' model, which does not predict ratings; "
                          f"predict needs a deeprec (or other rating model) run")
    split, _ = runner.split_of_run(export_dir, data_dir, mirror)
    items_major = meta.get("major") == "items"
    pairs = sp.csr_matrix(getattr(split, part), dtype=np.float32)
    pairs.sum_duplicates()  # canonical order, the order predict_pairs returns
    pred = predict_pairs(model, pairs, split.train, batch_size)
    coo = pairs.tocoo()
    rows, cols = np.asarray(split.user_ids)[coo.row], np.asarray(split.item_ids)[coo.col]
    users, items = (cols, rows) if items_major else (rows, cols)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"user": users, "item": items, "prediction": pred}).sort_values(["user", "item"])
    files.atomic_write(path, lambda f: frame.to_csv(f, sep=" ", header=False, index=False, float_format="%.4f"),
                       mode="w")
    rmse = float(np.sqrt(np.mean((pred - coo.data) ** 2))) if len(pred) else float("nan")
    print(f"wrote {len(pred)} predictions of the {part} pairs to {path} (RMSE {rmse:.4f})", flush=True)
    return path


# --- command line ---------------------------------------------------------------------------
COMMANDS = (*EXPERIMENTS, "tune", "predict")
# Flags only one side uses: refused on the other (they would be silently ignored).
PREDICT_ONLY = ("export_dir", "part", "batch_size_validation")
EXPERIMENT_ONLY = ("dataset", "major", "val_fraction", "number_of_epochs", "optimizer", "lr", "batch_size_train",
                   "weight_decay", "lr_milestones", "lr_gamma", "seed")


def define_flags(fv) -> None:
    """The flags of ``python -m experiments.deeprec_paper`` (main.py's names) on the FlagValues ``fv``."""
    from absl import flags

    flags.DEFINE_string("dataset", "ml-100k", "ml-100k (fold u1) or another rating dataset (random split).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "Output folder (experiments; default runs/deeprec_paper) or file (predict).",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Download and cache folder (default $TFCF_DATA_DIR or ~/.cache/tfcf).",
                        flag_values=fv)
    flags.DEFINE_string("data_mirror", None, "Folder of already-extracted datasets (default $TFCF_DATA_MIRROR).",
                        flag_values=fv)
    flags.DEFINE_enum("major", "users", ["users", "items"], "Rows are users (user-based) or items.", flag_values=fv)
    flags.DEFINE_float("val_fraction", 0.05, "Share of the training ratings to validate on (0 < f < 1).",
                       flag_values=fv)
    flags.DEFINE_integer("number_of_epochs", None, "Epochs per run (default: the command's, 40).", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_enum("optimizer", None, ["adam", "momentum", "sgd", "adagrad", "rmsprop"],
                      "Optimizer (default: the command's; the paper's momentum SGD, Adam for dropout, depth, tune).",
                      flag_values=fv)
    flags.DEFINE_float("lr", None, "Learning rate (default: the command's, 1e-3).", flag_values=fv)
    flags.DEFINE_integer("batch_size_train", 128, "Rows per training step.", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay.", flag_values=fv)
    flags.DEFINE_list("lr_milestones", None, "Epochs at which the learning rate is multiplied by --lr_gamma "
                      "(default: the command's; tune 25, the others none).", flag_values=fv)
    flags.DEFINE_float("lr_gamma", 0.1, "Learning-rate factor at each milestone.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the data split, data order and weights.", flag_values=fv)
    flags.DEFINE_string("export_dir", None, "predict: the run folder of the model.", flag_values=fv)
    flags.DEFINE_enum("part", "test", ["test", "val"], "predict: the split part whose pairs are predicted.",
                      flag_values=fv)
    flags.DEFINE_integer("batch_size_validation", 1000, "predict: rows per forward pass.", lower_bound=1,
                         flag_values=fv)
    cli_flags.validate_like_main(fv)
    cli_flags.validate(fv, "val_fraction", lambda v: 0.0 < v < 1.0,
                       "--val_fraction must be in (0, 1): the experiments select on a validation slice")


# Per-command defaults of the optimizer flags. The paper trains with momentum
# SGD (0.9) at lr 1e-3, batch 128; activation and re-feeding keep that. ML-100K
# has only ~8 batches per epoch (Netflix Full ~3,700), so at that rate the big
# models of the dropout and depth experiments barely leave their start within
# 40 epochs: those two train with Adam at 1e-3 instead. Tuning: Adam with one
# tenfold lr drop.
DEFAULTS = {
    "activation": {"optimizer": "momentum", "lr": 1e-3, "number_of_epochs": 40, "lr_milestones": []},
    "dropout": {"optimizer": "adam", "lr": 1e-3, "number_of_epochs": 40, "lr_milestones": []},
    "depth": {"optimizer": "adam", "lr": 1e-3, "number_of_epochs": 40, "lr_milestones": []},
    "refeeding": {"optimizer": "momentum", "lr": 1e-3, "number_of_epochs": 40, "lr_milestones": []},
    "tune": {"optimizer": "adam", "lr": 1e-3, "number_of_epochs": 40, "lr_milestones": ["25"]},
}


def body(fv, args: list) -> int:
    """Runs the command ``args[0]`` with the parsed flags ``fv``."""
    if len(args) != 1 or args[0] not in COMMANDS:
        got = f"got '{' '.join(args)}'" if args else "got none"
        raise ConfigError(f"expected one command, {' | '.join(COMMANDS)}; {got}")
    command = args[0]
    if command == "predict":
        cli_flags.refuse(fv, EXPERIMENT_ONLY, "does not apply to predict (the run folder holds its settings)")
        if not fv.export_dir or not fv.out:
            raise ConfigError("predict needs --export_dir (a finished run) and --out (the file to write)")
        predict_command(fv.export_dir, fv.out, fv.part, fv.batch_size_validation, fv.data_dir, fv.data_mirror)
        return 0
    cli_flags.refuse(fv, PREDICT_ONLY, f"applies to predict only, not to {command}")
    opts = {k: (default if fv[k].value is None else fv[k].value) for k, default in DEFAULTS[command].items()}
    setup = Setup(dataset=fv.dataset, out=fv.out or Setup.out, data_dir=fv.data_dir, mirror=fv.data_mirror,
                  major=fv.major, val_fraction=fv.val_fraction, epochs=opts["number_of_epochs"],
                  optimizer=opts["optimizer"], lr=opts["lr"], batch_size=fv.batch_size_train,
                  weight_decay=fv.weight_decay, seed=fv.seed, lr_gamma=fv.lr_gamma,
                  lr_milestones=tuple(int(m) for m in opts["lr_milestones"]))
    (tune if command == "tune" else EXPERIMENTS[command])(setup)
    return 0


def main(argv: Sequence[str]) -> int:
    """The command line in this process: ``argv`` without the program name; returns the exit status."""
    return cli_flags.main(define_flags, body, argv, "python -m experiments.deeprec_paper")


if __name__ == "__main__":
    cli_flags.cli(define_flags, body)
