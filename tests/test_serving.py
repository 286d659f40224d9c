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
