"""What every closed-form baseline shares: the :class:`ClosedForm` side of the Recommender protocol, and its files.

A closed-form model is solved once on the training matrix (:meth:`ClosedForm.solve`,
no epochs, no optimizer) and then scores a batch of users' fold-in rows like
any top-k model (:meth:`ClosedForm.predict_rows`): dense item scores, higher
is better, not masked (the evaluator masks the fold-in items). Its weights are
a few named arrays, kept on the device as non-trainable variables (so a
SavedModel holds them as variables, not as graph constants) and written to one
``.npz`` file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import ClassVar, Dict, Optional, Union

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data import files
from data.errors import ConfigError, TrainingError
from training import metrics
from training.recommender import Recommender, Stats

PathLike = Union[str, os.PathLike]
FILE = "baseline.npz"  # a closed-form model's weights in an export folder


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
        raise TrainingError(f"{who} is not fitted: call solve(train) or {who}.load(path) first")


def check_inputs(inputs: tf.SparseTensor, n_items, who: str) -> None:
    """Fails clearly when a batch has another number of items than the model.

    Only the static width is checked (a model exported from one data set and
    used on another); a dynamic mismatch fails inside TensorFlow.

    Raises:
      TrainingError: the model is not fitted.
      ConfigError: the batch's item count differs from the model's.
    """
    require_fitted(n_items, who)
    width = inputs.shape[-1]
    if width is not None and width != n_items:
        raise ConfigError(
            f"{who}.predict_rows: the batch has {width} items but the model was fitted on {n_items}; "
            "use the same data set and protocol for fitting and scoring")


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
        raise TrainingError(f"{path}: no such {kind} export; solve the model and save() it first") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TrainingError(f"{path}: not a tfcf .npz export ({e})") from None
    found = str(arrays.get("kind", "?"))
    if found != kind:
        raise TrainingError(f"{path}: holds a '{found}' model, not '{kind}'; load it with that model's class")
    missing = [name for name in keys if name not in arrays]
    if missing:
        raise TrainingError(f"{path}: the {kind} export lacks {', '.join(missing)}; save the model again")
    return arrays


class ClosedForm(Recommender, tf.Module):
    """Base of the closed-form top-k baselines.

    A subclass sets ``config_class`` (a dataclass with ``n_items`` and its
    hyper-parameters), ``kind`` (the tag of its ``.npz`` file) and
    ``arrays`` (the names of its weight arrays), and implements
    :meth:`_solve` and :meth:`_score`. A ``tf.Module``, so that a SavedModel
    serving it tracks its weights.

    Args:
      config: the hyper-parameters (default: the config's defaults).
      **params: or the hyper-parameters by name (``EASE(ease_lambda=200)``).
    """

    task = "topk"
    closed_form = True
    kind: ClassVar[str] = ""
    arrays: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config=None, **params) -> None:
        if config is not None and params:
            raise TypeError("give a config or hyper-parameters by name, not both")
        tf.Module.__init__(self, name=self.kind)
        self.config = config if config is not None else self.config_class(**params)
        self.weights: Optional[dict[str, np.ndarray]] = None
        self._on_device: dict[str, tf.Variable] = {}

    @classmethod
    def create(cls, config) -> "ClosedForm":
        return cls(config)

    @property
    def n_items(self) -> Optional[int]:
        """The number of items it was solved on; None before ``solve``/``load``."""
        return None if self.weights is None else self._n_items(self.weights)

    # --- what subclasses implement -------------------------------------------------
    def _solve(self, matrix: sp.csr_matrix, verbose: bool) -> dict[str, np.ndarray]:
        """The weight arrays from the canonical training CSR [n_users, n_items]."""
        raise NotImplementedError

    def _score(self, inputs: tf.SparseTensor, weights: dict[str, tf.Variable]) -> tf.Tensor:
        """float32 [b, n_items] scores of the fold-in rows ``inputs`` [b, n_items]."""
        raise NotImplementedError

    @staticmethod
    def _n_items(weights: dict[str, np.ndarray]) -> int:
        return int(next(iter(weights.values())).shape[0])

    # --- the protocol ----------------------------------------------------------------
    def solve(self, train, verbose: bool = True) -> "ClosedForm":
        """Fits the model on ``train`` (scipy sparse or 2-D array [n_users, n_items]; never modified).

        Raises:
          ConfigError: not 2-D, or no users or no items.
        """
        self._set(self._solve(as_train_matrix(train, type(self).__name__), verbose))
        return self

    def _set(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        # Lifted out of any graph being traced: the weights are captured by reference, not baked in.
        with tf.init_scope():
            self._on_device = {name: tf.Variable(np.asarray(a, np.float32), trainable=False, name=name)
                               for name, a in weights.items()}

    def predict_rows(self, inputs: tf.SparseTensor, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """float32 [b, n_items] scores of the rows' fold-in items ``inputs`` [b, n_items] (``rows`` unused).

        Raises:
          TrainingError: the model is not solved.
          ConfigError: the batch has another number of items than the model.
        """
        check_inputs(inputs, self.n_items, type(self).__name__)
        return self._score(inputs, self._on_device)

    def evaluate_step(self, batch) -> Stats:
        return metrics.topk_metrics(self.predict_rows(batch["input"]), batch["target"], seen=batch["input"],
                                    names=self.ranking_metrics)

    def get_config(self) -> dict:
        config = super().get_config()
        if self.n_items is not None:
            config["n_items"] = self.n_items
        return config

    # --- files -------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Writes the weights to the ``.npz`` file ``path`` (atomically)."""
        require_fitted(self.n_items, type(self).__name__)
        save_npz(path, self.kind, **self.weights)

    @classmethod
    def load(cls, path: PathLike, config=None) -> "ClosedForm":
        """A model from a file :meth:`save` wrote."""
        model = cls(config)
        model._read_file(path)
        return model

    def _read_file(self, path: PathLike) -> None:
        self._set({k: v.astype(np.float32) for k, v in load_npz(path, self.kind, self.arrays).items()
                   if k in self.arrays})

    def write(self, folder: Path) -> None:
        self.save(Path(folder) / FILE)

    def read(self, folder: Path) -> None:
        path = Path(folder) / FILE
        if not path.is_file():
            raise TrainingError(f"{path}: missing (a partial export?)")
        self._read_file(path)  # into this model: no second copy of the weights on the device
