"""data/prepare.py: files verified on a warm split cache, content-keyed own files, info["checksums"],
titles that fail are reported, own files too small to test."""

import dataclasses
import hashlib
import os

import pytest

from data import prepare as prep
from data import protocols, registry
from data.errors import DatasetError
from data.prepare import DataConfig, prepare

# Ten ML-100K ratings in u.data's raw layout (user, item, rating, time), and two u.item lines.
U_DATA = "".join(f"{u}\t{i}\t{r}\t88125{u}{i}\n" for u, i, r in
                 [(1, 1, 5), (1, 2, 3), (1, 3, 4), (2, 1, 4), (2, 2, 2), (2, 3, 5), (3, 1, 1), (3, 2, 4),
                  (3, 3, 3), (4, 1, 5)])
U_ITEM = "1|Toy Story (1995)|01-Jan-1995||url|0\n2|GoldenEye (1995)|01-Jan-1995||url|0\n3|Four Rooms (1995)|x||u|0\n"
# One hour ago: older than the two seconds within which a fresh file's md5 is not remembered.
AN_HOUR_AGO = 3600 * 10**9


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def age(path):
    """Dates ``path`` an hour back, as a file not written just now."""
    then = path.stat().st_mtime_ns - AN_HOUR_AGO
    os.utime(path, ns=(then, then))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A mirror holding a hand-made ml-100k/ whose md5s the registry trusts; returns (config, folder)."""
    monkeypatch.delenv("TFCF_DATA_MIRROR", raising=False)
    folder = tmp_path / "mirror" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_text(U_ITEM)
    for file in ("u.data", "u.item"):
        age(folder / file)
    spec = dataclasses.replace(registry.get_spec("ml-100k"),
                               checksums={"u.data": md5(U_DATA.encode()), "u.item": md5(U_ITEM.encode())})
    monkeypatch.setitem(registry._BY_NAME, "ml-100k", spec)
    cfg = DataConfig(dataset="ml-100k", mirror=str(tmp_path / "mirror"), data_dir=str(tmp_path / "cache"),
                     protocol="random", test_fraction=0.2, val_fraction=0.0)
    return cfg, folder


def no_build(monkeypatch):
    """Makes building a random split fail: a prepare() that returns served it from the cache."""
    def fail(*args, **kwargs):
        raise AssertionError("the split was built again")

    monkeypatch.setattr(protocols, "random_split", fail)


def test_warm_cache_still_verifies_the_files(tiny, monkeypatch):
    cfg, folder = tiny
    split, info = prepare(cfg, "rating", 0, verbose=False)
    assert split.test.nnz == 2 and split.train.nnz == 8
    assert info["checksums"] == {"u.data": md5(U_DATA.encode()), "u.item": md5(U_ITEM.encode())}
    with monkeypatch.context() as m:
        no_build(m)
        again, info_again = prepare(cfg, "rating", 0, verbose=False)  # a cache hit
    assert (again.test != split.test).nnz == 0 and info_again["checksums"] == info["checksums"]
    # One rating edited, 5 -> 1: the same size, another mtime. Before, the warm cache served the old split.
    edited = U_DATA.replace("1\t1\t5", "1\t1\t1", 1)
    assert len(edited) == len(U_DATA)
    (folder / "u.data").write_text(edited)
    with pytest.raises(DatasetError) as err:
        prepare(cfg, "rating", 0, verbose=False)
    assert str(err.value).startswith(f"checksum mismatch for {folder / 'u.data'}: expected md5 "
                                     f"{md5(U_DATA.encode())}, got {md5(edited.encode())};")


def test_fold_protocol_records_the_fold_files(tiny):
    cfg, folder = tiny
    (folder / "u1.base").write_text("1\t1\t5\t881250949\n2\t2\t3\t881250949\n")
    (folder / "u1.test").write_text("1\t2\t4\t881250949\n")
    _, info = prepare(dataclasses.replace(cfg, protocol="fold"), "rating", 0, verbose=False)
    assert info["checksums"] == {"u1.base": md5(b"1\t1\t5\t881250949\n2\t2\t3\t881250949\n"),
                                 "u1.test": md5(b"1\t2\t4\t881250949\n")}


def test_own_file_is_keyed_by_its_content(tmp_path, monkeypatch):
    path = tmp_path / "mine.csv"
    text = "user,item,rating\n" + "".join(f"{u},{i},{(u + i) % 5 + 1}\n" for u in range(4) for i in range(5))
    path.write_text(text)
    cfg = DataConfig(dataset=str(path), data_dir=str(tmp_path / "cache"), protocol="random", test_fraction=0.25)
    split, info = prepare(cfg, "rating", 0, verbose=False)
    assert info["checksums"] == {str(path.resolve()): md5(text.encode())}
    # Touched, not changed: the same content is the same split, served from the cache.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5))
    with monkeypatch.context() as m:
        no_build(m)
        prepare(cfg, "rating", 0, verbose=False)
    # Edited within the same second and at the same size (size + whole-second mtime, the old key, could not
    # tell): the new content is a new split.
    edited = text.replace("0,0,1", "0,0,5", 1)
    assert len(edited) == len(text) and edited != text
    path.write_text(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10))
    rebuilt, info = prepare(cfg, "rating", 0, verbose=False)
    assert info["checksums"] == {str(path.resolve()): md5(edited.encode())}
    assert (rebuilt.train + rebuilt.test)[0, 0] == 5 and (split.train + split.test)[0, 0] == 1


@pytest.mark.parametrize("text, task, message", [
    # One rating: 5% of it rounds to no test rating.
    ("user,item,rating\n1,2,5\n", "rating",
     "test_fraction=0.05 of the 1 ratings of {path} rounds to no test rating (its metrics would be NaN): "
     "raise test_fraction (--test_fraction) or use more ratings"),
    # Ten ratings of two users, 5 clicks each, min_uc 1: one validation and one test user leave none to train.
    ("".join(f"{u},{i},5\n" for u in (1, 2) for i in range(5)), "topk",
     "val_users + test_users hold out 1 + 1 of the 2 users kept in {path}, leaving none to train"),
])
def test_own_file_with_nothing_to_test_is_one_line(tmp_path, text, task, message):
    path = tmp_path / "few.csv"
    path.write_text(text)
    cfg = DataConfig(dataset=str(path), data_dir=str(tmp_path / "cache"), min_uc=1)
    with pytest.raises((DatasetError, prep.ConfigError)) as err:
        prepare(cfg, task, 0, verbose=False)
    assert str(err.value).startswith(message.format(path=path)) and "\n" not in str(err.value)


def test_missing_own_file_is_the_readers_error(tmp_path):
    cfg = DataConfig(dataset=str(tmp_path / "nope.csv"), data_dir=str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=r"^no such file .*nope\.csv: give the path"):
        prepare(cfg, "topk", 0, verbose=False)


# ----------------------------------------------------------------------------- titles

def test_titles_read(tiny, capsys):
    cfg, _ = tiny
    assert prep.titles(cfg) == {1: "Toy Story (1995)", 2: "GoldenEye (1995)", 3: "Four Rooms (1995)"}
    assert capsys.readouterr().err == ""


def test_datasets_without_titles_give_nothing_quietly(tmp_path, capsys):
    assert prep.titles(DataConfig(dataset="pinterest-20", data_dir=str(tmp_path))) == {}
    assert prep.titles(DataConfig(dataset=str(tmp_path / "mine.csv"), data_dir=str(tmp_path))) == {}
    assert capsys.readouterr().err == ""


def test_a_damaged_titles_file_is_one_warning_line(tiny, monkeypatch, capsys):
    cfg, folder = tiny
    damaged = U_ITEM + "four|Broken\n"
    (folder / "u.item").write_text(damaged)
    spec = dataclasses.replace(registry.get_spec("ml-100k"), checksums={"u.item": md5(damaged.encode())})
    monkeypatch.setitem(registry._BY_NAME, "ml-100k", spec)
    assert prep.titles(cfg) == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {folder / 'u.item'}: cannot read titles (")
    assert err.endswith("; continuing without item titles\n")
    # A titles file whose checksum fails is reported the same way.
    monkeypatch.setitem(registry._BY_NAME, "ml-100k", dataclasses.replace(spec, checksums={"u.item": "0" * 32}))
    assert prep.titles(cfg) == {}
    assert capsys.readouterr().err.startswith(f"warning: checksum mismatch for {folder / 'u.item'}: ")


def write_netflix(folder, movies=17):
    """Netflix's training_set/ layout: users 1, 2 rate every movie in October 2005; user 3 rates movies
    1..8 in October and 9.. in December, the 3m window's test month."""
    (folder / "training_set").mkdir(parents=True)
    for m in range(1, movies + 1):
        day = "2005-10-0" if m <= 8 else "2005-12-0"
        lines = [f"{m}:", f"1,{m % 5 + 1},2005-10-01", "2,4,2005-10-02", f"3,{m % 3 + 2},{day}3"]
        path = folder / "training_set" / f"mv_{m:07d}.txt"
        path.write_text("\n".join(lines) + "\n")
        age(path)


def test_many_source_files_are_one_combined_md5(tmp_path, monkeypatch):
    # Netflix has no registry md5s: the key still holds the content, as one md5 over its 17 files.
    monkeypatch.delenv("TFCF_DATA_MIRROR", raising=False)
    write_netflix(tmp_path / "mirror" / "netflix")
    cfg = DataConfig(dataset="netflix", mirror=str(tmp_path / "mirror"), data_dir=str(tmp_path / "cache"),
                     protocol="time", time_window="3m")
    split, info = prepare(cfg, "rating", 0, verbose=False)
    assert split.train.nnz == 2 * 17 + 8 and split.val.nnz + split.test.nnz == 9
    folder = tmp_path / "mirror" / "netflix"
    lines = "".join(f"training_set/mv_{m:07d}.txt {md5((folder / 'training_set' / f'mv_{m:07d}.txt').read_bytes())}\n"
                    for m in range(1, 18))
    assert info["checksums"] == {"17 files training_set/mv_0000001.txt .. training_set/mv_0000017.txt":
                                 md5(lines.encode())}
    # User 2's rating of movie 17 edited, 4 -> 1 (same size): another key, a new split with the new rating.
    path = folder / "training_set" / "mv_0000017.txt"
    path.write_text(path.read_text().replace("2,4,", "2,1,"))
    edited, info_edited = prepare(cfg, "rating", 0, verbose=False)
    assert info_edited["checksums"] != info["checksums"]
    col = list(edited.item_ids).index(17)
    row = list(edited.user_ids).index(2)
    assert edited.train[row, col] == 1 and split.train[row, col] == 4


def test_rating_splits_validate_on_five_percent_by_default(mirror, tmp_path):
    cfg = DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(tmp_path))
    split, info = prepare(cfg, "rating", 0, verbose=False)  # the official fold u1: 80,000 training ratings
    assert split.val.nnz + split.train.nnz == 80_000 and split.val.nnz == pytest.approx(4000, abs=150)
    assert info["protocol"] == "fold"
    none, _ = prepare(dataclasses.replace(cfg, val_fraction=0.0), "rating", 0, verbose=False)
    assert none.val.nnz == 0 and none.train.nnz == 80_000
