"""Low-rank matrix completion on the report's file format (seed 004).

Input file::

    n m k            users, items, number of known ratings
    user item rating     k lines
    ...
    user item            test pairs, one a line, to the end of the file

Ids are 0-based (``0..n-1``, ``0..m-1``) unless ``one_based``; fields are
separated by whitespace; blank lines are ignored. The output file has one
predicted rating per test pair, in the input's order (``user item rating``
lines with ``with_pairs``).

    python -m experiments.completion INPUT OUTPUT [--rank 25 --lr 1e-3 --weight_decay 1e-5 ...]

The flags are main.py's names (``--batch_size_train``, ``--number_of_epochs``,
``--nouse_bias``...). A mistake in the file or the command line is one
``error:`` line and exit status 2.

Training is the report's recipe through the engine: MF of rank 25, MSE, Adam
with weight decay, batch 1000, a shuffled 90/10 train/validation split of the
known ratings and early stopping on the validation RMSE. Predictions are
clipped to the range of the known ratings.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from data import files, protocols
from data.errors import ConfigError, DatasetError
from data.types import Interactions, RatingSplit
from experiments import flags as cli_flags
from mf.config import MFConfig

_FIELDS = 3


@dataclasses.dataclass
class CompletionProblem:
    """A parsed input file, with 0-based ids.

    Attributes:
      n_users, n_items: the header's n and m.
      user, item: int64 [k] known ratings' ids.
      rating: float32 [k] known ratings.
      test_user, test_item: int64 [q] pairs to predict, in file order.
      source: the file, for messages.
    """

    n_users: int
    n_items: int
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    test_user: np.ndarray
    test_item: np.ndarray
    source: str = ""


def _error(path: Path, line: int, what: str, text: Optional[str] = None) -> DatasetError:
    shown = f": '{text}'" if text is not None else ""
    return DatasetError(f"{path}:{line}: {what}{shown}")


def _read_fields(path: Path) -> pd.DataFrame:
    """Every line as up to three whitespace-separated string fields ('' when absent).

    Row i of the frame is line i + 1 of the file (blank lines are kept as
    empty rows) so that errors can name the line.
    """
    try:
        return pd.read_csv(path, sep=r"\s+", header=None, names=range(_FIELDS), dtype=str, engine="c",
                           skip_blank_lines=False, keep_default_na=False, na_values=[], quoting=csv.QUOTE_NONE,
                           encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"no such input file: {path}") from None
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path} is not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path} is empty; the first line must be 'n m k' (users, items, known ratings)") from None
    except pd.errors.ParserError:
        # Only a line with too many fields stops the C parser; find it (slow pass, on failure only).
        with open(path, encoding="utf-8") as f:
            for lineno, text in enumerate(f, 1):
                if len(text.split()) > _FIELDS:
                    raise _error(path, lineno, "too many fields (at most 'user item rating')",
                                 text.rstrip("\r\n")) from None
        raise DatasetError(f"{path}: cannot parse the file as whitespace-separated fields") from None


def _integers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values, bool ok) of a string column; ok is False where it is not a whole number."""
    ok = column.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)
    values = np.zeros(len(column), np.int64)
    values[ok] = column[ok].astype(np.int64).to_numpy()
    return values, ok


def _first_bad(bad: np.ndarray) -> Optional[int]:
    where = np.flatnonzero(bad)
    return int(where[0]) if where.size else None


def read_problem(path: str | os.PathLike, one_based: bool = False) -> CompletionProblem:
    """Parses a completion input file (see the module docstring).

    Args:
      path: the input file.
      one_based: ids in the file start at 1 (they are shifted to 0-based).

    Returns:
      A :class:`CompletionProblem`.

    Raises:
      DatasetError: a malformed header, rating line or test pair (the message
        names the file and line), an id out of range, fewer than k rating
        lines, a rating given twice, a rating of 0 or not finite.
    """
    path = Path(path)
    frame = _read_fields(path)
    text = lambda i: " ".join(f for f in frame.iloc[i] if f)  # a line as the message shows it
    n_fields = (frame != "").sum(axis=1).to_numpy()
    used = np.flatnonzero(n_fields > 0)
    if used.size == 0:
        raise DatasetError(f"{path} has no data; the first line must be 'n m k' (users, items, known ratings)")
    head = used[0]
    header, ok = _integers(frame.iloc[head])
    if n_fields[head] != 3 or not ok.all() or header[0] < 1 or header[1] < 1 or header[2] < 0:
        raise _error(path, head + 1, "the first line must be 'n m k' (users >= 1, items >= 1, known ratings >= 0)",
                     text(head))
    n, m, k = (int(v) for v in header)
    body = used[1:]
    if body.size < k:
        raise DatasetError(f"{path}: the header (line {head + 1}) announces k={k} ratings but only {body.size} "
                           f"lines follow; fix k or add the missing lines")
    rated, pairs = body[:k], body[k:]
    base = 1 if one_based else 0
    ids_hint = "ids start at 1: pass --one_based" if not one_based else "ids start at 0: drop --one_based"

    def ids(rows: np.ndarray, width: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        part = frame.iloc[rows]
        user, user_ok = _integers(part[0])
        item, item_ok = _integers(part[1])
        bad = _first_bad((n_fields[rows] != width) | ~user_ok | ~item_ok)
        if bad is not None:
            raise _error(path, rows[bad] + 1, f"expected {what}", text(rows[bad]))
        user, item = user - base, item - base
        bad = _first_bad((user < 0) | (user >= n))
        if bad is not None:
            raise _error(path, rows[bad] + 1, f"user {user[bad] + base} is outside {base}..{n - 1 + base} "
                         f"(n={n} on line {head + 1}; {ids_hint} if that is the cause)")
        bad = _first_bad((item < 0) | (item >= m))
        if bad is not None:
            raise _error(path, rows[bad] + 1, f"item {item[bad] + base} is outside {base}..{m - 1 + base} "
                         f"(m={m} on line {head + 1}; {ids_hint} if that is the cause)")
        return user, item

    user, item = ids(rated, 3, "a rating line 'user item rating' (two integer ids and a number)")
    rating = pd.to_numeric(frame.iloc[rated][2], errors="coerce").to_numpy(np.float64)
    bad = _first_bad(~np.isfinite(rating))
    if bad is not None:
        raise _error(path, rated[bad] + 1, "the rating is not a finite number", text(rated[bad]))
    bad = _first_bad(rating == 0)
    if bad is not None:
        raise _error(path, rated[bad] + 1, "a rating of 0: ratings live in sparse matrices where 0 means "
                     "'not rated'; shift the scale (e.g. add 1 to every rating)", text(rated[bad]))
    # A repeated (user, item): report the second occurrence and point at the first.
    keys = user * m + item
    order = np.argsort(keys, kind="stable")
    repeated = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if repeated.size:
        second = order[repeated + 1].min()
        first = order[np.searchsorted(keys[order], keys[second])]
        raise _error(path, rated[second] + 1, f"the rating of (user {user[second] + base}, item "
                     f"{item[second] + base}) is given twice (first on line {rated[first] + 1}); keep one")
    test_user, test_item = ids(pairs, 2, "a test pair 'user item' (two integer ids)")
    return CompletionProblem(n, m, user, item, rating.astype(np.float32), test_user, test_item, str(path))


def to_split(problem: CompletionProblem, val_fraction: float = 0.1, seed: int = 0) -> RatingSplit:
    """The known ratings as a RatingSplit: shuffled ``val_fraction`` to ``val``, the rest to ``train``.

    Returns:
      RatingSplit [n, m] with ids 0..n-1 and 0..m-1 and an empty ``test``.
    """
    interactions = Interactions(user=problem.user, item=problem.item, rating=problem.rating,
                                timestamp=np.full(problem.user.shape, -1, np.int64),
                                user_ids=np.arange(problem.n_users, dtype=np.int64),
                                item_ids=np.arange(problem.n_items, dtype=np.int64), name=problem.source)
    config = protocols.RandomSplitConfig(test_fraction=0.0, val_fraction=val_fraction)
    return protocols.random_split(interactions, config, seed)


def predict(model, user: np.ndarray, item: np.ndarray, batch_size: int = 100_000) -> np.ndarray:
    """float32 [q] predicted ratings of the pairs (int [q], int [q]) from a rating model."""
    out = [model.predict_pairs(user[i:i + batch_size].astype(np.int32), item[i:i + batch_size].astype(np.int32))
           for i in range(0, len(user), batch_size)]
    return np.concatenate([o.numpy() for o in out]) if out else np.zeros(0, np.float32)


def complete(problem: CompletionProblem, *, rank: int = 25, use_bias: bool = True, lam: float = MFConfig.lam,
             lr: float = 1e-3, weight_decay: float = 1e-5, batch_size: int = 1000, epochs: int = 100,
             patience: int = 5, val_fraction: float = 0.1, seed: int = 0, verbose: bool = False):
    """Trains MF on the known ratings and predicts the test pairs.

    Args:
      problem: from :func:`read_problem`.
      rank, use_bias, lam: the model (:class:`mf.config.MFConfig`).
      lr, weight_decay, batch_size: Adam (decoupled weight decay) and its batch.
      epochs, patience: most epochs; early stop after ``patience`` epochs
        without a better validation RMSE (with ``val_fraction`` > 0).
      val_fraction: share of the known ratings held out for the early stop.
      seed: split, order and weights.
      verbose: the trainer's epoch lines.

    Returns:
      (float32 [q] predictions clipped to the known ratings' range,
      :class:`experiments.mf_grid.FitResult`).
    """
    from experiments import mf_grid
    from training.config import OptimConfig

    if problem.user.size == 0:
        raise DatasetError(f"{problem.source or 'the input'} has no known ratings (k=0): nothing to learn from")
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val_fraction must be in [0, 1), got {val_fraction}")
    split = to_split(problem, val_fraction, seed)
    optim = OptimConfig(optimizer="adam", lr=lr, weight_decay=weight_decay, batch_size_train=batch_size)
    fit = mf_grid.fit_on_split(split, {"rank": rank, "use_bias": use_bias, "lam": lam}, optim, epochs=epochs,
                            patience=patience if val_fraction else None, seed=seed, verbose=verbose)
    pred = predict(fit.model, problem.test_user, problem.test_item)
    return np.clip(pred, problem.rating.min(), problem.rating.max()), fit


def write_predictions(path: str | os.PathLike, predictions: np.ndarray, problem: Optional[CompletionProblem] = None,
                      one_based: bool = False) -> None:
    """Writes one prediction a line (``user item rating`` when ``problem`` is given), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if problem is None:
        frame = pd.DataFrame({"rating": predictions})
    else:
        base = 1 if one_based else 0
        frame = pd.DataFrame({"user": problem.test_user + base, "item": problem.test_item + base,
                              "rating": predictions})
    files.atomic_write(path, lambda f: frame.to_csv(f, sep=" ", header=False, index=False, float_format="%.4f",
                                                    lineterminator="\n"), mode="w")


def define_flags(fv) -> None:
    """The flags of ``python -m experiments.completion`` (main.py's names where the meaning is the same)."""
    from absl import flags

    flags.DEFINE_integer("rank", 25, "Rank of the factorization.", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("use_bias", True, "User/item biases and a global mean (--nouse_bias: the report's plain dot "
                      "product).", flag_values=fv)
    flags.DEFINE_float("lam", MFConfig.lam, "L2 weight on each rating's factors and biases.", flag_values=fv)
    flags.DEFINE_float("lr", 1e-3, "Learning rate (Adam).", flag_values=fv)
    flags.DEFINE_float("weight_decay", 1e-5, "Decoupled weight decay.", flag_values=fv)
    flags.DEFINE_integer("batch_size_train", 1000, "Ratings per training step.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("number_of_epochs", 100, "Most epochs to train.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("patience", 5, "Early stop after this many epochs without a better validation RMSE.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("val_fraction", 0.1, "Share of the known ratings held out for the early stop (0: none).",
                       flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the split, data order and weights.", flag_values=fv)
    flags.DEFINE_bool("one_based", False, "Ids in the file start at 1.", flag_values=fv)
    flags.DEFINE_bool("with_pairs", False, "Write 'user item rating' lines.", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "No epoch lines or summary.", flag_values=fv)
    cli_flags.validate_like_main(fv)
    cli_flags.validate(fv, "val_fraction", lambda v: 0 <= v < 1, "--val_fraction must be in [0, 1)")


def body(fv, args: list) -> int:
    """Reads INPUT, trains, writes OUTPUT."""
    if len(args) != 2:
        raise ConfigError(f"expected INPUT OUTPUT (the 'n m k' file and the predictions file), got "
                          f"{len(args)} argument{'' if len(args) == 1 else 's'}"
                          f"{': ' + ' '.join(args) if args else ''}")
    source, output = args
    problem = read_problem(source, one_based=fv.one_based)
    pred, fit = complete(problem, rank=fv.rank, use_bias=fv.use_bias, lam=fv.lam, lr=fv.lr,
                         weight_decay=fv.weight_decay, batch_size=fv.batch_size_train, epochs=fv.number_of_epochs,
                         patience=fv.patience, val_fraction=fv.val_fraction, seed=fv.seed, verbose=not fv.quiet)
    write_predictions(output, pred, problem if fv.with_pairs else None, fv.one_based)
    if not fv.quiet:
        print(f"best epoch {fit.best_epoch}: train RMSE {fit.train_rmse:.4f}, validation RMSE {fit.val_rmse:.4f}; "
              f"wrote {len(pred)} predictions to {output}")
    return 0


def main(argv: Sequence[str]) -> int:
    """The command line in this process: ``argv`` without the program name; returns the exit status."""
    return cli_flags.main(define_flags, body, argv, "python -m experiments.completion")


if __name__ == "__main__":
    cli_flags.cli(define_flags, body)
