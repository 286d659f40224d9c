"""The only multi-worker code of the toolkit: one seam, two implementations.

The trainer asks a :class:`Distribution` for its rank and world size (to shard
the data), to average gradients, to broadcast the initial variables, to sum
metric statistics, and whether this process is the chief (the one that writes
checkpoints, summaries, exports and logs). Models never see any of this.

:class:`HorovodDistribution` is the one place that imports Horovod. With Keras 3
it cannot use ``hvd.DistributedGradientTape`` or ``hvd.broadcast_variables``
(they call ``Variable.ref()``, which Keras 3 variables lack: horovod issue
4290), so it allreduces the gradient tensors itself and broadcasts the
variables' values, then assigns them.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from data.errors import ConfigError

INSTALL_HINT = "bash scripts/install_horovod.sh"


class Distribution:
    """Single process: every collective is the identity."""

    name = "single"
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

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


# Horovod's collectives take these dtypes; others travel bit-cast to a signed
# integer of the same width (uint32/uint64 counters, bfloat16) or as uint8 (bool).
_WIRE_DTYPES = {tf.uint8, tf.int8, tf.uint16, tf.int16, tf.int32, tf.int64, tf.float16, tf.float32, tf.float64}
_SIGNED = {tf.uint32: tf.int32, tf.uint64: tf.int64, tf.bfloat16: tf.int16}


def _to_wire(t: tf.Tensor) -> tf.Tensor:
    if t.dtype in _WIRE_DTYPES:
        return t
    if t.dtype == tf.bool:
        return tf.cast(t, tf.uint8)
    return tf.bitcast(t, _SIGNED[t.dtype])


def _from_wire(t: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    if t.dtype == dtype:
        return t
    return tf.cast(t, tf.bool) if dtype == tf.bool else tf.bitcast(t, dtype)


def _in_xla_function() -> bool:
    """Whether the function being traced is compiled with XLA (``jit_compile=True``)."""
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # a private module: without it TensorFlow's own (longer) error remains
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


class HorovodDistribution(Distribution):
    """One process per GPU (or per CPU worker) under ``horovodrun``, Gloo or NCCL.

    Creating it calls ``hvd.init()``, pins this process to GPU ``local_rank``
    when the host has GPUs, and otherwise splits the host's cores between its
    CPU workers. Create it before TensorFlow runs any op (``training.runner.run``
    does): devices and thread pools cannot change afterwards.

    When the environment variable ``TFCF_TEST_DUMP_WEIGHTS`` names a folder,
    every :meth:`broadcast_variables` call first saves this rank's values
    there as ``rank<r>-broadcast<k>.npz`` (keys ``v0000``..., and ``names``), so
    that tests can check that the workers held identical weights.

    Raises:
      ConfigError: Horovod is not installed, or this host has fewer GPUs than
        workers.
    """

    name = "horovod"

    def __init__(self) -> None:
        try:
            import horovod.tensorflow as hvd
        except ImportError as err:
            raise ConfigError(f"multi-worker training needs Horovod, which is not installed ({err}); "
                              f"run `{INSTALL_HINT}`") from None
        hvd.init()
        self._hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self._pin_devices()
        self._dump_dir = os.environ.get("TFCF_TEST_DUMP_WEIGHTS") or None
        self._broadcasts = 0

    def _pin_devices(self) -> None:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if self.local_size > len(gpus):
                raise ConfigError(f"{self.local_size} workers on this host but {len(gpus)} GPU(s): NCCL needs one "
                                  f"GPU per worker; use --number_of_gpus {len(gpus)} (or horovodrun -np {len(gpus)})")
            try:
                tf.config.set_visible_devices(gpus[self.local_rank], "GPU")
            except RuntimeError:
                raise ConfigError("HorovodDistribution was created after TensorFlow started: create it first "
                                  "(training.distribute.get() before building models)") from None
            return
        # CPU workers share the host: each would otherwise start thread pools as
        # wide as the whole machine and they would fight over the cores.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // self.local_size)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass  # TensorFlow already started: only slower, still correct

    def allreduce_gradients(self, grads: Sequence[Optional[tf.Tensor]]) -> list[Optional[tf.Tensor]]:
        """Averages gradients over workers in one grouped allreduce.

        Args:
          grads: one gradient per trainable variable (dense tensors, or
            ``tf.IndexedSlices`` which Horovod allgathers), None where a
            variable has no gradient (the same on every worker).

        Returns:
          The averaged gradients, None kept in place.

        Raises:
          ConfigError: called inside an XLA-compiled function (``--xla``).
        """
        if _in_xla_function():
            err = ConfigError("--xla compiles the whole training step and Horovod's allreduce has no XLA kernel: "
                              "drop --xla when training on several workers")
            err.ag_pass_through = True  # autograph would prepend its multi-line trace to the message
            raise err
        grads = list(grads)
        # Horovod groups dense tensors or IndexedSlices, not a mix of both.
        sparse = [i for i, g in enumerate(grads) if isinstance(g, tf.IndexedSlices)]
        dense = [i for i, g in enumerate(grads) if g is not None and not isinstance(g, tf.IndexedSlices)]
        for group in (dense, sparse):
            if group:
                reduced = self._hvd.grouped_allreduce([grads[i] for i in group], op=self._hvd.Average)
                for i, g in zip(group, reduced):
                    grads[i] = g
        return grads

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Assigns the chief's values to every worker's variables.

        One broadcast per dtype of the variables' values, flattened and
        concatenated (a model has hundreds of small variables).

        Args:
          variables: the same variables, in the same order, on every worker
            (Keras 3 or ``tf.Variable``).
        """
        variables = list(variables)
        values = [tf.convert_to_tensor(v) for v in variables]
        if self._dump_dir:
            self._dump(variables, values)
        groups: dict[tf.DType, list[int]] = {}
        for i, value in enumerate(values):
            groups.setdefault(value.dtype, []).append(i)
        for dtype, members in sorted(groups.items(), key=lambda kv: kv[0].name):
            flat = tf.concat([tf.reshape(_to_wire(values[i]), [-1]) for i in members], axis=0)
            flat = self._hvd.broadcast(flat, root_rank=0, name=f"tfcf_broadcast_{dtype.name}")
            parts = tf.split(_from_wire(flat, dtype), [int(np.prod(values[i].shape)) for i in members])
            for i, part in zip(members, parts):
                variables[i].assign(tf.reshape(part, values[i].shape))

    def _dump(self, variables: list, values: list[tf.Tensor]) -> None:
        folder = self._dump_dir
        os.makedirs(folder, exist_ok=True)
        arrays = {f"v{i:04d}": v.numpy() for i, v in enumerate(values)}
        arrays["names"] = np.array([getattr(v, "path", None) or v.name for v in variables])
        np.savez(os.path.join(folder, f"rank{self.rank}-broadcast{self._broadcasts}.npz"), **arrays)
        self._broadcasts += 1

    def sum(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Sums a dict of tensors over workers (one grouped allreduce, op Sum).

        Every worker must pass the same keys with the same shapes and dtypes
        (float64 metric sums and counts in the trainer).
        """
        names = sorted(values)
        if not names:
            return {}
        reduced = self._hvd.grouped_allreduce([tf.convert_to_tensor(values[k]) for k in names], op=self._hvd.Sum,
                                              name="tfcf_sum")
        return dict(zip(names, reduced))

    def barrier(self) -> None:
        """Returns once every worker got here (a one-element allreduce)."""
        self._hvd.allreduce(tf.zeros([1], tf.float32), op=self._hvd.Sum, name="tfcf_barrier").numpy()


_horovod: Optional[HorovodDistribution] = None


def under_horovodrun() -> bool:
    """Whether this process was launched by ``horovodrun`` (it sets ``HOROVOD_RANK``)."""
    return "HOROVOD_RANK" in os.environ


def get(kind: str = "auto") -> Distribution:
    """The distribution of this process.

    Args:
      kind: ``single``, ``horovod``, or ``auto`` (Horovod when this process was
        launched by ``horovodrun``, else single).

    Returns:
      A :class:`Distribution`; the Horovod one is created once per process.

    Raises:
      ConfigError: an unknown kind, or Horovod wanted but not installed.
    """
    global _horovod
    if kind not in ("auto", "single", "horovod"):
        raise ConfigError(f"unknown distribution '{kind}'; use auto, single or horovod")
    if kind == "horovod" or (kind == "auto" and under_horovodrun()):
        if _horovod is None:
            _horovod = HorovodDistribution()
        return _horovod
    return Distribution()
