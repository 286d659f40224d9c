"""The SavedModel of every family (<export_dir>/saved_model/1/, TensorFlow Serving's layout), loaded in a fresh
process, answers like --predict and --recommend_users of the same export; the batch Python API."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from serving import loader, predict, recommend
from training import runner
from training.config import DataConfig, OptimConfig, RunConfig
from training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def _run(model, tmp_path_factory, mirror, data_dir, params=None, batch=1000, epochs=1):
    run = tmp_path_factory.mktemp(model)
    cfg = RunConfig(
        model=model, modes=("train",), export_dir=str(run),
        data=DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(data_dir)),
        optim=OptimConfig(batch_size_train=batch, lr=3e-3),
        train=TrainConfig(epochs=epochs, validation_step=epochs, export_dir=str(run), verbose=False),
        model_params=params or {})
    runner.run(cfg)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mirror):
    data_dir = tmp_path_factory.mktemp("data")
    return {"mf": _run("mf", tmp_path_factory, mirror, data_dir, batch=2000),
            "deeprec_items": _run("deeprec", tmp_path_factory, mirror, data_dir, {"major": "items", "hidden": (16,)},
                                  batch=128),
            "deeprec": _run("deeprec", tmp_path_factory, mirror, data_dir, {"hidden": (16,)}, batch=128),
            "multitask": _run("multitask", tmp_path_factory, mirror, data_dir, batch=2000),
            "popularity": _run("popularity", tmp_path_factory, mirror, data_dir)}


RATING = ["mf", "deeprec_items", "deeprec", "multitask"]
USERS = [1, 2, 3, 942, 99999]  # 99999: unknown
PAIRS = ([1, 1, 2, 3, 942, 99999, 5], [1, 50, 1681, 99999, 7, 50, 1682])

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    job = json.loads(sys.argv[1])
    out = {}
    for name, path in job["rating"].items():
        m = tf.saved_model.load(path)
        p = m.signatures["serving_default"](users=tf.constant(job["pairs"][0], tf.int64),
                                            items=tf.constant(job["pairs"][1], tf.int64))
        r = m.signatures["recommend"](users=tf.constant(job["users"], tf.int64), k=tf.constant(5))
        out[name] = {"ratings": p["ratings"].numpy().tolist(), "fallback": p["fallback"].numpy().tolist(),
                     "item_ids": r["item_ids"].numpy().tolist(), "scores": r["scores"].numpy().tolist(),
                     "known_user": r["known_user"].numpy().tolist()}
    for name, path in job["topk"].items():
        m = tf.saved_model.load(path)
        r = m.signatures["serving_default"](items=tf.constant([[1, 50, 181], [1, -1, -1]], tf.int64),
                                            k=tf.constant(5))
        out[name] = {"item_ids": r["item_ids"].numpy().tolist(), "scores": r["scores"].numpy().tolist()}
    print(json.dumps(out))
""")


def test_saved_models_in_a_fresh_process_match_predict_and_recommend(runs):
    for run in runs.values():
        assert (run / "saved_model" / "1" / "saved_model.pb").is_file()
    job = {"rating": {n: str(runs[n] / "saved_model" / "1") for n in RATING},
           "topk": {"popularity": str(runs["popularity"] / "saved_model" / "1")},
           "pairs": PAIRS, "users": USERS}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(job)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in RATING:
        exp = loader.open_export(runs[name])
        want = predict.predict_pairs(exp, *PAIRS)
        got = served[name]
        np.testing.assert_allclose(got["ratings"], want.prediction, rtol=1e-4, atol=1e-4, err_msg=name)
        assert got["fallback"] == want.fallback.tolist(), name
        assert got["fallback"][3] and got["fallback"][5]  # unknown item, unknown user
        recs = recommend.recommend_users(exp, USERS[:-1], k=5)
        for b, user in enumerate(USERS[:-1]):
            mine = [r for r in recs if r["user"] == str(user)]
            assert got["item_ids"][b] == [r["item"] for r in mine], (name, user)
            np.testing.assert_allclose(got["scores"][b], [r["score"] for r in mine], rtol=1e-4, atol=1e-4)
        assert got["known_user"] == [True] * 4 + [False]
        assert got["item_ids"][4] == [-1] * 5 and all(s == -np.inf for s in got["scores"][4])
    want = [r["item"] for r in recommend.recommend(runs["popularity"], [1, 50, 181], k=5)]
    assert served["popularity"]["item_ids"][0] == want


def test_batch_of_item_lists_skips_and_counts_unknown_ids(runs):
    for name in ("popularity", "mf"):
        exp = loader.open_export(runs[name])
        batch = recommend.recommend_lists(exp, [[1, 50, 181], [1, "nope"], ["nope", "gone"], []], k=5)
        assert batch.skipped == 2 and batch.unknown == ["nope", "gone"]
        assert batch.recs[2] == [] and batch.recs[3] == []
        for got, items in ((batch.recs[0], [1, 50, 181]), (batch.recs[1], [1])):
            want = recommend.recommend(exp, items, k=5)
            np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], rtol=1e-5)
            assert not set(items) & {r["item"] for r in got}
            if name == "mf":  # no ties
                assert [r["item"] for r in got] == [r["item"] for r in want]


def test_batch_of_known_users_skips_and_counts_unknown_users(runs):
    exp = loader.open_export(runs["deeprec_items"])
    batch = recommend.recommend_many_users(exp, [1, 99999, "2", 1], k=4)
    assert batch.skipped == 1 and batch.unknown == ["99999"] and batch.recs[1] == []
    want = recommend.recommend_users(exp, [1, 2], k=4)
    assert [r["item"] for r in batch.recs[0]] == [r["item"] for r in want if r["user"] == "1"] == \
        [r["item"] for r in batch.recs[3]]
    assert [r["item"] for r in batch.recs[2]] == [r["item"] for r in want if r["user"] == "2"]


def test_print_recommendations_loads_the_export_once(runs, monkeypatch, capsys):
    calls = []
    real = loader.open_export
    monkeypatch.setattr(loader, "open_export", lambda path: calls.append(path) or real(path))
    recommend.print_recommendations(runs["popularity"], [1, 50], k=3)
    assert len(calls) == 1 and capsys.readouterr().out.startswith("given: 1 (")
