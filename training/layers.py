"""Layers shared by the models: the sparse first layer and its input forms.

A batch of user rows reaches a model in one of two forms:
  * a ``tf.SparseTensor`` [b, n_items] (the default tf.data form), or
  * the XLA form, a dict ``{'rows', 'cols', 'values', 'n_rows'}`` of COO
    entries padded to a power of two (pad entries have value 0).
:func:`as_coo` turns either into COO arrays so models handle both alike.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import keras
import tensorflow as tf

from training import precision

SparseRows = Union[tf.SparseTensor, dict]


class Coo(NamedTuple):
    """A sparse batch as COO arrays.

    Attributes:
      rows: int32 [P] row of each entry.
      cols: int32 [P] column of each entry.
      values: float32 [P] (0 for padding entries).
      n_rows: int32 scalar, the batch size b.
      padded: True for the XLA form (use gather + segment-sum, not tf.sparse).
    """

    rows: tf.Tensor
    cols: tf.Tensor
    values: tf.Tensor
    n_rows: tf.Tensor
    padded: bool

    def with_values(self, values: tf.Tensor) -> "Coo":
        return self._replace(values=values)


def as_coo(x: SparseRows) -> Coo:
    """COO arrays of a sparse batch in either form."""
    if isinstance(x, tf.SparseTensor):
        rows = tf.cast(x.indices[:, 0], tf.int32)
        cols = tf.cast(x.indices[:, 1], tf.int32)
        return Coo(rows, cols, tf.cast(x.values, tf.float32), tf.cast(x.dense_shape[0], tf.int32), False)
    return Coo(tf.cast(x["rows"], tf.int32), tf.cast(x["cols"], tf.int32), tf.cast(x["values"], tf.float32),
               tf.cast(x["n_rows"], tf.int32), True)


def l2_normalize_rows(rows: tf.Tensor, values: tf.Tensor, n_rows: tf.Tensor) -> tf.Tensor:
    """Values [P] of each row divided by the row's L2 norm (empty rows stay 0)."""
    norms = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(values), rows, n_rows))
    return tf.math.divide_no_nan(values, tf.gather(norms, rows))


def row_sum(rows: tf.Tensor, values: tf.Tensor, n_rows: tf.Tensor) -> tf.Tensor:
    """Sum of each row's values: [P] -> [n_rows]."""
    return tf.math.unsorted_segment_sum(values, rows, n_rows)


class SparseDense(keras.layers.Layer):
    """A Dense layer whose input is a sparse batch of rows.

    Never densifies the input. Without XLA it runs
    ``tf.sparse.sparse_dense_matmul`` (the thesis' optimisation); with COO
    input it gathers the kernel rows of the non-zeros and sums them per row
    with ``unsorted_segment_sum``, which, unlike the sparse matmul, has an XLA
    kernel (and was the fastest first layer under ``jit_compile`` on CPU).

    Args:
      input_dim: number of columns of the sparse input (items).
      units: output width.
      activation: a Keras activation name or callable.
      kernel_initializer: a Keras initializer.
    """

    def __init__(self, input_dim: int, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", **kwargs) -> None:
        # No autocast: Keras would round the input values and the variables to the compute dtype before call(),
        # which casts what runs in the compute dtype itself.
        super().__init__(autocast=False, **kwargs)
        self.input_dim = int(input_dim)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        # (Per variable too: a layer called outside a model still enters Keras' autocast scope.)
        self.kernel = self.add_weight(shape=(self.input_dim, self.units), autocast=False,
                                      initializer=keras.initializers.get(kernel_initializer), name="kernel")
        self.bias = (self.add_weight(shape=(self.units,), initializer="zeros", name="bias", autocast=False)
                     if use_bias else None)

    def apply_coo(self, coo: Coo) -> tf.Tensor:
        """Args: coo: a :class:`Coo` batch [b, input_dim]. Returns [b, units]."""
        return self(coo.rows, coo.cols, coo.values, coo.n_rows, padded=coo.padded)

    def call(self, rows, cols, values, n_rows, padded: bool = False) -> tf.Tensor:
        if padded:
            kernel = precision.compute(self.kernel, self)
            out = tf.math.unsorted_segment_sum(tf.gather(kernel, cols) * precision.compute(values, self)[:, None],
                                               rows, n_rows)
        else:
            # float32 under any policy: the CPU's sparse matmul has no fast bfloat16 kernel (at the ML-20M shape,
            # bench/profile_vae.py: 27 ms forward and 47 ms backward in bf16 against 7 and 29 in float32).
            indices = tf.stack([tf.cast(rows, tf.int64), tf.cast(cols, tf.int64)], axis=1)
            shape = tf.stack([tf.cast(n_rows, tf.int64), tf.constant(self.input_dim, tf.int64)])
            out = tf.sparse.sparse_dense_matmul(tf.SparseTensor(indices, precision.as_float32(values), shape),
                                                precision.as_float32(self.kernel))
            out = precision.compute(out, self)
        if self.bias is not None:
            out = out + precision.compute(self.bias, self)
        return self.activation(out)
