"""The popularity baseline, and the plumbing every closed-form baseline shares.

A baseline has the scoring face of the neural models: ``fit(train)`` on a
CSR click matrix, ``score(inputs)`` from a batch of users' fold-in rows to
dense item scores (higher = better, no masking: the evaluator masks the
fold-in items), and ``save`` / ``load`` of an ``.npz`` export.
"""

from __future__ import annotations

import os
import zipfile
from typing import Dict, Union

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data import files
from data.errors import ConfigError, TrainingError

PathLike = Union[str, os.PathLike]


def as_train_matrix(train, who: str) -> sp.csr_matrix:
    """The training matrix as canonical CSR (sorted, no duplicate entries).

    Args:
      train: scipy sparse matrix or 2-D array [n_users, n_items].
      who: the model's name, for messages.

    Returns:
      CSR [n_users, n_items]; the caller's matrix is never modified.

    Raises:
      ConfigError: not 2-D, or no users or no items.
    """
    matrix = sp.csr_matrix(train)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise ConfigError(
            f"{who}.fit: the training matrix has shape {matrix.shape}; it needs at least "
            "one user (row) and one item (column)")
    if not matrix.has_canonical_format:
        matrix = matrix.copy()
        matrix.sum_duplicates()
    return matrix


def require_fitted(n_items, who: str) -> None:
    """Raises TrainingError when the model has no weights yet."""
    if n_items is None:
        raise TrainingError(f"{who} is not fitted: call fit(train) or {who}.load(path) first")


def check_inputs(inputs: tf.SparseTensor, n_items, who: str) -> None:
    """Fails clearly when a batch has another number of items than the model.

    Only the static width is checked (a model exported from one data set and
    used on another); a dynamic mismatch fails inside TensorFlow.

    Raises:
      TrainingError: the model is not fitted.
      ConfigError: the batch's item count differs from the model's.
    """
    assert isinstance(inputs, tf.SparseTensor), f"{who}.score takes a tf.SparseTensor"
    require_fitted(n_items, who)
    width = inputs.shape[-1]
    if width is not None and width != n_items:
        raise ConfigError(
            f"{who}.score: the batch has {width} items but the model was fitted on {n_items}; "
            "use the same data set and protocol for fitting and scoring")


def to_device(array: np.ndarray) -> tf.Tensor:
    """An eager float32 tensor, even when called while a tf.function traces.

    ``init_scope`` lifts the conversion out of any graph being built, so a
    large matrix is captured by reference instead of baked in as a constant.
    """
    with tf.init_scope():
        return tf.convert_to_tensor(array, tf.float32)


def save_npz(path: PathLike, kind: str, **arrays: np.ndarray) -> None:
    """Writes ``arrays`` and the model ``kind`` to ``path`` atomically.

    The file is written beside ``path`` and renamed over it, so a crash never
    leaves a half-written export. ``path`` is used as given (no ``.npz`` is
    appended); missing parent folders are created.
    """
    files.save_npz(path, kind=np.array(kind), **arrays)


def load_npz(path: PathLike, kind: str, keys) -> Dict[str, np.ndarray]:
    """Reads an export written by :func:`save_npz` and checks its kind and keys.

    Raises:
      TrainingError: the file is missing, not an npz export, of another model
        kind, or lacks one of ``keys``.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise TrainingError(f"{path}: no such {kind} export; fit the model and save() it first") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainingError(f"{path}: not a tfcf .npz export ({e})") from None
    found = str(arrays.get("kind", "?"))
    if found != kind:
        raise TrainingError(f"{path}: holds a '{found}' model, not '{kind}'; load it with that model's class")
    missing = [name for name in keys if name not in arrays]
    if missing:
        raise TrainingError(f"{path}: the {kind} export lacks {', '.join(missing)}; save the model again")
    return arrays


class Popularity:
    """Scores every item by how many training users have it, for every user.

    Attributes:
      counts: float32 [n_items], the number of users with a non-zero entry
        for each item; None before ``fit``/``load``.
    """

    kind = "popularity"

    def __init__(self):
        self.counts = None
        self._counts_tf = None

    @property
    def n_items(self):
        return None if self.counts is None else int(self.counts.shape[0])

    def fit(self, train, verbose: bool = True) -> "Popularity":
        """Counts the users of each item.

        Args:
          train: scipy sparse [n_users, n_items] of clicks (or ratings).
          verbose: unused (counting is quick); the baselines share ``fit``'s signature.

        Returns:
          self.
        """
        matrix = as_train_matrix(train, "Popularity")
        columns = matrix.indices[matrix.data != 0]
        self._set(np.bincount(columns, minlength=matrix.shape[1]).astype(np.float32))
        return self

    def _set(self, counts: np.ndarray) -> None:
        self.counts = counts
        self._counts_tf = to_device(counts)

    def score(self, inputs: tf.SparseTensor) -> tf.Tensor:
        """The item counts repeated for each row of the batch.

        Args:
          inputs: SparseTensor [b, n_items], the users' fold-in items (only
            the batch size is used).

        Returns:
          float32 [b, n_items].
        """
        check_inputs(inputs, self.n_items, "Popularity")
        batch = tf.cast(inputs.dense_shape[0], tf.int32)
        return tf.broadcast_to(self._counts_tf[tf.newaxis, :], tf.stack([batch, self.n_items]))

    def save(self, path: PathLike) -> None:
        """Writes the counts to ``path`` (npz)."""
        require_fitted(self.n_items, "Popularity")
        save_npz(path, self.kind, counts=self.counts)

    @classmethod
    def load(cls, path: PathLike) -> "Popularity":
        """Reads a model written by :meth:`save`."""
        model = cls()
        model._set(load_npz(path, cls.kind, ["counts"])["counts"].astype(np.float32))
        return model
