"""mf/: BPR forms, configs, shared vs separate embeddings, MRR/MSE against NumPy, MF, the grid CSV, real ML-100K."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data.errors import ConfigError, DatasetError
from data.types import RatingSplit
from experiments import mf_grid as grid
from mf.config import MFConfig, MultiTaskConfig
from mf.losses import bpr_loss, squared_error_sum
from mf.model import MatrixFactorization, MultiTaskNet
from training.config import DataConfig
from data.prepare import prepare

REPO = Path(__file__).resolve().parent.parent


def _sparse(m: np.ndarray) -> tf.SparseTensor:
    return tf.sparse.from_dense(tf.constant(m, tf.float32))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# --- losses ---------------------------------------------------------------------------
def test_bpr_homework_form_by_hand():
    # d = p+ - p- = [2, -1, 0]; mean(1 - sigmoid(d)) = (0.1192029 + 0.7310586 + 0.5) / 3 = 0.4500872
    loss = bpr_loss(tf.constant([2.0, 0.0, 3.0]), tf.constant([0.0, 1.0, 3.0]), "homework")
    assert float(loss) == pytest.approx(0.4500872, abs=1e-6)
    assert float(loss) == pytest.approx(((1 - _sigmoid(2)) + (1 - _sigmoid(-1)) + 0.5) / 3, abs=1e-6)


def test_bpr_log_form_by_hand_and_stable_for_badly_ranked_pairs():
    # -log sigmoid(d) for d = [2, -1]: log(1 + e^-2) = 0.1269280, log(1 + e^1) = 1.3132617; mean 0.7200948
    loss = bpr_loss(tf.constant([2.0, 0.0]), tf.constant([0.0, 1.0]), "log")
    assert float(loss) == pytest.approx(0.7200948, abs=1e-6)
    # d = -200: -log sigmoid(-200) = 200 (log(sigmoid) would give inf in float32).
    assert float(bpr_loss(tf.constant([0.0]), tf.constant([200.0]), "log")) == pytest.approx(200.0)
    # The homework form saturates at 1 there instead.
    assert float(bpr_loss(tf.constant([0.0]), tf.constant([200.0]), "homework")) == pytest.approx(1.0)


def test_bpr_unknown_form_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown BPR form 'hinge'; use homework or log"):
        bpr_loss(tf.constant([1.0]), tf.constant([0.0]), "hinge")


def test_squared_error_sum_skips_unrated_zeros():
    # (3.5 - 4)^2 + (1 - 2)^2 = 1.25 over 2 rated pairs; the pair with truth 0 is not scored.
    total, count = squared_error_sum(tf.constant([3.5, 1.0, 9.0]), tf.constant([4.0, 2.0, 0.0]))
    assert (float(total), float(count)) == (1.25, 2.0)


# --- configs --------------------------------------------------------------------------
def test_multitask_layer_sizes_follow_the_homework():
    assert MultiTaskConfig(3, 4).layer_sizes == (96, 64)
    assert MultiTaskConfig(3, 4, layer_sizes=(96, 64)).layer_sizes == (96, 64)
    assert MultiTaskConfig(3, 4, embedding_dim=8, layer_sizes=(16,)).layer_sizes == (24, 16)
    model = MultiTaskNet(MultiTaskConfig(3, 4, embedding_dim=8, layer_sizes=(24, 16, 8)))
    model.ensure_built()
    # Linear(24, 16), ReLU, Linear(16, 8), ReLU, Linear(8, 1)
    assert [tuple(layer.kernel.shape) for layer in model.mlp] == [(24, 16), (16, 8), (8, 1)]
    assert [layer.activation.__name__ for layer in model.mlp] == ["relu", "relu", "linear"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(bpr_form="hinge"), "unknown --bpr_form 'hinge'; use homework or log"),
    (dict(factorization_weight=0.0, regression_weight=0.0), "both 0: nothing to train"),
    (dict(regression_weight=-1.0), "--regression_weight must be a finite number >= 0, got -1.0"),
    (dict(layer_sizes=(0,)), "--layer_sizes must be positive widths, got 0"),
    (dict(embedding_dim=0), "--embedding_dim must be >= 1, got 0"),
])
def test_multitask_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MultiTaskConfig.from_dims(3, 4, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rank=0), "--rank must be >= 1, got 0"),
    (dict(lam=-0.1), "--lam must be a finite number >= 0, got -0.1"),
])
def test_mf_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MFConfig.from_dims(3, 4, **kwargs)
    with pytest.raises(ConfigError, match="at least one user and one item, got 0 users x 4 items"):
        MFConfig.from_dims(0, 4)


# --- MultiTaskNet ---------------------------------------------------------------------
def _bpr_batch():
    return {"user": tf.constant([0, 1, 2]), "pos": tf.constant([1, 2, 3]), "neg": tf.constant([4, 0, 5]),
            "rating": tf.constant([5.0, 3.0, 1.0])}


def _grads(model, batch, fw, rw):
    """Gradients of fw * BPR + rw * MSE (computed from the logged terms) per variable path."""
    with tf.GradientTape() as tape:
        _, logs = model.compute_loss(batch)
        loss = fw * logs["bpr_loss"] + rw * logs["mse"]
    grads = tape.gradient(loss, model.trainable_variables)
    return {v.path: (None if g is None else float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))))
            for v, g in zip(model.trainable_variables, grads)}


def test_shared_embeddings_are_one_set_of_variables_for_both_tasks():
    model = MultiTaskNet(MultiTaskConfig(6, 7, embedding_dim=4))
    model.ensure_built()
    users, items = model.rating_embeddings()
    assert users is model.user_embedding and items is model.item_embedding
    tables = [v.path for v in model.trainable_variables if v.path.endswith("embeddings")]
    assert tables == ["user_embedding/embeddings", "item_embedding/embeddings", "item_bias/embeddings"]
    # The rating loss alone moves the factorization's tables.
    g = _grads(model, _bpr_batch(), 0.0, 1.0)
    assert g["user_embedding/embeddings"] > 0 and g["item_embedding/embeddings"] > 0
    # Changing the shared table changes both tasks' outputs.
    before_r = model.predict_pairs(tf.constant([0]), tf.constant([1])).numpy()
    before_p = model.interaction_pairs(tf.constant([0]), tf.constant([1])).numpy()
    model.user_embedding.embeddings.assign_add(tf.ones_like(model.user_embedding.embeddings))
    assert model.predict_pairs(tf.constant([0]), tf.constant([1])).numpy() != before_r
    assert model.interaction_pairs(tf.constant([0]), tf.constant([1])).numpy() != before_p


def test_separate_embeddings_keep_the_tasks_apart():
    model = MultiTaskNet(MultiTaskConfig(6, 7, embedding_dim=4, shared_embeddings=False))
    model.ensure_built()
    users, items = model.rating_embeddings()
    assert users is not model.user_embedding and items is not model.item_embedding
    assert users.embeddings is not model.user_embedding.embeddings
    # Rating loss only: no gradient reaches the factorization's tables or the item bias ...
    g = _grads(model, _bpr_batch(), 0.0, 1.0)
    assert not g["user_embedding/embeddings"] and not g["item_embedding/embeddings"] and not g["item_bias/embeddings"]
    assert g["user_embedding_rating/embeddings"] > 0 and g["item_embedding_rating/embeddings"] > 0
    # ... and BPR only: none reaches the rating tables or the MLP.
    g = _grads(model, _bpr_batch(), 1.0, 0.0)
    assert not g["user_embedding_rating/embeddings"] and not g["item_embedding_rating/embeddings"]
    assert not any(g[p] for p in g if p.startswith("mlp"))
    assert g["user_embedding/embeddings"] > 0 and g["item_bias/embeddings"] > 0


def test_scaled_init_and_zero_item_bias():
    d = 32
    model = MultiTaskNet(MultiTaskConfig(500, 400, embedding_dim=d))
    model.ensure_built()
    table = model.user_embedding.embeddings.numpy()
    # N(0, (1/d)^2): the standard deviation of 16,000 draws is within a few % of 1/32.
    assert table.std() == pytest.approx(1.0 / d, rel=0.05) and abs(table.mean()) < 1e-3
    assert not model.item_bias.embeddings.numpy().any()
    again = MultiTaskNet(MultiTaskConfig(500, 400, embedding_dim=d))
    again.ensure_built()
    np.testing.assert_array_equal(again.user_embedding.embeddings.numpy(), table)  # seeded, not global


def test_multitask_loss_is_the_weighted_sum():
    model = MultiTaskNet(MultiTaskConfig(6, 7, embedding_dim=4, factorization_weight=0.3, regression_weight=0.7))
    model.ensure_built()
    loss, logs = model.compute_loss(_bpr_batch())
    assert float(loss) == pytest.approx(0.3 * float(logs["bpr_loss"]) + 0.7 * float(logs["mse"]), rel=1e-6)


def _numpy_mrr(scores, seen, target):
    """Slow reference of the homework's MRR: per user, rank the unseen items; mean 1/rank of held-out ones."""
    values = []
    for u in range(scores.shape[0]):
        held = np.flatnonzero(target[u])
        if not held.size:
            continue
        candidates = [i for i in range(scores.shape[1]) if not seen[u, i]]
        # Higher score first; ties by lower item index.
        ranking = sorted(candidates, key=lambda i: (-scores[u, i], i))
        values.append(np.mean([1.0 / (ranking.index(i) + 1) for i in held]))
    return float(np.mean(values)), len(values)


def _numpy_mlp(model, u, q):
    h = np.concatenate([u, q, u * q], axis=-1)
    for layer in model.mlp[:-1]:
        h = np.maximum(h @ layer.kernel.numpy() + layer.bias.numpy(), 0.0)
    return (h @ model.mlp[-1].kernel.numpy() + model.mlp[-1].bias.numpy())[..., 0]


@pytest.mark.parametrize("shared", [True, False])
def test_multitask_evaluation_equals_numpy_reference(shared):
    rng = np.random.default_rng(3)
    n_users, n_items = 9, 12
    model = MultiTaskNet(MultiTaskConfig(n_users, n_items, embedding_dim=4, shared_embeddings=shared, seed=5))
    model.ensure_built()
    model.item_bias.embeddings.assign(rng.normal(size=(n_items, 1)).astype(np.float32))
    rows = np.array([4, 0, 7, 2])
    seen = (rng.random((4, n_items)) < 0.3).astype(np.float32) * rng.integers(1, 6, (4, n_items))
    target = ((rng.random((4, n_items)) < 0.3) & (seen == 0)).astype(np.float32) * rng.integers(1, 6, (4, n_items))
    target[3] = 0  # a user with nothing held out is not counted
    stats = model.evaluate_step({"input": _sparse(seen), "target": _sparse(target), "row": tf.constant(rows)})

    U, Q = model.user_embedding.embeddings.numpy(), model.item_embedding.embeddings.numpy()
    scores = U[rows] @ Q.T + model.item_bias.embeddings.numpy()[:, 0]
    want_mrr, users = _numpy_mrr(scores, seen != 0, target != 0)
    got_sum, got_count = (float(x) for x in stats["mrr"])
    assert got_count == users == 3
    assert got_sum / got_count == pytest.approx(want_mrr, rel=1e-5)

    users_r, items_r = (t.embeddings.numpy() for t in model.rating_embeddings())
    r, c = np.nonzero(target)
    pred = _numpy_mlp(model, users_r[rows[r]], items_r[c])
    mse_sum, mse_count = (float(x) for x in stats["mse"])
    assert mse_count == len(r)
    assert mse_sum == pytest.approx(np.sum((pred - target[r, c]) ** 2), rel=1e-5)
    # The [b, I] face gives the same ratings as the pair face.
    full = model.predict_rows(_sparse(seen), tf.constant(rows)).numpy()
    np.testing.assert_allclose(full[r, c], pred, rtol=1e-5, atol=1e-6)


# --- MatrixFactorization --------------------------------------------------------------
def _mf_with_known_weights(use_bias=True, lam=0.0):
    model = MatrixFactorization(MFConfig(3, 2, rank=2, use_bias=use_bias, lam=lam))
    model.ensure_built()
    model.user_factors.embeddings.assign([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    model.item_factors.embeddings.assign([[0.5, 0.5], [1.0, -1.0]])
    if use_bias:
        model.user_bias.embeddings.assign([[0.1], [0.2], [0.3]])
        model.item_bias.embeddings.assign([[-0.5], [0.5]])
        model.rating_sum.assign(14.0)
        model.rating_count.assign(4.0)  # mu = 3.5
    return model


def test_mf_prediction_and_loss_by_hand():
    model = _mf_with_known_weights(lam=0.5)
    batch = {"user": tf.constant([0, 1]), "item": tf.constant([0, 1]), "rating": tf.constant([4.0, 1.0])}
    # (u0, i0): 3.5 + 0.1 - 0.5 + (1*0.5 + 0*0.5) = 3.6;  (u1, i1): 3.5 + 0.2 + 0.5 + (0*1 + 2*-1) = 2.2
    np.testing.assert_allclose(model.predict_pairs(batch["user"], batch["item"]).numpy(), [3.6, 2.2], rtol=1e-6)
    loss, logs = model.compute_loss(batch)
    # mse = ((3.6-4)^2 + (2.2-1)^2) / 2 = (0.16 + 1.44) / 2 = 0.8
    # norms: (1 + 0.5 + 0.01 + 0.25) = 1.76 and (4 + 2 + 0.04 + 0.25) = 6.29; lam * mean = 0.5 * 4.025
    assert float(logs["mse"]) == pytest.approx(0.8, rel=1e-5)
    assert float(loss) == pytest.approx(0.8 + 0.5 * 4.025, rel=1e-5)


def test_mf_without_bias_is_the_plain_dot_product():
    model = _mf_with_known_weights(use_bias=False)
    assert not [v for v in model.trainable_variables if "bias" in v.path]
    # u2 . i1 = 1*1 + 1*-1 = 0, no mean, no biases
    assert float(model.predict_pairs(tf.constant([2]), tf.constant([1]))[0]) == 0.0


def test_mf_rows_evaluation_and_new_users_match_numpy():
    model = _mf_with_known_weights()
    P, Q = model.user_factors.embeddings.numpy(), model.item_factors.embeddings.numpy()
    bu, bi = model.user_bias.embeddings.numpy(), model.item_bias.embeddings.numpy()[:, 0]
    full = 3.5 + bu + bi[None, :] + P @ Q.T
    seen = _sparse(np.array([[0, 3.0], [0, 0], [4.0, 0]]))
    np.testing.assert_allclose(model.predict_rows(seen, tf.constant([0, 1, 2])).numpy(), full, rtol=1e-6)
    # A user without a row is the average user: mu + b_i.
    np.testing.assert_allclose(model.predict_rows(seen).numpy(), np.tile(3.5 + bi, (3, 1)), rtol=1e-6)
    target = np.array([[5.0, 0], [0, 2.0], [0, 0]])
    total, count = model.evaluate_step({"input": seen, "target": _sparse(target), "row": tf.constant([0, 1, 2])})["mse"]
    assert float(count) == 2
    assert float(total) == pytest.approx((full[0, 0] - 5) ** 2 + (full[1, 1] - 2) ** 2, rel=1e-5)


def test_mf_global_mean_is_the_running_mean_of_training_ratings():
    model = MatrixFactorization(MFConfig(4, 4, rank=2))
    model.ensure_built()
    assert float(model.global_mean()) == 0.0
    optimizer = tf.keras.optimizers.Adam(1e-3)

    class _Plain:  # the Updater's minimize without distribution or loss scaling
        updates = tf.Variable(0, dtype=tf.int64)

        def minimize(self, loss_fn):
            with tf.GradientTape() as tape:
                loss, logs = loss_fn()
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss, logs

    for ratings in ([5.0, 4.0], [1.0, 2.0, 3.0]):
        n = len(ratings)
        model.train_step({"user": tf.zeros([n], tf.int32), "item": tf.range(n), "rating": tf.constant(ratings)},
                         _Plain())
    assert float(model.global_mean()) == pytest.approx(15.0 / 5.0)  # (5 + 4 + 1 + 2 + 3) / 5


# --- the negative sampler of data/pipeline ----------------------------------------------
def test_bpr_sampler_never_returns_a_positive_of_the_user():
    pipeline = pytest.importorskip("data.pipeline")
    if not hasattr(pipeline, "bpr_triples"):
        pytest.skip("data.pipeline.bpr_triples not there yet")
    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.7) * rng.integers(1, 6, (30, 12))  # users hold ~70% of the items
    dense[:, 0] = 0  # nobody has every item
    csr = sp.csr_matrix(dense.astype(np.float32))
    for epoch in range(5):
        for user, pos, neg, rating in pipeline.bpr_triples(csr, 64, seed=1, epoch=epoch):
            u, p, n, r = user.numpy(), pos.numpy(), neg.numpy(), rating.numpy()
            assert (dense[u, p] != 0).all() and np.array_equal(dense[u, p].astype(np.float32), r)
            assert (dense[u, n] == 0).all(), "a sampled negative is one of the user's positives"


# --- the grid CSV -----------------------------------------------------------------------
def _tiny_split(seed=0) -> RatingSplit:
    """A rank-2 rating matrix 40 x 30 with 50% observed: 80% train, 20% val."""
    rng = np.random.default_rng(seed)
    truth = np.clip(np.round(3 + rng.normal(size=(40, 2)) @ rng.normal(size=(2, 30))), 1, 5).astype(np.float32)
    part = rng.random(truth.shape)
    csr = lambda mask: sp.csr_matrix(np.where(mask, truth, 0.0).astype(np.float32))
    return RatingSplit(train=csr(part < 0.4), val=csr((part >= 0.4) & (part < 0.5)), test=csr(part >= 0.5),
                       user_ids=np.arange(40), item_ids=np.arange(30))


def test_grid_writes_one_row_per_configuration_and_resumes(tmp_path):
    split, out = _tiny_split(), tmp_path / "grid.csv"
    configs = grid.configurations([2, 4], [50], [1e-2], [0.0])
    kwargs = dict(dataset="tiny", epochs=2, patience=None, batch_size_validation=64, log=lambda s: None)
    # A half-finished grid: only the first configuration ran.
    first = grid.run_grid(split, configs[:1], out, **kwargs)
    assert len(first) == 1 and len(grid.read_rows(out)) == 1
    second = grid.run_grid(split, configs, out, **kwargs)
    assert [r["rank"] for r in second] == [4]  # only the missing one trained
    before = out.read_text()
    lines = []
    assert grid.run_grid(split, configs, out, **{**kwargs, "log": lines.append}) == []
    assert out.read_text() == before and all("skipped" in line for line in lines)
    rows = grid.read_rows(out)
    assert [int(r["rank"]) for r in rows] == [2, 4]
    for r in rows:
        assert set(r) == set(grid.COLUMNS) and int(r["epochs_run"]) == 2 and 1 <= int(r["best_epoch"]) <= 2
        assert 0 < float(r["train_rmse"]) < 5 and 0 < float(r["val_rmse"]) < 5 and float(r["seconds"]) > 0
    # 0.01 and 1e-2 are the same setting; another learning rate or epoch budget is another configuration.
    key = {**rows[0], "lr": 0.01}
    assert grid._key(key) == grid._key(rows[0])
    assert grid._key({**key, "lr": 0.02}) != grid._key(rows[0])
    assert grid._key({**key, "max_epochs": 3}) != grid._key(rows[0])


def test_grid_refuses_a_csv_of_something_else(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError,
                       match="is not a grid CSV of experiments.mf_grid .missing columns dataset, rank"):
        grid.run_grid(_tiny_split(), grid.configurations([2], [50], [1e-2], [0.0]), out, epochs=1)


def test_grid_cli_mistakes_are_one_error_line(tmp_path, capsys):
    cases = [([], "error: --out is required"),
             (["--out", "g.csv", "extra"], "error: unexpected arguments: extra"),
             (["--out", "g.csv", "--ranks", "10"], "error: Unknown command line flag 'ranks'"),
             (["--out", "g.csv", "--rank", "10,x"], "error: flag --rank=['10', 'x']: --rank takes whole numbers"),
             (["--out", "g.csv", "--lr", "1e-3,0"], "error: flag --lr=['1e-3', '0']: --lr takes finite numbers > 0"),
             (["--out", "g.csv", "--weight_decay", "-1"], "error: flag --weight_decay=['-1']: --weight_decay takes"),
             (["--out", "g.csv", "--use_bias=maybe"], "error: flag --use_bias=maybe"),
             (["--out", "g.csv", "--use_bias", "false"],
              "error: unexpected arguments: false (every setting is a --flag; a boolean is --use_bias or --nouse_bias"),
             (["--out", "g.csv", "--val_fraction", "0"], "error: flag --val_fraction=0.0: --val_fraction must be")]
    for argv, message in cases:
        assert grid.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, (argv, err)


# --- real ML-100K through main.py ---------------------------------------------------------
RUNS = {
    "mf": ["--protocol", "fold", "--number_of_epochs", "5", "--batch_size_train", "1000", "--lr", "3e-3"],
    "multitask": ["--protocol", "random", "--no_shared_embeddings", "--factorization_weight", "0.5",
                  "--regression_weight", "0.5", "--bpr_form", "log", "--number_of_epochs", "4",
                  "--batch_size_train", "1000"],
}


@pytest.fixture(scope="module")
def main_runs(mirror, tmp_path_factory):
    """Both families trained and tested by ``main.py`` on ML-100K (two processes side by side)."""
    root = tmp_path_factory.mktemp("main")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFCF_DATA_MIRROR": str(mirror)}
    procs = {name: subprocess.Popen([sys.executable, str(REPO / "main.py"), "--model", name, "--train", "--test",
                                     "--dataset", "ml-100k", "--export_dir", str(root / name),
                                     "--data_dir", str(root / f"data-{name}"), *args],
                                    cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in RUNS.items()}
    outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"main.py --model {name} exited {proc.returncode}:\n{outputs[name]}"
    return root, outputs


def _split_of_run(root: Path, name: str, protocol: str) -> RatingSplit:
    """The split the run trained on (from the run's own cache)."""
    data = DataConfig(dataset="ml-100k", data_dir=str(root / f"data-{name}"), protocol=protocol)
    return prepare(data, "rating", 0, verbose=False)[0]


def _global_mean_rmse(split: RatingSplit) -> float:
    return float(np.sqrt(np.mean((split.test.data - split.train.data.mean()) ** 2)))


@pytest.mark.parametrize("name, protocol, metrics", [("mf", "fold", {"mse", "rmse"}),
                                                     ("multitask", "random", {"mse", "rmse", "mrr"})])
def test_main_writes_results_and_beats_the_global_mean(main_runs, name, protocol, metrics):
    root, outputs = main_runs
    results = json.loads((root / name / "results.json").read_text())
    assert results["config"]["model"] == name and results["data"]["protocol"] == protocol
    assert results["train"]["epochs"] == int(RUNS[name][RUNS[name].index("--number_of_epochs") + 1])
    assert metrics <= set(results["test"]) and "test:" in outputs[name]
    assert json.loads((root / name / "model" / "model.json").read_text())["family"] == name
    # The global mean of the training ratings: about 1.15 RMSE on u1.test, 1.13 on the 5% random test.
    baseline = _global_mean_rmse(_split_of_run(root, name, protocol))
    assert results["test"]["rmse"] < baseline - 0.1, f"{name}: RMSE {results['test']['rmse']:.4f} vs {baseline:.4f}"
    if name == "multitask":
        assert results["test"]["mrr"] > 0.01 and results["test"]["mrr/count"] > 800


@pytest.mark.parametrize("cls, config", [(MatrixFactorization, MFConfig(5, 7, rank=4)),
                                         (MultiTaskNet, MultiTaskConfig(5, 7, embedding_dim=4))])
def test_mixed_bfloat16_models_give_float32_outputs_close_to_float32(cls, config):
    from training import precision

    with precision.policy_scope(precision.MIXED_BFLOAT16):
        mixed = cls(config)
        mixed.ensure_built()
    plain = cls(config)
    plain.ensure_built()  # the same seed: the same float32 variables
    loss, logs = mixed.compute_loss(mixed.dummy_batch())
    assert loss.dtype == tf.float32 and all(v.dtype == tf.float32 for v in logs.values())
    seen, rows = _sparse(np.eye(2, 7) * 4), tf.constant([3, 1])
    got, want = mixed.predict_rows(seen, rows), plain.predict_rows(seen, rows)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=0.02)


@pytest.mark.parametrize("model", ["mf", "multitask"])
def test_pair_models_loop_steps_on_the_device_with_the_results_of_one_step_a_call(model, tmp_path):
    from training import fit
    from training.config import OptimConfig, RunConfig, TrainConfig

    split = _tiny_split()  # 480 training ratings: 15 steps of 32 an epoch, one call of the default 32
    results = []
    for steps_per_call in (None, 1):
        cfg = RunConfig(model=model, seed=0, optim=OptimConfig(batch_size_train=32),
                        train=TrainConfig(epochs=2, export_dir=str(tmp_path / str(steps_per_call)), verbose=False,
                                          steps_per_call=steps_per_call))
        results.append(fit.fit(cfg, split))
    assert results[0].trainer.steps_per_call == 32 and results[1].trainer.steps_per_call == 1
    for a, b in zip(results[0].model.weights, results[1].model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    assert [e["loss"] for e in results[0].summary["history"]] == [e["loss"] for e in results[1].summary["history"]]
