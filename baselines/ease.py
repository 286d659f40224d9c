"""EASE: the closed-form item-item linear autoencoder (Steck, WWW 2019).

B minimises ||X - XB||² + λ||B||² subject to diag(B) = 0. With
G = XᵀX + λI and P = G⁻¹ the solution is B_ij = -P_ij / P_jj (i ≠ j),
B_jj = 0, and a user's scores are x_u B.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.linalg
import tensorflow as tf

from baselines.popularity import (PathLike, as_train_matrix, check_inputs, load_npz,
                                  require_fitted, save_npz, to_device)
from data.errors import ConfigError

# From this many items the solve takes seconds (O(n_items³)): fit says so, and how long it took.
PROGRESS_ITEMS = 4000


def _check_lam(lam) -> float:
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise ConfigError(f"EASE: lam must be a number, got {lam!r}") from None
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"EASE: lam must be a finite number > 0 (500 is a good start), got {lam}")
    return lam


class EASE:
    """The EASE item-item model.

    The fit inverts a dense [n_items, n_items] float64 matrix: about
    16·n_items² bytes of memory and O(n_items³) time, fine up to ~20k items.

    Attributes:
      lam: the L2 weight λ (> 0).
      B: float32 [n_items, n_items] item-item weights with a zero diagonal;
        None before ``fit``/``load``.
    """

    kind = "ease"

    def __init__(self, lam: float = 500.0):
        self.lam = _check_lam(lam)
        self.B = None
        self._B_tf = None

    @property
    def n_items(self):
        return None if self.B is None else int(self.B.shape[0])

    def fit(self, train, verbose: bool = True) -> "EASE":
        """Solves for B in closed form (float64 on the CPU).

        Args:
          train: scipy sparse [n_users, n_items], usually binary clicks.
          verbose: from :data:`PROGRESS_ITEMS` items on, print a line before
            the solve and one with its time after.

        Returns:
          self.

        Raises:
          ConfigError: an empty matrix, or too many items for the memory.
        """
        matrix = as_train_matrix(train, "EASE").astype(np.float64)
        n_items = matrix.shape[1]
        show = verbose and n_items >= PROGRESS_ITEMS
        if show:
            print(f"ease: solving a {n_items:,} x {n_items:,} system "
                  f"(about {16 * n_items ** 2 / 2 ** 30:.1f} GiB)...", flush=True)
        t0 = time.perf_counter()
        try:
            gram = (matrix.T @ matrix).toarray()
            gram[np.diag_indices(n_items)] += self.lam
            # G is symmetric positive definite (λ > 0), so the inverse exists.
            inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        except MemoryError:
            raise ConfigError(
                f"EASE: {n_items} items need about {16 * n_items ** 2 / 2 ** 30:.1f} GiB for the "
                "item-item inverse; keep fewer items (raise the minimum item count)") from None
        del gram
        inverse /= -np.diag(inverse).copy()  # column j divided by -P_jj
        np.fill_diagonal(inverse, 0.0)
        self._set(inverse.astype(np.float32))
        if show:
            print(f"ease: solved in {time.perf_counter() - t0:.1f} s", flush=True)
        return self

    def _set(self, weights: np.ndarray) -> None:
        self.B = weights
        self._B_tf = to_device(weights)

    def score(self, inputs: tf.SparseTensor) -> tf.Tensor:
        """Scores a batch of users from their fold-in rows.

        Args:
          inputs: SparseTensor [b, n_items] of the users' fold-in items.

        Returns:
          float32 [b, n_items] = inputs @ B (a sparse-dense matmul).
        """
        check_inputs(inputs, self.n_items, "EASE")
        return tf.sparse.sparse_dense_matmul(tf.cast(inputs, tf.float32), self._B_tf)

    def save(self, path: PathLike) -> None:
        """Writes λ and B to ``path`` (npz)."""
        require_fitted(self.n_items, "EASE")
        save_npz(path, self.kind, lam=np.float64(self.lam), B=self.B)

    @classmethod
    def load(cls, path: PathLike) -> "EASE":
        """Reads a model written by :meth:`save`."""
        arrays = load_npz(path, cls.kind, ["lam", "B"])
        model = cls(lam=float(arrays["lam"]))
        model._set(arrays["B"].astype(np.float32))
        return model
