"""DeepRec: the deep rating autoencoder with dense re-feeding (Kuchaiev & Ginsburg 2017).

A row of the rating matrix (a user's ratings, or an item's for the item-based
model) goes through ``decode(dropout(encode(x)))``; the output is a dense
prediction of every rating of that row. Training minimises the masked mean
squared error over the observed ratings (paper eq. 1), and each batch can be
followed by dense re-feeding updates on ``f(y)`` vs ``y`` with ``y = f(x)``
(Sec. 2.2). Every update goes through the engine's :class:`Updater`, so loss
scaling under float16 applies to the re-feeding updates too (the reference
code lost it in its copy of the step).
"""

from __future__ import annotations

from typing import Any, Union

import keras
import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data.errors import ConfigError
from deeprec.config import DeepRecConfig
from training import layers, metrics, precision
from training.model import Model, Updater, initializer_seeds

RowsInput = Union[tf.SparseTensor, dict, tf.Tensor]


def activation_fn(name: str):
    """The Keras activation of a :data:`deeprec.config.ACTIVATIONS` name."""
    if name == "lrelu":
        # PyTorch's leaky_relu slope, as in the reference code (Keras' default is 0.2).
        return lambda x: keras.activations.leaky_relu(x, negative_slope=0.01)
    if name == "swish":
        return keras.activations.silu
    return keras.activations.get(name)


class RowInput(layers.SparseDense):
    """The first layer: sparse rating rows, or dense re-fed rows, times one kernel.

    ``apply_coo`` is the sparse path of :class:`training.layers.SparseDense`;
    ``layer(dense)`` with a [b, input_dim] tensor is a plain matmul with the
    same kernel and bias (dense re-feeding feeds the dense output back in).
    """

    def call(self, rows, cols=None, values=None, n_rows=None, padded: bool = False) -> tf.Tensor:
        if cols is not None:
            return super().call(rows, cols, values, n_rows, padded=padded)
        out = tf.matmul(precision.compute(rows, self), precision.compute(self.kernel, self))
        if self.bias is not None:
            out = out + precision.compute(self.bias, self)
        return self.activation(out)


class TiedDense(keras.layers.Layer):
    """A decoder layer of a constrained autoencoder: ``act(h @ W_e^T + b)``.

    ``W_e`` is the kernel variable of the mirrored encoder layer itself (not a
    copy), so both layers always see the same values and the optimizer updates
    it once per step with the gradients of both uses; only the bias is own.

    Args:
      source: the encoder layer (a Dense or :class:`RowInput`) whose kernel
        [units, d] this layer uses transposed (it may not be built yet).
      units: this layer's output width = the source's input width.
      activation: a callable.
    """

    def __init__(self, source: keras.layers.Layer, units: int, activation, **kwargs) -> None:
        super().__init__(**kwargs)
        # Held through a function so Keras does not track the encoder layer as
        # a second parent; the variable is still the encoder's own.
        self._source = lambda: source
        self.activation = activation
        self.units = int(units)
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    @property
    def source(self) -> keras.layers.Layer:
        return self._source()

    @property
    def kernel(self):
        """The encoder's kernel variable [units, d] (used transposed)."""
        return self.source.kernel

    def call(self, h: tf.Tensor) -> tf.Tensor:
        kernel = precision.compute(self.kernel, self)
        out = tf.matmul(h, kernel, transpose_b=True) + precision.compute(self.bias, self)
        return self.activation(out)


def _masked_mse(pred: tf.Tensor, truth: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Masked squared error (paper eq. 1) of aligned entries: (sum, count) float32.

    Entries whose true rating is 0 are not ratings (padding, or unrated cells
    of a dense row) and are left out: MMSE = sum m_i (r_i - y_i)^2 / sum m_i.
    """
    pred = precision.as_float32(pred)
    truth = precision.as_float32(truth)
    mask = precision.as_float32(tf.not_equal(truth, 0.0))
    return tf.reduce_sum(mask * tf.square(pred - truth)), tf.reduce_sum(mask)


class DeepRec(Model):
    """The rating autoencoder ``n - hidden - reversed(hidden[:-1]) - n``.

    Args:
      config: a :class:`deeprec.config.DeepRecConfig`.
    """

    config_class = DeepRecConfig
    input_kind = "rows"
    task = "rating"
    main_metric = "rmse"
    higher_is_better = False
    default_patience = 5  # rating models stop early on their validation slice by default

    @classmethod
    def default_batch_size(cls, units: int) -> tuple[int, str]:
        # The paper's 128 rows on Netflix; on ML-100K u1 validation chose 64 of the 1,682 items
        # (item-based) and 32 of the 943 users (user-based): about 1/32 of the rows.
        bs = cls.power_of_two(units / 32, 32, 128)
        return bs, f"rows a step: the power of two nearest 1/32 of the {units:,} training rows, in 32..128"

    def __init__(self, config: DeepRecConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = config
        act = activation_fn(c.activation)
        seeds = initializer_seeds(c.seed)

        def xavier():
            return keras.initializers.GlorotUniform(seed=next(seeds))

        widths = list(c.hidden)
        self.first = RowInput(c.n_items, widths[0], activation=act, kernel_initializer=xavier(), name="encoder_0")
        self.encoder = [self.first] + [
            keras.layers.Dense(w, activation=act, kernel_initializer=xavier(), name=f"encoder_{i}")
            for i, w in enumerate(widths[1:], start=1)]
        # The decoder mirrors the encoder: layer l maps encoder l's output width
        # back to its input width; the last one outputs the n_items ratings.
        out_act = act if c.last_layer_activations else keras.activations.linear
        self.decoder = []
        for j, source in enumerate(reversed(self.encoder)):
            last = j == len(self.encoder) - 1
            width = c.n_items if last else widths[len(widths) - 2 - j]
            name = "decoder_out" if last else f"decoder_{j}"
            if c.constrained:
                self.decoder.append(TiedDense(source, width, out_act if last else act, name=name))
            else:
                self.decoder.append(keras.layers.Dense(width, activation=out_act if last else act,
                                                       kernel_initializer=xavier(), name=name))
        self.to_float32 = precision.float32_output()
        self.noise = keras.random.SeedGenerator(c.seed, name="noise")
        # Columns (items; users when item-based) without a training rating have untrained outputs: inference
        # predicts the training mean there, once observe_training_data has run (the engine calls it).
        self.column_seen = self.add_weight(shape=(c.n_items,), initializer="zeros", trainable=False,
                                           name="column_seen")
        self.train_mean = self.add_weight(shape=(), initializer="zeros", trainable=False, name="train_mean")
        self.fallback_on = self.add_weight(shape=(), initializer="zeros", trainable=False, name="fallback_on")

    def observe_training_data(self, train) -> None:
        """Records which columns have training ratings, and their mean rating.

        Args:
          train: scipy CSR [n_rows, n_items] of training ratings.
        """
        counts = np.asarray((train != 0).sum(axis=0)).ravel()
        self.column_seen.assign((counts > 0).astype(np.float32))
        self.train_mean.assign(float(train.data.mean()) if train.nnz else 0.0)
        self.fallback_on.assign(1.0)

    def predict_rows(self, inputs, rows=None) -> tf.Tensor:
        """Predicted ratings [b, n_items]; the training mean in columns never seen in training."""
        pred = self(inputs, training=False)
        unseen = (self.fallback_on > 0) & (self.column_seen <= 0)
        return tf.where(unseen[None, :], precision.like(self.train_mean, pred), pred)

    # --- forward -------------------------------------------------------------------
    def _encode_first(self, x: RowsInput, training: bool) -> tf.Tensor:
        """The first layer's output [b, hidden[0]] for sparse or dense rows."""
        noisy = training and self.config.noise_prob > 0
        if isinstance(x, (tf.SparseTensor, dict)):
            coo = layers.as_coo(x)
            if noisy:
                coo = coo.with_values(keras.random.dropout(coo.values, self.config.noise_prob, seed=self.noise))
            return self.first.apply_coo(coo)
        if noisy:
            x = keras.random.dropout(x, self.config.noise_prob, seed=self.noise)
        return self.first(x)

    def call(self, inputs: RowsInput, training: bool = False) -> tf.Tensor:
        """Predicted ratings of every column for a batch of rows.

        Args:
          inputs: the rows' ratings: a SparseTensor [b, n_items], the XLA COO
            dict of :mod:`training.layers`, or a dense float tensor [b, n_items]
            (re-fed predictions).
          training: apply input noise and code dropout.

        Returns:
          float32 [b, n_items].
        """
        h = self._encode_first(inputs, training)
        for layer in self.encoder[1:]:
            h = layer(h)
        if training and self.config.drop_prob > 0:
            h = keras.random.dropout(h, self.config.drop_prob, seed=self.noise)
        for layer in self.decoder:
            h = layer(h)
        return self.to_float32(h)

    # --- loss and training -------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True) -> tuple[tf.Tensor, dict]:
        """Masked MSE of the sparse input rows' own ratings.

        Gathers the predictions at the non-zeros instead of densifying the input.

        Returns:
          (MMSE + L2 penalty, float32 scalar; {'rmse': sqrt(MMSE)}).
        """
        coo = layers.as_coo(batch["input"])
        pred = self(batch["input"], training=training)
        picked = tf.gather_nd(pred, tf.stack([coo.rows, coo.cols], axis=1))
        total, count = _masked_mse(picked, coo.values)
        mmse = total / tf.maximum(count, 1.0)
        return mmse + self.l2_penalty(), {"rmse": tf.sqrt(mmse)}

    def dense_loss(self, y: tf.Tensor, training: bool = True) -> tuple[tf.Tensor, dict]:
        """Re-feeding loss: masked MSE of ``f(y)`` against dense rows ``y`` [b, n_items].

        Every non-zero entry of ``y`` counts as a rating (paper Sec. 2.2: "the
        loss from equation 1 has all m as non-zeros").
        """
        total, count = _masked_mse(self(y, training=training), y)
        mmse = total / tf.maximum(count, 1.0)
        return mmse + self.l2_penalty(), {"refeed_rmse": tf.sqrt(mmse)}

    def l2_penalty(self) -> tf.Tensor:
        """``lam * sum(W**2)`` over the kernels (a tied kernel counts once); 0 when ``lam`` is 0."""
        if not self.config.lam:
            return tf.constant(0.0)
        kernels = {id(layer.kernel): layer.kernel for layer in self.encoder + self.decoder}
        return self.config.lam * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels.values()])

    def updates_per_step(self) -> int:
        return 1 + self.config.aug_step

    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        """One update on the batch, then ``aug_step`` dense re-feeding updates.

        ``y = f(x)`` is computed after the first update, without dropout (the
        model's current estimate of the fixed point ``f(y) = y``) and as a
        constant; each re-feeding update trains ``f(y)`` towards ``y`` and the
        next one re-feeds ``f(y)`` computed after it. So a batch makes exactly
        ``1 + aug_step`` optimizer updates, all through ``updater.minimize``.

        Returns:
          {'loss', 'rmse'} of the first update (and 'refeed_loss' of the last
          re-feeding one); 'loss' is made non-finite when any update's loss was,
          so the trainer's NaN guard sees a diverging re-feeding step too.
        """
        loss, logs = updater.minimize(lambda: self.compute_loss(batch, training=True))
        out = {"loss": loss, **logs}
        if self.config.aug_step:
            y = tf.stop_gradient(self(batch["input"], training=False))
            for step in range(self.config.aug_step):
                refeed, _ = updater.minimize(lambda: self.dense_loss(y, training=True))
                if step + 1 < self.config.aug_step:
                    y = tf.stop_gradient(self(y, training=False))
            out["refeed_loss"] = refeed
            out["loss"] = tf.where(tf.math.is_finite(refeed), loss, refeed)
        return out

    # --- evaluation ------------------------------------------------------------------
    def evaluate_step(self, batch: dict[str, Any]) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """Squared error of the ratings to predict (``target``) from the rows' training ratings (``input``).

        Returns:
          {'mse': (sum of squared errors, number of target ratings)}; the
          engine adds ``rmse`` = sqrt(total / count) over the whole split.
        """
        return {"mse": metrics.squared_error(self.predict_rows(batch["input"]), batch["target"])}

    def dummy_batch(self) -> dict[str, Any]:
        sp_one = tf.SparseTensor(indices=tf.zeros([1, 2], tf.int64), values=tf.ones([1]),
                                 dense_shape=[1, self.config.n_items])
        return {"input": sp_one, "target": sp_one}


def build(config: DeepRecConfig) -> DeepRec:
    """Builds the model's weights under the current dtype policy."""
    model = DeepRec(config)
    model.ensure_built()
    return model


def csr_to_sparse(m: sp.csr_matrix) -> tf.SparseTensor:
    """A CSR matrix [n, I] as a float32 SparseTensor [n, I] in row-major order."""
    coo = m.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), m.shape))


def predict_pairs(model: DeepRec, split_part: sp.csr_matrix, rows_csr: sp.csr_matrix,
                  batch_size: int = 1000) -> np.ndarray:
    """Predicted ratings of the (row, column) pairs of a split part.

    The paper's inference: each row's ratings to predict come from the model
    applied to that row's training vector.

    Args:
      model: a trained :class:`DeepRec` (any model with ``predict_rows``).
      split_part: CSR [n, I]; its non-zeros are the pairs to predict (e.g. ``split.test``).
      rows_csr: CSR [n, I], the rows' input ratings (``split.train``).
      batch_size: rows per forward pass.

    Returns:
      float32 [split_part.nnz] predictions in canonical CSR order of
      ``split_part`` (row by row, columns ascending within a row).

    Raises:
      ConfigError: the two matrices differ in shape.
    """
    from data import pipeline

    if split_part.shape != rows_csr.shape:
        raise ConfigError(f"predict_pairs: the pairs' matrix has shape {split_part.shape} but the input rows "
                          f"{rows_csr.shape}; pass parts of the same split")
    forward = tf.function(lambda x, pairs: tf.gather_nd(model.predict_rows(x), pairs.indices),
                          reduce_retracing=True)
    out = [forward(x, pairs).numpy() for x, pairs in pipeline.row_batches((rows_csr, split_part), batch_size)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)
