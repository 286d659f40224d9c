"""The only mixed-precision code of the toolkit.

``--use_tf_amp`` means ``mixed_float16`` with dynamic loss scaling on a GPU and
``mixed_bfloat16`` on a CPU: on AVX-512-BF16 CPUs bf16 Dense layers ran about
1.6x faster than float32 while float16 ran slower, and bf16 has float32's
exponent range, so it needs no loss scaling. Variables stay float32 either way;
models end in :func:`float32_output` so logits, softmax and losses are float32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import keras
import tensorflow as tf

FLOAT32 = "float32"
MIXED_FLOAT16 = "mixed_float16"
MIXED_BFLOAT16 = "mixed_bfloat16"


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def policy_name(use_amp: bool, gpu: bool | None = None) -> str:
    """The Keras dtype policy for a run.

    Args:
      use_amp: the ``--use_tf_amp`` flag.
      gpu: whether a GPU runs the model; detected when None.
    """
    if not use_amp:
        return FLOAT32
    if gpu is None:
        gpu = has_gpu()
    return MIXED_FLOAT16 if gpu else MIXED_BFLOAT16


@contextlib.contextmanager
def policy_scope(name: str) -> Iterator[None]:
    """Builds the layers created inside under dtype policy ``name``.

    Keras reads the global policy when a layer is constructed, so the policy is
    set only while the model is built and restored afterwards: nothing leaks
    into other models built later in the same process (tests, ``compare``).
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, name: str) -> keras.optimizers.Optimizer:
    """Adds dynamic loss scaling where the policy needs it (float16 only)."""
    if name == MIXED_FLOAT16 and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def scale_loss(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
    """The loss to differentiate: scaled by the loss scale when there is one.

    The matching unscale, and the skipping of steps whose gradients overflowed,
    happen inside ``LossScaleOptimizer.apply_gradients``.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


def float32_output(name: str = "float32_output") -> keras.layers.Layer:
    """An identity layer whose output is float32 under any policy.

    Keras' recommended way to keep a model's logits in float32: the layer's own
    dtype policy is float32, so Keras casts its input up.
    """
    return keras.layers.Activation("linear", dtype=FLOAT32, name=name)


def compute(x, layer: keras.layers.Layer) -> tf.Tensor:
    """``x`` (a variable or tensor) in ``layer``'s compute dtype: how a layer reads float32 variables under mixed precision."""
    return tf.cast(x, layer.compute_dtype)


def like(x, reference: tf.Tensor) -> tf.Tensor:
    """``x`` in the dtype of ``reference`` (a value combined with an activation of the compute dtype)."""
    return tf.cast(x, reference.dtype)


def as_float32(x) -> tf.Tensor:
    """``x`` in float32: losses, metrics, softmax statistics and the latent Gaussian stay float32 under any policy."""
    return tf.cast(x, FLOAT32)


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that holds the learning rate (unwraps loss scaling)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.inner_optimizer
    return optimizer
