"""EASE: the closed-form item-item linear autoencoder (Steck, WWW 2019).

B minimises ||X - XB||² + λ||B||² subject to diag(B) = 0. With
G = XᵀX + λI and P = G⁻¹ the solution is B_ij = -P_ij / P_jj (i ≠ j),
B_jj = 0, and a user's scores are x_u B.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import scipy.linalg
import tensorflow as tf

from baselines.base import ClosedForm
from data.errors import ConfigError

# From this many items the solve takes seconds (O(n_items³)): fit says so, and how long it took.
PROGRESS_ITEMS = 4000


@dataclasses.dataclass
class EASEConfig:
    """EASE's hyper-parameter.

    Attributes:
      n_items: recorded once solved.
      ease_lambda: the L2 weight λ (> 0; ``--ease_lambda``). 500 suits
        ML-100K-sized data; larger, sparser data want more (Steck used
        hundreds to thousands).
    """

    n_items: int = 0
    ease_lambda: float = 500.0

    def __post_init__(self) -> None:
        try:
            self.ease_lambda = float(self.ease_lambda)
        except (TypeError, ValueError):
            raise ConfigError(f"--ease_lambda must be a number, got {self.ease_lambda!r}") from None
        if not (math.isfinite(self.ease_lambda) and self.ease_lambda > 0):
            raise ConfigError(f"--ease_lambda must be a finite number > 0 (500 is a good start), "
                              f"got {self.ease_lambda}")


# The tuner's search space (training.tune; main.py --tune): run setting -> distribution.
EASE_SPACE = {"model_params.ease_lambda": ("log", 10.0, 5000.0)}


class EASE(ClosedForm):
    """The EASE item-item model.

    The solve inverts a dense [n_items, n_items] float64 matrix: about
    16·n_items² bytes of memory and O(n_items³) time, fine up to ~20k items.

    Weights: ``B`` float32 [n_items, n_items] item-item weights with a zero diagonal.
    """

    config_class = EASEConfig
    kind = "ease"
    arrays = ("B",)

    @property
    def lam(self) -> float:
        return self.config.ease_lambda

    @property
    def B(self):
        return None if self.weights is None else self.weights["B"]

    def _solve(self, matrix, verbose: bool) -> dict[str, np.ndarray]:
        """Solves for B in closed form (float64 on the CPU).

        From :data:`PROGRESS_ITEMS` items on, ``verbose`` prints a line before
        the solve and one with its time after.

        Raises:
          ConfigError: too many items for the memory.
        """
        matrix = matrix.astype(np.float64)
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
        if show:
            print(f"ease: solved in {time.perf_counter() - t0:.1f} s", flush=True)
        return {"B": inverse.astype(np.float32)}

    def _score(self, inputs: tf.SparseTensor, weights) -> tf.Tensor:
        """inputs @ B: float32 [b, n_items] (a sparse-dense matmul)."""
        return tf.sparse.sparse_dense_matmul(tf.cast(inputs, tf.float32), weights["B"])
