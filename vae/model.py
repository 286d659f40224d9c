"""Mult-VAE and Mult-DAE (Liang et al. 2018) on sparse input.

Input rows are binary click vectors; they are never densified: the first layer
is a sparse matmul, and the multinomial log-likelihood is the log-softmax of
the logits gathered at the input's non-zeros.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from training import layers, metrics, precision
from training.model import Model, Updater, initializer_seeds
from vae.config import VAEConfig


class MultVAE(Model):
    """Mult-VAE (``config.variational``) or Mult-DAE.

    Args:
      config: a :class:`vae.config.VAEConfig`.
    """

    config_class = VAEConfig
    input_kind = "rows"
    task = "topk"
    main_metric = "ndcg@100"

    def __init__(self, config: VAEConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        c = config
        widths = list(c.hidden)
        seeds = initializer_seeds(c.seed)

        def init():
            return keras.initializers.GlorotUniform(seed=next(seeds))

        code = 2 * c.latent if c.variational else c.latent
        self.first = layers.SparseDense(c.n_items, widths[0] if widths else code,
                                        activation=c.activation if widths or not c.variational else None,
                                        kernel_initializer=init(), name="encoder_0")
        self.encoder = [keras.layers.Dense(w, activation=c.activation, kernel_initializer=init(), name=f"encoder_{i + 1}")
                        for i, w in enumerate(widths[1:])]
        if widths:
            self.encoder.append(keras.layers.Dense(code, kernel_initializer=init(), name="encoder_code"))
        # Mult-DAE's code layer is tanh (Liang et al.'s [I-200-I] with one tanh hidden layer).
        self.decoder = [keras.layers.Dense(w, activation=c.activation, kernel_initializer=init(), name=f"decoder_{i}")
                        for i, w in enumerate(reversed(widths))]
        self.decoder.append(keras.layers.Dense(c.n_items, kernel_initializer=init(), name="decoder_out"))
        self.to_float32 = precision.float32_output()
        self.noise = keras.random.SeedGenerator(c.seed, name="noise")
        self.anneal_updates = self.add_weight(shape=(), initializer="zeros", trainable=False, name="anneal_updates")

    # --- forward -----------------------------------------------------------------
    def encode(self, coo: layers.Coo, training: bool) -> tuple[tf.Tensor, tf.Tensor]:
        """Returns (mu, logvar) [b, latent] (logvar is None for Mult-DAE)."""
        values = layers.l2_normalize_rows(coo.rows, coo.values, coo.n_rows)
        if training and self.config.dropout > 0:
            values = keras.random.dropout(values, self.config.dropout, seed=self.noise)
        h = self.first.apply_coo(coo.with_values(values))
        for layer in self.encoder:
            h = layer(h)
        if not self.config.variational:
            return h, None
        mu, logvar = tf.split(precision.as_float32(h), 2, axis=-1)
        return mu, logvar

    def decode(self, z: tf.Tensor) -> tf.Tensor:
        """Returns float32 logits [b, n_items]."""
        h = z
        for layer in self.decoder:
            h = layer(h)
        return self.to_float32(h)

    def forward(self, batch_input: layers.SparseRows, training: bool = False):
        """Returns (logits [b, I] float32, mu, logvar)."""
        coo = layers.as_coo(batch_input)
        mu, logvar = self.encode(coo, training)
        z = mu
        if training and self.config.variational:
            eps = keras.random.normal(tf.shape(mu), seed=self.noise)
            z = mu + eps * tf.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    def call(self, inputs: layers.SparseRows, training: bool = False) -> tf.Tensor:
        """Scores of every item for a batch of users: [b, I] float32 logits."""
        return self.forward(inputs, training=training)[0]

    # Liang et al. anneal over 200,000 updates; their 200 ML-20M epochs are ~46,800 (234 steps of 500 users), so
    # the KL weight reaches the cap of 0.2 at 85% of the run. A fixed 200,000 on 5,000 users stops at ~0.01.
    PAPER_EPOCHS = 200
    PAPER_ANNEAL_RATIO = 200_000 / 46_800

    @classmethod
    def epoch_scaled_params(cls, config: VAEConfig, steps_per_epoch: int) -> dict[str, tuple[Any, str]]:
        if not config.variational:
            return {}
        updates = cls.PAPER_EPOCHS * steps_per_epoch
        steps = max(1, round(updates * cls.PAPER_ANNEAL_RATIO))
        reach = min(1.0, config.anneal_cap * steps / updates)
        return {"total_anneal_steps": (steps, f"the KL weight reaches its cap {config.anneal_cap:g} at {reach:.0%} of "
                                              f"{cls.PAPER_EPOCHS} epochs of {steps_per_epoch:,} steps, as in the "
                                              f"paper")}

    # --- loss ---------------------------------------------------------------------
    def kl_weight(self) -> tf.Tensor:
        c = self.config
        if not c.variational:
            return tf.constant(0.0)
        return tf.minimum(c.anneal_cap, self.anneal_updates / max(c.total_anneal_steps, 1))

    def compute_loss(self, batch: dict[str, Any], training: bool = True):
        coo = layers.as_coo(batch["input"])
        logits, mu, logvar = self.forward(batch["input"], training=training)
        log_softmax = tf.nn.log_softmax(logits, axis=-1)
        picked = tf.gather_nd(log_softmax, tf.stack([coo.rows, coo.cols], axis=1)) * coo.values
        n_rows = tf.cast(coo.n_rows, tf.float32)
        neg_ll = -tf.reduce_sum(picked) / n_rows
        loss = neg_ll
        logs = {"neg_ll": neg_ll}
        if self.config.variational:
            kl = tf.reduce_sum(0.5 * (-logvar + tf.exp(logvar) + tf.square(mu) - 1.0)) / n_rows
            beta = self.kl_weight()
            loss = loss + beta * kl
            logs.update(kl=kl, kl_weight=beta)
        if self.config.lam:
            l2 = tf.add_n([tf.reduce_sum(tf.square(w)) for w in self.trainable_weights if "kernel" in w.path])
            loss = loss + self.config.lam * l2
        return loss, logs

    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        logs = super().train_step(batch, updater)
        self.anneal_updates.assign_add(1.0)  # the KL annealing counter of the reference code
        return logs

    def evaluate_step(self, batch: dict[str, Any]):
        scores = self(batch["input"], training=False)
        return metrics.topk_metrics(scores, batch["target"], seen=batch["input"], names=self.ranking_metrics)

    def dummy_batch(self) -> dict[str, Any]:
        sp = tf.SparseTensor(indices=tf.zeros([1, 2], tf.int64), values=tf.ones([1]),
                             dense_shape=[1, self.config.n_items])
        return {"input": sp, "target": sp}


def build(config: VAEConfig) -> MultVAE:
    """Builds the model's weights under the current dtype policy."""
    model = MultVAE(config)
    model.ensure_built()
    return model
