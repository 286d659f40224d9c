"""The one training loop of the toolkit, shared by every model.

Epochs and steps, validation every ``validation_step`` epochs, the best
checkpoint by the model's main metric, resume from the latest checkpoint,
TensorBoard summaries, a progress line with ETA, a NaN/Inf guard and early
stopping. Precision and distribution come in through :mod:`training.precision`
and :mod:`training.distribute`; the model brings its loss and train step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf

from data import files
from data.errors import TrainingError
from training import distribute, metrics, precision
from training.config import TrainConfig  # noqa: F401 (re-exported: callers import it from here)
from training.model import Model, Updater


@dataclasses.dataclass
class History:
    """What happened during :meth:`Trainer.fit`.

    ``epochs`` holds every epoch of the run, those of earlier invocations
    included: the records travel inside the checkpoints, so they always match
    the restored weights (an epoch is never listed twice or lost after a kill).
    """

    epochs: list[dict] = dataclasses.field(default_factory=list)
    steps: list[dict] = dataclasses.field(default_factory=list)
    best: Optional[dict] = None
    resumed_from_epoch: int = 0
    stopped_early: bool = False


class Diverged(TrainingError):
    """The loss became NaN or Inf. Carries where, and the history up to the last good epoch.

    Attributes:
      epoch, step: 1-based position of the first non-finite loss.
      loss: the loss value.
      history: the :class:`History` of the completed epochs.
      last_checkpoint: path of the last good checkpoint, or None.
    """

    def __init__(self, message: str, epoch: int, step: int, loss: float, history: "History",
                 last_checkpoint: Optional[str]) -> None:
        super().__init__(message)
        self.epoch, self.step, self.loss = epoch, step, loss
        self.history = history
        self.last_checkpoint = last_checkpoint


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _fmt_metrics(values: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in values.items())


def evaluate(step_fn: Callable[[dict], dict], dataset: tf.data.Dataset,
             distribution: Optional[distribute.Distribution] = None, verbose: bool = True,
             progress_seconds: float = 10.0, label: str = "evaluation") -> dict[str, float]:
    """Runs an evaluation step over a dataset; sums over batches and workers.

    An evaluation that runs longer than ``progress_seconds`` prints a progress
    line with an ETA that often (chief only, with ``verbose``), and one with
    its time at the end; shorter ones print nothing.

    Args:
      step_fn: batch -> {metric: (sum, count)} (a model's ``evaluate_step``).
      dataset: this worker's part of the evaluation data.
      distribution: sums over workers (single process if None).
      verbose: print progress on long evaluations.
      progress_seconds: at most one progress line per this many seconds.
      label: what the progress lines call it.

    Returns:
      Metric name -> value (sum / count), plus ``<name>/count``: the users (or
      ratings) that counted; users with nothing held out are excluded.
    """
    distribution = distribution or distribute.Distribution()
    show = verbose and distribution.is_chief
    batches = -1  # unknown (tf.data says -1 or -2 when it cannot tell)
    if show and hasattr(dataset, "cardinality"):
        batches = int(dataset.cardinality())
    elif show and hasattr(dataset, "__len__"):
        batches = len(dataset)
    t0 = last_print = time.perf_counter()
    printed = False
    sums: dict[str, list] = {}
    for done, batch in enumerate(dataset, 1):
        for name, (total, count) in step_fn(batch).items():
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += tf.cast(total, tf.float64)
            acc[1] += tf.cast(count, tf.float64)
        now = time.perf_counter()
        if show and now - last_print >= progress_seconds and done != batches:
            last_print, printed = now, True
            if batches > 0:
                left = (now - t0) / done * (batches - done)
                print(f"{label}: batch {done}/{batches} ETA {_fmt_duration(left)}", flush=True)
            else:
                print(f"{label}: batch {done} ({_fmt_duration(now - t0)})", flush=True)
    if printed:
        print(f"{label}: done in {_fmt_duration(time.perf_counter() - t0)}", flush=True)
    names = sorted(sums)
    flat = {f"{k}/sum": tf.convert_to_tensor(sums[k][0], tf.float64) for k in names}
    flat.update({f"{k}/count": tf.convert_to_tensor(sums[k][1], tf.float64) for k in names})
    flat = distribution.sum(flat)
    stats = {k: (float(flat[f"{k}/sum"]), float(flat[f"{k}/count"])) for k in names}
    values = metrics.finalize(stats)
    for k, (_, count) in stats.items():
        values.setdefault(f"{k}/count", count)
    return values


class Trainer:
    """Trains and evaluates one model.

    Args:
      model: a :class:`training.model.Model`, built under the run's dtype policy.
      optimizer: a Keras optimizer (wrapped here for loss scaling when needed).
      config: a :class:`TrainConfig`.
      distribution: from :func:`training.distribute.get`; single process if None.
      policy: the dtype policy name the model was built under.
    """

    def __init__(self, model: Model, optimizer: keras.optimizers.Optimizer | Mapping[str, keras.optimizers.Optimizer],
                 config: TrainConfig, distribution: Optional[distribute.Distribution] = None,
                 policy: str = precision.FLOAT32) -> None:
        self.model = model
        self.config = config
        self.distribution = distribution or distribute.Distribution()
        # Under a tf.distribute strategy, the weights, optimizer slots and update counter (the state the replicas
        # update) span its replicas; the loop's own bookkeeping below is this process's.
        with self.distribution.scope():
            model.ensure_built()
            self.phases = tuple(model.phases())
            if isinstance(optimizer, Mapping):
                missing = [p.name for p in self.phases if p.name not in optimizer]
                if missing:
                    raise ValueError(f"no optimizer for the phase(s) {', '.join(missing)} of {type(model).__name__}")
                optimizers = [optimizer[p.name] for p in self.phases]
            elif len(self.phases) == 1:
                optimizers = [optimizer]
            else:
                raise ValueError(f"{type(model).__name__} trains in phases ({', '.join(p.name for p in self.phases)}): "
                                 f"pass one optimizer per phase, keyed by its name")
            optimizers = [precision.wrap_optimizer(o, policy) for o in optimizers]
            first = Updater(model, optimizers[0], self.distribution, self.phases[0])
            self.updaters = [first] + [Updater(model, o, self.distribution, p, updates=first.updates)
                                       for p, o in zip(self.phases[1:], optimizers[1:])]
            for updater in self.updaters:
                updater.optimizer.build(updater.variables)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.best_value = tf.Variable(np.nan, dtype=tf.float64, trainable=False, name="best_value")
        self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
        # The epoch records as JSON, saved with every checkpoint (see History).
        self.records = tf.Variable("[]", dtype=tf.string, trainable=False, name="records")
        self.export_dir = Path(config.export_dir)
        # model.state() includes random-generator states (dropout and sampling
        # noise), so a resumed run continues exactly where it stopped. The first
        # phase's optimizer is "optimizer", as for a model of one phase.
        more = {f"optimizer_{u.phase.name}": u.optimizer for u in self.updaters[1:]}
        self._checkpoint = tf.train.Checkpoint(model=model.state(), optimizer=self.optimizer, epoch=self.epoch,
                                               updates=self.updater.updates, best_value=self.best_value,
                                               best_epoch=self.best_epoch, records=self.records, **more)
        self._best = tf.train.Checkpoint(model=model.state())
        self._manager: Optional[tf.train.CheckpointManager] = None
        self._writer = None
        # Per phase: the sums of its logs over the epoch so far, kept on the device (float64, as the host sums
        # were) and made at the first trace, when the log names are known; and the epoch's step counter and the
        # first step whose loss was not finite (0: none yet), so that the loop reads nothing back per step.
        self._sums: list[dict[str, tf.Variable]] = [{} for _ in self.updaters]
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self._bad_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="first_bad_step")
        self._bad_loss = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="first_bad_loss")
        # One compiled step per phase: the phase is a constant of its trace. Several steps a call (the dispatch of
        # a tiny step costs more than its compute) loop on the device over the dataset's iterator, each iteration
        # the same compiled step: bit for bit the results of one step a call.
        looped = not config.record_steps and self.distribution.loops_on_device
        self.steps_per_call = max(1, config.steps_per_call or 1) if looped else 1
        self._train_fns = [tf.function(functools.partial(self._accumulating_step, phase=i),
                                       jit_compile=config.xla or None, reduce_retracing=True)
                           for i in range(len(self.updaters))]
        self._multi_fns = [tf.function(functools.partial(self._many_steps, phase=i))
                           for i in range(len(self.updaters))]
        self._eval_fn = tf.function(model.evaluate_step, reduce_retracing=True)

    @property
    def updater(self) -> Updater:
        """The first phase's :class:`Updater` (the only one of a model with one phase)."""
        return self.updaters[0]

    @property
    def optimizer(self) -> keras.optimizers.Optimizer:
        """The first phase's optimizer (wrapped for loss scaling where the policy needs it)."""
        return self.updaters[0].optimizer

    @property
    def passes_per_epoch(self) -> int:
        """Passes over the training data in one epoch (every phase's)."""
        return sum(p.passes for p in self.phases)

    # --- checkpoints ---------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.export_dir / "checkpoints"

    @property
    def best_dir(self) -> Path:
        return self.export_dir / "best"

    def _open_checkpoints(self) -> int:
        """Resumes from the latest checkpoint unless ``fresh``; returns its epoch."""
        chief = self.distribution.is_chief
        if self.config.fresh and chief:
            for folder in (self.checkpoint_dir, self.best_dir):
                shutil.rmtree(folder, ignore_errors=True)
        for folder in (self.checkpoint_dir, self.best_dir) if chief else ():
            files.clean_leftovers(folder)  # temporaries of a save killed midway (the run folder is ours alone)
        self.distribution.barrier()
        self._manager = tf.train.CheckpointManager(self._checkpoint, str(self.checkpoint_dir),
                                                   max_to_keep=self.config.keep_checkpoints)
        latest = self._manager.latest_checkpoint
        if latest:
            try:
                self._checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.OpError) as err:
                raise TrainingError(f"cannot resume from {latest} (a different model or config?): "
                                    f"{str(err).splitlines()[0]}; rerun with --fresh to start over") from None
        # Workers take the chief's state: its weights, optimizer slots, RNG states
        # and counters (a worker whose disk lacks the checkpoint would else restart
        # at epoch 0 and run more steps than the others).
        optimizer_variables = [v for u in self.updaters for v in u.optimizer.variables]
        self.distribution.broadcast_variables(self.model.variables + optimizer_variables + [
            self.epoch, self.updater.updates, self.best_value, self.best_epoch])
        return int(self.epoch.numpy())

    def _save(self, history: "History") -> None:
        if self.distribution.is_chief:
            self.records.assign(json.dumps(history.epochs))
            self._manager.save(checkpoint_number=int(self.epoch.numpy()))

    def restore_latest(self) -> Optional[str]:
        """Loads the latest checkpoint's weights into the model (after a divergence); returns its path."""
        latest = self._manager.latest_checkpoint if self._manager else None
        if latest is not None:
            tf.train.Checkpoint(model=self.model.state()).restore(latest).expect_partial()
        return latest

    def restore_best(self) -> bool:
        """Loads the best validated weights into the model, if there are any."""
        # best/ is the chief's: wait until its last save is complete, restore it
        # there and hand the weights to the workers (their disk may lack it).
        self.distribution.barrier()
        found = tf.Variable(False)
        latest = tf.train.latest_checkpoint(str(self.best_dir)) if self.distribution.is_chief else None
        if latest is not None:
            self._best.restore(latest).expect_partial()
            found.assign(True)
        self.distribution.broadcast_variables(self.model.variables + [found])
        return bool(found.numpy())

    # --- steps ---------------------------------------------------------------------
    def _train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        return self.model.train_step(batch, updater)

    def _accumulating_step(self, batch: dict[str, Any], phase: int) -> dict[str, tf.Tensor]:
        """One step of a phase; adds its logs to the phase's sums, notes the first non-finite loss, on the device.

        The step itself runs on each replica (:meth:`Distribution.run`); the
        bookkeeping after it on this process's mean of their logs.
        """
        updater = self.updaters[phase]
        logs = self.distribution.run(lambda b: self._train_step(b, updater), batch)
        sums = self._sums[phase]
        if not sums:
            with tf.init_scope():  # made eagerly, outside the trace
                for name in logs:
                    sums[name] = tf.Variable(tf.zeros([], tf.float64), trainable=False, name=f"sum_{name}")
        for name, value in logs.items():
            sums[name].assign_add(tf.cast(value, tf.float64))
        step = self._step.assign_add(1)
        loss = tf.cast(logs["loss"], tf.float64)
        first = tf.logical_and(tf.equal(self._bad_step, 0), tf.logical_not(tf.math.is_finite(loss)))
        self._bad_step.assign(tf.where(first, step, self._bad_step))
        self._bad_loss.assign(tf.where(first, loss, self._bad_loss))
        return logs

    def _many_steps(self, iterator, limit: tf.Tensor, phase: int) -> tf.Tensor:
        """Up to ``limit`` steps of a phase in one call, reading batches from ``iterator``; returns how many ran."""
        done = tf.constant(0, tf.int64)
        while done < limit:
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                break
            self._train_fns[phase](batch.get_value())  # the compiled step (with XLA, when asked), inlined
            done += 1
        return done

    def _calls(self, phase: int, dataset: tf.data.Dataset) -> Iterator[tuple[int, Optional[dict]]]:
        """One pass of a phase over ``dataset`` as compiled calls: yields (steps it ran, logs or None) per call.

        With :attr:`steps_per_call` 1 a call is one step and yields its logs
        (device tensors, not read); else a call runs that many steps in a
        loop on the device, the Python loop sees only their count (one host
        read per call), and the logs live in the phase's sums.
        """
        limit = self.config.max_steps_per_epoch
        done = 0
        if self.steps_per_call == 1 or not isinstance(dataset, tf.data.Dataset):  # a Python iterable: one a call
            for batch in dataset:
                yield 1, self._train_fns[phase](batch)
                done += 1
                if limit and done >= limit:
                    return
            return
        iterator = iter(dataset)
        while True:
            want = self.steps_per_call if not limit else min(self.steps_per_call, limit - done)
            ran = int(self._multi_fns[phase](iterator, tf.constant(want, tf.int64)))
            if ran:
                yield ran, None
            done += ran
            if ran < want or (limit and done >= limit):
                return

    def _check_finite(self, epoch: int, history: History) -> None:
        """Raises through :meth:`_diverged` when a step of this epoch had a non-finite loss (one host read)."""
        bad = int(self._bad_step.numpy())
        if bad:
            self._diverged(epoch, bad - 1, float(self._bad_loss.numpy()), history)

    def evaluate(self, dataset: tf.data.Dataset) -> dict[str, float]:
        """Metrics of the model on a dataset (see :func:`evaluate`)."""
        return evaluate(self._eval_fn, dataset, self.distribution, self.config.verbose, self.config.progress_seconds)

    # --- the loop ------------------------------------------------------------------
    def fit(self, train_data: Callable[[int], tf.data.Dataset], steps_per_epoch: int, rows_per_epoch: int,
            validation_data: Optional[Callable[[], tf.data.Dataset]] = None,
            on_validation: Optional[Callable[[int, dict], None]] = None) -> History:
        """Trains until ``config.epochs`` (resuming from the latest checkpoint).

        Args:
          train_data: pass -> that pass's dataset of this worker (shuffled from
            the seed and the pass, so a resumed epoch sees the same order); an
            epoch makes :attr:`passes_per_epoch` passes (one, unless the
            model has phases), so the pass of a model of one phase is its epoch.
          steps_per_epoch: steps of one pass over the data on this worker (for progress/ETA).
          rows_per_epoch: users (or ratings) of one epoch on all workers (users/s).
          validation_data: () -> the validation dataset of this worker.
          on_validation: called with (epoch, validation metrics) after each
            validated epoch is checkpointed; what it raises stops training
            there (a tuner's pruning), the run resumable as after a kill.

        Returns:
          The :class:`History`; the best validated weights are saved in ``best/``.

        Raises:
          TrainingError: the loss became NaN or Inf.
        """
        cfg = self.config
        chief = self.distribution.is_chief
        history = History()
        start = self._open_checkpoints()
        history.resumed_from_epoch = start
        if chief:
            history.epochs = [r for r in json.loads(self.records.numpy().decode()) if r["epoch"] <= start]
        if start and chief and cfg.verbose:
            print(f"resuming from epoch {start} ({self._manager.latest_checkpoint}); --fresh starts over", flush=True)
        if chief:
            self._writer = tf.summary.create_file_writer(cfg.log_dir or str(self.export_dir / "logs"))
        stale = 0
        run_start = time.perf_counter()
        passes = self.passes_per_epoch
        epoch_steps = steps_per_epoch * passes
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            last_print = t0
            totals: dict[str, float] = {}
            counts: dict[str, int] = {}
            steps = 0
            self._step.assign(0)
            self._bad_step.assign(0)
            data_pass = epoch * passes
            for phase, (updater, sums) in enumerate(zip(self.updaters, self._sums)):
                # A model of several phases logs each phase's values under its name, and "loss" over all.
                prefix = f"{updater.phase.name}/" if len(self.phases) > 1 else ""
                for variable in sums.values():
                    variable.assign(0.0)
                phase_steps = 0
                for _ in range(updater.phase.passes):
                    for done, logs in self._calls(phase, train_data(data_pass)):
                        steps += done  # nothing read back here: the sums stay on the device
                        phase_steps += done
                        if logs is not None and cfg.record_steps:
                            self._check_finite(epoch, history)
                            named = {f"{prefix}{k}": float(v) for k, v in logs.items()}
                            named["loss"] = float(logs["loss"])
                            history.steps.append({"epoch": epoch + 1, "step": steps, **named})
                        now = time.perf_counter()
                        if chief and cfg.verbose and now - last_print >= cfg.progress_seconds and steps < epoch_steps:
                            self._check_finite(epoch, history)
                            last_print = now
                            rate = steps / (now - t0)
                            left = (epoch_steps - steps) / rate + (cfg.epochs - epoch - 1) * epoch_steps / rate
                            mean = float(sums["loss"].numpy()) / phase_steps  # the phase's mean loss so far
                            print(f"epoch {epoch + 1}/{cfg.epochs} {prefix.rstrip('/') + ' ' if prefix else ''}"
                                  f"step {steps}/{epoch_steps} loss {mean:.4f} "
                                  f"{rate * rows_per_epoch / max(steps_per_epoch, 1):,.0f} rows/s "
                                  f"ETA {_fmt_duration(left)}", flush=True)
                    data_pass += 1
                self._check_finite(epoch, history)
                for name, variable in sums.items():  # one read per phase and epoch
                    value = float(variable.numpy())
                    key = "loss" if name == "loss" and not prefix else f"{prefix}{name}"
                    totals[key] = totals.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + phase_steps
                    if prefix and name == "loss":
                        totals["loss"] = totals.get("loss", 0.0) + value
                        counts["loss"] = counts.get("loss", 0) + phase_steps
            self.model.end_epoch()
            train_seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "train_seconds": train_seconds,
                      "rows_per_second": rows_per_epoch * steps / max(steps_per_epoch, 1) / train_seconds,
                      "learning_rate": self._learning_rate()}
            if self.distribution.size > 1:
                # The mean over workers: the loss of the global batch (workers run equal steps).
                summed = self.distribution.sum({k: tf.constant(v, tf.float64) for k, v in totals.items()})
                totals = {k: float(v) / self.distribution.size for k, v in summed.items()}
            record.update({k: v / max(counts[k], 1) for k, v in totals.items()})
            self.epoch.assign(epoch + 1)
            improved = False
            if validation_data is not None and ((epoch + 1) % cfg.validation_step == 0 or epoch + 1 == cfg.epochs):
                t1 = time.perf_counter()
                values = self.evaluate(validation_data())
                record["validation_seconds"] = time.perf_counter() - t1
                record["validation"] = values
                improved = self._track_best(values, epoch + 1)
                stale = 0 if improved else stale + 1
            history.epochs.append(record)
            self._save(history)
            self._summaries(record)
            if on_validation is not None and "validation" in record:
                on_validation(epoch + 1, record["validation"])
            if chief and cfg.verbose:
                done = time.perf_counter() - run_start
                eta = done / (epoch + 1 - start) * (cfg.epochs - epoch - 1)
                line = (f"epoch {epoch + 1}/{cfg.epochs} loss {record['loss']:.4f} "
                        f"train {train_seconds:.2f}s ({record['rows_per_second']:,.0f} rows/s)")
                if "validation" in record:
                    shown = {k: v for k, v in record["validation"].items() if not k.endswith("/count")}
                    line += f" | val {_fmt_metrics(shown)}{' *' if improved else ''}"
                print(line + f" | ETA {_fmt_duration(eta)}", flush=True)
            if cfg.patience is not None and stale >= cfg.patience:
                history.stopped_early = True
                if chief and cfg.verbose:
                    print(f"early stop: no better {self.model.main_metric} in {stale} validations", flush=True)
                break
        if self._writer is not None:
            self._writer.flush()
        if int(self.best_epoch.numpy()) > 0:
            history.best = {"epoch": int(self.best_epoch.numpy()), self.model.main_metric: float(self.best_value.numpy())}
        return history

    def _track_best(self, values: dict[str, float], epoch: int) -> bool:
        value = values.get(self.model.main_metric)
        if value is None or not math.isfinite(value):
            return False
        best = float(self.best_value.numpy())
        better = math.isnan(best) or (value > best if self.model.higher_is_better else value < best)
        if better:
            self.best_value.assign(value)
            self.best_epoch.assign(epoch)
            if self.distribution.is_chief:
                tf.train.CheckpointManager(self._best, str(self.best_dir), max_to_keep=1).save(checkpoint_number=epoch)
        return better

    def _learning_rate(self) -> float:
        opt = precision.inner_optimizer(self.optimizer)
        lr = opt.learning_rate
        value = lr(opt.iterations) if callable(lr) else lr
        return float(tf.convert_to_tensor(getattr(value, "value", value)))  # a Keras variable holds a mirrored one

    def _summaries(self, record: dict) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=record["epoch"]):
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    tf.summary.scalar(f"train/{k}", v)
            for k, v in record.get("validation", {}).items():
                if not k.endswith("/count"):
                    tf.summary.scalar(f"validation/{k}", v)

    def _diverged(self, epoch: int, step: int, loss: float, history: History) -> None:
        kept = self._manager.latest_checkpoint if self._manager else None
        where = f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet"
        raise Diverged(f"the loss became {loss} at epoch {epoch + 1}, step {step + 1}; training stopped and "
                       f"{where}; lower the learning rate (e.g. --lr 2e-4)", epoch + 1, step + 1, loss, history, kept)
