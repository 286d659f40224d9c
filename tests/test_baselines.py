"""Tests of baselines/popularity.py and baselines/ease.py."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tensorflow as tf

from baselines.ease import EASE
from baselines.popularity import Popularity
from data.errors import ConfigError, TrainingError
from training import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]


def to_sparse_tensor(matrix):
    coo = sp.coo_matrix(matrix)
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int64)
    return tf.sparse.reorder(tf.SparseTensor(indices, coo.data.astype(np.float32), coo.shape))


def random_clicks(seed, n_users=15, n_items=7, density=0.35):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


# ---------------------------------------------------------------- Popularity

def test_popularity_counts_users_per_item():
    # Users 0..2; item 0 has users {0, 1}, item 1 {1}, item 2 {0, 2}, item 3 only
    # an explicit stored zero -> counts [2, 1, 2, 0].
    train = sp.csr_matrix((np.array([1, 1, 1, 1, 1, 0.0]),
                           (np.array([0, 0, 1, 1, 2, 2]), np.array([0, 2, 0, 1, 2, 3]))), shape=(3, 4))
    model = Popularity().solve(train)
    np.testing.assert_array_equal(model.counts, [2, 1, 2, 0])
    scores = model.predict_rows(to_sparse_tensor(train[:2]))
    assert scores.dtype == tf.float32
    np.testing.assert_array_equal(scores.numpy(), [[2, 1, 2, 0], [2, 1, 2, 0]])


def test_popularity_counts_duplicates_once():
    # Two stored entries for (user 0, item 1) are one user.
    train = sp.csr_matrix((np.ones(3), np.array([1, 1, 0]), np.array([0, 2, 3])), shape=(2, 2))
    assert not train.has_canonical_format
    np.testing.assert_array_equal(Popularity().solve(train).counts, [1, 1])


# ---------------------------------------------------------------- EASE

def constrained_ridge(x, lam):
    """Reference: for each item j, min ||x_j - X b||² + lam ||b||² with b_j = 0, solved directly."""
    n_items = x.shape[1]
    b = np.zeros((n_items, n_items))
    for j in range(n_items):
        others = [i for i in range(n_items) if i != j]
        xo = x[:, others]
        b[others, j] = np.linalg.solve(xo.T @ xo + lam * np.eye(n_items - 1), xo.T @ x[:, j])
    return b


@pytest.mark.parametrize("seed,lam", [(0, 3.0), (1, 0.5), (2, 40.0)])
def test_ease_closed_form_equals_constrained_least_squares(seed, lam):
    train = random_clicks(seed)
    model = EASE(ease_lambda=lam).solve(train)
    reference = constrained_ridge(train.toarray().astype(np.float64), lam)
    assert model.B.dtype == np.float32 and np.all(np.diag(model.B) == 0)
    np.testing.assert_allclose(model.B, reference, atol=1e-5)
    # score = X_u B.
    users = to_sparse_tensor(train[3:9])
    np.testing.assert_allclose(model.predict_rows(users).numpy(), train[3:9].toarray() @ reference, atol=1e-5)


def test_ease_scores_inside_tf_function():
    train = random_clicks(3)
    model = EASE(ease_lambda=2.0).solve(train)
    scored = tf.function(model.predict_rows)(to_sparse_tensor(train))
    np.testing.assert_allclose(scored.numpy(), model.predict_rows(to_sparse_tensor(train)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), "big"])
def test_ease_rejects_bad_lambda(lam):
    with pytest.raises(ConfigError, match="--ease_lambda must be"):
        EASE(ease_lambda=lam)


# ---------------------------------------------------------------- both

@pytest.mark.parametrize("make", [Popularity, lambda: EASE(ease_lambda=5.0)])
def test_save_load_round_trip_gives_identical_scores(tmp_path, make):
    train = random_clicks(4)
    model = make().solve(train)
    path = tmp_path / "export" / "model.npz"
    model.save(path)
    loaded = type(model).load(str(path))
    batch = to_sparse_tensor(train[:5])
    np.testing.assert_array_equal(loaded.predict_rows(batch).numpy(), model.predict_rows(batch).numpy())
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]  # no temporary left behind


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(TrainingError, match=r"nope\.npz: no such ease export"):
        EASE.load(tmp_path / "nope.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip")
    with pytest.raises(TrainingError, match=r"garbage\.npz: not a tfcf \.npz export"):
        Popularity.load(garbage)
    Popularity().solve(random_clicks(0)).save(tmp_path / "pop.npz")
    with pytest.raises(TrainingError, match=r"pop\.npz: holds a 'popularity' model, not 'ease'"):
        EASE.load(tmp_path / "pop.npz")


@pytest.mark.parametrize("make", [Popularity, EASE])
def test_usage_errors_are_clear(tmp_path, make):
    name = make.__name__
    with pytest.raises(TrainingError, match=f"{name} is not fitted: call solve"):
        make().predict_rows(to_sparse_tensor(random_clicks(0)))
    with pytest.raises(TrainingError, match=f"{name} is not fitted"):
        make().save(tmp_path / "m.npz")
    with pytest.raises(ConfigError, match=r"the training matrix has shape \(3, 0\)"):
        make().solve(sp.csr_matrix((3, 0)))
    model = make().solve(random_clicks(0, n_items=7))
    with pytest.raises(ConfigError, match="the batch has 6 items but the model was fitted on 7"):
        model.predict_rows(to_sparse_tensor(random_clicks(0, n_items=6)))


# ---------------------------------------------------------------- real data

def data_mirror() -> pathlib.Path:
    value = os.environ.get("TFCF_DATA_MIRROR")
    root = pathlib.Path(value) if value else pathlib.Path("/work/shared/data")
    if not root.is_absolute():
        root = REPO / root
    if not (root / "ml-100k" / "u.data").is_file():
        pytest.skip(f"MovieLens 100K not found under {root}")
    return root


def heldout_users_split(path, seed=0, n_test=200):
    """A small heldout-users split: clicks = rating >= 4, test users' clicks 80% fold-in / 20% held out."""
    df = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "time"])
    df = df[df["rating"] >= 4]
    users = np.unique(df["user"])
    rng = np.random.default_rng(seed)
    test_users = rng.choice(users, size=n_test, replace=False)
    df = df.assign(col=df["item"] - 1, draw=rng.random(len(df)))  # item ids are 1..1682
    n_items = 1682
    is_test = df["user"].isin(test_users)

    def csr(part, rows):
        row = pd.Index(rows).get_indexer(part["user"])
        return sp.csr_matrix((np.ones(len(part), np.float32), (row, part["col"])), shape=(len(rows), n_items))

    test = df[is_test]
    train_users = np.setdiff1d(users, test_users)
    rank = test.groupby("user")["draw"].rank(method="first")
    size = test.groupby("user")["draw"].transform("size")
    fold_in = rank <= np.ceil(0.8 * size)
    return csr(df[~is_test], train_users), csr(test[fold_in], test_users), csr(test[~fold_in], test_users)


def test_ease_beats_popularity_beats_random_on_ml100k():
    train, fold_in, held_out = heldout_users_split(data_mirror() / "ml-100k" / "u.data")
    inputs, targets = to_sparse_tensor(fold_in), to_sparse_tensor(held_out)

    def ndcg(scores):
        return metrics.finalize(metrics.topk_metrics(scores, targets, names=("ndcg@100",), seen=inputs))["ndcg@100"]

    ease = ndcg(EASE(ease_lambda=500.0).solve(train).predict_rows(inputs))
    popularity = ndcg(Popularity().solve(train).predict_rows(inputs))
    random = ndcg(np.random.default_rng(0).random(fold_in.shape).astype(np.float32))
    print(f"ml-100k NDCG@100: EASE {ease:.4f}, Popularity {popularity:.4f}, random {random:.4f}")
    assert ease > popularity > random
