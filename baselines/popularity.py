"""The popularity baseline: every user gets the items most training users have."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from baselines.base import ClosedForm


@dataclasses.dataclass
class PopularityConfig:
    """No hyper-parameters; ``n_items`` is recorded once solved."""

    n_items: int = 0


class Popularity(ClosedForm):
    """Scores every item by how many training users have it, for every user.

    Weights: ``counts`` float32 [n_items], the number of users with a non-zero
    entry for each item.
    """

    config_class = PopularityConfig
    kind = "popularity"
    arrays = ("counts",)

    @property
    def counts(self):
        return None if self.weights is None else self.weights["counts"]

    def _solve(self, matrix: sp.csr_matrix, verbose: bool) -> dict[str, np.ndarray]:
        columns = matrix.indices[matrix.data != 0]
        return {"counts": np.bincount(columns, minlength=matrix.shape[1]).astype(np.float32)}

    def _score(self, inputs: tf.SparseTensor, weights) -> tf.Tensor:
        """The counts repeated for each row of the batch (only the batch size of ``inputs`` is used)."""
        batch = tf.cast(inputs.dense_shape[0], tf.int32)
        return tf.broadcast_to(weights["counts"][tf.newaxis, :], tf.stack([batch, self.n_items]))
