"""The only multi-worker code of the toolkit: one seam, three implementations.

The trainer asks a :class:`Distribution` for the training data's shards (which
of them this process feeds), to build variables in its scope, to run a step on
its replicas, to average gradients, to broadcast the initial variables, to sum
metric statistics, and whether this process is the chief (the one that writes
checkpoints, summaries, exports and logs). Models never see any of this.

Every backend has the same semantics: ``batch_size_train`` per replica; each
replica reads its own disjoint, equal shard of the training rows; gradients
are averaged over replicas; evaluation splits the held-out users between the
processes and sums their statistics; the chief alone writes; resume restores
the chief's checkpoint on every worker.

:class:`StrategyDistribution` runs ``tf.distribute``: ``MirroredStrategy``
(several GPUs, or logical CPU devices, in one process) and
``MultiWorkerMirroredStrategy`` (one process per host, ``TF_CONFIG``). The
model's variables are mirrored (built under :meth:`Distribution.scope`), each
step runs on every replica through ``strategy.run``, and the Keras optimizer
sums the replicas' gradients itself, so :meth:`allreduce_gradients` only
divides them by the replica count.

:class:`HorovodDistribution` is the one place that imports Horovod. With Keras 3
it cannot use ``hvd.DistributedGradientTape`` or ``hvd.broadcast_variables``
(they call ``Variable.ref()``, which Keras 3 variables lack: horovod issue
4290), so it allreduces the gradient tensors itself and broadcasts the
variables' values, then assigns them.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from data.errors import ConfigError, TrainingError

INSTALL_HINT = "bash scripts/install_horovod.sh"


KINDS = ("auto", "none", "horovod", "mirrored", "multiworker")


class Distribution:
    """Single process: every collective is the identity.

    Attributes:
      rank, size: this process's index and the number of processes (the chief
        is rank 0; evaluation splits its users between the processes).
      local_rank, local_size: the same among the processes of this host.
    """

    name = "none"
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    @property
    def shards(self) -> int:
        """Replicas training in sync: the training rows are split into this many disjoint shards."""
        return self.size

    @property
    def local_shards(self) -> tuple[int, ...]:
        """The shards this process feeds, one per local replica, in replica order."""
        return (self.rank,)

    # Whether a training step may run inside a loop on the device (several steps per compiled call).
    loops_on_device = True

    def scope(self) -> contextlib.AbstractContextManager:
        """Where models, optimizers and the trainer's counters are built (their variables then span the replicas)."""
        return contextlib.nullcontext()

    def run(self, step: Callable[[Any], dict], batch: Any) -> dict:
        """Runs ``step`` on each local replica's batch, inside a traced function.

        Args:
          step: batch -> dict of scalar logs (updates through the Updater).
          batch: this process's batch, or a tuple of one batch per local shard
            (:attr:`local_shards`) when it has several.

        Returns:
          The logs, averaged over this process's replicas.
        """
        return step(batch)

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

    def guard(self, folder: str) -> contextlib.AbstractContextManager:
        """Where a worker's failure, seen by the others in a collective, becomes one line (none here).

        Args:
          folder: the run folder a rerun resumes from (for the message).
        """
        return contextlib.nullcontext()

    def _maybe_dump(self, variables: list, values: list[tf.Tensor]) -> None:
        """Saves this rank's values as ``rank<r>-broadcast<k>.npz`` under ``TFCF_TEST_DUMP_WEIGHTS`` (tests)."""
        folder = os.environ.get("TFCF_TEST_DUMP_WEIGHTS")
        if not folder:
            return
        os.makedirs(folder, exist_ok=True)
        done = getattr(self, "_broadcasts", 0)
        arrays = {f"v{i:04d}": np.asarray(v) for i, v in enumerate(values)}
        arrays["names"] = np.array([getattr(v, "path", None) or v.name for v in variables])
        np.savez(os.path.join(folder, f"rank{self.rank}-broadcast{done}.npz"), **arrays)
        self._broadcasts = done + 1


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
        self._maybe_dump(variables, values)
        groups: dict[tf.DType, list[int]] = {}
        for i, value in enumerate(values):
            groups.setdefault(value.dtype, []).append(i)
        for dtype, members in sorted(groups.items(), key=lambda kv: kv[0].name):
            flat = tf.concat([tf.reshape(_to_wire(values[i]), [-1]) for i in members], axis=0)
            flat = self._hvd.broadcast(flat, root_rank=0, name=f"tfcf_broadcast_{dtype.name}")
            parts = tf.split(_from_wire(flat, dtype), [int(np.prod(values[i].shape)) for i in members])
            for i, part in zip(members, parts):
                variables[i].assign(tf.reshape(part, values[i].shape))

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


class StrategyDistribution(Distribution):
    """``tf.distribute``: ``MirroredStrategy`` in one process or ``MultiWorkerMirroredStrategy`` across processes.

    Create it before TensorFlow runs any op (``training.runner.run`` does):
    the logical CPU devices of a CPU-only mirrored run, and the multi-worker
    collectives, cannot be set up afterwards.

    Args:
      kind: ``mirrored`` or ``multiworker``.
      devices: mirrored only: how many GPUs (the first ``devices`` visible
        ones), or, on a host without GPUs, how many logical CPU devices to
        split the CPU into (a test bed: they share the same cores).

    Raises:
      ConfigError: multiworker without ``TF_CONFIG``, or more GPUs asked for
        than the host has.
    """

    # strategy.run inside a tf.while_loop over an iterator fails here (TF 2.18-2.21: a placeholder of the
    # loop's condition is never fed): one step per compiled call.
    loops_on_device = False

    def __init__(self, kind: str, devices: int = 1) -> None:
        self.name = kind
        if kind == "multiworker":
            if not os.environ.get("TF_CONFIG"):
                raise ConfigError("--distribution multiworker needs TF_CONFIG (the cluster's worker addresses and "
                                  "this worker's index) set on every worker; see the README's multi-worker section")
            try:
                task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
            except (ValueError, AttributeError) as err:
                raise ConfigError(f"TF_CONFIG is not valid JSON ({err})") from None
            if task.get("type", "worker") not in ("worker", "chief"):
                raise ConfigError(f"TF_CONFIG's task type is {task.get('type')!r}: every process is a 'worker'")
            self._strategy = tf.distribute.MultiWorkerMirroredStrategy()
            resolver = self._strategy.cluster_resolver
            self.rank = int(resolver.task_id or 0)
            self.size = max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))
        else:
            self._strategy = tf.distribute.MirroredStrategy(self._mirrored_devices(devices))
        self._local = len(self._strategy.extended.worker_devices)
        self._broadcasts = 0
        # Traced: the strategy's collectives run eagerly only slowly; one trace per wire dtype (see _allsum).
        self._allsum_fn = tf.function(self._allsum_flat, reduce_retracing=True)

    @staticmethod
    def _mirrored_devices(devices: int) -> list[str]:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if devices > len(gpus):
                raise ConfigError(f"--number_of_gpus {devices} but this host has {len(gpus)} GPU(s)")
            return [f"/gpu:{i}" for i in range(devices)]
        if devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
            except RuntimeError:
                if len(tf.config.list_logical_devices("CPU")) != devices:
                    raise ConfigError("StrategyDistribution was created after TensorFlow started: create it first "
                                      "(training.distribute.get() before building models)") from None
        return [f"/cpu:{i}" for i in range(max(devices, 1))]

    @property
    def shards(self) -> int:
        return self._strategy.num_replicas_in_sync

    @property
    def local_shards(self) -> tuple[int, ...]:
        return tuple(range(self.rank * self._local, (self.rank + 1) * self._local))

    def scope(self) -> contextlib.AbstractContextManager:
        return self._strategy.scope()

    def run(self, step: Callable[[Any], dict], batch: Any) -> dict:
        strategy, first = self._strategy, self.rank * self._local
        values = batch if self._local == 1 else strategy.experimental_distribute_values_from_function(
            lambda ctx: batch[ctx.replica_id_in_sync_group - first])
        logs = strategy.run(step, args=(values,))
        # Each replica's logs are of its own (equal-sized) batch: their mean is this process's.
        return {k: tf.add_n(list(strategy.experimental_local_results(v))) / self._local for k, v in logs.items()}

    def allreduce_gradients(self, grads: Sequence[Optional[tf.Tensor]]) -> list[Optional[tf.Tensor]]:
        """Divides each gradient by the replica count: the Keras optimizer then sums them over the replicas.

        Raises:
          ConfigError: called outside ``strategy.run`` (the sum would not happen).
        """
        if tf.distribute.in_cross_replica_context() or not tf.distribute.has_strategy():
            raise ConfigError("a tf.distribute update ran outside Distribution.run: the gradients would not be "
                              "averaged")
        n = float(self.shards)
        return [None if g is None else
                tf.IndexedSlices(g.values / n, g.indices, g.dense_shape) if isinstance(g, tf.IndexedSlices)
                else g / n for g in grads]

    def _allsum(self, values: list[tf.Tensor]) -> list[tf.Tensor]:
        """Each tensor summed over the processes (counted once per process, whatever its replicas).

        One collective per wire dtype (float64 for floating values, int64
        for the others: both sum the values they carry exactly), on the
        tensors flattened and concatenated, so that a single traced function
        serves every call.
        """
        values = [tf.convert_to_tensor(v) for v in values]
        out: list[Optional[tf.Tensor]] = [None] * len(values)
        for wire in (tf.float64, tf.int64):
            members = [i for i, v in enumerate(values) if (v.dtype.is_floating or v.dtype.is_complex) == (wire == tf.float64)]
            if not members:
                continue
            flat = tf.concat([tf.reshape(tf.cast(values[i], wire), [-1]) for i in members], axis=0)
            parts = tf.split(self._allsum_fn(flat), [int(np.prod(values[i].shape)) for i in members])
            for i, part in zip(members, parts):
                out[i] = tf.cast(tf.reshape(part, tf.shape(values[i])), values[i].dtype)
        return out

    def _allsum_flat(self, flat: tf.Tensor) -> tf.Tensor:
        def add(part):
            ctx = tf.distribute.get_replica_context()
            keep = tf.equal(ctx.replica_id_in_sync_group % self._local, 0)
            return ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.where(keep, part, tf.zeros_like(part)))
        return self._strategy.experimental_local_results(self._strategy.run(add, args=(flat,)))[0]

    def broadcast_variables(self, variables: Sequence[tf.Variable]) -> None:
        """Assigns the chief's values to every worker's variables (a sum to which the others add zeros)."""
        variables = list(variables)
        values = [tf.convert_to_tensor(v) for v in variables]
        self._maybe_dump(variables, values)
        if self.size == 1:
            return  # one process: mirrored variables already agree on every replica
        sent = values if self.is_chief else [tf.zeros_like(v) for v in values]
        for variable, value in zip(variables, self._allsum(sent)):
            variable.assign(value)

    def sum(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Sums a dict of tensors over the processes (same keys, shapes and dtypes on each)."""
        names = sorted(values)
        if self.size == 1 or not names:
            return dict(values)
        return dict(zip(names, self._allsum([values[k] for k in names])))

    @contextlib.contextmanager
    def guard(self, folder: str):
        """Turns a peer's failure (a collective aborted: the peer died or cannot be reached) into a TrainingError.

        Raises:
          TrainingError: one line naming the cause and how to resume.
        """
        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError,
                tf.errors.DeadlineExceededError) as err:
            if self.size == 1:
                raise
            text = str(err.message)
            cause = next((line.split("aborted by: ", 1)[1] for line in text.splitlines() if "aborted by: " in line),
                         None) or next((line.strip() for line in text.splitlines() if "Connection" in line),
                                       type(err).__name__)
            raise TrainingError(f"the {self.size}-worker {self.name} job lost a worker ({cause.strip()}): rerun "
                                f"the same command on every worker to resume from the latest checkpoint in "
                                f"{folder}") from None

    def barrier(self) -> None:
        if self.size > 1:
            self._allsum([tf.zeros([1], tf.float32)])[0].numpy()


_horovod: Optional[HorovodDistribution] = None
_strategies: dict[str, StrategyDistribution] = {}


def under_horovodrun() -> bool:
    """Whether this process was launched by ``horovodrun`` (it sets ``HOROVOD_RANK``)."""
    return "HOROVOD_RANK" in os.environ


def resolve_kind(kind: str) -> str:
    """What ``auto`` means here: ``horovod`` under ``horovodrun``, ``multiworker`` with ``TF_CONFIG``, else ``none``.

    Raises:
      ConfigError: an unknown kind.
    """
    if kind == "single":
        kind = "none"
    if kind not in KINDS:
        raise ConfigError(f"unknown distribution '{kind}'; use {', '.join(KINDS)}")
    if kind != "auto":
        return kind
    if under_horovodrun():
        return "horovod"
    return "multiworker" if os.environ.get("TF_CONFIG") else "none"


def get(kind: str = "auto", devices: int = 1) -> Distribution:
    """The distribution of this process.

    Args:
      kind: one of :data:`KINDS` (``single`` is ``none``); see :func:`resolve_kind` for ``auto``.
      devices: ``mirrored``: GPUs (or logical CPU devices on a host without GPUs) to mirror over.

    Returns:
      A :class:`Distribution`; Horovod's and the strategies are created once per process.

    Raises:
      ConfigError: an unknown kind, Horovod wanted but not installed, multiworker without TF_CONFIG.
    """
    global _horovod
    kind = resolve_kind(kind)
    if kind == "horovod":
        if _horovod is None:
            _horovod = HorovodDistribution()
        return _horovod
    if kind in ("mirrored", "multiworker"):
        if kind not in _strategies:
            _strategies[kind] = StrategyDistribution(kind, devices)
        return _strategies[kind]
    return Distribution()
