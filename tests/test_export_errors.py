"""A damaged export folder, a bad --output, a bad --top_k or pairs file: one clear line each, never a traceback.

The exports here are tiny (a 6x5 MF written without training, a Popularity fit), written with
:func:`serving.export.save` and :func:`serving.export.save_known`, then copied and damaged file by file.
"""

import json
import os
import re
import shutil
import types

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from data.errors import ConfigError, DatasetError, TrainingError
from serving import export, loader, predict, recommend
from training import families
from conftest import run_main

USERS = np.arange(100, 106)
ITEMS = np.arange(10, 15)
RETRAIN = "retrain with --train --fresh or point --export_dir at a finished run"


def _ratings() -> sp.csr_matrix:
    dense = np.array([[5, 0, 3, 0, 1], [0, 4, 0, 2, 0], [1, 1, 0, 0, 5], [0, 0, 4, 4, 0], [2, 0, 0, 0, 3],
                      [0, 5, 5, 0, 0]], np.float32)
    return sp.csr_matrix(dense)


def make_export(folder, family: str = "mf"):
    """A complete, tiny export of ``family`` (``mf`` or ``popularity``) in ``folder``, in seconds."""
    train = _ratings()
    titles = {int(i): f"item {i}" for i in ITEMS}
    if family == "mf":
        from mf.config import MFConfig
        from mf.model import MatrixFactorization

        model = MatrixFactorization(MFConfig.from_dims(len(USERS), len(ITEMS), rank=2))
        model.ensure_built()
        export.save(model, folder, "mf", ITEMS, USERS, titles, {"task": "rating"})
    else:
        from baselines.popularity import Popularity

        export.save(Popularity().solve(train), folder, "popularity", ITEMS, titles=titles, extra={"task": "topk"})
    export.save_known(folder, types.SimpleNamespace(task="rating", train=train, user_ids=USERS))
    return folder


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """family -> a pristine export folder (never damaged: tests damage copies)."""
    return {name: make_export(tmp_path_factory.mktemp(name), name) for name in ("mf", "popularity")}


def _copy(clean, family, tmp_path):
    run = tmp_path / f"{family}-run"
    shutil.copytree(clean[family], run)
    return run


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _rewrite_json(change):
    def damage(path):
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return damage


DATA = "weights.data-00000-of-00001"
CASES = [
    # (family, file, damage, the message after "<path>: ")
    ("mf", "ids.npz", _truncate, "not a readable .npz file, truncated or corrupt"),
    ("mf", "ids.npz", os.remove, "missing"),
    ("mf", "known.npz", _truncate, "not a readable .npz file, truncated or corrupt"),
    ("mf", "weights.index", _truncate, "truncated or corrupt"),
    ("mf", "weights.index", os.remove, "missing"),
    ("mf", DATA, _truncate, "truncated or corrupt"),
    ("mf", DATA, os.remove, "missing"),
    ("mf", "model.json", lambda p: p.write_text('{"family": "mf", "config": {'), "not valid JSON"),
    ("mf", "model.json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not valid JSON"),
    ("mf", "model.json", _rewrite_json(lambda m: m.update(family="svd")),
     re.escape(f"unknown model family 'svd' (known: {', '.join(sorted(families.FAMILIES))})")),
    ("mf", "model.json", _rewrite_json(lambda m: m.pop("family")), 'no "family" field'),
    ("mf", "model.json", _rewrite_json(lambda m: m["config"].update(bogus=1)), "its config does not fit the 'mf'"),
    ("mf", "titles.json", _truncate, "not valid JSON"),
    ("mf", "titles.json", lambda p: p.write_text("[1, 2]"), "not an object of item id -> title"),
    ("popularity", "baseline.npz", _truncate, "not a tfcf .npz export"),
    ("popularity", "baseline.npz", os.remove, "missing"),
    ("popularity", "ids.npz", _truncate, "not a readable .npz file"),
]


@pytest.mark.parametrize("family,name,damage,message", CASES,
                         ids=[f"{c[0]}-{c[1]}-{getattr(c[2], '__name__', 'edit')}-{i}" for i, c in enumerate(CASES)])
def test_damaged_export_file_is_one_line_naming_it(clean, tmp_path, family, name, damage, message):
    run = _copy(clean, family, tmp_path)
    path = run / "model" / name
    damage(path)
    with pytest.raises(TrainingError) as info:
        predict.open_export(run)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and text.endswith(RETRAIN), text
    assert re.search(message, text), text


def test_config_that_does_not_fit_the_weights_names_a_weights_file(clean, tmp_path):
    run = _copy(clean, "mf", tmp_path)
    _rewrite_json(lambda m: m["config"].update(rank=3))(run / "model" / "model.json")
    with pytest.raises(TrainingError, match=r"/model/weights\.data-00000-of-00001: holds weights that do not fit "
                                            r"the model of model\.json \(.*shape") as info:
        loader.load(run)
    assert "\n" not in str(info.value)


def test_missing_model_json_and_known_npz_keep_their_messages(clean, tmp_path):
    run = _copy(clean, "mf", tmp_path)
    (run / "model" / "known.npz").unlink()
    with pytest.raises(TrainingError, match=r"known\.npz is missing: .* --fresh"):
        predict.open_export(run)
    (run / "model" / "model.json").unlink()
    with pytest.raises(TrainingError, match=r"no exported model in .* \(model\.json is missing\)"):
        predict.open_export(run)


def test_known_npz_without_its_arrays_is_named(clean, tmp_path):
    run = _copy(clean, "mf", tmp_path)
    np.savez(run / "model" / "known.npz", row_ids=USERS)
    with pytest.raises(TrainingError, match=r"known\.npz: lacks data, indices, indptr, shape; retrain"):
        loader.load_known(run)


def test_the_clean_exports_load(clean):
    exp = predict.open_export(clean["mf"])
    assert exp.known.shape == (6, 5) and exp.titles["10"] == "item 10"
    recs = recommend.recommend_users(clean["popularity"], [100], k=2)
    assert [r["rank"] for r in recs] == [1, 2]


def test_main_prints_one_error_line_for_a_damaged_export(clean, tmp_path, capsys):
    run = _copy(clean, "popularity", tmp_path)
    _truncate(run / "model" / "ids.npz")
    assert run_main("--recommend_users", "100", "--export_dir", run) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run / 'model' / 'ids.npz'}: ") and "\n" not in err and "Traceback" not in err


# ----------------------------------------------------------------------------- --output

def _pairs(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("user,item\n100,10\n101,11\n")
    return path


@pytest.mark.parametrize("where,message", [
    ("folder", r"--output .*out is a folder: give the path of a file to write"),
    ("missing", r"--output .*nowhere/x\.csv: the folder .*nowhere does not exist; create it first"),
    ("empty", r"--output is empty"),
])
def test_bad_output_is_refused_before_the_model_is_loaded(tmp_path, where, message):
    (tmp_path / "out").mkdir()
    output = {"folder": tmp_path / "out", "missing": tmp_path / "nowhere" / "x.csv", "empty": ""}[where]
    nothing = tmp_path / "no-export-here"  # the model would fail to load: the output is checked first
    with pytest.raises(ConfigError, match=message):
        predict.predict_file(nothing, _pairs(tmp_path), output, verbose=False)
    with pytest.raises(ConfigError, match=message):
        recommend.write_recommendations([], "csv", output)
    with pytest.raises(ConfigError, match=message):
        recommend.write_recommendations([], "text", output)


def test_read_only_folder_and_file_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "old.csv").write_text("old\n")
    if os.geteuid() != 0:  # root writes anywhere: there the permission check is simulated
        folder.chmod(0o555)
    else:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if "ro" in str(p) else real(p, mode, **kw))
    try:
        with pytest.raises(ConfigError, match=r"--output .*ro/x\.csv: the folder .*ro is not writable"):
            predict.check_output(folder / "x.csv")
        with pytest.raises(ConfigError, match=r"--output .*ro/x\.csv: the folder .*ro is not writable"):
            recommend.write_recommendations([], "csv", folder / "x.csv")
    finally:
        folder.chmod(0o755)
    assert sorted(p.name for p in folder.iterdir()) == ["old.csv"]


def test_failed_write_leaves_no_half_file_and_keeps_the_old_one(clean, tmp_path, monkeypatch):
    out = tmp_path / "pred.csv"
    out.write_text("old content\n")

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(ConfigError, match=r"--output .*pred\.csv: cannot write it \(No space left on device\)"):
        predict.predict_file(clean["mf"], _pairs(tmp_path), out, verbose=False)
    assert out.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "pred.csv"]  # no temporary left


def test_output_is_written_whole(clean, tmp_path):
    out = tmp_path / "pred.csv"
    summary = predict.predict_file(clean["mf"], _pairs(tmp_path), out, verbose=False)
    assert summary["pairs"] == 2 and summary["output"] == str(out)
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["user", "item", "prediction"] and len(frame) == 2
    recs = recommend.recommend_users(clean["popularity"], [100, 101], k=2)
    recommend.write_recommendations(recs, "text", tmp_path / "recs.txt")
    assert (tmp_path / "recs.txt").read_text().startswith("user 100:\n  1. ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv", "pred.csv", "recs.txt"]


def test_main_bad_output_is_one_line(tmp_path, capsys):
    assert run_main("--predict", _pairs(tmp_path), "--output", tmp_path / "missing" / "p.csv",
                    "--export_dir", tmp_path / "no-export") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --output {tmp_path / 'missing' / 'p.csv'}: the folder {tmp_path / 'missing'} does not " \
                  f"exist; create it first"


# ----------------------------------------------------------------------------- --top_k and the pairs file

@pytest.mark.parametrize("k", [0, -1])
def test_top_k_below_one_is_refused_before_loading(tmp_path, k):
    nothing = tmp_path / "no-export-here"
    for call in (lambda: recommend.recommend(nothing, [10], k=k),
                 lambda: recommend.recommend_users(nothing, [100], k=k),
                 lambda: recommend.print_recommendations(nothing, [10], k=k)):
        with pytest.raises(ConfigError, match=f"^--top_k must be >= 1, got {k}$"):
            call()


def test_top_k_of_one_works(clean):
    assert len(recommend.recommend(clean["popularity"], [10], k=1)) == 1
    assert len(recommend.recommend_users(clean["mf"], [100], k=1)) == 1


def test_missing_or_folder_pairs_file_is_one_line(clean, tmp_path):
    with pytest.raises(DatasetError, match=r"^--predict .*nope\.csv: no such file; give a CSV, TSV or Parquet file"):
        predict.predict_file(clean["mf"], tmp_path / "nope.csv", verbose=False)
    with pytest.raises(DatasetError, match=r"^--predict .* is a folder: give a CSV, TSV or Parquet file"):
        predict.predict_file(clean["mf"], tmp_path, verbose=False)
    (tmp_path / "users").mkdir()
    with pytest.raises(DatasetError, match=r"users is a folder: give a file of user ids"):
        recommend.read_user_ids(tmp_path / "users")
