"""Matrix-factorization models: low-rank MF (seed 004) and MultiTaskNet (seed 003).

Both are rating-task models of the engine: they train on pair batches
(``triples`` / ``bpr``) and are evaluated on ``{'input', 'target', 'row'}``
batches, scoring only the target entries (never a dense [b, I] of ratings).

Calling either model:
  ``model({'user': [b], 'item': [b]})`` -> float32 [b] predicted ratings;
  ``model({'input': SparseTensor [b, I], 'row': [b]})`` (an evaluation batch)
  or ``model(SparseTensor [b, I])`` -> float32 [b, I]: :meth:`predict_rows`.

A user the model has no row for (``rows=None`` in ``predict_rows``) is the
average user of a factorization: a zero user vector (and zero user bias), so
MF predicts ``mu + b_i`` and MultiTaskNet ``MLP([0, q_j, 0])``. Folding a new
user's ratings into a vector is not implemented.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import tensorflow as tf

from mf import losses
from mf.config import MFConfig, MultiTaskConfig
from training import layers, metrics, precision
from training.model import Model, Updater, initializer_seeds


def _embedding(n: int, dim: int, initializer, name: str) -> keras.layers.Embedding:
    return keras.layers.Embedding(n, dim, embeddings_initializer=initializer, name=name)


def _table(layer: keras.layers.Embedding, like: tf.Tensor) -> tf.Tensor:
    """The whole embedding table [n, d] in the dtype of ``like`` (compute dtype under mixed precision)."""
    return precision.like(layer.embeddings, like)


def _target_pairs(batch: dict[str, Any]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(user [P], item [P], rating [P]) of an evaluation batch's target entries."""
    target = layers.as_coo(batch["target"])
    return tf.gather(tf.cast(batch["row"], tf.int32), target.rows), target.cols, target.values


def _call(model, inputs) -> tf.Tensor:
    if isinstance(inputs, dict) and "user" in inputs and "item" in inputs:
        return model.predict_pairs(inputs["user"], inputs["item"])
    if isinstance(inputs, dict):
        return model.predict_rows(inputs["input"], inputs.get("row"))
    return model.predict_rows(inputs)


def _users(layer: keras.layers.Embedding, inputs, rows) -> tf.Tensor:
    """[b, d] rows of a user table, or zeros (the average user) for users without a row."""
    if rows is not None:
        return layer(rows)
    n_rows = layers.as_coo(inputs).n_rows
    return tf.zeros(tf.stack([n_rows, layer.output_dim]), layer.compute_dtype)


# A step of a few thousand ratings is a few embedding gathers: 32 of them per call make the dispatch small.
PAIR_STEPS_PER_CALL = 32


def rating_batch_size(ratings: int) -> tuple[int, str]:
    """Ratings a step for the pair models: about 100 steps an epoch.

    A fixed 100 ratings a step makes an epoch of a million ratings 10,000
    steps of dispatch; ~100 steps keeps ML-100K at the 1,000 of the report's
    MF (the validation-chosen preset) and a million ratings at 8,192.
    """
    bs = Model.power_of_two(ratings / 100, 256, 16384)
    return bs, f"ratings a step: the power of two nearest 1/100 of the {ratings:,} training ratings, in 256..16384"


class MatrixFactorization(Model):
    """Low-rank matrix factorization trained with MSE.

    ``r_ui = p_u . q_i`` (the report's model, ``use_bias=False``) or, by
    default, ``mu + b_u + b_i + p_u . q_i`` (Koren et al.'s biased MF).

    ``mu`` is not a trained weight: it is the running mean of the ratings of
    the training batches (two non-trainable, checkpointed variables). After
    one epoch it is exactly the training mean, which is where a trained
    global bias would end up, but Adam at lr 1e-3 would need thousands of
    steps to walk a bias from 0 to 3.5. Each worker of a multi-worker run
    keeps its own mean of its shard (they differ by the shards' sampling).

    Args:
      config: a :class:`mf.config.MFConfig`.
    """

    config_class = MFConfig
    input_kind = "triples"
    task = "rating"
    main_metric = "rmse"
    higher_is_better = False
    default_patience = 5  # rating models stop early on their validation slice by default

    @classmethod
    def default_batch_size(cls, units: int) -> tuple[int, str]:
        return rating_batch_size(units)

    @classmethod
    def default_steps_per_call(cls) -> int:
        return PAIR_STEPS_PER_CALL

    def __init__(self, config: MFConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = config
        seeds = initializer_seeds(c.seed)
        normal = lambda: keras.initializers.RandomNormal(stddev=c.init_std, seed=next(seeds))
        self.user_factors = _embedding(c.n_users, c.rank, normal(), "user_factors")
        self.item_factors = _embedding(c.n_items, c.rank, normal(), "item_factors")
        if c.use_bias:
            self.user_bias = _embedding(c.n_users, 1, "zeros", "user_bias")
            self.item_bias = _embedding(c.n_items, 1, "zeros", "item_bias")
        self.rating_sum = self.add_weight(shape=(), initializer="zeros", dtype="float64", trainable=False,
                                          name="rating_sum")
        self.rating_count = self.add_weight(shape=(), initializer="zeros", dtype="float64", trainable=False,
                                            name="rating_count")
        self.to_float32 = precision.float32_output()

    # --- forward -----------------------------------------------------------------
    def global_mean(self) -> tf.Tensor:
        """float32 scalar: mean of the training ratings seen (0 before training or without biases)."""
        if not self.config.use_bias:
            return tf.constant(0.0)
        return precision.as_float32(tf.math.divide_no_nan(self.rating_sum, self.rating_count))

    def _pairs(self, user: tf.Tensor, item: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(float32 [b] predictions, float32 [b] squared norm of each pair's parameters)."""
        p, q = self.user_factors(user), self.item_factors(item)
        dot = tf.reduce_sum(p * q, axis=-1)
        norms = tf.reduce_sum(tf.square(precision.as_float32(p)) + tf.square(precision.as_float32(q)), axis=-1)
        if self.config.use_bias:
            b_u, b_i = self.user_bias(user)[:, 0], self.item_bias(item)[:, 0]
            dot = dot + b_u + b_i
            norms = norms + tf.square(precision.as_float32(b_u)) + tf.square(precision.as_float32(b_i))
        return self.to_float32(dot) + self.global_mean(), norms

    def predict_pairs(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Predicted ratings of (user, item) pairs: int [b], int [b] -> float32 [b]."""
        return self._pairs(user, item)[0]

    def predict_rows(self, inputs, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Predicted ratings of every item for a batch of users.

        Args:
          inputs: SparseTensor [b, I] (or the COO dict) of the users' known
            ratings; only its row count is used.
          rows: int [b] user ids; None: users without a row (the average user).

        Returns:
          float32 [b, n_items].
        """
        p = _users(self.user_factors, inputs, rows)
        out = tf.matmul(p, _table(self.item_factors, p), transpose_b=True)
        if self.config.use_bias:
            out = out + _users(self.user_bias, inputs, rows) + tf.transpose(_table(self.item_bias, p))
        return self.to_float32(out) + self.global_mean()

    def call(self, inputs: dict[str, Any], training: bool = False) -> tf.Tensor:
        return _call(self, inputs)

    # --- training ------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True) -> tuple[tf.Tensor, dict]:
        """MSE of the batch's ratings (+ ``lam`` x mean squared norm of their parameters)."""
        pred, norms = self._pairs(batch["user"], batch["item"])
        mse = tf.reduce_mean(tf.square(pred - precision.as_float32(batch["rating"])))
        loss = mse
        if self.config.lam:
            loss = loss + self.config.lam * tf.reduce_mean(norms)
        return loss, {"mse": mse}

    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        # Counted before the update so that the very first step already predicts around the mean.
        if self.config.use_bias:
            ratings = tf.cast(batch["rating"], tf.float64)
            self.rating_sum.assign_add(tf.reduce_sum(ratings))
            self.rating_count.assign_add(tf.cast(tf.size(ratings), tf.float64))
        return super().train_step(batch, updater)

    def evaluate_step(self, batch: dict[str, Any]) -> dict:
        """``{'mse': (sum, count)}`` over the target entries (the runner adds ``rmse``)."""
        user, item, rating = _target_pairs(batch)
        return {"mse": losses.squared_error_sum(self.predict_pairs(user, item), rating)}

    def dummy_batch(self) -> dict[str, Any]:
        zero = tf.zeros([1], tf.int32)
        return {"user": zero, "item": zero, "rating": tf.ones([1])}


class MultiTaskNet(Model):
    """Multi-task MF of the CS 330 homework: BPR interactions + rating regression.

    Interaction score ``p_ij = u_i . q_j + b_j``; rating ``r_ij = MLP([u_i, q_j,
    u_i * q_j])``. The embeddings have the homework's "scaled" init N(0,
    (1/d)^2) (std 1/d); the item bias starts at 0. With
    ``shared_embeddings`` both tasks read the same two tables; otherwise the
    rating head has its own pair (the item bias belongs to the factorization
    task either way). Loss ``lambda_F * BPR + lambda_R * MSE`` on batches of
    (user, positive, sampled negative, rating of the positive).

    Main metric: ``mrr`` of the interaction scores (higher is better). The
    interaction ranking is what every setting of the homework trains (lambda_F
    >= 0.5 in all four runs), and MRR is the homework's measure of it; the
    rating head's ``mse``/``rmse`` is reported next to it.

    Args:
      config: a :class:`mf.config.MultiTaskConfig`.
    """

    config_class = MultiTaskConfig
    input_kind = "bpr"
    task = "rating"
    main_metric = "mrr"
    higher_is_better = True
    default_patience = 5

    @classmethod
    def default_batch_size(cls, units: int) -> tuple[int, str]:
        return rating_batch_size(units)

    @classmethod
    def default_steps_per_call(cls) -> int:
        return PAIR_STEPS_PER_CALL

    def __init__(self, config: MultiTaskConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = config
        d = c.embedding_dim
        seeds = initializer_seeds(c.seed)
        scaled = lambda: keras.initializers.RandomNormal(stddev=1.0 / d, seed=next(seeds))
        self.user_embedding = _embedding(c.n_users, d, scaled(), "user_embedding")
        self.item_embedding = _embedding(c.n_items, d, scaled(), "item_embedding")
        if not c.shared_embeddings:
            self.user_embedding_rating = _embedding(c.n_users, d, scaled(), "user_embedding_rating")
            self.item_embedding_rating = _embedding(c.n_items, d, scaled(), "item_embedding_rating")
        self.item_bias = _embedding(c.n_items, 1, "zeros", "item_bias")
        # PyTorch's nn.Linear default (the homework's layers): U(+-1/sqrt(fan_in)).
        torch_like = lambda: keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=next(seeds))
        self.mlp = [keras.layers.Dense(w, activation="relu", kernel_initializer=torch_like(), name=f"mlp_{i}")
                    for i, w in enumerate(c.layer_sizes[1:])]
        self.mlp.append(keras.layers.Dense(1, kernel_initializer=torch_like(), name="mlp_out"))
        self.to_float32 = precision.float32_output()

    # --- forward -----------------------------------------------------------------
    def rating_embeddings(self) -> tuple[keras.layers.Embedding, keras.layers.Embedding]:
        """The (user, item) tables the rating head reads: the factorization's when shared."""
        if self.config.shared_embeddings:
            return self.user_embedding, self.item_embedding
        return self.user_embedding_rating, self.item_embedding_rating

    def _interaction(self, u: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        return self.to_float32(tf.reduce_sum(u * self.item_embedding(item), axis=-1) + self.item_bias(item)[:, 0])

    def _rating(self, u: tf.Tensor, q: tf.Tensor) -> tf.Tensor:
        h = tf.concat([u, q, u * q], axis=-1)
        for layer in self.mlp:
            h = layer(h)
        return self.to_float32(h[..., 0])

    def interaction_pairs(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Interaction scores p_ij of (user, item) pairs: int [b], int [b] -> float32 [b]."""
        return self._interaction(self.user_embedding(user), item)

    def score_rows(self, inputs, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Interaction scores p_ij of every item (the ranking MRR evaluates).

        Args:
          inputs: SparseTensor [b, I] of the users' known items; only its row count is used.
          rows: int [b] user ids; None: users without a row (scores are the item biases).

        Returns:
          float32 [b, n_items].
        """
        u = _users(self.user_embedding, inputs, rows)
        scores = tf.matmul(u, _table(self.item_embedding, u), transpose_b=True)
        return self.to_float32(scores + tf.transpose(_table(self.item_bias, u)))

    def predict_pairs(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Predicted ratings of (user, item) pairs: int [b], int [b] -> float32 [b]."""
        users, items = self.rating_embeddings()
        return self._rating(users(user), items(item))

    def predict_rows(self, inputs, rows: Optional[tf.Tensor] = None) -> tf.Tensor:
        """Predicted ratings of every item for a batch of users.

        Runs the MLP on b x n_items pairs (b x I x 3d activations): for small b.

        Args:
          inputs: SparseTensor [b, I] of the users' known ratings; only its row count is used.
          rows: int [b] user ids; None: users without a row (a zero user vector).

        Returns:
          float32 [b, n_items].
        """
        users, items = self.rating_embeddings()
        u = _users(users, inputs, rows)  # [b, d]
        q = _table(items, u)  # [I, d]
        pairs = tf.stack([tf.shape(u)[0], tf.shape(q)[0], tf.shape(q)[1]])  # [b, I, d]
        return self._rating(tf.broadcast_to(u[:, None, :], pairs), tf.broadcast_to(q[None, :, :], pairs))

    def call(self, inputs: dict[str, Any], training: bool = False) -> tf.Tensor:
        return _call(self, inputs)

    # --- training ------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True) -> tuple[tf.Tensor, dict]:
        """``factorization_weight * BPR + regression_weight * MSE``; logs both terms."""
        c = self.config
        user, pos = batch["user"], batch["pos"]
        u = self.user_embedding(user)
        bpr = losses.bpr_loss(self._interaction(u, pos), self._interaction(u, batch["neg"]), c.bpr_form)
        if c.shared_embeddings:
            rating = self._rating(u, self.item_embedding(pos))
        else:
            rating = self.predict_pairs(user, pos)
        mse = tf.reduce_mean(tf.square(rating - precision.as_float32(batch["rating"])))
        loss = c.factorization_weight * bpr + c.regression_weight * mse
        return loss, {"bpr_loss": bpr, "mse": mse}

    def evaluate_step(self, batch: dict[str, Any]) -> dict:
        """``mse`` of the rating head on the target entries and ``mrr`` of the interaction scores.

        MRR ranks all items for each row's user with the training items
        (``input``) removed; the target's entries are the held-out items.
        """
        user, item, rating = _target_pairs(batch)
        return {"mse": losses.squared_error_sum(self.predict_pairs(user, item), rating),
                "mrr": metrics.mrr(self.score_rows(batch["input"], batch["row"]), batch["target"],
                                   seen=batch["input"])}

    def dummy_batch(self) -> dict[str, Any]:
        zero = tf.zeros([1], tf.int32)
        return {"user": zero, "pos": zero, "neg": zero, "rating": tf.ones([1])}
