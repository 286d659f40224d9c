"""The thin model base every tfcf model derives from.

A model brings its forward pass (``call``), its loss (``compute_loss``) and
its evaluation statistics (``evaluate_step``). The engine
(:mod:`training.trainer`) owns everything else: the loop, the optimizer step
with loss scaling and gradient averaging (:class:`Updater`), checkpoints,
logging and precision. A model overrides ``train_step`` only when its paper
needs more than one update per batch (DeepRec's dense re-feeding) or a counter
(Mult-VAE's KL annealing), and even then it updates through the ``Updater``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Iterator, Optional

import keras
import tensorflow as tf

from training import precision

Stats = dict[str, tuple[tf.Tensor, tf.Tensor]]


def initializer_seeds(seed: int) -> Iterator[int]:
    """Distinct initializer seeds derived from a model's seed.

    Models seed every initializer explicitly from their config, so one seed
    gives the same weights without any global reseeding.
    """
    return iter(range(seed * 1000, seed * 1000 + 1000))


class Updater:
    """One optimizer step: loss scaling, gradients, worker averaging, apply.

    Every update of every model goes through :meth:`minimize`, so loss scaling
    under float16 and Horovod's gradient averaging apply to all of them (the
    DeepRec reference lost its fp16 handling in a copy-pasted re-feeding step).
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, distribution) -> None:
        self.model = model
        self.optimizer = optimizer
        self.distribution = distribution
        # Counts every applied update, re-feeding ones included.
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

    def minimize(self, loss_fn: Callable[[], tuple[tf.Tensor, dict]]) -> tuple[tf.Tensor, dict]:
        """Differentiates ``loss_fn()`` and applies one optimizer update.

        Args:
          loss_fn: returns (scalar float32 loss, dict of scalar logs).

        Returns:
          The unscaled loss and the logs.
        """
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, logs = loss_fn()
            scaled = precision.scale_loss(self.optimizer, loss)
        grads = tape.gradient(scaled, variables)
        grads = self.distribution.allreduce_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.updates.assign_add(1)
        return loss, logs


class Model(keras.Model):
    """Base class of tfcf's trainable models.

    Class attributes tell the engine what the model needs:
      input_kind: ``rows`` (a batch of sparse rows, ``{'input': SparseTensor}``),
        ``triples`` (``{'user', 'item', 'rating'}``) or ``bpr`` (``{'user',
        'pos', 'neg', 'rating'}``).
      task: ``topk`` (heldout-users split, ranking metrics) or ``rating``
        (rating split, RMSE).
      main_metric / higher_is_better: how the best checkpoint is chosen.
    """

    input_kind: ClassVar[str] = "rows"
    task: ClassVar[str] = "topk"
    main_metric: ClassVar[str] = "ndcg@100"
    higher_is_better: ClassVar[bool] = True
    config_class: ClassVar[type] = None

    def __init__(self, config, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config

    # --- what subclasses implement -------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True) -> tuple[tf.Tensor, dict]:
        """Returns (scalar float32 loss, dict of scalar float32 logs)."""
        raise NotImplementedError

    def evaluate_step(self, batch: dict[str, Any]) -> Stats:
        """Summable (sum, count) statistics of one evaluation batch."""
        raise NotImplementedError

    def dummy_batch(self) -> dict[str, Any]:
        """A tiny batch of the model's input kind, used to build its weights."""
        raise NotImplementedError

    def observe_training_data(self, train) -> None:
        """Called once by the engine with the training CSR [n_rows, n_items] before training.

        Models that need statistics of their training data at inference (DeepRec's fallback for
        columns without training ratings) record them here, in non-trainable weights that are
        checkpointed and exported. The default records nothing.
        """

    def predict_rows(self, inputs: tf.SparseTensor, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Scores (top-k models) or predicted ratings (rating models) of every item.

        Args:
          inputs: SparseTensor [b, I], the rows' known items/ratings.
          rows: int32 [b] row indices (users) in the training split, for models
            that embed users (matrix factorization); None for new users.

        Returns:
          float32 [b, I].
        """
        return self(inputs, training=False)

    def updates_per_step(self) -> int:
        """Optimizer updates one ``train_step`` applies (learning-rate milestones count epochs with it)."""
        return 1

    # --- what the engine calls -----------------------------------------------------
    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        """One training step; the default is one update on ``compute_loss``."""
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
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "Model":
        return cls(cls.config_class(**config))
