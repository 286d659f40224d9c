"""The losses of the matrix-factorization models."""

from __future__ import annotations

import tensorflow as tf

from data.errors import ConfigError
from mf.config import BPR_FORMS
from training import precision


def bpr_loss(pos: tf.Tensor, neg: tf.Tensor, form: str = "homework") -> tf.Tensor:
    """Bayesian personalised ranking loss of (positive, negative) score pairs.

    With d = p+ - p-:
      ``homework`` (seed 003, eq. 3): mean(1 - sigmoid(d)), bounded in (0, 1);
        its gradient sigmoid(d) (1 - sigmoid(d)) vanishes for badly ranked
        pairs too, unlike the log form.
      ``log`` (Rendle et al. 2009): mean(-log sigmoid(d)) = mean(softplus(-d)).

    Args:
      pos: [b] scores of the positive items, any float dtype.
      neg: [b] scores of the sampled negatives.
      form: ``homework`` or ``log``.

    Returns:
      float32 scalar.
    """
    if form not in BPR_FORMS:
        raise ConfigError(f"unknown BPR form '{form}'; use {' or '.join(BPR_FORMS)}")
    diff = precision.as_float32(pos) - precision.as_float32(neg)
    if form == "homework":
        return tf.reduce_mean(1.0 - tf.sigmoid(diff))
    # softplus(-d) is -log sigmoid(d) without the overflow of log(sigmoid(d)) for d << 0.
    return tf.reduce_mean(tf.nn.softplus(-diff))


def squared_error_sum(pred: tf.Tensor, truth: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Summed squared error over the non-zero ratings of a list of pairs.

    The pair-list form of :func:`training.metrics.squared_error`: a rating
    model scores only the target entries instead of densifying [b, I].

    Args:
      pred: [P] predicted ratings, any float dtype.
      truth: [P] true ratings; 0 means "not rated" and is not scored.

    Returns:
      ``(sum of squared errors, number of scored pairs)``, float32 scalars.
    """
    truth = precision.as_float32(truth)
    scored = tf.not_equal(truth, 0.0)
    err = precision.as_float32(pred) - truth
    return (tf.reduce_sum(tf.where(scored, tf.square(err), 0.0)),
            tf.reduce_sum(precision.as_float32(scored)))
