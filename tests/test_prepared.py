"""--protocol prepared: a split made elsewhere, read as it is (Liang et al.'s files for top-k models; train, validation
and test rating files for rating models), with a clear error for each malformed folder."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_main
from data import prepared
from data.errors import ConfigError, DatasetError
from data.prepare import DataConfig, default_protocol, prepare


def write_liang(folder, train, val_tr, val_te, test_tr, test_te, items=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", train), ("validation_tr", val_tr), ("validation_te", val_te),
                        ("test_tr", test_tr), ("test_te", test_te)):
        pd.DataFrame(pairs, columns=["uid", "sid"]).to_csv(folder / f"{name}.csv", index=False)
    if items is not None:
        (folder / "unique_sid.txt").write_text("".join(f"{i}\n" for i in items))
    return folder


def small_liang(folder):
    # Users 0-2 train, 3-4 validate, 5 tests; item 2 is clicked twice by user 0 (kept as one click).
    return write_liang(folder, [(0, 0), (0, 2), (0, 2), (1, 1), (2, 3)], [(3, 0), (4, 1)], [(3, 3), (4, 2)],
                       [(5, 1)], [(5, 0), (5, 3)], items=["a", "b", "c", "d"])


def test_liang_files_give_the_split_they_hold(tmp_path):
    split = prepared.read_heldout(small_liang(tmp_path / "p"))
    assert split.train.toarray().tolist() == [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert split.val_input.toarray().tolist() == [[1, 0, 0, 0], [0, 1, 0, 0]]
    assert split.val_target.toarray().tolist() == [[0, 0, 0, 1], [0, 0, 1, 0]]
    assert split.test_input.toarray().tolist() == [[0, 1, 0, 0]]
    assert split.test_target.toarray().tolist() == [[1, 0, 0, 1]]
    assert list(split.item_ids) == ["a", "b", "c", "d"] and list(split.val_user_ids) == [3, 4]


def test_a_prepared_folder_is_its_own_default_protocol(tmp_path, mirror):
    folder = small_liang(tmp_path / "p")
    assert default_protocol("topk", str(folder)) == "prepared"
    assert default_protocol("topk", "ml-100k") == "heldout"
    split, info = prepare(DataConfig(dataset=str(folder), data_dir=str(tmp_path / "d"), cache=False), "topk", 0,
                          verbose=False)
    assert info["protocol"] == "prepared" and split.train.nnz == 4
    assert set(info["checksums"]) == {str((folder / n).resolve()) for n in prepared.files(folder, "topk")}


@pytest.mark.parametrize("change, message", [
    (lambda f: (f / "test_te.csv").unlink(), "no test_te.csv"),
    (lambda f: (f / "train.csv").write_text("user,item\n0,1\n"), "no column uid, sid"),
    (lambda f: (f / "train.csv").write_text("uid,sid\n0,x\n"), "whole numbers"),
    (lambda f: (f / "test_tr.csv").write_text("uid,sid\n0,1\n"), "uid 0 is in both the train and the test part"),
    (lambda f: (f / "unique_sid.txt").write_text("a\nb\n"), "sid 3 is beyond the 2 items"),
])
def test_malformed_liang_folders_get_one_line(tmp_path, change, message):
    folder = small_liang(tmp_path / "p")
    change(folder)
    with pytest.raises(DatasetError, match=message) as err:
        prepared.read_heldout(folder)
    assert "\n" not in str(err.value)


def write_ratings(folder, train, test, validation=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("test", test), ("validation", validation)):
        if rows is not None:
            pd.DataFrame(rows, columns=["user", "item", "rating"]).to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_rating_files_give_the_split_they_hold(tmp_path):
    folder = write_ratings(tmp_path / "r", [("u1", 10, 4.0), ("u2", 20, 2.5)], [("u1", 20, 3.0)],
                           [("u3", 10, 5.0)])
    split = prepared.read_ratings(folder)
    assert list(split.user_ids) == ["u1", "u2", "u3"] and list(split.item_ids) == [10, 20]
    assert split.train.toarray().tolist() == [[4.0, 0], [0, 2.5], [0, 0]]
    assert split.test.toarray().tolist() == [[0, 3.0], [0, 0], [0, 0]]
    assert split.val.toarray().tolist() == [[0, 0], [0, 0], [5.0, 0]]
    no_val = prepared.read_ratings(write_ratings(tmp_path / "r2", [("u1", 10, 4.0)], [("u1", 10, 3.0)]))
    assert no_val.val.nnz == 0


def test_a_repeated_rating_is_refused(tmp_path):
    folder = write_ratings(tmp_path / "r", [("u1", 10, 4.0), ("u1", 10, 2.0)], [("u1", 20, 3.0)])
    with pytest.raises(DatasetError, match="user u1 rates item 10 more than once"):
        prepared.read_ratings(folder)


def test_vae_trains_and_tests_on_a_prepared_split_of_ml_100k(tmp_path, mirror, capsys):
    # ML-100K's heldout split written out in Liang et al.'s format and read back: the same counts and test metrics.
    data = DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(tmp_path / "d"))
    split, _ = prepare(data, "topk", 0, verbose=False)
    folder = tmp_path / "liang"

    def pairs(m, first_uid):
        coo = m.tocoo()
        return list(zip(coo.row + first_uid, coo.col))

    n_tr, n_va = split.train.shape[0], split.val_input.shape[0]
    write_liang(folder, pairs(split.train, 0), pairs(split.val_input, n_tr), pairs(split.val_target, n_tr),
                pairs(split.test_input, n_tr + n_va), pairs(split.test_target, n_tr + n_va))
    args = ("--model", "ease", "--train", "--test", "--data_dir", tmp_path / "d")
    assert run_main(*args, "--dataset", folder, "--export_dir", tmp_path / "a") == 0
    assert run_main(*args, "--data_mirror", mirror, "--export_dir", tmp_path / "b", "--config", "none") == 0
    ours, theirs = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("b", "a"))
    assert theirs["data"]["protocol"] == "prepared"
    counts = lambda r: {k: v for k, v in r["data"]["counts"].items()}
    assert counts(theirs)["train_nnz"] == counts(ours)["train_nnz"]
    assert theirs["test"]["ndcg@100"] == pytest.approx(ours["test"]["ndcg@100"], abs=1e-6)


def test_rating_files_without_validation_validate_on_a_slice_of_train(tmp_path):
    rows = [(u, i, float(1 + (u + i) % 5)) for u in range(20) for i in range(10)]
    folder = write_ratings(tmp_path / "r", rows, [(0, 0, 3.0)])
    data = lambda **kw: DataConfig(dataset=str(folder), data_dir=str(tmp_path / "d"), cache=False, **kw)
    split, info = prepare(data(), "rating", 0, verbose=False)
    # The default 5% of the 200 training ratings move to the validation slice.
    assert (split.train.nnz, split.val.nnz) == (190, 10) and info["protocol_config"]["val_fraction"] == 0.05
    split, _ = prepare(data(val_fraction=0.0), "rating", 0, verbose=False)
    assert (split.train.nnz, split.val.nnz) == (200, 0)
    write_ratings(folder, rows, [(0, 0, 3.0)], validation=[(1, 1, 2.0)])
    split, info = prepare(data(), "rating", 0, verbose=False)
    assert (split.train.nnz, split.val.nnz) == (200, 1) and info["protocol_config"]["val_fraction"] == 0.0
    with pytest.raises(ConfigError, match="has its own validation.csv"):
        prepare(data(val_fraction=0.1), "rating", 0, verbose=False)
