"""DeepRec: shapes, masked MSE by hand, tied weights, re-feeding updates, activations, item-based rows,
real-data training, the NaN guard, predictions and the main.py run."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data.errors import ConfigError, TrainingError
from data.protocols import official_fold
from data.types import RatingSplit
from deeprec.config import ACTIVATIONS, DeepRecConfig
from deeprec.model import DeepRec, activation_fn, build, csr_to_sparse, predict_pairs
from training import distribute, families, precision
from training.config import OptimConfig, RunConfig
from training.model import Updater
from training.trainer import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent


def _ratings(n_rows=6, n_items=12, density=0.4, seed=0) -> sp.csr_matrix:
    """Random ratings 1..5, every row non-empty."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n_rows, n_items)) < density, rng.integers(1, 6, (n_rows, n_items)), 0)
    x[:, 0] = rng.integers(1, 6, n_rows)
    return sp.csr_matrix(x.astype(np.float32))


def _updater(model, optimizer=None) -> Updater:
    optimizer = optimizer or keras.optimizers.SGD(1e-2)
    optimizer.build(model.trainable_variables)
    return Updater(model, optimizer, distribute.Distribution())


_NP_ACT = {
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * np.expm1(np.minimum(z, 0))),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "relu": lambda z: np.maximum(z, 0),
    "relu6": lambda z: np.clip(z, 0, 6),
    "lrelu": lambda z: np.where(z > 0, z, 0.01 * z),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "swish": lambda z: z / (1 + np.exp(-z)),
}


def _numpy_forward(model: DeepRec, x: np.ndarray) -> np.ndarray:
    """The eval-mode forward pass of the paper, layer by layer in NumPy (tied: W_d = W_e^T)."""
    c = model.config
    act = _NP_ACT[c.activation]
    h = x.astype(np.float64)
    for layer in model.encoder:
        h = act(h @ layer.kernel.numpy() + layer.bias.numpy())
    for j, layer in enumerate(model.decoder):
        source = model.encoder[len(model.encoder) - 1 - j]
        kernel = source.kernel.numpy().T if c.constrained else layer.kernel.numpy()
        z = h @ kernel + layer.bias.numpy()
        last = j == len(model.decoder) - 1
        h = z if last and not c.last_layer_activations else act(z)
    return h


# --- architecture ------------------------------------------------------------------


def test_config_defaults_from_dims_and_errors():
    c = DeepRecConfig.from_dims(n_users=7, n_items=30, hidden=[4, 3], seed=2)
    assert (c.n_users, c.n_items, c.hidden, c.seed) == (7, 30, (4, 3), 2)
    d = DeepRecConfig(n_items=5)  # the paper's Netflix Full model
    assert (d.hidden, d.activation, d.drop_prob, d.aug_step, d.constrained) == ((512, 512, 1024), "selu", 0.8, 1, False)
    assert d.last_layer_activations is True
    assert DeepRecConfig(n_items=5, activation="tanh").last_layer_activations is False  # linear output for bounded
    assert DeepRecConfig(n_items=5, activation="sigmoid", last_layer_activations=True).last_layer_activations
    for kwargs, message in [({"activation": "gelu"}, "unknown activation 'gelu'; use one of selu, elu"),
                            ({"drop_prob": 1.0}, "drop_prob must be in [0, 1), got 1.0"),
                            ({"noise_prob": -0.1}, "noise_prob must be in [0, 1)"),
                            ({"aug_step": -1}, "aug_step must be >= 0"),
                            ({"lam": -1.0}, "lam (the L2 weight) must be >= 0, got -1.0"),
                            ({"hidden": ()}, "hidden must hold at least one positive width")]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            DeepRecConfig(n_items=5, **kwargs)


@pytest.mark.parametrize("constrained", [False, True])
def test_shapes_and_forward_equals_numpy_reference(constrained):
    model = build(DeepRecConfig(n_items=12, hidden=(8, 6, 4), constrained=constrained, seed=1))
    shapes = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]: tuple(w.shape) for w in model.trainable_weights}
    expected = {"encoder_0/kernel": (12, 8), "encoder_0/bias": (8,), "encoder_1/kernel": (8, 6),
                "encoder_1/bias": (6,), "encoder_2/kernel": (6, 4), "encoder_2/bias": (4,),
                "decoder_0/bias": (6,), "decoder_1/bias": (8,), "decoder_out/bias": (12,)}
    if not constrained:  # n-8-6-4-6-8-n: the decoder mirrors the encoder
        expected.update({"decoder_0/kernel": (4, 6), "decoder_1/kernel": (6, 8), "decoder_out/kernel": (8, 12)})
    assert shapes == expected
    x = _ratings()
    out = model(csr_to_sparse(x))
    assert out.shape == (6, 12) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), _numpy_forward(model, x.toarray()), rtol=1e-4, atol=1e-5)


def test_dense_and_xla_coo_paths_equal_the_sparse_path():
    model = build(DeepRecConfig(n_items=12, hidden=(5, 3), seed=2))
    x = _ratings(n_rows=4)
    sparse = model(csr_to_sparse(x)).numpy()
    np.testing.assert_allclose(model(tf.constant(x.toarray())).numpy(), sparse, rtol=1e-5, atol=1e-6)
    coo = x.tocoo()
    pad = 32 - coo.nnz  # the XLA form: padded with zero-valued entries at (0, 0)
    batch = {"rows": np.r_[coo.row, np.zeros(pad)].astype(np.int32),
             "cols": np.r_[coo.col, np.zeros(pad)].astype(np.int32),
             "values": np.r_[coo.data, np.zeros(pad)].astype(np.float32), "n_rows": np.int32(4)}
    compiled = tf.function(lambda b: model(b), jit_compile=True)
    np.testing.assert_allclose(compiled(batch).numpy(), sparse, rtol=1e-5, atol=1e-5)
    # Padding entries carry value 0 and are no ratings: the loss ignores them.
    np.testing.assert_allclose(float(model.compute_loss({"input": batch}, training=False)[0]),
                               float(model.compute_loss({"input": csr_to_sparse(x)}, training=False)[0]), rtol=1e-5)


# --- loss ---------------------------------------------------------------------------


def _constant_output_model(value: float, n_items: int = 4) -> DeepRec:
    """Zero kernels and hidden biases, linear output with bias ``value``: f(x) = value everywhere."""
    model = build(DeepRecConfig(n_items=n_items, hidden=(3,), last_layer_activations=False, drop_prob=0.0))
    for w in model.trainable_weights:
        w.assign(np.zeros(w.shape, np.float32))
    model.decoder[-1].bias.assign(np.full(n_items, value, np.float32))
    return model


def test_masked_mse_by_hand():
    model = _constant_output_model(3.0)
    # Row 0 rated item 0 with 5 and item 2 with 1, row 1 rated item 1 with 4; the rest is unobserved.
    x = sp.csr_matrix(np.array([[5, 0, 1, 0], [0, 4, 0, 0]], np.float32))
    loss, logs = model.compute_loss({"input": csr_to_sparse(x)}, training=False)
    # MMSE = sum_i m_i (r_i - y_i)^2 / sum_i m_i = ((5-3)^2 + (1-3)^2 + (4-3)^2) / 3 = 9 / 3 = 3,
    # over all ratings of the batch (a mean of the rows' means would be (4 + 1) / 2 = 2.5).
    assert float(loss) == pytest.approx(3.0)
    assert float(logs["rmse"]) == pytest.approx(np.sqrt(3.0))
    # Re-feeding loss on a dense y: zeros are masked out, every other entry counts:
    # ((2-3)^2 + (5-3)^2 + (3-3)^2) / 3 = 5 / 3.
    y = tf.constant([[2.0, 0.0, 5.0, 3.0]])
    assert float(model.dense_loss(y, training=False)[0]) == pytest.approx(5.0 / 3.0)
    # Evaluation: the target's ratings are predicted from the input rows: (4-3)^2 + (2-3)^2 over 2 ratings.
    target = sp.csr_matrix(np.array([[0, 4, 0, 0], [2, 0, 0, 0]], np.float32))
    total, count = model.evaluate_step({"input": csr_to_sparse(x), "target": csr_to_sparse(target)})["mse"]
    assert (float(total), float(count)) == (2.0, 2.0)


def test_loss_equals_numpy_masked_mse_on_random_rows():
    model = build(DeepRecConfig(n_items=12, hidden=(6, 4), seed=3))
    x = _ratings(seed=4)
    pred = model(csr_to_sparse(x)).numpy()
    dense = x.toarray()
    observed = dense != 0
    expected = np.sum((pred - dense)[observed] ** 2) / observed.sum()
    np.testing.assert_allclose(float(model.compute_loss({"input": csr_to_sparse(x)}, training=False)[0]),
                               expected, rtol=1e-5)


@pytest.mark.parametrize("constrained", [False, True])
def test_l2_penalty_is_lam_times_sum_of_squared_kernels(constrained):
    config = DeepRecConfig(n_items=12, hidden=(6, 4), constrained=constrained, seed=16)
    plain = build(config)
    reg = build(dataclasses.replace(config, lam=0.5))
    reg.set_weights(plain.get_weights())
    x = csr_to_sparse(_ratings(seed=17))
    (l0, _), (l1, logs) = plain.compute_loss({"input": x}, False), reg.compute_loss({"input": x}, False)
    # lam * sum over the kernels W of sum(W**2); a tied kernel is one variable and counts once.
    kernels = [layer.kernel.numpy() for layer in plain.encoder]
    if not constrained:
        kernels += [layer.kernel.numpy() for layer in plain.decoder]
    np.testing.assert_allclose(float(l1) - float(l0), 0.5 * sum(np.sum(k ** 2) for k in kernels), rtol=1e-5)
    assert float(logs["rmse"]) == pytest.approx(np.sqrt(float(l0)))  # the logged RMSE has no penalty
    y = tf.constant(_ratings(seed=18).toarray())
    np.testing.assert_allclose(float(reg.dense_loss(y, False)[0]) - float(plain.dense_loss(y, False)[0]),
                               float(l1) - float(l0), rtol=1e-5)


# --- tied weights -------------------------------------------------------------------


def test_tied_decoder_shares_the_encoder_variables():
    model = build(DeepRecConfig(n_items=10, hidden=(6, 4), constrained=True, drop_prob=0.0, seed=5))
    enc, dec = model.encoder, model.decoder
    assert dec[0].kernel is enc[1].kernel and dec[1].kernel is enc[0].kernel  # the same variable objects
    ids = [id(v) for v in model.trainable_variables]
    assert len(ids) == len(set(ids)) == 4 + 2  # 2 kernels + 2 encoder biases + 2 decoder biases, none twice
    untied = build(DeepRecConfig(n_items=10, hidden=(6, 4), seed=5))
    assert len(untied.trainable_variables) == 8
    # Changing the encoder's kernel changes the decoder's, and the output follows W_d = W_e^T.
    x = _ratings(n_items=10, seed=6)
    before = model(csr_to_sparse(x)).numpy()
    enc[0].kernel.assign(enc[0].kernel.numpy() * 2.0)
    np.testing.assert_array_equal(dec[1].kernel.numpy(), enc[0].kernel.numpy())
    after = model(csr_to_sparse(x)).numpy()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _numpy_forward(model, x.toarray()), rtol=1e-4, atol=1e-5)
    # One update moves the shared kernel once, by the sum of the gradients of both of its uses.
    batch = {"input": csr_to_sparse(x)}
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss(batch, training=False)
    grad = tape.gradient(loss, enc[0].kernel)
    start = enc[0].kernel.numpy()
    updater = _updater(model, keras.optimizers.SGD(0.1))
    updater.minimize(lambda: model.compute_loss(batch, training=False))
    np.testing.assert_allclose(enc[0].kernel.numpy(), start - 0.1 * grad.numpy(), rtol=1e-5, atol=1e-7)


# --- dense re-feeding ---------------------------------------------------------------


@pytest.mark.parametrize("aug_step", [0, 1, 3])
def test_refeeding_makes_k_plus_one_updates_per_batch(aug_step):
    model = build(DeepRecConfig(n_items=12, hidden=(6, 4), aug_step=aug_step, seed=7))
    updater = _updater(model, keras.optimizers.Adam(1e-3))
    step = tf.function(lambda b: model.train_step(b, updater))
    x = _ratings(seed=8)
    for _ in range(3):
        logs = step({"input": csr_to_sparse(x)})
    assert int(updater.updates.numpy()) == 3 * (aug_step + 1)
    assert int(updater.optimizer.iterations.numpy()) == 3 * (aug_step + 1)
    assert ("refeed_loss" in logs) == (aug_step > 0)


def test_refeeding_trains_f_of_y_towards_y_computed_after_the_first_update():
    config = DeepRecConfig(n_items=12, hidden=(6, 4), drop_prob=0.0, aug_step=1, seed=9)
    x = csr_to_sparse(_ratings(seed=10))
    trained, manual, stale = build(config), build(config), build(config)
    for other in (manual, stale):
        other.set_weights(trained.get_weights())
    trained.train_step({"input": x}, _updater(trained))
    # The paper's steps 1-4 by hand: update on x, then y = f(x) with the new weights, update on f(y) vs y.
    up = _updater(manual)
    up.minimize(lambda: manual.compute_loss({"input": x}))
    y = manual(x)
    up.minimize(lambda: manual.dense_loss(y))
    for a, b in zip(trained.get_weights(), manual.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # y taken before the first update gives other weights: the test can tell the two orders apart.
    up = _updater(stale)
    y_old = stale(x)
    up.minimize(lambda: stale.compute_loss({"input": x}))
    up.minimize(lambda: stale.dense_loss(y_old))
    assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(trained.get_weights(), stale.get_weights()))


# --- activations --------------------------------------------------------------------


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_builds_trains_and_matches_numpy(name):
    model = build(DeepRecConfig(n_items=12, hidden=(6, 4), activation=name, aug_step=1, seed=11))
    x = _ratings(seed=12)
    np.testing.assert_allclose(model(csr_to_sparse(x)).numpy(), _numpy_forward(model, x.toarray()),
                               rtol=1e-4, atol=1e-5)
    logs = model.train_step({"input": csr_to_sparse(x)}, _updater(model))
    assert all(np.isfinite(float(v)) for v in logs.values())
    z = np.linspace(-3, 3, 7).astype(np.float32)
    np.testing.assert_allclose(activation_fn(name)(tf.constant(z)).numpy(), _NP_ACT[name](z), rtol=1e-5, atol=1e-6)


def test_bounded_activations_keep_a_linear_output_layer():
    # sigmoid outputs < 1, but ratings are 1..5: with the linear last layer an output bias of 3 gives 3.
    model = build(DeepRecConfig(n_items=4, hidden=(3,), activation="sigmoid", drop_prob=0.0))
    model.decoder[-1].bias.assign(np.full(4, 3.0, np.float32))
    model.decoder[-1].kernel.assign(np.zeros((3, 4), np.float32))
    np.testing.assert_allclose(model(csr_to_sparse(_ratings(n_items=4))).numpy(), 3.0)


# --- rows = items -------------------------------------------------------------------


def test_item_based_model_on_the_transposed_split():
    rng = np.random.default_rng(13)
    full = _ratings(n_rows=9, n_items=7, density=0.7, seed=13).tocoo()
    part = rng.random(full.nnz) < 0.8
    pick = lambda mask: sp.csr_matrix((full.data[mask], (full.row[mask], full.col[mask])), shape=full.shape)
    split = RatingSplit(train=pick(part), val=sp.csr_matrix(full.shape, dtype=np.float32), test=pick(~part),
                        user_ids=np.arange(9) + 100, item_ids=np.arange(7) + 500)
    items = split.transpose()
    assert (items.n_users, items.n_items) == (7, 9)
    config = DeepRecConfig.from_dims(n_users=items.n_users, n_items=items.n_items, hidden=(5,), drop_prob=0.0)
    model = build(config)
    assert model.first.kernel.shape == (9, 5)  # the input width is the number of users
    pred = predict_pairs(model, items.test, items.train, batch_size=3)
    # The slow obvious way: each item's row of training ratings -> the model -> the test users' entries.
    dense = model(tf.constant(items.train.toarray())).numpy()
    test = items.test.tocoo()
    order = np.lexsort((test.col, test.row))
    np.testing.assert_allclose(pred, dense[test.row[order], test.col[order]], rtol=1e-5, atol=1e-6)
    # The same pairs seen from the user side: (user, item) of the original test.
    assert sorted(zip(items.test.tocoo().col, items.test.tocoo().row)) == sorted(zip(split.test.tocoo().row,
                                                                                      split.test.tocoo().col))
    total, count = model.evaluate_step({"input": csr_to_sparse(items.train), "target": csr_to_sparse(items.test)})["mse"]
    np.testing.assert_allclose(float(total), np.sum((pred - items.test.tocoo().data[order]) ** 2), rtol=1e-4)
    assert float(count) == split.test.nnz


def test_predict_pairs_rejects_parts_of_different_splits():
    model = build(DeepRecConfig(n_items=12, hidden=(3,)))
    with pytest.raises(ConfigError, match=r"the pairs' matrix has shape \(6, 12\) but the input rows \(5, 12\)"):
        predict_pairs(model, _ratings(), _ratings(n_rows=5))


# --- precision and export -----------------------------------------------------------


def test_mixed_bfloat16_keeps_float32_variables_and_outputs():
    with precision.policy_scope(precision.MIXED_BFLOAT16):
        model = build(DeepRecConfig(n_items=12, hidden=(6, 4), constrained=True))
    assert model.encoder[1].compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
    x = csr_to_sparse(_ratings())
    assert model(x).dtype == tf.float32 and model(tf.sparse.to_dense(x)).dtype == tf.float32
    logs = model.train_step({"input": x}, _updater(model))
    assert logs["loss"].dtype == tf.float32 and np.isfinite(float(logs["refeed_loss"]))


def test_export_round_trip_gives_identical_predictions(tmp_path):
    from serving import export, loader

    model = build(DeepRecConfig(n_items=12, hidden=(6, 4), constrained=True, seed=14))
    model.train_step({"input": csr_to_sparse(_ratings())}, _updater(model))
    export.save(model, tmp_path, "deeprec", np.arange(12), np.arange(6))
    loaded, meta, _, _ = loader.load(tmp_path)
    assert isinstance(loaded, DeepRec) and loaded.config == model.config
    x = csr_to_sparse(_ratings(seed=15))
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


# --- real data and the engine -------------------------------------------------------


def _batches(m: sp.csr_matrix, batch_size: int):
    def train(epoch):
        order = np.random.default_rng([0, epoch]).permutation(m.shape[0])
        for i in range(0, m.shape[0], batch_size):
            yield {"input": csr_to_sparse(m[np.sort(order[i:i + batch_size])])}

    return train


def test_loss_falls_on_real_ml100k(mirror, tmp_path):
    split = official_fold(mirror / "ml-100k", "u1")
    model = build(DeepRecConfig.from_dims(split.n_users, split.n_items, hidden=(64, 64), drop_prob=0.5,
                                          aug_step=1))
    val = lambda: [{"input": csr_to_sparse(split.train), "target": csr_to_sparse(split.test)}]
    trainer = Trainer(model, keras.optimizers.Adam(1e-3), TrainConfig(epochs=6, export_dir=str(tmp_path),
                                                                       verbose=False))
    first = trainer.evaluate(val())["rmse"]
    history = trainer.fit(_batches(split.train, 128), 8, split.n_users, val)
    losses = [e["loss"] for e in history.epochs]
    assert losses[-1] < 0.5 * losses[0]
    rmse = [e["validation"]["rmse"] for e in history.epochs]
    assert rmse[-1] < 1.15 < first  # from about 3.8 at the start; predicting the train mean gives ~1.15
    assert history.epochs[-1]["validation"]["mse/count"] == split.test.nnz == 20000


def test_divergent_learning_rate_stops_with_the_nan_guard(mirror, tmp_path):
    split = official_fold(mirror / "ml-100k", "u1")
    # The paper's n-512-512-1024-512-512-n with re-feeding under momentum SGD at lr 0.1 (the reproduction
    # report's NaN, at a larger rate) really diverges: the loss goes 15.0, 11.6, 7.7, 2808, nan.
    model = build(DeepRecConfig.from_dims(split.n_users, split.n_items))
    trainer = Trainer(model, keras.optimizers.SGD(0.1, momentum=0.9),
                      TrainConfig(epochs=2, export_dir=str(tmp_path), verbose=False))
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at epoch \d, step \d+; .*lower the "
                                            r"learning rate"):
        trainer.fit(_batches(split.train, 128), 8, split.n_users, None)


def test_main_writes_rmse_into_results_json(mirror, tmp_path):
    env = {**os.environ, "TFCF_DATA_MIRROR": str(mirror), "TFCF_DATA_DIR": str(tmp_path / "cache"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / "run"
    cmd = [sys.executable, "main.py", "--model", "deeprec", "--train", "--test", "--dataset", "ml-100k",
           "--hidden_layers", "32", "--number_of_epochs", "2", "--validation_step", "1", "--batch_size_train", "128",
           "--aug_step", "1", "--export_dir", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["protocol"] == "fold"
    test = results["test"]
    assert test["mse/count"] == 20000 and 0.5 < test["rmse"] < 4.0
    assert test["rmse"] == pytest.approx(np.sqrt(test["mse"]))
    assert results["train"]["epochs"] == 2
    # The inference command writes one `user item prediction` line per test pair of u1.test.
    from experiments import deeprec_paper

    predictions = tmp_path / "pred.txt"
    assert deeprec_paper.main(["predict", "--export_dir", str(out), "--out", str(predictions), "--data_mirror",
                               str(mirror), "--data_dir", str(tmp_path / "cache")]) == 0
    lines = predictions.read_text().splitlines()
    assert len(lines) == 20000
    frame = np.loadtxt(predictions)
    truth = {}
    with open(mirror / "ml-100k" / "u1.test") as f:
        for line in f:
            user, item, rating, _ = line.split("\t")
            truth[(int(user), int(item))] = float(rating)
    assert {(int(u), int(i)) for u, i, _ in frame} == set(truth)
    rmse = np.sqrt(np.mean([(p - truth[(int(u), int(i))]) ** 2 for u, i, p in frame]))
    assert rmse == pytest.approx(test["rmse"], abs=1e-3)  # predictions are written with 4 decimals


# --- the DeepRec paper experiments (experiments/deeprec_paper.py) ---------------------------


def test_experiment_run_records_a_divergence_instead_of_raising(mirror, tmp_path):
    from experiments import deeprec_paper

    setup = deeprec_paper.Setup(dataset="ml-100k", mirror=str(mirror), data_dir=str(tmp_path), epochs=2,
                              optimizer="momentum", lr=0.1, verbose=False)
    split = deeprec_paper.load_split(setup)
    assert (split.train.nnz, split.val.nnz, split.test.nnz) == (76000, 4000, 20000)  # 5% of u1.base validates
    run = deeprec_paper.train(setup, split, "paper model, lr 0.1", {"aug_step": 1})  # the divergent setting above
    assert run.diverged.startswith("the loss became") and run.epochs == [] and np.isnan(run.best[0])
    assert run.n_params == 2 * (1682 * 512 + 512 * 512 + 512 * 1024) + 512 + 512 + 1024 + 512 + 512 + 1682


def test_tune_prints_the_main_py_command_of_the_chosen_entry():
    from experiments import deeprec_paper

    setup = deeprec_paper.Setup(major="items", optimizer="adam", lr_milestones=(25,))
    entry = {"hidden": (500,), "activation": "sigmoid", "drop_prob": 0.0, "aug_step": 0, "weight_decay": 3.0,
             "batch_size": 64, "constrained": False}
    assert deeprec_paper.main_command(setup, entry, 35) == (
        "python main.py --train --test --model deeprec --dataset ml-100k --major items --optimizer adam --lr 0.001 "
        "--weight_decay 3.0 --batch_size_train 64 --number_of_epochs 35 --seed 0 --lr_milestones 25 --lr_gamma 0.1 "
        "--hidden_layers 500 --activation sigmoid --drop_prob 0.0 --aug_step 0 --noconstrained "
        "--export_dir runs/ml-100k-deeprec-items")
    assert deeprec_paper.markdown_table(["a", "b"], [["x", 0.12345], ["y", 3]]) == (
        "| a | b |\n|---|---|\n| x | 0.1235 |\n| y | 3 |\n")


def test_experiment_cli_mistakes_are_one_error_line(capsys):
    from experiments import deeprec_paper

    cases = [([], "error: expected one command, activation | dropout | depth | refeeding | tune | predict; got none"),
             (["figure"], "error: expected one command, activation | dropout | depth | refeeding | tune | predict; "
                          "got 'figure'"),
             (["activation", "--epochs", "3"], "error: Unknown command line flag 'epochs'"),
             (["activation", "--number_of_epochs", "0"], "error: flag --number_of_epochs=0: 0 is not a positive"),
             (["tune", "--lr", "-1"], "error: flag --lr=-1.0: --lr must be a finite number > 0"),
             (["dropout", "--lr_milestones", "a"], "error: flag --lr_milestones=['a']: --lr_milestones takes"),
             (["depth", "--val_fraction", "0"], "error: flag --val_fraction=0.0: --val_fraction must be in (0, 1)"),
             (["depth", "--part", "val"], "error: --part applies to predict only, not to depth; drop it"),
             (["predict", "--out", "x.txt"], "error: predict needs --export_dir"),
             (["predict", "--lr", "0.1"], "error: --lr does not apply to predict")]
    for argv, message in cases:
        assert deeprec_paper.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, (argv, err)


def test_experiment_command_line_runs_through_absl():
    """``python -m experiments.deeprec_paper``: --help lists main.py's flag names; a mistake is one line, status 2."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "experiments.deeprec_paper", *args], cwd=REPO,
                                       env=env, capture_output=True, text=True, timeout=120)
    shown = run("--help")  # absl's help exits with status 1
    assert "--number_of_epochs" in shown.stdout and "--batch_size_train" in shown.stdout and not shown.stderr
    done = run("refeeding", "--batch_size", "64")
    assert done.returncode == 2 and done.stderr == ("error: Unknown command line flag 'batch_size'. Did you mean: "
                                                    "batch_size_train, batch_size_validation ?\n")


def test_columns_without_training_ratings_predict_the_training_mean(tmp_path):
    """Item 0 has no training rating: its untrained output column must not be scored; the training mean is."""
    from data.types import RatingSplit
    from training import distribute, precision, runner
    from training.trainer import TrainConfig

    rng = np.random.default_rng(0)
    dense = np.where(rng.random((30, 8)) < 0.7, rng.integers(1, 6, (30, 8)), 0).astype(np.float32)
    test = np.zeros_like(dense)
    test[:, 0], dense[:, 0] = 5.0, 0.0  # every test rating is on item 0, never rated in training
    train = sp.csr_matrix(dense)
    split = RatingSplit(train=train, val=sp.csr_matrix(dense.shape, dtype=np.float32), test=sp.csr_matrix(test),
                        user_ids=np.arange(30), item_ids=np.arange(8))
    cfg = RunConfig(model="deeprec", export_dir=str(tmp_path), optim=OptimConfig(batch_size_train=10),
                           train=TrainConfig(epochs=1, export_dir=str(tmp_path), verbose=False),
                           model_params={"hidden": (4,)})
    model, _ = runner.train(cfg, split, distribute.Distribution(), precision.FLOAT32, {},
                            {"dataset": "fixture", "protocol": "fixture"})
    pred = model.predict_rows(tf.sparse.from_dense(dense[:3])).numpy()
    np.testing.assert_allclose(pred[:, 0], train.data.mean(), rtol=1e-6)  # mean of all training ratings
    assert not np.allclose(pred[:, 1:], train.data.mean())  # seen columns keep the model's predictions
    batch = {"input": tf.sparse.from_dense(dense[:3]), "target": tf.sparse.from_dense(test[:3])}
    total, count = model.evaluate_step(batch)["mse"]
    np.testing.assert_allclose(float(total) / float(count), (5.0 - train.data.mean()) ** 2, rtol=1e-5)
