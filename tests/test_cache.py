"""Tests of data/cache.py: round trips, keys, atomic writes, corrupt files rebuilt."""

import json
import logging
import os
import time

import numpy as np
import pytest
import scipy.sparse as sp

from data import cache, files
from data.cache import cache_path, load_or_build
from data.errors import ConfigError
from data.protocols import HeldoutConfig
from data.types import HeldoutSplit, RatingSplit


def random_csr(rows, cols, seed, density=0.3):
    m = sp.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=seed)
    m.data = np.round(m.data * 5 + 0.5).astype(np.float32)
    return m


def heldout_split():
    return HeldoutSplit(
        train=random_csr(6, 5, 0), val_input=random_csr(2, 5, 1), val_target=random_csr(2, 5, 2),
        test_input=random_csr(3, 5, 3), test_target=sp.csr_matrix((3, 5), dtype=np.float32),
        item_ids=np.array([10, 20, 30, 40, 2 ** 40], np.int64), train_user_ids=np.arange(6, dtype=np.int64),
        val_user_ids=np.array([7, 9], np.int64), test_user_ids=np.array([11, 12, 13], np.int64))


def rating_split():
    """String ids: object arrays (as data.formats gives them) for users, a numpy str array for items."""
    times = random_csr(4, 3, 7)
    times.data = np.arange(times.nnz, dtype=np.float32) + 1.5
    return RatingSplit(train=random_csr(4, 3, 4), val=random_csr(4, 3, 5), test=random_csr(4, 3, 6),
                       user_ids=np.array(["3ad9e", "b", "ccc", "ünïcode"], dtype=object),
                       item_ids=np.array(["x", "yy", "z"]), train_time=times)


def assert_same_split(a, b):
    assert type(a) is type(b)
    for field in a.__dataclass_fields__:
        x, y = getattr(a, field), getattr(b, field)
        if x is None:
            assert y is None
        elif sp.issparse(x):
            assert x.shape == y.shape and x.dtype == y.dtype
            np.testing.assert_array_equal(x.indptr, y.indptr)
            np.testing.assert_array_equal(x.indices, y.indices)
            np.testing.assert_array_equal(x.data, y.data)
        else:
            assert x.dtype == y.dtype, field
            np.testing.assert_array_equal(x, y)


class Builder:
    """A build function that counts its calls."""

    def __init__(self, make):
        self.make, self.calls = make, 0

    def __call__(self):
        self.calls += 1
        return self.make()


KEY = {"protocol": "heldout_users", "config": HeldoutConfig(), "seed": np.int64(0), "dataset": "ml-100k",
       "sources": {"u.data": "6e47046882bad158b0efbb84cd5cb987"}}


@pytest.mark.parametrize("make", [heldout_split, rating_split])
def test_round_trip(tmp_path, make):
    build = Builder(make)
    first = load_or_build(tmp_path, KEY, build)
    second = load_or_build(tmp_path, KEY, build)
    assert build.calls == 1
    assert_same_split(first, make())
    assert_same_split(second, make())
    meta = json.loads(cache_path(tmp_path, KEY).with_suffix(".json").read_text())
    assert meta["key"]["config"]["min_uc"] == 5 and meta["created"]
    assert meta["parts"]["train"] == {"rows": first.train.shape[0], "cols": first.train.shape[1],
                                         "nnz": first.train.nnz}


def test_key_decides_the_file(tmp_path):
    path = cache_path(tmp_path, KEY)
    assert path.name.startswith("ml-100k-heldout_users-") and path.suffix == ".npz"
    # Dict order does not matter; any value does.
    assert cache_path(tmp_path, dict(reversed(list(KEY.items())))) == path
    assert cache_path(tmp_path, {**KEY, "seed": 1}) != path
    assert cache_path(tmp_path, {**KEY, "config": HeldoutConfig(min_uc=6)}) != path
    assert cache_path(tmp_path, {**KEY, "sources": {"u.data": "0" * 32}}) != path
    build = Builder(heldout_split)
    load_or_build(tmp_path, KEY, build)
    load_or_build(tmp_path, {**KEY, "seed": 1}, build)
    assert build.calls == 2 and len(list(tmp_path.glob("*.npz"))) == 2


def test_crash_while_writing_leaves_no_file(tmp_path, monkeypatch):
    def savez_then_crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # what a kill looks like to Python

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(tmp_path, KEY, heldout_split)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    build = Builder(heldout_split)
    assert_same_split(load_or_build(tmp_path, KEY, build), heldout_split())
    assert build.calls == 1


def test_a_killed_writers_old_temp_file_is_removed_a_fresh_one_kept(tmp_path):
    old, fresh = tmp_path / ".a.npz.abcd1234.tmp", tmp_path / ".b.npz.efgh5678.tmp"
    old.write_bytes(b"PK half")
    fresh.write_bytes(b"PK half")  # a concurrent writer's, seconds old
    stale = time.time() - cache.STALE_TEMP_SECONDS - 60
    os.utime(old, (stale, stale))
    load_or_build(tmp_path, KEY, heldout_split)
    assert not old.exists() and fresh.exists()
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".npz", ".tmp"]


def test_crash_before_metadata_rebuilds(tmp_path, monkeypatch):
    replace = files.os.replace

    def replace_npz_only(src, dst):
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace_npz_only)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(tmp_path, KEY, heldout_split)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # no .json: not trusted
    monkeypatch.undo()
    build = Builder(heldout_split)
    load_or_build(tmp_path, KEY, build)
    assert build.calls == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "other_key", "wrong_counts"])
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    build = Builder(rating_split)
    load_or_build(tmp_path, KEY, build)
    path = cache_path(tmp_path, KEY)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif damage == "garbage_json":
        meta_path.write_text("{not json")
    elif damage == "other_key":
        meta["key"]["seed"] = 99
        meta_path.write_text(json.dumps(meta))
    else:
        meta["parts"]["val"]["nnz"] += 1
        meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        again = load_or_build(tmp_path, KEY, build)
    assert build.calls == 2
    assert_same_split(again, rating_split())
    assert f"cache {path} is unreadable" in caplog.text and "rebuilding it" in caplog.text
    load_or_build(tmp_path, KEY, build)
    assert build.calls == 2  # the rebuilt copy is good


def test_unwritable_cache_warns_and_returns_the_split(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        split = load_or_build(blocker / "cache", KEY, heldout_split)
    assert_same_split(split, heldout_split())
    assert "could not write cache" in caplog.text and "continuing without it" in caplog.text


def test_errors(tmp_path):
    with pytest.raises(ConfigError, match="cache key value .* of type object cannot be written as JSON"):
        cache_path(tmp_path, {"seed": object()})
    with pytest.raises(ConfigError, match="the cache build function returned a dict, not a HeldoutSplit or RatingSplit"):
        load_or_build(tmp_path, KEY, dict)
    mixed = rating_split()
    mixed.user_ids = np.array(["a", 1, "c", "d"], dtype=object)
    with pytest.raises(ConfigError, match="user_ids mixes strings with other objects"):
        load_or_build(tmp_path, KEY, lambda: mixed)
