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
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from data.custom import CustomFormat, read_table
from data.errors import ConfigError, DatasetError
from serving.loader import Exported, check_output, lookup, open_export, row_scores, write_output

__all__ = ["UNSEEN", "Predictions", "check_output", "check_pairs_file", "lookup", "model_predictions", "open_export",
           "predict_file", "predict_pairs", "write_output"]

UNSEEN = ("fallback", "model")


def check_pairs_file(pairs: Union[str, Path]) -> Path:
    """Refuses a ``--predict`` pairs file that does not exist or is a folder."""
    path = Path(str(pairs)).expanduser()
    if path.is_dir():
        raise DatasetError(f"--predict {path} is a folder: give a CSV, TSV or Parquet file of (user, item) pairs")
    if not path.is_file():
        raise DatasetError(f"--predict {path}: no such file; give a CSV, TSV or Parquet file of (user, item) pairs")
    return path


def model_predictions(exp: Exported, row: np.ndarray, col: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's predictions at (row, column) cells of its own orientation: float32 [n].

    Row-input models (DeepRec) run once per distinct row on its known
    entries; pair models (MF, multi-task) score the pairs directly.
    """
    out = np.zeros(len(row), np.float32)
    if not len(row):
        return out
    model = exp.model
    if model.scores_pairs:
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
