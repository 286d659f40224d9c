"""The export writer: weights + config + id maps, and a SavedModel for serving (read by :mod:`serving.loader`).

Layout of ``<export_dir>/model/``::

    model.json     {"family": "vae", "config": {...}, "task": "topk", ...}
    weights.*      the model's weights (tf.train.Checkpoint.write)
    ids.npz        original ids of the columns (items) and rows (users)
    titles.json    item id -> title, where the dataset has titles
    known.npz      every row's known entries (what predict and recommend start from) and, for
                   rating models, the fallback statistics: item means, global mean, rating range

and ``<export_dir>/saved_model/``, a TensorFlow SavedModel whose ``serving_default``
signature maps a batch of item-id lists to the top-k recommended item ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data import files
from serving.loader import KNOWN_FILE, MODEL_DIR
from training import metrics

SAVED_MODEL_DIR = "saved_model"


def id_array(ids) -> np.ndarray:
    """Original ids as int64 or fixed-width str: object arrays would need pickle to load."""
    ids = np.asarray(ids)
    return ids.astype(str) if ids.dtype == object else ids


def save(model, export_dir: str | Path, family: str, item_ids: np.ndarray, user_ids: Optional[np.ndarray] = None,
         titles: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Writes the model's weights, config and id maps under ``export_dir/model``.

    Args:
      model: a :class:`training.model.Model`, or a baseline with ``save``/``load``.
      family: the model family name of :mod:`training.families` (``vae``, ``ease``...).
      item_ids: [n_items] original item ids of the model's columns.
      user_ids: [n_users] original ids of the training rows (rating models).
      titles: original item id -> title.
      extra: more JSON-able metadata (dataset, protocol...).
    """
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "evaluate_step") and hasattr(model, "get_config"):
        tf.train.Checkpoint(model=model.state()).write(str(folder / "weights"))
        config = model.get_config()
    else:
        model.save(folder / "baseline.npz")
        config = {}
    ids = {"item_ids": id_array(item_ids)}
    if user_ids is not None:
        ids["user_ids"] = id_array(user_ids)
    files.save_npz(folder / "ids.npz", **ids)
    files.write_json(folder / "titles.json", {str(k): v for k, v in (titles or {}).items()})
    files.write_json(folder / "model.json", {"family": family, "config": config, **(extra or {})})
    return folder


class TopKServer(tf.Module):
    """Serving wrapper: item-id lists in original ids -> top-k item ids.

    Args:
      score_fn: SparseTensor [b, I] -> scores [b, I] float32.
      item_ids: [I] original item ids of the columns (int64 or str).
    """

    def __init__(self, score_fn: Callable[[tf.SparseTensor], tf.Tensor], item_ids: np.ndarray,
                 variables_owner: Optional[tf.Module] = None) -> None:
        super().__init__()
        self._score_fn = score_fn
        self.owner = variables_owner
        self.n_items = int(len(item_ids))
        is_str = item_ids.dtype.kind in "USO"
        key_dtype = tf.string if is_str else tf.int64
        keys = tf.constant(item_ids.astype(str) if is_str else item_ids.astype(np.int64), key_dtype)
        self.item_ids = tf.Variable(keys, trainable=False)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(self.n_items, dtype=tf.int64)), default_value=-1)
        self.key_dtype = key_dtype
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None], key_dtype, name="items"), tf.TensorSpec([], tf.int32, name="k")])

    def _serve(self, items: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        cols = self.table.lookup(items)  # unknown ids and padding map to -1
        known = tf.where(cols >= 0)  # [n, 2] (list, position)
        indices = tf.stack([known[:, 0], tf.gather_nd(cols, known)], axis=1)
        shape = tf.cast(tf.stack([tf.shape(items)[0], self.n_items]), tf.int64)
        seen = tf.sparse.reorder(tf.SparseTensor(indices, tf.ones([tf.shape(indices)[0]]), shape))
        scores = metrics.mask_seen(self._score_fn(seen), seen)
        top = tf.math.top_k(scores, k=tf.minimum(k, self.n_items))
        return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values}


def save_serving(score_fn, item_ids: np.ndarray, export_dir: str | Path, owner: Optional[tf.Module] = None) -> Path:
    """Writes the SavedModel with the ``serving_default`` top-k signature."""
    server = TopKServer(score_fn, np.asarray(item_ids), owner)
    path = Path(export_dir) / SAVED_MODEL_DIR
    tf.saved_model.save(server, str(path), signatures={"serving_default": server.serve})
    return path


# --- what predict and recommend need besides the weights (read by serving.loader.load_known) ----------------------------------------
def known_rows(split) -> tuple[sp.csr_matrix, np.ndarray]:
    """Every row's known entries in the model's orientation, with the rows' original ids.

    Rating splits: ``train`` [n_rows, n_cols] (users, or items for item-based
    exports) and ``user_ids``. Heldout splits: the training users' rows, then
    the validation and test users' fold-in plus target rows (all they have).

    Returns:
      (float32 CSR [n_rows, n_cols], [n_rows] original row ids).
    """
    if hasattr(split, "train_user_ids"):
        parts = [split.train, split.val_input + split.val_target, split.test_input + split.test_target]
        ids = np.concatenate([split.train_user_ids, split.val_user_ids, split.test_user_ids])
        return sp.vstack(parts, format="csr", dtype=np.float32), ids
    return split.train.tocsr().astype(np.float32), np.asarray(split.user_ids)


def save_known(export_dir: str | Path, split, major: str = "users") -> Path:
    """Writes ``model/known.npz``: each row's known entries and, for rating splits, the fallback statistics.

    Holds the CSR parts of :func:`known_rows` (``data``, ``indices``,
    ``indptr``, ``shape``), ``row_ids``, and for rating splits
    ``item_mean`` (float32 [n_items] mean training rating of each item, NaN
    where it has none, in the order of the item ids), ``global_mean`` and
    ``rating_range`` ([min, max] training rating).

    Args:
      split: the split the model was trained on (transposed for ``major="items"``).
      major: ``users`` or ``items`` (rows of the model are items).
    """
    known, row_ids = known_rows(split)
    arrays = {"data": known.data, "indices": known.indices, "indptr": known.indptr,
              "shape": np.asarray(known.shape, np.int64), "row_ids": id_array(row_ids)}
    if not hasattr(split, "train_user_ids") and known.nnz:
        axis = 1 if major == "items" else 0  # the axis that runs over users
        sums = np.asarray(known.sum(axis=axis)).ravel()
        counts = np.asarray((known != 0).sum(axis=axis)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            arrays["item_mean"] = (sums / counts).astype(np.float32)
        arrays["global_mean"] = np.float64(known.data.mean())
        arrays["rating_range"] = np.array([known.data.min(), known.data.max()], np.float64)
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KNOWN_FILE
    files.save_npz(path, **arrays)
    return path


