"""Hyper-parameter grid search for low-rank MF, one CSV row per configuration (seed 004).

    python -m mf.grid --dataset ml-100k --ranks 10,25 --batch_sizes 1000 \\
        --lrs 1e-3,3e-3 --weight_decays 0,1e-5 --out grid.csv

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

import argparse
import dataclasses
import itertools
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import pandas as pd

from data import files
from data.errors import ConfigError, DatasetError, TfcfError
from data.types import RatingSplit
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
        raise DatasetError(f"{path} is not a grid CSV of mf.grid (missing columns {', '.join(missing)}); "
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


def _numbers(kind: type) -> Callable[[str], list]:
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got '{text}'") from None
        if not values:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values
    return parse


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mf.grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="ml-100k", help="registry name or ratings file (default ml-100k)")
    p.add_argument("--protocol", default=None, help="fold (ml-100k default) or random")
    p.add_argument("--fold", default="u1", help="ML-100K fold whose .base is searched on (default u1)")
    p.add_argument("--val_fraction", type=float, default=0.1, help="validation share of the training ratings")
    p.add_argument("--ranks", type=_numbers(int), default=[25])
    p.add_argument("--batch_sizes", type=_numbers(int), default=[1000])
    p.add_argument("--lrs", type=_numbers(float), default=[1e-3])
    p.add_argument("--weight_decays", type=_numbers(float), default=[1e-5])
    p.add_argument("--use_bias", type=_bool, default=True, help="biases + global mean (default true)")
    p.add_argument("--lam", type=float, default=MFConfig.lam,
                   help=f"L2 weight on each rating's factors and biases (default {MFConfig.lam})")
    p.add_argument("--epochs", type=int, default=100, help="most epochs per configuration")
    p.add_argument("--patience", type=int, default=5, help="early stop after this many epochs without improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--data_mirror", default=None)
    p.add_argument("--out", required=True, help="the CSV (resumed when it exists)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from data import prepare

    args = parser().parse_args(argv)
    try:
        if not 0 < args.val_fraction < 1:
            raise ConfigError(f"--val_fraction must be in (0, 1) for the early stop, got {args.val_fraction}")
        protocol = args.protocol or prepare.default_protocol("rating", args.dataset)
        data = prepare.DataConfig(dataset=args.dataset, data_dir=args.data_dir, mirror=args.data_mirror,
                                  protocol=protocol, fold=args.fold, val_fraction=args.val_fraction)
        split, _ = prepare.prepare(data, "rating", args.seed)
        grid = configurations(args.ranks, args.batch_sizes, args.lrs, args.weight_decays)
        run_grid(split, grid, Path(args.out), dataset=args.dataset, use_bias=args.use_bias, lam=args.lam,
                 epochs=args.epochs, patience=args.patience, seed=args.seed)
    except TfcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # The command line, like main.py, keeps TensorFlow's C++ INFO lines off the console.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
