"""Adam with TensorFlow's fused update kernel.

Keras 3's Adam updates each variable with a chain of elementwise ops (the two
moments, then the weight), each a pass over the variable's memory; TensorFlow's
``ResourceApplyAdam`` kernel (the one tf.keras' Adam used) does the same update
in one pass. At the ML-20M shape (24M weights) that is 26 ms against 74 ms a
step on this CPU, a quarter of a Mult-VAE step (bench/profile_vae.py). The
update is Keras' formula: m += (g - m)(1 - beta1); v += (g^2 - v)(1 - beta2);
w -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon). The
variables, their checkpoints and everything else are Keras' own; only the
arithmetic of the dense float32 update moves into the one kernel.
"""

from __future__ import annotations

import keras
import tensorflow as tf


class _FusedUpdate:
    """Replaces the dense float32 Adam update of a Keras Adam subclass by ``ResourceApplyAdam``.

    Sparse gradients (``tf.IndexedSlices``, the embedding tables), AMSGrad and
    other dtypes keep Keras' update.
    """

    def update_step(self, gradient, variable, learning_rate):
        if (self.amsgrad or isinstance(gradient, tf.IndexedSlices) or variable.dtype != tf.float32
                or keras.backend.backend() != "tensorflow"):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        step = tf.cast(self.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.cast(self.beta_1, tf.float32), tf.cast(self.beta_2, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.value.handle, v=v.value.handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, tf.float32), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, tf.float32), grad=tf.cast(gradient, tf.float32))


class Adam(_FusedUpdate, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with the fused dense update."""


class AdamW(_FusedUpdate, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` (decoupled weight decay, applied by Keras first) with the fused dense update."""
