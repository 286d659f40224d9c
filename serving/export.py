"""The export writer: weights + config + id maps, and a SavedModel for serving (read by :mod:`serving.loader`).

Layout of ``<export_dir>/model/``::

    model.json     {"family": "vae", "config": {...}, "task": "topk", ...}
    weights.*      the model's weights (tf.train.Checkpoint.write)
    ids.npz        original ids of the columns (items) and rows (users)
    titles.json    item id -> title, where the dataset has titles
    known.npz      every row's known entries (what predict and recommend start from) and, for
                   rating models, the fallback statistics: item means, global mean, rating range

and ``<export_dir>/saved_model/1/``, a TensorFlow SavedModel in TensorFlow Serving's numbered-version
layout, for every family: top-k models' ``serving_default`` maps a batch of item-id lists to the top-k item
ids (:class:`TopKServer`); rating models' ``serving_default`` maps (user, item) id pairs to predicted ratings
with a per-pair fallback flag, and ``recommend`` maps user ids to their top-k items (:class:`RatingServer`).
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
      model: a :class:`training.recommender.Recommender` (it writes its own weights).
      family: the model family name of :mod:`training.families` (``vae``, ``ease``...).
      item_ids: [n_items] original item ids of the model's columns.
      user_ids: [n_users] original ids of the training rows (rating models).
      titles: original item id -> title.
      extra: more JSON-able metadata (dataset, protocol...).
    """
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    model.write(folder)
    ids = {"item_ids": id_array(item_ids)}
    if user_ids is not None:
        ids["user_ids"] = id_array(user_ids)
    files.save_npz(folder / "ids.npz", **ids)
    files.write_json(folder / "titles.json", {str(k): v for k, v in (titles or {}).items()})
    files.write_json(folder / "model.json", {"family": family, "config": model.get_config(), **(extra or {})})
    return folder


VERSION = 1  # TensorFlow Serving's numbered-version layout: <export_dir>/saved_model/<version>/


def _id_table(ids: np.ndarray) -> tuple[tf.lookup.StaticHashTable, tf.Variable, tf.DType, object]:
    """(original id -> index table, -1 if unknown; the ids as a variable; key dtype; the padding id)."""
    ids = np.asarray(ids)
    is_str = ids.dtype.kind in "USO"
    key_dtype = tf.string if is_str else tf.int64
    keys = tf.constant(ids.astype(str) if is_str else ids.astype(np.int64), key_dtype)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(ids), dtype=tf.int64)), default_value=-1)
    return table, tf.Variable(keys, trainable=False), key_dtype, ("" if is_str else -1)


def _padded_top_k(scores: tf.Tensor, k: tf.Tensor, ids: tf.Variable, pad) -> dict[str, tf.Tensor]:
    """The k best columns per row as original ids; entries scored -inf (nothing left) get the padding id."""
    top = tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1]))
    item_ids = tf.gather(ids, top.indices)
    item_ids = tf.where(tf.math.is_finite(top.values), item_ids, tf.constant(pad, ids.dtype))
    return {"item_ids": item_ids, "scores": top.values}


class TopKServer(tf.Module):
    """Serving wrapper of a top-k model: item-id lists in original ids -> top-k item ids.

    ``serving_default(items, k)``: ``items`` [b, n] int64 (or string, as the
    dataset's ids) item-id lists, padded with any id the model does not know
    (``-1``, or ``""`` for string ids: unknown ids are ignored); ``k`` int32.
    Returns ``item_ids`` [b, min(k, I)] best first, never an item of the
    row's list, and ``scores`` float32 [b, min(k, I)]; past the last item left
    to recommend the score is ``-inf`` and the id the padding value
    (``-1`` or ``""``).

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
        self.table, self.item_ids, self.key_dtype, self._pad = _id_table(item_ids)
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None], self.key_dtype, name="items"), tf.TensorSpec([], tf.int32, name="k")])

    def _serve(self, items: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        cols = self.table.lookup(items)  # unknown ids and padding map to -1
        known = tf.where(cols >= 0)  # [n, 2] (list, position)
        indices = tf.stack([known[:, 0], tf.gather_nd(cols, known)], axis=1)
        shape = tf.cast(tf.stack([tf.shape(items)[0], self.n_items]), tf.int64)
        seen = tf.sparse.reorder(tf.SparseTensor(indices, tf.ones([tf.shape(indices)[0]]), shape))
        scores = metrics.mask_seen(tf.cast(self._score_fn(seen), tf.float32), seen)
        return _padded_top_k(scores, k, self.item_ids, self._pad)


class RatingServer(tf.Module):
    """Serving wrapper of a rating model (deeprec, mf, multitask), in original ids.

    ``serving_default(users, items)``: [n] user and item ids (int64, or string
    as the dataset's ids). Returns ``ratings`` float32 [n] and ``fallback``
    bool [n]: True where the pair got the fallback instead of the model (the
    rule of ``--predict``'s default): the item's mean training rating, else
    the global mean, for an unknown user or item, or one without training
    ratings.

    ``recommend(users, k)``: [b] user ids, ``k`` int32. Returns ``item_ids``
    [b, min(k, I)] best predicted rating first among the items the user has
    not rated in training and that have training ratings (``--recommend_users``),
    ``scores`` float32 [b, min(k, I)] (the predicted ratings) and
    ``known_user`` bool [b]; an unknown user's row, and entries past the last
    item left, have score ``-inf`` and the padding id (``-1``, or ``""`` for
    string ids). Item-based DeepRec runs every item row per call.

    Args:
      model: the trained Recommender (its ``predict_pairs`` where it ``scores_pairs``, else ``predict_rows``).
      known: float32 CSR [n_rows, n_cols] of :func:`known_rows` (the model's orientation).
      row_ids, col_ids: original ids of the rows and columns (users and items; items and users for
        ``rows_are_items``).
      item_fallback: float32 [n_items] each item's mean training rating (NaN where it has none).
      global_mean: the mean training rating.
    """

    def __init__(self, model, known: sp.csr_matrix, row_ids: np.ndarray, col_ids: np.ndarray,
                 item_fallback: np.ndarray, global_mean: float, rows_are_items: bool = False) -> None:
        super().__init__()
        self.model = model
        self.rows_are_items = bool(rows_are_items)
        self.pairs = model.scores_pairs
        user_ids, item_ids = (col_ids, row_ids) if rows_are_items else (row_ids, col_ids)
        self.user_table, self.user_ids, user_dtype, _ = _id_table(user_ids)
        self.item_table, self.item_ids, item_dtype, self._pad = _id_table(item_ids)
        known = known.tocsr().astype(np.float32)
        known.sort_indices()
        self.n_rows, self.n_cols = (int(n) for n in known.shape)
        self.indptr = tf.Variable(known.indptr.astype(np.int64), trainable=False)
        self.indices = tf.Variable(known.indices.astype(np.int64), trainable=False)
        self.values = tf.Variable(known.data, trainable=False)
        per_row = np.diff(known.indptr).astype(np.int64)
        per_col = np.bincount(known.indices, minlength=self.n_cols).astype(np.int64)
        per_user, per_item = (per_col, per_row) if rows_are_items else (per_row, per_col)
        self.per_user = tf.Variable(per_user, trainable=False)
        self.per_item = tf.Variable(per_item, trainable=False)
        means = np.asarray(item_fallback, np.float32)
        self.item_fallback = tf.Variable(np.where(np.isnan(means), np.float32(global_mean), means), trainable=False)
        self.global_mean = tf.Variable(np.float32(global_mean), trainable=False)
        self.predict = tf.function(self._predict, input_signature=[
            tf.TensorSpec([None], user_dtype, name="users"), tf.TensorSpec([None], item_dtype, name="items")])
        self.recommend = tf.function(self._recommend, input_signature=[
            tf.TensorSpec([None], user_dtype, name="users"), tf.TensorSpec([], tf.int32, name="k")])

    def _rows(self, rows: tf.Tensor) -> tf.SparseTensor:
        """SparseTensor [m, n_cols] of the known entries of model rows ``rows`` (int64 [m])."""
        starts, ends = tf.gather(self.indptr, rows), tf.gather(self.indptr, rows + 1)
        positions = tf.ragged.range(starts, ends)
        flat = positions.flat_values
        indices = tf.stack([positions.value_rowids(), tf.gather(self.indices, flat)], axis=1)
        shape = tf.stack([tf.cast(tf.shape(rows)[0], tf.int64), tf.constant(self.n_cols, tf.int64)])
        return tf.SparseTensor(indices, tf.gather(self.values, flat), shape)

    def _row_scores(self, rows: tf.Tensor) -> tuple[tf.Tensor, tf.SparseTensor]:
        """(float32 [m, n_cols] predictions of model rows, their known entries)."""
        inputs = self._rows(rows)
        return tf.cast(self.model.predict_rows(inputs, tf.cast(rows, tf.int32)), tf.float32), inputs

    def _predict(self, users: tf.Tensor, items: tf.Tensor) -> dict[str, tf.Tensor]:
        user, item = self.user_table.lookup(users), self.item_table.lookup(items)
        u, i = tf.maximum(user, 0), tf.maximum(item, 0)
        by_model = ((user >= 0) & (item >= 0) & (tf.gather(self.per_user, u) > 0)
                    & (tf.gather(self.per_item, i) > 0))
        fallback = tf.where(item >= 0, tf.gather(self.item_fallback, i), self.global_mean)
        chosen = tf.where(by_model)[:, 0]
        row, col = (i, u) if self.rows_are_items else (u, i)
        row, col = tf.gather(row, chosen), tf.gather(col, chosen)
        if self.pairs:
            values = self.model.predict_pairs(tf.cast(row, tf.int32), tf.cast(col, tf.int32))
        else:
            distinct, where = tf.unique(row)
            scores, _ = self._row_scores(distinct)
            values = tf.gather_nd(scores, tf.stack([tf.cast(where, tf.int64), col], axis=1))
        ratings = tf.tensor_scatter_nd_update(fallback, chosen[:, None], tf.cast(values, tf.float32))
        return {"ratings": ratings, "fallback": ~by_model}

    def _recommend(self, users: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        user = self.user_table.lookup(users)
        u = tf.maximum(user, 0)
        if self.rows_are_items:  # every item row once; each user is a column
            scores, inputs = self._row_scores(tf.range(self.n_rows, dtype=tf.int64))
            seen = tf.sparse.to_dense(tf.sparse.map_values(tf.ones_like, inputs)) > 0
            scores, seen = tf.transpose(tf.gather(scores, u, axis=1)), tf.transpose(tf.gather(seen, u, axis=1))
        else:
            scores, inputs = self._row_scores(u)
            seen = tf.sparse.to_dense(tf.sparse.map_values(tf.ones_like, tf.sparse.reorder(inputs))) > 0
        drop = seen | (tf.gather(self.per_item, tf.range(tf.shape(scores)[1], dtype=tf.int64)) == 0)[None, :]
        drop |= (user < 0)[:, None]
        scores = tf.where(drop, tf.constant(-np.inf, tf.float32), scores)
        return {**_padded_top_k(scores, k, self.item_ids, self._pad), "known_user": user >= 0}


def saved_model_path(export_dir: str | Path, version: int = VERSION) -> Path:
    """``<export_dir>/saved_model/<version>``: TensorFlow Serving's layout."""
    return Path(export_dir) / SAVED_MODEL_DIR / str(version)


def save_serving(score_fn, item_ids: np.ndarray, export_dir: str | Path, owner: Optional[tf.Module] = None) -> Path:
    """Writes a top-k model's SavedModel (``serving_default``: see :class:`TopKServer`) at :func:`saved_model_path`."""
    server = TopKServer(score_fn, np.asarray(item_ids), owner)
    path = saved_model_path(export_dir)
    tf.saved_model.save(server, str(path), signatures={"serving_default": server.serve})
    return path


def save_rating_serving(model, split, export_dir: str | Path, major: str = "users") -> Path:
    """Writes a rating model's SavedModel (``serving_default`` and ``recommend``: see :class:`RatingServer`).

    Args:
      model: the trained rating model.
      split: the rating split it was trained on (transposed for ``major="items"``), as for :func:`save_known`.
      major: ``users`` or ``items``.
    """
    known, row_ids = known_rows(split)
    item_mean, global_mean = _fallback_stats(known, major)
    server = RatingServer(model, known, np.asarray(row_ids), np.asarray(split.item_ids), item_mean, global_mean,
                          rows_are_items=major == "items")
    path = saved_model_path(export_dir)
    tf.saved_model.save(server, str(path), signatures={"serving_default": server.predict,
                                                       "recommend": server.recommend})
    return path


def write_saved_model(model, split, export_dir: str | Path, major: str = "users") -> Path:
    """The SavedModel of any Recommender at ``<export_dir>/saved_model/1/`` (top-k or rating signatures)."""
    if model.task == "rating":
        return save_rating_serving(model, split, export_dir, major)
    return save_serving(model.predict_rows, split.item_ids, export_dir, owner=model)


# --- what predict and recommend need besides the weights (read by serving.loader.load_known) ----------------------------------------
def known_rows(split) -> tuple[sp.csr_matrix, np.ndarray]:
    """Every row's known entries in the model's orientation, with the rows' original ids.

    Rating splits: ``train`` [n_rows, n_cols] (users, or items for item-based
    exports) and ``user_ids``. Heldout splits: the training users' rows, then
    the validation and test users' fold-in plus target rows (all they have).

    Returns:
      (float32 CSR [n_rows, n_cols], [n_rows] original row ids).
    """
    if split.task == "topk":
        parts = [split.train, split.val_input + split.val_target, split.test_input + split.test_target]
        ids = np.concatenate([split.train_user_ids, split.val_user_ids, split.test_user_ids])
        return sp.vstack(parts, format="csr", dtype=np.float32), ids
    return split.train.tocsr().astype(np.float32), np.asarray(split.user_ids)


def _fallback_stats(known: sp.csr_matrix, major: str) -> tuple[np.ndarray, np.float64]:
    """(float32 [n_items] mean training rating of each item, NaN where none; the global mean)."""
    axis = 1 if major == "items" else 0  # the axis that runs over users
    sums = np.asarray(known.sum(axis=axis)).ravel()
    counts = np.asarray((known != 0).sum(axis=axis)).ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        item_mean = (sums / counts).astype(np.float32)
    return item_mean, np.float64(known.data.mean()) if known.nnz else np.float64(0.0)


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
    if split.task == "rating" and known.nnz:
        arrays["item_mean"], arrays["global_mean"] = _fallback_stats(known, major)
        arrays["rating_range"] = np.array([known.data.min(), known.data.max()], np.float64)
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KNOWN_FILE
    files.save_npz(path, **arrays)
    return path


