"""Predicted ratings of (user, item) pairs in original ids, from an exported rating model.

Works from the export folder alone (``model/``: weights, ids, ``known.npz``),
for ``deeprec`` (user- or item-based), ``mf`` and ``multitask``:

* A pair whose user and item both have training ratings gets the model's
  prediction: DeepRec's output for the user's training row (the item's, for an
  item-based export), MF's and the multi-task net's pair prediction. These are
  exactly the numbers ``--test`` scores.
* Any other pair gets the fallback: the item's mean training rating, or the
  global mean training rating when the item has none (both inside the
  training rating range). ``unseen="model"`` instead lets the model score
  every pair whose user and item it has a row/column for, even without
  training ratings (what ``--test`` does for such pairs); ids it does not know
  at all always get the fallback.

The command reports how many pairs used the fallback, and the RMSE when the
pairs file has a rating column.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from data import files
from data.custom import CustomFormat, read_table
from data.errors import ConfigError, DatasetError
from training import export, families

UNSEEN = ("fallback", "model")


# --- the output file of --predict / --recommend*: checked first, written atomically -------------------
def _is_special(path: Path) -> bool:
    """Whether ``path`` exists as a device, FIFO or socket (``/dev/stdout``): written in place."""
    try:
        return not (stat.S_ISREG(os.stat(path).st_mode) or stat.S_ISDIR(os.stat(path).st_mode))
    except OSError:
        return False


def check_output(output: Optional[Union[str, Path]]) -> Optional[Path]:
    """Refuses an ``--output`` that cannot be written, before any model work.

    Args:
      output: the file to write, or None (stdout).

    Returns:
      ``output`` as a Path (None stays None).

    Raises:
      ConfigError: an empty path, an existing folder, a path in a missing
        folder or in one this process cannot write to, a read-only file.
    """
    if output is None:
        return None
    if str(output) == "":
        raise ConfigError("--output is empty: give the path of a file to write, or leave it out for stdout")
    path = Path(output).expanduser()
    if _is_special(path):
        return path
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder: give the path of a file to write")
    parent = path.parent
    if not parent.exists():
        raise ConfigError(f"--output {path}: the folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise ConfigError(f"--output {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: the folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"--output {path}: the file is read-only")
    return path


def write_output(output: Union[str, Path], write, mode: str = "w") -> Path:
    """Calls ``write(file)`` on a temporary file beside ``output``, then renames it to ``output``.

    A failure leaves no half file: the old ``output`` (if any) stays as it was.

    Args:
      output: the file (checked with :func:`check_output`).
      write: writes the content to the open file it is given.
      mode: ``"w"`` (UTF-8 text, ``\\n`` line ends) or ``"wb"``.

    Raises:
      ConfigError: the file cannot be written (permission denied, disk full...).
    """
    path = check_output(output)
    try:
        return files.atomic_write(path, write, mode=mode)
    except OSError as e:
        raise ConfigError(f"--output {path}: cannot write it ({e.strerror or e})") from None


def check_pairs_file(pairs: Union[str, Path]) -> Path:
    """Refuses a ``--predict`` pairs file that does not exist or is a folder."""
    path = Path(str(pairs)).expanduser()
    if path.is_dir():
        raise DatasetError(f"--predict {path} is a folder: give a CSV, TSV or Parquet file of (user, item) pairs")
    if not path.is_file():
        raise DatasetError(f"--predict {path}: no such file; give a CSV, TSV or Parquet file of (user, item) pairs")
    return path


def lookup(ids: np.ndarray, wanted: Sequence) -> np.ndarray:
    """Positions of original ids ``wanted`` in ``ids``: int64 [n], -1 where unknown.

    Integer ids are matched as integers, anything else by its text, so a
    ``"50"`` read from a file finds item 50.
    """
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    if ids.dtype.kind in "iu":
        numbers = pd.to_numeric(pd.Series(wanted, dtype=object), errors="coerce")
        whole = numbers.notna().to_numpy() & (numbers.fillna(0.5) % 1 == 0).to_numpy()
        out = np.full(len(wanted), -1, np.int64)
        out[whole] = pd.Index(ids).get_indexer(numbers[whole].to_numpy(np.int64))
        return out
    return pd.Index(ids.astype(str)).get_indexer(wanted.astype(str)).astype(np.int64)


@dataclasses.dataclass
class Exported:
    """An export folder loaded for predict and recommend.

    Attributes:
      model: the model (or closed-form baseline).
      meta: ``model.json``.
      known: float32 CSR [n_rows, n_cols] of each model row's known entries.
      row_ids: [n_rows] original ids of the model's rows (users, or items
        for an item-based export).
      col_ids: [n_cols] original ids of its columns.
      titles: original item id (str) -> title.
      stats: ``item_mean`` (per item index), ``global_mean``, ``rating_range``
        for rating exports; empty for top-k ones.
    """

    model: object
    meta: dict
    known: sp.csr_matrix
    row_ids: np.ndarray
    col_ids: np.ndarray
    titles: dict
    stats: dict

    @property
    def rows_are_items(self) -> bool:
        return self.meta.get("major", "users") == "items"

    @property
    def item_ids(self) -> np.ndarray:
        """[n_items] original item ids in item-index order."""
        return self.row_ids if self.rows_are_items else self.col_ids

    def user_index(self, users: Sequence) -> np.ndarray:
        """int64 [n] user index (row, or column of an item-based export), -1 if unknown."""
        return lookup(self.col_ids if self.rows_are_items else self.row_ids, users)

    def item_index(self, items: Sequence) -> np.ndarray:
        """int64 [n] item index (column, or row of an item-based export), -1 if unknown."""
        return lookup(self.item_ids, items)

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 [n_users] training ratings per user index, int64 [n_items] per item index)."""
        rows = np.diff(self.known.indptr)
        cols = np.bincount(self.known.indices, minlength=self.known.shape[1])
        return (cols, rows) if self.rows_are_items else (rows, cols)

    def cells(self, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model row, model column) of user/item indices."""
        return (item, user) if self.rows_are_items else (user, item)


def open_export(export_dir: Union[str, Path]) -> Exported:
    """Loads an export folder with what predict/recommend need (see :func:`training.export.save_known`).

    Raises:
      TrainingError: no export there, or one without ``known.npz``.
    """
    model, meta, ids, titles = export.load(export_dir, families.FAMILIES)
    known = export.load_known(export_dir)
    stats = {k: known[k] for k in ("item_mean", "global_mean", "rating_range") if k in known}
    return Exported(model=model, meta=meta, known=known["matrix"].astype(np.float32), row_ids=known["row_ids"],
                    col_ids=ids["item_ids"], titles=titles, stats=stats)


def row_scores(exp: Exported, rows: np.ndarray, batch_size: int = 1000):
    """Scores of every column for model rows, batch by batch.

    Args:
      exp: the export.
      rows: int64 [n] model rows (sorted unique is cheapest).
      batch_size: rows per forward pass.

    Yields:
      (start offset into ``rows``, float32 [b, n_cols] scores or predicted ratings).
    """
    from data import pipeline
    from training.recommend import score_rows as forward

    if not len(rows):
        return
    batches = pipeline.row_batches(exp.known[rows], batch_size)
    for start, inputs in zip(range(0, len(rows), batch_size), batches):
        index = tf.constant(rows[start:start + batch_size], tf.int32)
        yield start, np.asarray(forward(exp.model, inputs, index))


def model_predictions(exp: Exported, row: np.ndarray, col: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's predictions at (row, column) cells of its own orientation: float32 [n].

    Row-input models (DeepRec) run once per distinct row on its known
    entries; pair models (MF, multi-task) score the pairs directly.
    """
    out = np.zeros(len(row), np.float32)
    if not len(row):
        return out
    model = exp.model
    if getattr(model, "input_kind", "rows") != "rows" and hasattr(model, "predict_pairs"):
        for lo in range(0, len(row), batch_size * 100):
            hi = lo + batch_size * 100
            out[lo:hi] = np.asarray(model.predict_pairs(tf.constant(row[lo:hi], tf.int32),
                                                        tf.constant(col[lo:hi], tf.int32)))
        return out
    order = np.argsort(row, kind="stable")
    rows, first = np.unique(row[order], return_index=True)
    ends = np.append(first[1:], len(order))
    for start, scores in row_scores(exp, rows, batch_size):
        stop = min(start + batch_size, len(rows))
        picked = order[first[start]:ends[stop - 1]]
        out[picked] = scores[np.searchsorted(rows[start:stop], row[picked]), col[picked]]
    return out


@dataclasses.dataclass
class Predictions:
    """Predictions of a list of pairs, in input order.

    Attributes:
      prediction: float32 [n].
      fallback: bool [n], True where the fallback was used.
      unknown_user, unknown_item: bool [n], ids the model has no row/column for.
      cold_user, cold_item: bool [n], ids it knows but that have no training rating.
    """

    prediction: np.ndarray
    fallback: np.ndarray
    unknown_user: np.ndarray
    unknown_item: np.ndarray
    cold_user: np.ndarray
    cold_item: np.ndarray


def predict_pairs(exp: Exported, users: Sequence, items: Sequence, unseen: str = "fallback", clip: bool = False,
                  batch_size: int = 1000) -> Predictions:
    """Predicted ratings of (user, item) pairs given in original ids.

    Args:
      exp: a rating model's export (:func:`open_export`).
      users, items: [n] original ids (ints or strings, as in the training data).
      unseen: ``fallback`` (pairs whose user or item has no training rating
        get the fallback) or ``model`` (the model scores every pair it has a
        row and column for).
      clip: clip every prediction to the training rating range.
      batch_size: rows (DeepRec) per forward pass.

    Returns:
      :class:`Predictions` with float32 [n] predictions.

    Raises:
      ConfigError: a top-k export, an unknown ``unseen`` or lists of different lengths.
    """
    if exp.meta.get("task") != "rating" or "global_mean" not in exp.stats:
        raise ConfigError(f"predict needs a rating model (deeprec, mf, multitask); this export holds "
                          f"'{exp.meta.get('family')}', a top-k model: use --recommend_users for it")
    if unseen not in UNSEEN:
        raise ConfigError(f"unseen={unseen!r}: use fallback or model")
    if len(users) != len(items):
        raise ConfigError(f"{len(users)} users but {len(items)} items: give one user per item")
    user, item = exp.user_index(users), exp.item_index(items)
    per_user, per_item = exp.counts()
    unknown_user, unknown_item = user < 0, item < 0
    cold_user = ~unknown_user & (per_user[np.maximum(user, 0)] == 0)
    cold_item = ~unknown_item & (per_item[np.maximum(item, 0)] == 0)
    by_model = ~unknown_user & ~unknown_item
    if unseen == "fallback":
        by_model &= ~cold_user & ~cold_item
    prediction = np.empty(len(user), np.float32)
    row, col = exp.cells(user[by_model], item[by_model])
    prediction[by_model] = model_predictions(exp, row, col, batch_size)
    # The fallback: the item's mean training rating, else the global mean.
    means = exp.stats["item_mean"][np.maximum(item, 0)]
    fallback = np.where(unknown_item | np.isnan(means), exp.stats["global_mean"], means).astype(np.float32)
    prediction[~by_model] = fallback[~by_model]
    if clip:
        low, high = exp.stats["rating_range"]
        prediction = np.clip(prediction, low, high)
    return Predictions(prediction=prediction, fallback=~by_model, unknown_user=unknown_user,
                       unknown_item=unknown_item, cold_user=cold_user, cold_item=cold_item)


def predict_file(export_dir: Union[str, Path], pairs: Union[str, Path], output: Optional[Union[str, Path]] = None,
                 fmt: CustomFormat = CustomFormat(), unseen: str = "fallback", clip: bool = False,
                 verbose: bool = True) -> dict:
    """Reads a file of (user, item) pairs, writes ``user,item,prediction`` CSV.

    Args:
      export_dir: the run folder of a rating model.
      pairs: a CSV/TSV/Parquet file of pairs in original ids, with or without
        a header (columns found like :func:`data.custom.read`); a rating
        column, when there is one, is used to report the RMSE.
      output: the CSV to write (atomically: a failure leaves no half file); None writes to stdout.
      fmt: column mapping and separator of ``pairs``.
      unseen, clip: see :func:`predict_pairs`.
      verbose: print the summary line (to stderr when the CSV goes to stdout).

    Returns:
      Summary dict: ``pairs``, ``fallback`` (pairs that used it),
      ``unknown_users``, ``unknown_items``, ``cold`` (pairs of known ids
      without training ratings), ``rmse`` (None without ratings), ``output``.

    Raises:
      ConfigError: an ``output`` that cannot be written (checked before the model is loaded).
      DatasetError: a missing, folder or malformed pairs file.
      TrainingError: a missing, partial or damaged export.
    """
    output = check_output(output)  # before any model work
    table = read_table(check_pairs_file(pairs), fmt, what="pairs")
    if unseen not in UNSEEN:
        raise ConfigError(f"unseen={unseen!r}: use fallback or model")
    exp = open_export(export_dir)
    result = predict_pairs(exp, table.user, table.item, unseen, clip)
    frame = pd.DataFrame({"user": table.user, "item": table.item, "prediction": result.prediction})
    to_csv = lambda f: frame.to_csv(f, index=False, float_format="%.6g", lineterminator="\n")
    if output is None:
        to_csv(sys.stdout)
    else:
        write_output(output, to_csv)
    rmse = None
    if table.rating is not None:
        rmse = float(np.sqrt(np.mean((result.prediction.astype(np.float64) - table.rating) ** 2)))
    summary = {"pairs": len(frame), "fallback": int(result.fallback.sum()),
               "unknown_users": int(result.unknown_user.sum()), "unknown_items": int(result.unknown_item.sum()),
               "cold": int((result.fallback & ~result.unknown_user & ~result.unknown_item).sum()),
               "rmse": rmse, "output": str(output) if output is not None else None}
    if verbose:
        share = summary["fallback"] / max(len(frame), 1)
        line = (f"predict: {len(frame)} pairs -> {summary['output'] or 'stdout'}; {summary['fallback']} "
                f"({share:.2%}) used the fallback (item mean, else global mean): "
                f"{summary['unknown_users']} with an unknown user, {summary['unknown_items']} with an unknown "
                f"item, {summary['cold']} with a user or item without training ratings")
        if rmse is not None:
            line += f"; RMSE {rmse:.4f} against the file's ratings"
        print(line, file=sys.stderr if output is None else sys.stdout, flush=True)
    return summary
