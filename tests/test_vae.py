"""Mult-VAE / Mult-DAE: architecture, loss against a NumPy reference, annealing, precision, XLA form."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from training import layers, precision
from vae.config import VAEConfig
from vae.model import MultVAE, build


def _sparse(dense: np.ndarray) -> tf.SparseTensor:
    return tf.sparse.from_dense(tf.constant(dense, tf.float32))


def _clicks(rng, n_users=6, n_items=12, p=0.3):
    x = (rng.random((n_users, n_items)) < p).astype(np.float32)
    x[:, 0] = 1.0  # no empty rows
    return x


def test_architecture_vae_and_dae():
    vae = build(VAEConfig(n_items=30, hidden=(16,), latent=4))
    shapes = {w.path: tuple(w.shape) for w in vae.trainable_weights}
    # [I-600-200-600-I] in miniature: I-16-(2x4)-... decoder 4-16-I
    assert shapes["encoder_0/kernel"] == (30, 16)
    assert shapes["encoder_code/kernel"] == (16, 8)
    assert shapes["decoder_0/kernel"] == (4, 16)
    assert shapes["decoder_out/kernel"] == (16, 30)
    dae = build(VAEConfig.dae(30, latent=5))
    assert sorted(tuple(w.shape) for w in dae.trainable_weights if "kernel" in w.path) == [(5, 30), (30, 5)]
    assert dae.config.lam == 0.001 and not dae.config.variational


def test_eval_loss_equals_numpy_multinomial_likelihood_and_kl():
    rng = np.random.default_rng(0)
    x = _clicks(rng)
    model = build(VAEConfig(n_items=12, hidden=(8,), latent=3, total_anneal_steps=10, anneal_cap=0.2))
    model.anneal_updates.assign(4.0)  # KL weight = min(0.2, 4/10) = 0.2
    loss, logs = model.compute_loss({"input": _sparse(x)}, training=False)
    logits, mu, logvar = (t.numpy() for t in model.forward(_sparse(x), training=False))
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    neg_ll = -np.mean(np.sum(log_softmax * x, axis=1))  # -1/b sum_u sum_i x_ui log pi_ui
    kl = np.mean(np.sum(0.5 * (-logvar + np.exp(logvar) + mu ** 2 - 1), axis=1))
    np.testing.assert_allclose(float(logs["neg_ll"]), neg_ll, rtol=1e-5)
    np.testing.assert_allclose(float(logs["kl"]), kl, rtol=1e-5)
    np.testing.assert_allclose(float(loss), neg_ll + 0.2 * kl, rtol=1e-5)


def test_eval_forward_uses_l2_normalised_input_and_no_noise():
    rng = np.random.default_rng(1)
    x = _clicks(rng)
    model = build(VAEConfig(n_items=12, hidden=(8,), latent=3))
    a = model(_sparse(x), training=False).numpy()
    b = model(_sparse(3.0 * x), training=False).numpy()  # scaling a row does not change its L2-normalised input
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a, model(_sparse(x), training=False).numpy())


def test_l2_term_is_lam_times_sum_of_squared_kernels():
    rng = np.random.default_rng(2)
    x = _sparse(_clicks(rng))
    plain = build(VAEConfig(n_items=12, hidden=(8,), latent=3, lam=0.0, variational=False))
    reg = MultVAE(VAEConfig(n_items=12, hidden=(8,), latent=3, lam=0.5, variational=False))
    reg.ensure_built()
    reg.set_weights(plain.get_weights())
    l0, _ = plain.compute_loss({"input": x}, training=False)
    l1, _ = reg.compute_loss({"input": x}, training=False)
    sq = sum(float(np.sum(w.numpy() ** 2)) for w in plain.trainable_weights if "kernel" in w.path)
    np.testing.assert_allclose(float(l1) - float(l0), 0.5 * sq, rtol=1e-4)


def test_kl_weight_anneals_to_cap_with_updates():
    model = build(VAEConfig(n_items=5, hidden=(4,), latent=2, total_anneal_steps=100, anneal_cap=0.2))
    got = []
    for updates in (0, 10, 20, 500):
        model.anneal_updates.assign(float(updates))
        got.append(float(model.kl_weight()))
    np.testing.assert_allclose(got, [0.0, 0.1, 0.2, 0.2], rtol=1e-6)  # min(cap, updates / total)


def test_xla_coo_form_equals_sparse_form_and_compiles():
    rng = np.random.default_rng(3)
    x = _clicks(rng, n_users=4, n_items=10)
    model = build(VAEConfig(n_items=10, hidden=(6,), latent=2))
    r, c = np.nonzero(x)
    pad = 16 - len(r)  # padded to a power of two with zero-valued entries at (0, 0)
    coo = {"rows": np.r_[r, np.zeros(pad)].astype(np.int32), "cols": np.r_[c, np.zeros(pad)].astype(np.int32),
           "values": np.r_[x[r, c], np.zeros(pad)].astype(np.float32), "n_rows": np.int32(4)}
    compiled = tf.function(lambda b: model.compute_loss(b, training=False)[0], jit_compile=True)
    np.testing.assert_allclose(float(compiled({"input": coo})),
                               float(model.compute_loss({"input": _sparse(x)}, training=False)[0]), rtol=1e-5)
    np.testing.assert_allclose(model(coo).numpy(), model(_sparse(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_mixed_bfloat16_keeps_float32_variables_and_outputs():
    with precision.policy_scope(precision.MIXED_BFLOAT16):
        model = build(VAEConfig(n_items=12, hidden=(8,), latent=3))
    assert keras.config.dtype_policy().name == "float32"  # the scope restored the global policy
    assert model.decoder[0].compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights if "kernel" in w.path)
    x = _sparse(_clicks(np.random.default_rng(4)))
    assert model(x).dtype == tf.float32
    loss, logs = model.compute_loss({"input": x}, training=True)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))


def test_seed_fixes_initial_weights():
    def kernels(seed):
        return [w.numpy() for w in build(VAEConfig(n_items=9, hidden=(4,), latent=2, seed=seed)).trainable_weights
                if "kernel" in w.path]

    a, b, c = kernels(5), kernels(5), kernels(6)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not any(np.array_equal(u, v) for u, v in zip(a, c))


def test_sparse_dense_layer_matches_dense_matmul_both_paths():
    rng = np.random.default_rng(5)
    x = _clicks(rng, n_users=3, n_items=7) * rng.random((3, 7)).astype(np.float32)
    layer = layers.SparseDense(7, 4, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    expected = x @ layer.kernel.numpy()
    coo = layers.as_coo(_sparse(x))
    np.testing.assert_allclose(layer.apply_coo(coo).numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.apply_coo(coo._replace(padded=True)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_sparse_first_layer_multiplies_in_float32_under_bfloat16():
    # The CPU's sparse matmul has no fast bf16 kernel: under mixed_bfloat16 the tf.sparse path multiplies the float32
    # kernel and values, then rounds the product once to bf16 (a bf16 matmul would round the kernel first).
    rng = np.random.default_rng(6)
    x = _clicks(rng, n_users=4, n_items=50) * rng.random((4, 50)).astype(np.float32)
    with precision.policy_scope(precision.MIXED_BFLOAT16):
        layer = layers.SparseDense(50, 6, use_bias=False, kernel_initializer=keras.initializers.RandomNormal(seed=2))
    out = layer.apply_coo(layers.as_coo(_sparse(x)))
    assert out.dtype == tf.bfloat16 and layer.kernel.dtype == "float32"
    exact = x.astype(np.float64) @ layer.kernel.numpy().astype(np.float64)
    once = tf.cast(tf.constant(exact, tf.float32), tf.bfloat16).numpy().astype(np.float64)
    np.testing.assert_allclose(out.numpy().astype(np.float64), once, rtol=1e-6, atol=1e-6)
    # The padded (XLA) path gathers bf16 kernel rows: close, not once-rounded.
    padded = layer.apply_coo(layers.as_coo(_sparse(x))._replace(padded=True))
    assert padded.dtype == tf.bfloat16
    np.testing.assert_allclose(padded.numpy().astype(np.float64), exact, rtol=3e-2, atol=3e-2)
