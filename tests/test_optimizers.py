"""training/optimizers.py: Adam's update in TensorFlow's fused kernel equals Keras' Adam."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training import optimizers


def _run(optimizer, init, grads):
    variables = [keras.Variable(x) for x in init]
    optimizer.build(variables)
    step = tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)))
    for g in grads:
        step(g)
    return [v.numpy() for v in variables]


def _grads(init, steps, sparse=False):
    out = []
    for t in range(steps):
        g = [tf.constant(np.sin(np.arange(x.size) * 0.7 + t).reshape(x.shape).astype(np.float32)) for x in init]
        if sparse:  # an embedding table's gradient: rows 0 and 2 of the first variable
            g[0] = tf.IndexedSlices(g[0][:2], tf.constant([0, 2]), tf.constant(init[0].shape))
        out.append(g)
    return out


@pytest.mark.parametrize("fused, reference, kwargs", [
    (optimizers.Adam, keras.optimizers.Adam, {}),
    (optimizers.AdamW, keras.optimizers.AdamW, {"weight_decay": 0.1}),
])
def test_the_fused_update_is_keras_adam(fused, reference, kwargs):
    rng = np.random.default_rng(0)
    init = [rng.normal(size=s).astype(np.float32) for s in [(30, 7), (7,)]]
    grads = _grads(init, 6)
    ours, theirs = _run(fused(1e-2, **kwargs), init, grads), _run(reference(1e-2, **kwargs), init, grads)
    # The same formula in one kernel: equal to float32 rounding (1 - beta is computed in float32 there).
    for a, b, x in zip(ours, theirs, init):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-6)
        assert np.abs(a - x).max() > 1e-2  # the steps moved the weights

    # By hand, the first step of Adam from zero moments: w - lr * g / (|g| + eps) (bias corrections cancel).
    one = _run(fused(1e-2, **kwargs), init, grads[:1])
    decayed = init[1] * (1 - 1e-2 * kwargs.get("weight_decay", 0.0))
    g = grads[0][1].numpy()
    np.testing.assert_allclose(one[1], decayed - 1e-2 * g / (np.abs(g) + 1e-7), rtol=1e-5, atol=1e-7)


def test_sparse_gradients_and_amsgrad_keep_keras_update_bit_for_bit():
    rng = np.random.default_rng(1)
    init = [rng.normal(size=s).astype(np.float32) for s in [(5, 3), (3,)]]
    grads = _grads(init, 3, sparse=True)
    ours, theirs = _run(optimizers.Adam(1e-2), init, grads), _run(keras.optimizers.Adam(1e-2), init, grads)
    np.testing.assert_array_equal(ours[0], theirs[0])  # the IndexedSlices one: Keras' own update
    np.testing.assert_array_equal(ours[0][[1, 3, 4]], init[0][[1, 3, 4]])  # rows without gradient untouched
    ams = [_run(cls(1e-2, amsgrad=True), init, _grads(init, 3)) for cls in (optimizers.Adam, keras.optimizers.Adam)]
    for a, b in zip(*ams):
        np.testing.assert_array_equal(a, b)
