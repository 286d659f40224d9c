"""predict and recommend from export folders: --test's RMSE reproduced from a pairs file, the fallback by hand,
per-pair loop references, item-based orientation, seen items never recommended, ids mapped back, main.py flags."""

import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from data.errors import ConfigError, DatasetError, TrainingError
from serving import export, loader, predict, recommend
from training import runner
from training.config import DataConfig, OptimConfig, RunConfig
from data.prepare import prepare
from training.trainer import TrainConfig
from conftest import run_main

BASE_COLUMNS = ["user", "item", "rating", "time"]


def _run(model, tmp_path_factory, mirror, data_dir, params=None, batch=1000, epochs=2):
    run = tmp_path_factory.mktemp(model)
    cfg = RunConfig(
        model=model, modes=("train", "test"), export_dir=str(run),
        # All of u1.base trains (no validation slice): the fallback statistics are u1.base's.
        data=DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(data_dir), val_fraction=0.0),
        optim=OptimConfig(batch_size_train=batch, lr=3e-3),
        train=TrainConfig(epochs=epochs, validation_step=epochs, export_dir=str(run), verbose=False),
        model_params=params or {})
    return run, runner.run(cfg)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def u1(mirror):
    """ML-100K's official fold u1 as frames (what the rating runs train and test on)."""
    read = lambda part: pd.read_csv(mirror / "ml-100k" / f"u1.{part}", sep="\t", names=BASE_COLUMNS)
    return read("base"), read("test")


@pytest.fixture(scope="module")
def mf(tmp_path_factory, mirror, data_dir):
    """MF on ML-100K u1: 2 epochs."""
    return _run("mf", tmp_path_factory, mirror, data_dir, batch=2000)


@pytest.fixture(scope="module")
def deeprec_items(tmp_path_factory, mirror, data_dir):
    """Item-based DeepRec (rows are items) on ML-100K u1: 1 small epoch."""
    return _run("deeprec", tmp_path_factory, mirror, data_dir, {"major": "items", "hidden": (16,)}, batch=128,
                epochs=1)


@pytest.fixture(scope="module")
def popularity(tmp_path_factory, mirror, data_dir):
    """Popularity on ML-100K's heldout-users split (ratings >= 4 are clicks)."""
    return _run("popularity", tmp_path_factory, mirror, data_dir)


# ----------------------------------------------------------------------------- predict

@pytest.mark.parametrize("fixture", ["mf", "deeprec_items"])
def test_predict_on_the_test_pairs_reproduces_test_rmse(request, fixture, mirror, tmp_path):
    run, results = request.getfixturevalue(fixture)
    out = tmp_path / "pred.csv"
    summary = predict.predict_file(run, mirror / "ml-100k" / "u1.test", out, unseen="model", verbose=False)
    assert summary["fallback"] == 0 and summary["pairs"] == 20000
    assert summary["rmse"] == pytest.approx(results["test"]["rmse"], rel=1e-5)
    written = pd.read_csv(out)
    assert list(written.columns) == ["user", "item", "prediction"] and len(written) == 20000


def test_model_predictions_match_a_per_pair_loop(mf, deeprec_items, u1):
    _, test = u1
    pairs = test.sample(40, random_state=0)
    for run, _ in (mf, deeprec_items):
        exp = predict.open_export(run)
        got = predict.predict_pairs(exp, pairs["user"].to_numpy(), pairs["item"].to_numpy(), unseen="model")
        ref = []
        for u, i in zip(pairs["user"], pairs["item"]):
            user = int(np.flatnonzero(exp.row_ids == (i if exp.rows_are_items else u))[0])
            item = int(np.flatnonzero(exp.col_ids == (u if exp.rows_are_items else i))[0])
            if exp.rows_are_items or not hasattr(exp.model, "predict_pairs"):
                # The row model's whole output for this one row, read at the column.
                row = exp.known[user]
                x = tf.SparseTensor(np.stack([np.zeros(row.nnz, np.int64), row.indices], 1),
                                    row.data.astype(np.float32), [1, row.shape[1]])
                ref.append(float(exp.model.predict_rows(x, tf.constant([user], tf.int32))[0, item]))
            else:
                ref.append(float(exp.model.predict_pairs(tf.constant([user]), tf.constant([item]))[0]))
        np.testing.assert_allclose(got.prediction, ref, rtol=1e-5, atol=1e-5)


def test_fallback_is_item_mean_then_global_mean(mf, u1, tmp_path):
    base, test = u1
    run, _ = mf
    exp = predict.open_export(run)
    # Item 50 by a user nobody knows: its mean u1.base rating. Item 99999: the global mean.
    # Items of u1.test absent from u1.base: the model has a column but no training rating -> global mean too.
    cold = sorted(set(test["item"]) - set(base["item"]))
    users = np.array([99999, 1, 1] + [1] * len(cold))
    items = np.array([50, 99999, 50] + cold)
    got = predict.predict_pairs(exp, users, items)
    item50 = base.loc[base["item"] == 50, "rating"].mean()
    glob = base["rating"].mean()
    assert got.prediction[0] == pytest.approx(item50, rel=1e-6)
    assert got.prediction[1] == pytest.approx(glob, rel=1e-6)
    np.testing.assert_allclose(got.prediction[3:], glob, rtol=1e-6)
    np.testing.assert_array_equal(got.fallback, [True, True, False] + [True] * len(cold))
    np.testing.assert_array_equal(got.unknown_user, [True, False, False] + [False] * len(cold))
    np.testing.assert_array_equal(got.cold_item[3:], True)
    # With the default policy the u1.test file reports exactly those cold pairs.
    summary = predict.predict_file(run, _write(tmp_path, test), tmp_path / "o.csv", verbose=False)
    assert summary["fallback"] == summary["cold"] == int(test["item"].isin(cold).sum())
    assert summary["unknown_users"] == summary["unknown_items"] == 0


def _write(tmp_path, frame):
    path = tmp_path / "pairs.tsv"
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path


def test_known_npz_holds_the_training_matrix_and_statistics(mf, u1):
    base, _ = u1
    run, _ = mf
    known = loader.load_known(run)
    assert known["matrix"].nnz == len(base)
    means = base.groupby("item")["rating"].mean()
    ids = np.load(run / "model" / "ids.npz")["item_ids"]
    has = np.isin(ids, means.index)
    np.testing.assert_allclose(known["item_mean"][has], means.loc[ids[has]].to_numpy(), rtol=1e-6)
    assert np.isnan(known["item_mean"][~has]).all()
    assert float(known["global_mean"]) == pytest.approx(base["rating"].mean())
    np.testing.assert_array_equal(known["rating_range"], [1, 5])


def test_clip_keeps_predictions_in_the_rating_range(deeprec_items, u1):
    _, test = u1
    exp = predict.open_export(deeprec_items[0])
    got = predict.predict_pairs(exp, test["user"].to_numpy(), test["item"].to_numpy(), clip=True)
    assert got.prediction.min() >= 1 and got.prediction.max() <= 5


def test_lookup_matches_ints_given_as_text_and_strings():
    np.testing.assert_array_equal(predict.lookup(np.array([3, 50, 7]), ["50", 7, "x", "7.5", 3]), [1, 2, -1, -1, 0])
    np.testing.assert_array_equal(predict.lookup(np.array(["a", "b"]), ["b", "c"]), [1, -1])


def test_predict_refuses_top_k_exports_and_bad_policies(popularity, mf):
    with pytest.raises(ConfigError, match="predict needs a rating model .* 'popularity', a top-k model"):
        predict.predict_pairs(predict.open_export(popularity[0]), [1], [1])
    with pytest.raises(ConfigError, match="unseen='maybe': use fallback or model"):
        predict.predict_pairs(predict.open_export(mf[0]), [1], [1], unseen="maybe")


def test_export_without_known_rows_says_how_to_fix(mf, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(mf[0] / "model", old / "model")
    (old / "model" / "known.npz").unlink()
    with pytest.raises(TrainingError, match="known.npz is missing: .* --fresh"):
        predict.open_export(old)


def test_main_predict_writes_csv_and_reports_fallback(mf, mirror, tmp_path, capsys):
    out = tmp_path / "main.csv"
    assert run_main("--predict", mirror / "ml-100k" / "u1.test", "--output", out, "--export_dir", mf[0]) == 0
    line = capsys.readouterr().out
    assert "predict: 20000 pairs" in line and "used the fallback" in line and "RMSE" in line
    assert len(pd.read_csv(out)) == 20000
    (tmp_path / "bad.csv").write_text("user,item\n1,2\n1\n")
    assert run_main("--predict", tmp_path / "bad.csv", "--export_dir", mf[0]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:3: expected 2 fields" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- recommend

def _heldout_split(data_dir, mirror):
    cfg = DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(data_dir))
    return prepare(cfg, "topk", 0, verbose=False)[0]


def test_recommend_users_never_returns_seen_items_and_maps_ids_back(popularity, mirror, data_dir):
    run, _ = popularity
    split = _heldout_split(data_dir, mirror)
    users = [int(split.train_user_ids[0]), int(split.test_user_ids[0]), int(split.val_user_ids[3])]
    recs = recommend.recommend_users(run, users, k=15)
    raw = pd.read_csv(mirror / "ml-100k" / "u.data", sep="\t", names=BASE_COLUMNS)
    train_users = set(split.train_user_ids.tolist())
    liked = raw[raw["rating"] >= 4]
    # Popularity's score of an item is the number of training users who rated it >= 4.
    counts = liked[liked["user"].isin(train_users)].groupby("item").size()
    for user in users:
        mine = [r for r in recs if r["user"] == str(user)]
        assert [r["rank"] for r in mine] == list(range(1, 16))
        seen = set(liked.loc[liked["user"] == user, "item"])
        assert not seen & {r["item"] for r in mine}
        for r in mine:
            assert r["score"] == counts[r["item"]]
        scores = [r["score"] for r in mine]
        assert scores == sorted(scores, reverse=True)
        # Nothing better was left out: every unseen item scores at most the 15th.
        unseen = counts[~counts.index.isin(seen) & counts.index.isin(split.item_ids)]
        assert unseen.max() == scores[0] and (unseen > scores[-1]).sum() < 15
    assert all(r["title"] for r in recs)  # ML-100K titles come with the export


@pytest.mark.parametrize("fixture", ["mf", "deeprec_items"])
def test_rating_recommendations_are_predicted_ratings_of_unrated_items(request, fixture, u1):
    base, _ = u1
    run, _ = request.getfixturevalue(fixture)
    recs = recommend.recommend_users(run, [1, 13], k=5)
    assert len(recs) == 10
    rated = set(base["item"])
    for user in (1, 13):
        mine = [r for r in recs if r["user"] == str(user)]
        items = [r["item"] for r in mine]
        assert not set(base.loc[base["user"] == user, "item"]) & set(items)
        assert set(items) <= rated  # never an item without a training rating
        again = predict.predict_pairs(predict.open_export(run), [user] * 5, items, unseen="model")
        np.testing.assert_allclose([r["score"] for r in mine], again.prediction, rtol=1e-5)


def test_unknown_users_and_empty_lists_are_refused(popularity):
    with pytest.raises(ConfigError, match="user ids not known to the model: 99999, abc"):
        recommend.recommend_users(popularity[0], [1, 99999, "abc"], k=3)
    with pytest.raises(ConfigError, match="give at least one user id"):
        recommend.recommend_users(popularity[0], [], k=3)


def test_write_recommendations_text_and_csv(tmp_path):
    recs = [{"user": "7", "rank": 1, "item": 50, "title": "Star Wars (1977)", "score": 0.5},
            {"user": "7", "rank": 2, "item": 3, "title": None, "score": 0.25}]
    recommend.write_recommendations(recs, "csv", tmp_path / "r.csv")
    assert (tmp_path / "r.csv").read_text() == ("user,rank,item,title,score\n7,1,50,Star Wars (1977),0.5\n"
                                                "7,2,3,,0.25\n")
    recommend.write_recommendations(recs, "text", tmp_path / "r.txt")
    assert (tmp_path / "r.txt").read_text() == "user 7:\n  1. 50  Star Wars (1977)  (0.500)\n  2. 3    (0.250)\n"
    with pytest.raises(ConfigError, match="--format 'xml': use text or csv"):
        recommend.write_recommendations(recs, "xml")


def test_read_user_ids(tmp_path):
    (tmp_path / "a.txt").write_text("1\n\n 2 \n")
    assert recommend.read_user_ids(tmp_path / "a.txt") == ["1", "2"]
    (tmp_path / "b.csv").write_text("movieId,userId\n5,10\n6,11\n")
    assert recommend.read_user_ids(tmp_path / "b.csv") == ["10", "11"]
    (tmp_path / "c.csv").write_text("userId,x\n1,2\n,3\n")
    with pytest.raises(DatasetError, match=r"c\.csv:3: no user id on this line"):
        recommend.read_user_ids(tmp_path / "c.csv")


def test_main_recommend_users_csv(popularity, tmp_path, capsys):
    (tmp_path / "users.txt").write_text("1\n2\n")
    out = tmp_path / "recs.csv"
    assert run_main("--recommend_users_file", tmp_path / "users.txt", "--format", "csv", "--top_k", "3",
                    "--output", out, "--export_dir", popularity[0]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["user", "rank", "item", "title", "score"]
    assert frame["user"].tolist() == [1, 1, 1, 2, 2, 2] and frame["rank"].tolist() == [1, 2, 3] * 2
    assert run_main("--recommend_users", "1,424242", "--export_dir", popularity[0]) == 2
    assert "user ids not known to the model: 424242" in capsys.readouterr().err
    results = json.loads((popularity[0] / "results.json").read_text())
    assert results["config"]["model"] == "popularity"


def test_item_list_reads_as_top_ratings_for_a_user_based_rating_model(tmp_path_factory, mirror, data_dir):
    from training import families

    run, _ = _run("deeprec", tmp_path_factory, mirror, data_dir, {"hidden": (16,)}, batch=128, epochs=1)
    model, _, ids, _ = loader.load(run)
    cols = sorted(int(np.flatnonzero(ids["item_ids"] == i)[0]) for i in (1, 50))
    # The listed items are fed as the highest training rating (5 on ML-100K), not as 1-star ratings.
    row = tf.SparseTensor([[0, c] for c in cols], [5.0, 5.0], [1, len(ids["item_ids"])])
    masked = model.predict_rows(row).numpy()[0]
    masked[cols] = -np.inf
    top = np.argsort(-masked, kind="stable")[:5]
    recs = recommend.recommend(run, [1, 50], k=5)
    assert [r["item"] for r in recs] == ids["item_ids"][top].tolist()
    np.testing.assert_allclose([r["score"] for r in recs], masked[top], rtol=1e-6)


def test_item_list_with_an_item_based_model_is_refused(deeprec_items):
    run, _ = deeprec_items
    with pytest.raises(ConfigError, match="item-based"):
        recommend.recommend(run, [1, 50], k=5)
