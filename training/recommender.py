"""The one protocol of every tfcf model: trained in epochs (Mult-VAE, DeepRec, MF) or solved in closed form (EASE).

The engine, the exporter, the loader and the serving code see a model only
through :class:`Recommender`; none of them asks which kind of model it holds.
What differs between the kinds is said by the protocol itself:

* ``closed_form``: the fit wiring (:func:`training.fit.fit`) calls
  :meth:`Recommender.solve` once instead of running the training loop;
* ``input_kind``: which training pipeline of :data:`data.pipeline.TRAIN_INPUTS`
  feeds it, and whether it scores (user, item) pairs directly
  (:meth:`Recommender.predict_pairs`, every model whose input is not rows);
* ``task``: ``topk`` (a heldout-users split, ranking metrics) or ``rating``
  (a rating split, RMSE).

Trainable models implement it through :class:`training.model.Model` (a Keras
model), closed-form baselines through :class:`baselines.base.ClosedForm`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Optional

import tensorflow as tf

Stats = dict[str, tuple[tf.Tensor, tf.Tensor]]


class Recommender:
    """What every model of tfcf provides.

    Class attributes:
      task: ``topk`` or ``rating``.
      main_metric / higher_is_better: how the best checkpoint (and the best
        model of a comparison or a tuning study) is chosen.
      input_kind: ``rows`` (a batch of sparse rows), ``triples`` or ``bpr``
        (pairs of users and items); see :data:`data.pipeline.TRAIN_INPUTS`.
      closed_form: True for models fitted once by :meth:`solve` (no epochs, no
        optimizer); False for models the engine trains.
      config_class: the dataclass of the model's hyper-parameters; its field
        names are the run parameters (``main.py`` flags) the model takes.

    Attribute:
      ranking_metrics: what a top-k model's ``evaluate_step`` reports
        (``name@K`` of :data:`training.metrics.RANKING`); the engine sets it
        from the run (``--metrics``), always with ``main_metric``.
    """

    task: ClassVar[str] = "topk"
    main_metric: ClassVar[str] = "ndcg@100"
    higher_is_better: ClassVar[bool] = True
    input_kind: ClassVar[str] = "rows"
    closed_form: ClassVar[bool] = False
    config_class: ClassVar[type] = None
    ranking_metrics: tuple[str, ...] = ("recall@20", "recall@50", "ndcg@100")
    # Validations without improvement before training stops, where the run does not say (None: never).
    default_patience: ClassVar[Optional[int]] = None

    # --- hyper-parameters ------------------------------------------------------------
    @classmethod
    def param_names(cls) -> frozenset[str]:
        """The run parameters the model's config has (``lam``, ``ease_lambda``...)."""
        return frozenset(f.name for f in dataclasses.fields(cls.config_class))

    @classmethod
    def create(cls, config) -> "Recommender":
        """A new, unfitted model of ``config`` (a :attr:`config_class` instance), its weights built."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """The config as a JSON-able dict (``model.json`` and the run manifest record it)."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "Recommender":
        """A new model from :meth:`get_config`'s dict (the weights come from :meth:`read`)."""
        return cls.create(cls.config_class(**config))

    # --- defaults that scale with the data (training.fit.resolve) ---------------------
    @classmethod
    def default_batch_size(cls, units: int) -> tuple[int, str]:
        """The training batch (per worker) when the run sets none, and the rule in words.

        Args:
          units: what an epoch visits (:attr:`data.pipeline.TrainInput.units`:
            training rows for row models, ratings for pair models).

        The base rule is for rows of users (Mult-VAE): 1/200 of them a step
        within 100..500, i.e. 100 on ML-100K (best on its validation users,
        0.4350 vs 0.4330 NDCG@100 for 500) up to the paper's 500 on ML-20M.
        """
        return int(min(500, max(100, units // 200))), f"rows a step: 1/200 of the {units:,} training rows, in 100..500"

    @classmethod
    def default_steps_per_call(cls) -> int:
        """Training steps per compiled call when the run sets none (:attr:`TrainConfig.steps_per_call`).

        One for models whose step is large (a batch of user rows over every
        item): the call's dispatch is then negligible, and progress and the
        NaN guard see every step. Models of tiny steps (a batch of ratings)
        loop several steps on the device per call instead.
        """
        return 1

    @classmethod
    def epoch_scaled_params(cls, config, steps_per_epoch: int) -> dict[str, tuple[Any, str]]:
        """Hyper-parameters counted in updates that must scale with an epoch's, when the run sets none.

        They depend on the data's size (and the batch), never on the run's
        epoch count: a run continued for more epochs stays the same run.

        Args:
          config: the model's config as the run gives it (a :attr:`config_class` instance).
          steps_per_epoch: training steps one worker makes in an epoch.

        Returns:
          config field -> (value, the rule in words); the default scales nothing.
        """
        return {}

    @staticmethod
    def power_of_two(x: float, low: int, high: int) -> int:
        """The power of two nearest ``x`` (in log scale), clipped to [low, high]."""
        import math

        return int(min(high, max(low, 2 ** round(math.log2(max(x, 1.0))))))

    # --- learning --------------------------------------------------------------------
    def observe_training_data(self, train) -> None:
        """Called once with the training CSR [n_rows, n_items] before training.

        Models that need statistics of their training data at inference (DeepRec's fallback for
        columns without training ratings) record them here, in weights that are checkpointed and
        exported. The default records nothing.
        """

    def solve(self, train, verbose: bool = True) -> "Recommender":
        """Closed-form models: fits the model on the training CSR [n_users, n_items] and returns it.

        ``verbose``: progress of a long solve. Trained models do not implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} is trained by the engine, not solved")

    # --- scoring ---------------------------------------------------------------------
    def predict_rows(self, inputs: tf.SparseTensor, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Scores (top-k models) or predicted ratings (rating models) of every item.

        Args:
          inputs: SparseTensor [b, I], the rows' known items/ratings.
          rows: int32 [b] row indices (users) in the training split, for models
            that embed users (matrix factorization); None for new users.

        Returns:
          float32 [b, I] (not masked: callers mask the known items).
        """
        raise NotImplementedError

    def predict_pairs(self, row: tf.Tensor, col: tf.Tensor) -> tf.Tensor:
        """Models whose ``input_kind`` is not ``rows``: predictions of (row, column) pairs.

        Args:
          row, col: int32 [n] training-row and column indices.

        Returns:
          float32 [n].
        """
        raise NotImplementedError(f"{type(self).__name__} scores whole rows (input_kind 'rows')")

    @property
    def scores_pairs(self) -> bool:
        """Whether :meth:`predict_pairs` is the model's own way to score a cell (MF) rather than a row."""
        return self.input_kind != "rows"

    def evaluate_step(self, batch: dict[str, Any]) -> Stats:
        """Summable (sum, count) statistics of one evaluation batch ``{'input', 'target', 'row'}``."""
        raise NotImplementedError

    # --- files -----------------------------------------------------------------------
    def write(self, folder: Path) -> None:
        """Writes the model's weights into the export folder ``folder`` (``model/``)."""
        raise NotImplementedError

    def read(self, folder: Path) -> None:
        """Reads weights :meth:`write` wrote into this freshly created model.

        Raises:
          TrainingError: a file is missing, truncated or corrupt, or holds
            another model's weights (one line naming the file).
        """
        raise NotImplementedError
