"""RecVAE (Shenbin et al., WSDM 2020) on sparse input.

Mult-VAE with a stronger encoder (densely connected layers, layer
normalisation, swish), a composite prior (a mixture of the standard normal,
the posterior of the encoder as it was at the end of the previous epoch, and
a wide normal), a KL weight proportional to the user's number of interactions,
and alternating training: encoder passes, then a decoder pass, each epoch.

The engine runs the alternation: the model declares two :class:`Phase` s and
refreshes the previous-epoch encoder in :meth:`RecVAE.end_epoch`. Like
Mult-VAE, input rows are never densified (the first layer is a sparse matmul
or, under XLA, a gather and segment sum) and the multinomial log-likelihood is
the log-softmax of the logits gathered at the input's non-zeros.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import keras
import tensorflow as tf

from training import layers, metrics, precision
from training.model import Model, Phase, Updater, initializer_seeds
from vae.config import RecVAEConfig

ENCODER, DECODER = "encoder", "decoder"
_LOG_2PI = math.log(2 * math.pi)


def log_normal(x: tf.Tensor, mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """Elementwise log-density of N(mu, exp(logvar)) at x (broadcasting); float32."""
    return -0.5 * (logvar + _LOG_2PI + tf.square(x - mu) * tf.exp(-logvar))


def composite_prior_log_density(z: tf.Tensor, old_mu: tf.Tensor, old_logvar: tf.Tensor,
                                weights: Sequence[float], wide_logvar: float) -> tf.Tensor:
    """Log-density of RecVAE's composite prior per latent dimension.

    log p(z) = logsumexp_k [log w_k + log N_k(z)] over N(0, 1), the previous
    epoch's posterior N(old_mu, exp(old_logvar)) and the wide N(0, exp(wide_logvar)).

    Args:
      z: [b, d] codes.
      old_mu, old_logvar: [b, d] the previous-epoch encoder's posterior of the same users.
      weights: the three mixture weights, in that order.
      wide_logvar: log-variance of the wide component.

    Returns:
      [b, d] float32.
    """
    zero = tf.zeros_like(z)
    parts = [log_normal(z, zero, zero), log_normal(z, old_mu, old_logvar),
             log_normal(z, zero, tf.fill(tf.shape(z), tf.cast(wide_logvar, z.dtype)))]
    return tf.reduce_logsumexp(tf.stack([p + math.log(w) for p, w in zip(parts, weights)], axis=-1), axis=-1)


class Encoder(keras.layers.Layer):
    """RecVAE's encoder: h_k = LayerNorm(swish(W_k h_{k-1} + h_1 + ... + h_{k-1})), then (mu, logvar).

    The first layer reads the L2-normalised sparse rows; LayerNorm's epsilon
    is 0.1 as in the public code.

    Args:
      config: the model's config.
      initializer: () -> a new kernel initializer.
    """

    def __init__(self, config: RecVAEConfig, initializer: Callable[[], Any], **kwargs) -> None:
        super().__init__(**kwargs)
        width = config.hidden[0]
        self.first = layers.SparseDense(config.n_items, width, kernel_initializer=initializer(), name="fc_0")
        self.dense = [keras.layers.Dense(width, kernel_initializer=initializer(), name=f"fc_{i}")
                      for i in range(1, len(config.hidden))]
        self.norms = [keras.layers.LayerNormalization(epsilon=0.1, name=f"ln_{i}") for i in range(len(config.hidden))]
        self.mu = keras.layers.Dense(config.latent, kernel_initializer=initializer(), name="mu")
        self.logvar = keras.layers.Dense(config.latent, kernel_initializer=initializer(), name="logvar")

    def encode(self, coo: layers.Coo) -> tuple[tf.Tensor, tf.Tensor]:
        """Args: coo: [b, I] L2-normalised (and maybe dropped-out) rows. Returns float32 (mu, logvar) [b, latent]."""
        h = self.norms[0](keras.activations.silu(self.first.apply_coo(coo)))
        total = h
        for dense, norm in zip(self.dense, self.norms[1:]):
            h = norm(keras.activations.silu(dense(h) + total))
            total = total + h
        return precision.as_float32(self.mu(h)), precision.as_float32(self.logvar(h))


class RecVAE(Model):
    """RecVAE: the encoder trains ``encoder_epochs`` passes, then the decoder ``decoder_epochs``, each epoch.

    Args:
      config: a :class:`vae.config.RecVAEConfig`.
    """

    config_class = RecVAEConfig
    input_kind = "rows"
    task = "topk"
    main_metric = "ndcg@100"

    def __init__(self, config: RecVAEConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        seeds = initializer_seeds(config.seed)

        def init():
            return keras.initializers.GlorotUniform(seed=next(seeds))

        self.encoder = Encoder(config, init, name="encoder")
        self.decoder = keras.layers.Dense(config.n_items, kernel_initializer=init(), name="decoder")
        # The encoder as it was at the end of the previous epoch (the prior's middle component).
        self.old_encoder = Encoder(config, init, name="old_encoder")
        self.old_encoder.trainable = False  # after construction, so that its layers inherit it
        self.to_float32 = precision.float32_output()
        self.noise = keras.random.SeedGenerator(config.seed, name="noise")

    # --- phases ------------------------------------------------------------------
    def phases(self) -> tuple[Phase, ...]:
        c = self.config
        return (Phase(ENCODER, c.encoder_epochs, lambda: self.encoder.trainable_variables),
                Phase(DECODER, c.decoder_epochs, lambda: self.decoder.trainable_variables))

    def end_epoch(self) -> None:
        """Copies the encoder into the prior's previous-epoch encoder."""
        for old, new in zip(self.old_encoder.weights, self.encoder.weights, strict=True):
            old.assign(new)

    def ensure_built(self) -> None:
        fresh = not self.built or not self.weights
        super().ensure_built()
        if fresh:  # the first epoch's prior holds the initial encoder (its own random one in the public code)
            self.end_epoch()

    # --- forward -----------------------------------------------------------------
    def _inputs(self, batch_input: layers.SparseRows) -> tuple[layers.Coo, tf.Tensor]:
        coo = layers.as_coo(batch_input)
        return coo, layers.l2_normalize_rows(coo.rows, coo.values, coo.n_rows)

    def call(self, inputs: layers.SparseRows, training: bool = False) -> tf.Tensor:
        """Scores of every item for a batch of users: [b, I] float32 logits of the posterior mean."""
        coo, normalized = self._inputs(inputs)
        mu, _ = self.encoder.encode(coo.with_values(normalized))
        return self.to_float32(self.decoder(mu))

    # --- loss ---------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, Any], training: bool = True, phase: str = ENCODER):
        """The negative ELBO with the composite prior and β(x) = γ·|x|.

        Args:
          batch: ``{'input': [b, I] sparse rows}``.
          training: dropout and sampling on (as the phase has them).
          phase: ``encoder`` (dropout, a sampled code, the KL term) or
            ``decoder`` (no dropout, the posterior mean unless
            ``decoder_noise``; the KL term is constant in the decoder's
            weights, so it is left out).
        """
        c = self.config
        coo, normalized = self._inputs(batch["input"])
        n_rows = tf.cast(coo.n_rows, tf.float32)
        encoder_phase = phase == ENCODER
        values = normalized
        if training and encoder_phase and c.dropout > 0:
            values = keras.random.dropout(values, c.dropout, seed=self.noise)
        mu, logvar = self.encoder.encode(coo.with_values(values))
        z = mu
        if training and (encoder_phase or c.decoder_noise):
            z = mu + keras.random.normal(tf.shape(mu), seed=self.noise) * tf.exp(0.5 * logvar)
        if not encoder_phase:
            z = tf.stop_gradient(z)
        logits = self.to_float32(self.decoder(z))
        picked = tf.gather_nd(tf.nn.log_softmax(logits, axis=-1), tf.stack([coo.rows, coo.cols], axis=1)) * coo.values
        neg_ll = -tf.reduce_sum(picked) / n_rows
        l2 = 0.0
        if c.lam:  # on the weight matrices of the phase being trained
            trained = self.encoder if encoder_phase else self.decoder
            l2 = c.lam * tf.add_n([tf.reduce_sum(tf.square(w)) for w in trained.trainable_weights if "kernel" in w.path])
        if not encoder_phase:
            return neg_ll + l2, {"neg_ll": neg_ll}
        old_mu, old_logvar = self.old_encoder.encode(coo.with_values(normalized))
        prior = composite_prior_log_density(z, tf.stop_gradient(old_mu), tf.stop_gradient(old_logvar),
                                            c.prior_weights, c.wide_logvar)
        kl = tf.reduce_sum(log_normal(z, mu, logvar) - prior, axis=1)  # [b], a one-sample estimate
        beta = c.kl_gamma * layers.row_sum(coo.rows, coo.values, coo.n_rows)  # β(x) = γ·|x|
        weighted = tf.reduce_sum(beta * kl) / n_rows
        return neg_ll + weighted + l2, {"neg_ll": neg_ll, "kl": tf.reduce_sum(kl) / n_rows, "weighted_kl": weighted}

    def train_step(self, batch: dict[str, Any], updater: Updater) -> dict[str, tf.Tensor]:
        phase = updater.phase.name
        loss, logs = updater.minimize(lambda: self.compute_loss(batch, training=True, phase=phase))
        return {"loss": loss, **logs}

    def evaluate_step(self, batch: dict[str, Any]):
        scores = self(batch["input"], training=False)
        return metrics.topk_metrics(scores, batch["target"], seen=batch["input"], names=self.ranking_metrics)

    def dummy_batch(self) -> dict[str, Any]:
        sp = tf.SparseTensor(indices=tf.zeros([1, 2], tf.int64), values=tf.ones([1]),
                             dense_shape=[1, self.config.n_items])
        return {"input": sp, "target": sp}
