"""One contract every model family honours (in the spirit of benfred/implicit's shared test suite).

For each family registered in ``training.families``: it fits a checkerboard fixture (two user groups, each liking
one of two item groups), recovers withheld entries, and survives an export round-trip with identical predictions.
A new family is tested here as soon as it is registered; ``SETTINGS`` only tunes how long it trains.
"""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data.types import HeldoutSplit, RatingSplit
from serving import loader, recommend
from training import distribute, families, metrics, precision, runner
from training.config import OptimConfig, RunConfig
from training.trainer import TrainConfig

N_USERS, N_ITEMS = 80, 40

# Per-family training budget and hyper-parameters for the tiny fixture (defaults: 40 epochs, lr 1e-2).
SETTINGS = {
    "vae": dict(epochs=60, params=dict(hidden=(32,), latent=8, total_anneal_steps=100)),
    "dae": dict(epochs=60, params=dict(latent=16, lam=0.0)),
    "recvae": dict(epochs=20, params=dict(hidden=(32, 32), latent=8)),
    "deeprec": dict(epochs=60, params=dict(hidden=(32, 16))),
    "mf": dict(epochs=60, params=dict(rank=4)),
    "multitask": dict(epochs=60, params=dict(embedding_dim=8, layer_sizes=(16,), factorization_weight=0.5,
                                             regression_weight=0.5)),
    "ease": dict(params=dict(ease_lambda=1.0)),
}
# Families that cannot personalise: they only have to survive the round-trip.
NOT_PERSONALISED = {"popularity"}


def _group(n):
    return np.arange(n) % 2


def checkerboard_heldout(seed=0) -> HeldoutSplit:
    """Users like the items of their own parity; 60 train, 10 val, 10 test users; 4 of 20 likes held out."""
    rng = np.random.default_rng(seed)
    likes = (_group(N_USERS)[:, None] == _group(N_ITEMS)[None, :]).astype(np.float32)
    fold_in, targets = likes.copy(), np.zeros_like(likes)
    for u in range(60, N_USERS):
        held = rng.choice(np.flatnonzero(likes[u]), 4, replace=False)
        fold_in[u, held], targets[u, held] = 0, 1
    csr = lambda m: sp.csr_matrix(m, dtype=np.float32)
    ids = np.arange(N_USERS)
    return HeldoutSplit(train=csr(likes[:60]), val_input=csr(fold_in[60:70]), val_target=csr(targets[60:70]),
                        test_input=csr(fold_in[70:]), test_target=csr(targets[70:]), item_ids=np.arange(N_ITEMS) + 100,
                        train_user_ids=ids[:60], val_user_ids=ids[60:70], test_user_ids=ids[70:])


def checkerboard_ratings(seed=0) -> RatingSplit:
    """Rating 5 for the own group's items, 1 for the others; 60% observed; 10% of those for val and test each."""
    rng = np.random.default_rng(seed)
    ratings = np.where(_group(N_USERS)[:, None] == _group(N_ITEMS)[None, :], 5.0, 1.0).astype(np.float32)
    part = rng.random(ratings.shape)
    observed = part < 0.6
    val, test = observed & (part < 0.06), observed & (part >= 0.06) & (part < 0.12)
    train = observed & ~val & ~test
    csr = lambda mask: sp.csr_matrix(np.where(mask, ratings, 0.0), dtype=np.float32)
    return RatingSplit(train=csr(train), val=csr(val), test=csr(test), user_ids=np.arange(N_USERS) + 1000,
                       item_ids=np.arange(N_ITEMS) + 100)


def _fit(name, split, tmp_path):
    family = families.get(name)
    s = SETTINGS.get(name, {})
    cfg = RunConfig(
        model=name, seed=0, export_dir=str(tmp_path),
        optim=OptimConfig(lr=s.get("lr", 1e-2), batch_size_train=s.get("batch", 16), batch_size_validation=32),
        train=TrainConfig(epochs=s.get("epochs", 40), validation_step=10, export_dir=str(tmp_path), verbose=False),
        model_params=s.get("params", {}))
    info = {"dataset": "checkerboard", "protocol": "fixture"}
    model, summary = runner.train(cfg, split, distribute.Distribution(), precision.FLOAT32, {}, info)
    return family, model, summary


def _predict(model, inputs: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    return model.predict_rows(_tensor(inputs), tf.constant(rows, tf.int32)).numpy()


TOPK = [n for n, f in sorted(families.FAMILIES.items()) if f.task == "topk"]
RATING = [n for n, f in sorted(families.FAMILIES.items()) if f.task == "rating"]


@pytest.mark.parametrize("name", TOPK)
def test_topk_family_recovers_withheld_items_and_round_trips(name, tmp_path):
    split = checkerboard_heldout()
    family, model, summary = _fit(name, split, tmp_path)
    if not family.closed_form:
        losses = [e["loss"] for e in summary["history"]]
        assert losses[-1] < losses[0], f"{name}: loss did not fall on the checkerboard"
    scores = _predict(model, split.test_input, np.arange(70, N_USERS))
    assert scores.shape == (10, N_ITEMS) and scores.dtype == np.float32
    if name not in NOT_PERSONALISED:
        # The 4 withheld likes must outrank the 20 items of the other group: recall@4 (Liang et al.).
        recall, valid = metrics.recall_at_k(tf.constant(scores), _tensor(split.test_target), 4,
                                            seen=_tensor(split.test_input))
        assert float(tf.reduce_mean(recall)) >= 0.9, f"{name} recall@4 {float(tf.reduce_mean(recall)):.3f}"
    loaded, meta, ids, _ = loader.load(tmp_path)
    assert meta["family"] == name and np.array_equal(ids["item_ids"], split.item_ids)
    np.testing.assert_array_equal(_predict(loaded, split.test_input, np.arange(70, N_USERS)), scores)


@pytest.mark.parametrize("name", RATING)
def test_rating_family_recovers_withheld_ratings_and_round_trips(name, tmp_path):
    split = checkerboard_ratings()
    family, model, summary = _fit(name, split, tmp_path)
    losses = [e["loss"] for e in summary["history"]]
    assert losses[-1] < losses[0], f"{name}: loss did not fall on the checkerboard"
    pred = _predict(model, split.train, np.arange(N_USERS))
    test = split.test.tocoo()
    rmse = np.sqrt(np.mean((pred[test.row, test.col] - test.data) ** 2))
    # Predicting the global mean gives an RMSE of about 2 here; the structure is easy to learn.
    assert rmse < 0.8, f"{name}: withheld-rating RMSE {rmse:.3f}"
    loaded, meta, ids, _ = loader.load(tmp_path)
    assert meta["family"] == name and np.array_equal(ids["user_ids"], split.user_ids)
    np.testing.assert_array_equal(_predict(loaded, split.train, np.arange(N_USERS)), pred)


def _tensor(m: sp.csr_matrix) -> tf.SparseTensor:
    m = m.tocoo()
    return tf.sparse.reorder(tf.SparseTensor(np.stack([m.row, m.col], 1).astype(np.int64),
                                             m.data.astype(np.float32), m.shape))
