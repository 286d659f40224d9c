"""The only multi-worker code of the toolkit: one seam, two implementations.

The trainer asks a :class:`Distribution` for its rank and world size (to shard
the data), to average gradients, to broadcast the initial variables, to sum
metric statistics, and whether this process is the chief (the one that writes
checkpoints, summaries, exports and logs). Models never see any of this.
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf


class Distribution:
    """Single process: every collective is the identity."""

    name = "single"
    rank = 0
    size = 1
    local_rank = 0

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def allreduce_gradients(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Averages gradients over workers (identity here)."""
        return list(grads)

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Makes every worker start from the chief's values (no-op here)."""

    def sum(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Sums a dict of tensors over workers (identity here)."""
        return values

    def barrier(self) -> None:
        """Waits for every worker (no-op here)."""


def get(kind: str = "auto") -> Distribution:
    """The distribution of this process.

    Args:
      kind: ``single``, ``horovod``, or ``auto`` (Horovod when this process was
        launched by ``horovodrun`` — it sets ``HOROVOD_RANK`` — else single).
    """
    import os

    if kind == "horovod" or (kind == "auto" and "HOROVOD_RANK" in os.environ):
        from data.errors import ConfigError

        raise ConfigError("multi-worker training needs Horovod, which this build does not support yet")
    return Distribution()
