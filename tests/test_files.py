"""Tests of data/files.py: atomic writes, their permissions, and the cleanup of leftovers."""

import json
import os
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from data import files
from serving import export


def _entries(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture
def umask_022(monkeypatch):
    old = os.umask(0o022)
    monkeypatch.setattr(files, "_umask", None)  # read again under the test's umask
    yield 0o022
    os.umask(old)


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path, mode):
    path = tmp_path / "results.json"
    files.write_text(path, "old")

    def half_then_crash(f):
        f.write(b"half" if mode == "wb" else "half")
        raise KeyboardInterrupt  # what a kill looks like to Python

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, half_then_crash, mode=mode)
    assert path.read_text() == "old" and _entries(tmp_path) == ["results.json"]


def test_a_failing_rename_leaves_no_temp_file(tmp_path, monkeypatch):
    def no_rename(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk gone"):
        files.write_text(tmp_path / "a.txt", "x")
    assert _entries(tmp_path) == []


def test_files_get_the_umask_permissions_not_0600(tmp_path, umask_022):
    paths = [files.write_json(tmp_path / "a.json", {}), files.write_text(tmp_path / "b.md", "b"),
             files.save_npz(tmp_path / "c.npz", x=np.arange(3)),
             files.atomic_write(tmp_path / "sub" / "d.bin", lambda f: f.write(b"d"))]
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    os.umask(0o077)
    files._umask = None
    assert stat.S_IMODE(files.write_text(tmp_path / "e", "e").stat().st_mode) == 0o600


def test_write_json_converts_numpy_paths_and_tuples(tmp_path):
    obj = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(2), "p": Path("/r"), "t": (1, 2), "s": {7}}
    files.write_json(tmp_path / "o.json", obj)
    text = (tmp_path / "o.json").read_text()
    assert json.loads(text) == {"n": 3, "x": 0.5, "a": [0, 1], "p": "/r", "t": [1, 2], "s": [7]}
    assert text.startswith('{\n  "n"')  # indent 2
    with pytest.raises(TypeError, match="not JSON serializable"):
        files.write_json(tmp_path / "bad.json", {"f": object()})
    assert _entries(tmp_path) == ["o.json"]


def test_text_and_npz_round_trip(tmp_path):
    files.write_text(tmp_path / "t.md", "é\nline\n")
    assert (tmp_path / "t.md").read_bytes() == "é\nline\n".encode()
    files.save_npz(tmp_path / "arrays.bin", path=np.array([1, 2]), ids=np.array(["a", "b"]))  # no .npz appended
    with np.load(tmp_path / "arrays.bin") as z:
        assert z["path"].tolist() == [1, 2] and z["ids"].tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="mode"):
        files.atomic_write(tmp_path / "x", lambda f: None, mode="a")


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    files.write_text(fifo, "through the pipe\n")
    reader.join(10)
    assert got == ["through the pipe\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


class _Baseline:
    """The part of the Recommender protocol the export writer uses."""

    def write(self, folder):
        files.save_npz(folder / "baseline.npz", w=np.ones(2))

    def get_config(self):
        return {}


def test_exported_ids_are_written_atomically(tmp_path, monkeypatch):
    export.save(_Baseline(), tmp_path, "popularity", item_ids=np.array([10, 20, 30]))
    replace = files.os.replace

    def fail_for_ids(src, dst):
        if Path(dst).name == "ids.npz":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", fail_for_ids)
    with pytest.raises(KeyboardInterrupt):
        export.save(_Baseline(), tmp_path, "popularity", item_ids=np.array([1, 2, 3, 4]))
    monkeypatch.undo()
    folder = tmp_path / export.MODEL_DIR
    with np.load(folder / "ids.npz") as z:
        assert z["item_ids"].tolist() == [10, 20, 30]
    assert not [n for n in _entries(folder) if n.endswith(".tmp")]


def _leftovers(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".results.json.ab_cd123.tmp").write_text("half")
    (folder / f"checkpoint.tmp{'0123456789abcdef' * 2}").write_text("half")
    (folder / "ckpt-3_temp").mkdir()
    (folder / "ckpt-3_temp" / "part-00000-of-00001.index").write_text("half")
    (folder / "ckpt-3.index.tempstate1234567890").write_text("half")
    return [".results.json.ab_cd123.tmp", f"checkpoint.tmp{'0123456789abcdef' * 2}", "ckpt-3.index.tempstate1234567890",
            "ckpt-3_temp"]


def test_clean_leftovers_removes_only_temporaries(tmp_path):
    keep = ["checkpoint", "ckpt-3.index", "ckpt-3.data-00000-of-00001", "notes.tmp", ".hidden", "a.json",
            "file_temp"]  # a file, not a saver folder
    for name in keep:
        (tmp_path / name).write_text("whole")
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / ".x.abcdefgh.tmp").write_text("below the folder: not touched")
    names = _leftovers(tmp_path)
    assert sorted(p.name for p in files.clean_leftovers(tmp_path)) == sorted(names)
    assert _entries(tmp_path) == sorted(keep + ["deep"])
    assert (tmp_path / "deep" / ".x.abcdefgh.tmp").exists()
    assert files.clean_leftovers(tmp_path / "missing") == []


def test_clean_leftovers_with_an_age_spares_fresh_files(tmp_path):
    names = _leftovers(tmp_path)
    old = time.time() - 7200
    for name in names[:2]:
        os.utime(tmp_path / name, (old, old))
    removed = files.clean_leftovers(tmp_path, max_age_seconds=3600)
    assert sorted(p.name for p in removed) == sorted(names[:2])
    assert _entries(tmp_path) == sorted(names[2:])


def test_clean_leftovers_knows_what_tensorflow_leaves(tmp_path, monkeypatch):
    """A checkpoint save killed before its merge, then one killed before the state file's rename."""
    from tensorflow.python.checkpoint import functional_saver
    from tensorflow.python.lib.io import file_io

    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(tf.zeros([4]))), str(tmp_path), 2)
    manager.save(checkpoint_number=1)
    whole = _entries(tmp_path)
    assert files.clean_leftovers(tmp_path) == []

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(functional_saver.gen_io_ops, "merge_v2_checkpoints", killed)
        with pytest.raises(KeyboardInterrupt):
            manager.save(checkpoint_number=2)
    with monkeypatch.context() as m:
        m.setattr(file_io, "rename", killed)
        m.setattr(file_io, "delete_file", lambda path: None)  # a kill runs no cleanup
        with pytest.raises(KeyboardInterrupt):
            manager.save(checkpoint_number=3)
    left = set(_entries(tmp_path)) - set(whole) - {"ckpt-3.index", "ckpt-3.data-00000-of-00001"}
    assert "ckpt-2_temp" in left and any(n.startswith("checkpoint.tmp") for n in left), left
    assert {p.name for p in files.clean_leftovers(tmp_path)} == left
    assert set(_entries(tmp_path)) == set(whole) | {"ckpt-3.index", "ckpt-3.data-00000-of-00001"}
