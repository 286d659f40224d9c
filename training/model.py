"""The thin model base every tfcf model derives from.

A model brings its forward pass (``call``), its loss (``compute_loss``) and
its evaluation statistics (``evaluate_step``). The engine
(:mod:`training.trainer`) owns everything else: the loop, the optimizer step
with loss scaling and gradient averaging (:class:`Updater`), checkpoints,
logging and precision. A model overrides ``train_step`` only when its paper
needs more than one update per batch (DeepRec's dense re-feeding) or a counter
(Mult-VAE's KL annealing), and even then it updates through the ``Updater``.
A model whose paper alternates what it trains (RecVAE: encoder epochs, then a
decoder epoch) declares its :class:`Phase` s and keeps state from one epoch
to the next in :meth:`Model.end_epoch`; the engine runs the phases.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import keras
import tensorflow as tf

from data.errors import TrainingError, first_line
from training import precision
from training.recommender import Recommender, Stats  # noqa: F401 (Stats: the models' evaluate_step type)

WEIGHTS = "weights"  # the checkpoint prefix of an export's weights


def initializer_seeds(seed: int) -> Iterator[int]:
    """Distinct initializer seeds derived from a model's seed.

    Models seed every initializer explicitly from their config, so one seed
    gives the same weights without any global reseeding.
    """
    return iter(range(seed * 1000, seed * 1000 + 1000))


@dataclasses.dataclass(frozen=True)
class Phase:
    """One update phase of a training epoch.

    An epoch runs its model's phases in order; each phase makes ``passes``
    passes over the training data, updating only ``variables()`` with an
    optimizer of its own (so Adam's moments of one phase never see the
    other's steps). A model with one phase (the default) trains every
    variable once per epoch.

    Attributes:
      name: the phase's name (its optimizer's key in checkpoints, its logs).
      passes: passes over the training data per epoch.
      variables: () -> the variables it updates; None: every trainable variable.
    """

    name: str = "all"
    passes: int = 1
    variables: Optional[Callable[[], Sequence[tf.Variable]]] = None


class Updater:
    """One optimizer step: loss scaling, gradients, worker averaging, apply.

    Every update of every model goes through :meth:`minimize`, so loss scaling
    under float16 and Horovod's gradient averaging apply to all of them (the
    DeepRec reference lost its fp16 handling in a copy-pasted re-feeding step).
    Each :class:`Phase` has its Updater (its variables, its optimizer); they
    share one update counter.

    Args:
      model: the model.
      optimizer: the phase's optimizer.
      distribution: averages the gradients over workers.
      phase: the :class:`Phase` it updates (default: every trainable variable).
      updates: the counter to share with the other phases' Updaters (default: a new one).
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, distribution,
                 phase: Optional[Phase] = None, updates: Optional[tf.Variable] = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.distribution = distribution
        self.phase = phase or Phase()
        # Counts every applied update, re-feeding ones included.
        self.updates = updates if updates is not None else tf.Variable(0, dtype=tf.int64, trainable=False,
                                                                       name="updates")

    @property
    def variables(self) -> list[tf.Variable]:
        """The variables this Updater's phase trains."""
        chosen = self.phase.variables
        return list(chosen()) if chosen is not None else list(self.model.trainable_variables)

    def minimize(self, loss_fn: Callable[[], tuple[tf.Tensor, dict]]) -> tuple[tf.Tensor, dict]:
        """Differentiates ``loss_fn()`` and applies one optimizer update.

        Args:
          loss_fn: returns (scalar float32 loss, dict of scalar logs).

        Returns:
          The unscaled loss and the logs.
        """
        variables = self.variables
        with tf.GradientTape() as tape:
            loss, logs = loss_fn()
            scaled = precision.scale_loss(self.optimizer, loss)
        grads = tape.gradient(scaled, variables)
        grads = self.distribution.allreduce_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.updates.assign_add(1)
        return loss, logs


class Model(keras.Model, Recommender):
    """Base class of tfcf's trainable models: a Keras model implementing :class:`Recommender`.

    A subclass sets the protocol's class attributes (``task``, ``input_kind``,
    ``main_metric``...) and ``config_class``, and implements ``compute_loss``,
    ``evaluate_step``, ``dummy_batch`` and, where its default ``self(inputs)``
    does not fit, ``predict_rows``.
    """

    def __init__(self, config, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    @classmethod
    def create(cls, config) -> "Model":
        model = cls(config)
        model.ensure_built()
        return model

    # --- what subclasses implement -------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True) -> tuple[tf.Tensor, dict]:
        """Returns (scalar float32 loss, dict of scalar float32 logs)."""
        raise NotImplementedError

    def dummy_batch(self) -> dict[str, Any]:
        """A tiny batch of the model's input kind, used to build its weights."""
        raise NotImplementedError

    def predict_rows(self, inputs: tf.SparseTensor, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        return self(inputs, training=False)

    def updates_per_step(self) -> int:
        """Optimizer updates one ``train_step`` applies (learning-rate milestones count epochs with it)."""
        return 1

    def phases(self) -> tuple[Phase, ...]:
        """The update phases of one epoch, in order (see :class:`Phase`); one phase of every variable by default."""
        return (Phase(),)

    def end_epoch(self) -> None:
        """Called by the engine after each epoch's phases, before validation and the checkpoint.

        A model that carries state from one epoch to the next keeps it in
        variables (so checkpoints hold it) and updates it here. The default
        does nothing.
        """

    # --- what the engine calls -----------------------------------------------------
    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        """One training step; the default is one update on ``compute_loss``.

        ``updater.phase`` says which :class:`Phase` the step belongs to.
        """
        loss, logs = updater.minimize(lambda: self.compute_loss(batch, training=True))
        return {"loss": loss, **logs}

    def ensure_built(self) -> None:
        """Creates the weights by running the forward pass once."""
        if not self.built or not self.weights:
            self.compute_loss(self.dummy_batch(), training=False)
            self.built = True

    def state(self) -> dict[str, tf.Variable]:
        """Every variable of the model keyed by its position, for checkpoints.

        Includes non-trainable variables (counters) and random-generator
        states. Keyed explicitly because Keras 3 layers kept in Python lists
        are not children in TensorFlow's object graph, and by position (not
        path) because auto-generated layer names differ between instances.
        """
        return {f"{i:03d}_{v.name}": v for i, v in enumerate(self.variables)}

    def get_config(self) -> dict:
        return Recommender.get_config(self)

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        return cls(cls.config_class(**config))

    # --- files -------------------------------------------------------------------------
    def write(self, folder: Path) -> None:
        """Writes every variable (:meth:`state`) as the checkpoint ``folder/weights``."""
        tf.train.Checkpoint(model=self.state()).write(str(Path(folder) / WEIGHTS))

    def read(self, folder: Path) -> None:
        """Restores :meth:`write`'s checkpoint, checking its files first (one line naming a bad one)."""
        folder = Path(folder)
        prefix, index = folder / WEIGHTS, folder / f"{WEIGHTS}.index"
        if not index.is_file():
            raise TrainingError(f"{index}: missing (a partial export?)")
        shards = sorted(folder.glob(f"{WEIGHTS}.data-*-of-*"))
        total = shards[0].name.rsplit("-of-", 1)[-1] if shards else "00001"
        wanted = [folder / f"{WEIGHTS}.data-{i:05d}-of-{total}" for i in range(int(total) if total.isdigit() else 1)]
        absent = [p for p in wanted if not p.is_file()]
        if absent:
            raise TrainingError(f"{absent[0]}: missing (a partial export?)")
        self.ensure_built()
        try:
            tf.train.Checkpoint(model=self.state()).read(str(prefix)).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, OSError) as e:
            try:  # reads the index alone: if that works, a data file is at fault
                tf.train.load_checkpoint(str(prefix))
                culprit = wanted[0] if len(wanted) == 1 else folder / f"{WEIGHTS}.data-*"
            except (tf.errors.OpError, ValueError, IndexError, OSError):
                culprit = index
            mismatch = isinstance(e, AssertionError) or (isinstance(e, ValueError) and "incompatible" in str(e))
            what = "holds weights that do not fit the model of model.json" if mismatch else "truncated or corrupt"
            raise TrainingError(f"{culprit}: {what} ({first_line(e)})") from None
