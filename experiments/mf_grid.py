"""Hyper-parameter grid search for low-rank MF, one CSV row per configuration (seed 004).

    python -m experiments.mf_grid --dataset ml-100k --rank 10,25 --batch_size_train 1000 \\
        --lr 1e-3,3e-3 --weight_decay 0,1e-5 --out grid.csv

The flags are main.py's; the four searched ones (``--rank``,
``--batch_size_train``, ``--lr``, ``--weight_decay``) take comma-separated
lists, and the grid is their cross product.

Every configuration trains through the engine (:func:`training.fit.fit` builds
the model and pipelines, :class:`training.trainer.Trainer` trains with early
stopping on the validation RMSE) on the same prepared split: a shuffled 90/10
train/validation split of the training part (ML-100K: of ``u1.base``; the
fold's test ratings are never looked at). A row holds the hyper-parameters,
the best epoch, the train and validation RMSE of the best weights, and the
training seconds. The CSV is rewritten atomically after each configuration, so
an interrupted grid resumes by rerunning the same command: configurations
already in the CSV are skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import pandas as pd

from data import files
from data.errors import ConfigError, DatasetError
from data.types import RatingSplit
from experiments import flags as cli_flags
from mf.config import MFConfig

if TYPE_CHECKING:
    from training.config import OptimConfig
    from training.trainer import History

# A row's settings (these identify a configuration) and its results.
SETTINGS = ("dataset", "rank", "batch_size", "lr", "weight_decay", "use_bias", "lam", "max_epochs", "patience",
            "seed")
RESULTS = ("best_epoch", "epochs_run", "train_rmse", "val_rmse", "seconds")
COLUMNS = SETTINGS + RESULTS
# The hyper-parameters the grid varies, with their CSV types.
GRID = {"rank": int, "batch_size": int, "lr": float, "weight_decay": float}


@dataclasses.dataclass
class FitResult:
    """One trained model and what the trainer saw.

    Attributes:
      model: the model with its best validated weights (the last ones without validation).
      history: the trainer's :class:`training.trainer.History`.
      best_epoch: epoch of the best validation RMSE (the last epoch without validation).
      train_rmse: RMSE of those weights on the training ratings.
      val_rmse: their validation RMSE (NaN without validation ratings).
      seconds: wall time of the training loop.
    """

    model: Any
    history: History
    best_epoch: int
    train_rmse: float
    val_rmse: float
    seconds: float


def fit_on_split(split: RatingSplit, params: dict, optim: OptimConfig, *, model: str = "mf",
                 epochs: int = 100, patience: Optional[int] = 5, seed: int = 0,
                 max_steps_per_epoch: Optional[int] = None, verbose: bool = False) -> FitResult:
    """Trains a fresh rating model on a split with early stopping on ``split.val``.

    Checkpoints go to a temporary folder that is deleted afterwards; the
    returned model holds the best validated weights.

    Args:
      split: a RatingSplit [n_users, n_items]; ``val`` may be empty (no early stop).
      params: model hyper-parameters (config fields of the family, e.g. ``rank``).
      optim: optimizer, learning rate, weight decay and batch sizes.
      model: the family name (``mf`` or ``multitask``).
      epochs: most epochs to train.
      patience: stop after this many epochs without a better validation RMSE.
      seed: seed of the weights and of the data order.
      max_steps_per_epoch: cut epochs short (tests only).
      verbose: print the trainer's epoch lines.

    Returns:
      A :class:`FitResult`.
    """
    from training import distribute, fit
    from training.config import RunConfig, TrainConfig
    from training.trainer import History

    dist = distribute.Distribution()
    with tempfile.TemporaryDirectory(prefix="tfcf-fit-") as tmp:
        tcfg = TrainConfig(epochs=epochs, validation_step=1, export_dir=tmp, fresh=True, patience=patience,
                           verbose=verbose, max_steps_per_epoch=max_steps_per_epoch)
        result = fit.fit(RunConfig(model=model, seed=seed, export_dir=tmp, optim=optim, train=tcfg,
                                   model_params=dict(params)), split, dist)
        net, summary = result.model, result.summary
        history = History(epochs=summary["history"], best=summary["best"])
        seconds = summary["train_seconds"]
        on_train = result.trainer.evaluate(fit.eval_batches(split.train, split.train, optim.batch_size_validation,
                                                            dist))
        on_val = summary.get("validation", {})
    best_epoch = history.best["epoch"] if history.best else len(history.epochs)
    return FitResult(net, history, best_epoch, on_train.get("rmse", math.nan), on_val.get("rmse", math.nan),
                     seconds)


def _key(row: dict) -> tuple:
    """A configuration's identity: its settings, with numbers normalised (1e-3 == 0.001)."""
    out = []
    for name in SETTINGS:
        value = row[name]
        if isinstance(value, bool) or name in ("dataset",):
            out.append(str(value))
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            out.append("")
        else:
            out.append(repr(float(value)))
    return tuple(out)


def read_rows(path: Path) -> list[dict]:
    """The rows of an existing grid CSV ([] if there is none).

    Raises:
      DatasetError: the file is not a grid CSV of this version (columns differ).
    """
    if not path.exists() or path.stat().st_size == 0:
        return []
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path} is not a grid CSV of experiments.mf_grid (missing columns {', '.join(missing)}); "
                           f"pass another --out or move the file away")
    rows = frame.to_dict("records")
    for row in rows:
        row["use_bias"] = row["use_bias"] == "True"
        row["patience"] = None if row["patience"] == "" else int(row["patience"])
    return rows


def _write_rows(path: Path, rows: Sequence[dict]) -> None:
    """Rewrites the CSV atomically: a kill leaves the old or the new file, never half of one."""
    files.atomic_write(path, lambda f: pd.DataFrame(list(rows), columns=list(COLUMNS)).to_csv(f, index=False),
                       mode="w")


def configurations(ranks: Iterable[int], batch_sizes: Iterable[int], lrs: Iterable[float],
                   weight_decays: Iterable[float]) -> list[dict]:
    """The grid's cross product, in the order the CSV rows are written."""
    return [dict(zip(GRID, values)) for values in itertools.product(ranks, batch_sizes, lrs, weight_decays)]


def run_grid(split: RatingSplit, grid: Sequence[dict], out: Path, *, dataset: str = "", use_bias: bool = True,
             lam: float = MFConfig.lam, epochs: int = 100, patience: Optional[int] = 5, seed: int = 0,
             batch_size_validation: int = 2000, max_steps_per_epoch: Optional[int] = None,
             log: Callable[[str], None] = print) -> list[dict]:
    """Trains every configuration of ``grid`` not yet in ``out``; appends one CSV row each.

    Args:
      split: the RatingSplit to train on; its ``val`` drives the early stop.
      grid: dicts with ``rank``, ``batch_size``, ``lr``, ``weight_decay``
        (:func:`configurations`).
      out: the CSV; rows already there (same settings) are kept and skipped.
      dataset: the dataset name written in each row (part of its identity).
      use_bias, lam: fixed model settings (see :class:`mf.config.MFConfig`).
      epochs, patience, seed: fixed training settings.
      batch_size_validation: rows per evaluation batch.
      max_steps_per_epoch: cut epochs short (tests only).
      log: where progress lines go.

    Returns:
      The rows trained by this call (the CSV holds all rows).
    """
    from training.config import OptimConfig

    out = Path(out)
    rows = read_rows(out)
    done = {_key(r) for r in rows}
    trained = []
    for i, point in enumerate(grid, 1):
        settings = {"dataset": dataset, **{k: GRID[k](point[k]) for k in GRID}, "use_bias": bool(use_bias),
                    "lam": float(lam), "max_epochs": int(epochs), "patience": patience, "seed": int(seed)}
        name = " ".join(f"{k}={settings[k]}" for k in GRID)
        if _key(settings) in done:
            log(f"[{i}/{len(grid)}] {name}: in {out}, skipped")
            continue
        optim = OptimConfig(optimizer="adam", lr=settings["lr"], weight_decay=settings["weight_decay"],
                                   batch_size_train=settings["batch_size"],
                                   batch_size_validation=batch_size_validation)
        fit = fit_on_split(split, {"rank": settings["rank"], "use_bias": use_bias, "lam": lam}, optim,
                           epochs=epochs, patience=patience, seed=seed, max_steps_per_epoch=max_steps_per_epoch)
        row = {**settings, "best_epoch": fit.best_epoch, "epochs_run": len(fit.history.epochs),
               "train_rmse": round(fit.train_rmse, 6), "val_rmse": round(fit.val_rmse, 6),
               "seconds": round(fit.seconds, 3)}
        rows.append(row)
        done.add(_key(row))
        trained.append(row)
        _write_rows(out, rows)
        log(f"[{i}/{len(grid)}] {name}: best epoch {fit.best_epoch}, train RMSE {fit.train_rmse:.4f}, "
            f"val RMSE {fit.val_rmse:.4f}, {fit.seconds:.1f} s")
    return trained


def define_flags(fv) -> None:
    """The flags of ``python -m experiments.mf_grid`` (main.py's names; the searched ones take lists)."""
    from absl import flags

    flags.DEFINE_string("dataset", "ml-100k", "Registry name or ratings file.", flag_values=fv)
    flags.DEFINE_string("protocol", None, "fold (ml-100k default) or random.", flag_values=fv)
    flags.DEFINE_string("fold", "u1", "--protocol fold: the ML-100K fold whose .base is searched on.",
                        flag_values=fv)
    flags.DEFINE_float("val_fraction", 0.1, "Validation share of the training ratings (the early stop).",
                       flag_values=fv)
    flags.DEFINE_list("rank", ["25"], "Ranks to search, comma-separated.", flag_values=fv)
    flags.DEFINE_list("batch_size_train", ["1000"], "Training batch sizes to search, comma-separated.",
                      flag_values=fv)
    flags.DEFINE_list("lr", ["1e-3"], "Learning rates (Adam) to search, comma-separated.", flag_values=fv)
    flags.DEFINE_list("weight_decay", ["1e-5"], "Decoupled weight decays to search, comma-separated.",
                      flag_values=fv)
    flags.DEFINE_bool("use_bias", True, "User/item biases and a global mean (--nouse_bias: plain dot product).",
                      flag_values=fv)
    flags.DEFINE_float("lam", MFConfig.lam, "L2 weight on each rating's factors and biases.", flag_values=fv)
    flags.DEFINE_integer("number_of_epochs", 100, "Most epochs per configuration.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("patience", 5, "Early stop after this many epochs without improvement.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batch_size_validation", 2000, "Rows per evaluation batch.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the data split, data order and weights.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "Download and cache folder (default $TFCF_DATA_DIR or ~/.cache/tfcf).",
                        flag_values=fv)
    flags.DEFINE_string("data_mirror", None, "Folder of already-extracted datasets (default $TFCF_DATA_MIRROR).",
                        flag_values=fv)
    flags.DEFINE_string("out", None, "The CSV (resumed when it exists).", flag_values=fv)
    for name in ("rank", "batch_size_train"):
        cli_flags.validate(fv, name, cli_flags.positive_ints,
                           f"--{name} takes whole numbers > 0 separated by commas, e.g. 10,25")
    cli_flags.validate(fv, "lr", lambda v: cli_flags.numbers(float)(v) and all(float(x) > 0 for x in v),
                       "--lr takes finite numbers > 0 separated by commas, e.g. 1e-3,3e-3")
    cli_flags.validate(fv, "weight_decay", lambda v: cli_flags.numbers(float)(v) and all(float(x) >= 0 for x in v),
                       "--weight_decay takes finite numbers >= 0 separated by commas, e.g. 0,1e-5")
    cli_flags.validate(fv, "val_fraction", lambda v: 0 < v < 1,
                       "--val_fraction must be in (0, 1) for the early stop")


def body(fv, args: list) -> int:
    """Prepares the split once and runs the grid into ``--out``."""
    from data import prepare

    if args:
        raise ConfigError(f"unexpected arguments: {' '.join(args)} (every setting is a --flag; a boolean is "
                          f"--use_bias or --nouse_bias)")
    if not fv.out:
        raise ConfigError("--out is required: the CSV to write (resumed when it exists)")
    protocol = fv.protocol or prepare.default_protocol("rating", fv.dataset)
    data = prepare.DataConfig(dataset=fv.dataset, data_dir=fv.data_dir, mirror=fv.data_mirror, protocol=protocol,
                              fold=fv.fold, val_fraction=fv.val_fraction)
    split, _ = prepare.prepare(data, "rating", fv.seed)
    grid = configurations([int(v) for v in fv.rank], [int(v) for v in fv.batch_size_train],
                          [float(v) for v in fv.lr], [float(v) for v in fv.weight_decay])
    run_grid(split, grid, Path(fv.out), dataset=fv.dataset, use_bias=fv.use_bias, lam=fv.lam,
             epochs=fv.number_of_epochs, patience=fv.patience, seed=fv.seed,
             batch_size_validation=fv.batch_size_validation)
    return 0


def main(argv: Sequence[str]) -> int:
    """The command line in this process: ``argv`` without the program name; returns the exit status."""
    return cli_flags.main(define_flags, body, argv, "python -m experiments.mf_grid")


if __name__ == "__main__":
    cli_flags.cli(define_flags, body)
