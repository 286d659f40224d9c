import dataclasses
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import time
import zipfile

import pytest

from data import download, registry
from data.errors import DatasetError
from data.loader import load, load_titles


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    """Tests choose mirror and data dir themselves; CI's variables must not leak in."""
    monkeypatch.delenv("TFCF_DATA_MIRROR", raising=False)
    monkeypatch.delenv("TFCF_DATA_DIR", raising=False)


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def one_line(info):
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- mirror


def test_mirror_argument(mirror, tmp_path):
    assert download.locate("ml-100k", mirror=mirror, data_dir=tmp_path) == mirror / "ml-100k"
    assert download.locate("lastfm-2k", mirror=mirror, data_dir=tmp_path) == mirror / "hetrec2011-lastfm-2k"


def test_mirror_from_environment_and_argument_wins(raw, tmp_path, monkeypatch):
    monkeypatch.setenv("TFCF_DATA_MIRROR", str(raw))
    assert download.locate("ml-20m", data_dir=tmp_path) == raw / "ml-20m"
    other = tmp_path / "other"
    shutil.copytree(raw / "ml-20m", other / "ml-20m")
    assert download.locate("ml-20m", mirror=other, data_dir=tmp_path) == other / "ml-20m"


def test_data_dir_from_environment(raw, tmp_path, monkeypatch):
    shutil.copytree(raw / "pinterest-20", tmp_path / "pinterest-20")
    monkeypatch.setenv("TFCF_DATA_DIR", str(tmp_path))
    assert download.locate("pinterest-20", download=False) == tmp_path / "pinterest-20"


def test_mirror_without_the_dataset_folder(raw, tmp_path):
    with pytest.raises(DatasetError) as info:
        download.locate("ml-1m", mirror=tmp_path, data_dir=tmp_path / "cache")
    message = one_line(info)
    assert f"the data mirror {tmp_path} has no folder ml-1m/" in message
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert not (tmp_path / "cache" / "ml-1m").exists()  # A mirror never downloads.


def test_mirror_that_is_not_a_folder(tmp_path):
    with pytest.raises(DatasetError, match=f"the data mirror {re.escape(str(tmp_path / 'nope'))} is not a folder"):
        download.locate("ml-100k", mirror=tmp_path / "nope", data_dir=tmp_path)


def test_mirror_missing_a_file(raw, tmp_path):
    (tmp_path / "ml-20m").mkdir()
    shutil.copy(raw / "ml-20m" / "movies.csv", tmp_path / "ml-20m")
    with pytest.raises(DatasetError) as info:
        download.locate("ml-20m", mirror=tmp_path, data_dir=tmp_path / "cache")
    message = one_line(info)
    assert f"ml-20m: missing {tmp_path / 'ml-20m' / 'ratings.csv'};" in message
    assert "ml-20m.zip" in message


def test_netflix_is_user_supplied(raw, tmp_path):
    assert download.locate("netflix", mirror=raw, data_dir=tmp_path) == raw / "netflix"
    assert download.locate("netflix", data_dir=raw / "netflix-combined") == raw / "netflix-combined" / "netflix"
    with pytest.raises(DatasetError) as info:
        download.locate("netflix", data_dir=tmp_path)
    message = one_line(info)
    assert str(tmp_path / "netflix" / "training_set" / "mv_*.txt") in message
    assert str(tmp_path / "netflix" / "combined_data_*.txt") in message and "no public download" in message


def test_load_through_a_mirror(raw, tmp_path):
    x = load("ml-20m", mirror=raw, data_dir=tmp_path)
    assert (x.name, len(x), x.n_users) == ("ml-20m", 5, 3)
    assert load("netflix", mirror=raw, data_dir=tmp_path).name == "netflix"
    assert load_titles("ml-10m", mirror=raw, data_dir=tmp_path)[122] == "Boomerang (1992)"
    assert load_titles("lastfm-360k", mirror=raw, data_dir=tmp_path) == {}


# ----------------------------------------------------------------------------- checksums


def test_checksum_mismatch_names_file_expected_and_got(mirror, tmp_path):
    copy = tmp_path / "mirror" / "ml-100k"
    copy.mkdir(parents=True)
    for file in ("u.data", "u.item"):
        shutil.copy(mirror / "ml-100k" / file, copy / file)
    data = bytearray((copy / "u.data").read_bytes())
    data[10] = ord("9") if data[10] != ord("9") else ord("8")
    (copy / "u.data").write_bytes(bytes(data))
    with pytest.raises(DatasetError) as info:
        load("ml-100k", mirror=tmp_path / "mirror", data_dir=tmp_path / "cache")
    assert one_line(info).startswith(
        f"checksum mismatch for {copy / 'u.data'}: expected md5 6e47046882bad158b0efbb84cd5cb987, "
        f"got {md5(copy / 'u.data')};")


def test_fixture_copies_fail_the_registry_checksums(raw, tmp_path):
    # The tiny ml-1m fixture is not the real ratings.dat, and the loader must notice.
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*ml-1m/ratings.dat: expected md5 a89aa359"):
        load("ml-1m", mirror=raw, data_dir=tmp_path)


def test_verification_is_cached_by_size_and_mtime(raw, tmp_path, monkeypatch):
    folder = tmp_path / "mirror" / "ml-1m"
    shutil.copytree(raw / "ml-1m", folder)
    spec = dataclasses.replace(registry.get_spec("ml-1m"), checksums={"ratings.dat": md5(folder / "ratings.dat")})
    monkeypatch.setattr(download, "get_spec", lambda name: spec)
    hashed = []
    real_md5 = download.md5_of
    monkeypatch.setattr(download, "md5_of", lambda path: hashed.append(path.name) or real_md5(path))
    cache = tmp_path / "cache"
    for _ in range(3):
        download.locate("ml-1m", mirror=tmp_path / "mirror", data_dir=cache)
    assert hashed == ["ratings.dat"]
    # A changed file (new mtime) is hashed again, and the change is caught.
    with open(folder / "ratings.dat", "a") as f:
        f.write("7::1193::5::978300760\n")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download.locate("ml-1m", mirror=tmp_path / "mirror", data_dir=cache)
    assert hashed == ["ratings.dat", "ratings.dat"]


def test_an_edited_fold_file_is_refused(mirror, tmp_path):
    copy = tmp_path / "mirror" / "ml-100k"
    copy.mkdir(parents=True)
    for file in ("u.data", "u.item", "u1.base", "u1.test"):
        shutil.copy2(mirror / "ml-100k" / file, copy / file)
    cache = tmp_path / "cache"
    assert download.locate("ml-100k", mirror=tmp_path / "mirror", data_dir=cache) == copy
    # One rating of u1.base changed, 5 -> 4: same size, so only the mtime tells the stamp.
    data = (copy / "u1.base").read_bytes()
    assert data.startswith(b"1\t1\t5\t")
    (copy / "u1.base").write_bytes(b"1\t1\t4\t" + data[6:])
    with pytest.raises(DatasetError) as info:
        download.locate("ml-100k", mirror=tmp_path / "mirror", data_dir=cache)
    assert one_line(info).startswith(f"checksum mismatch for {copy / 'u1.base'}: expected md5 "
                                     f"4325f44281c9f8c119a3694662d63fc2, got {md5(copy / 'u1.base')};")


def test_same_size_edit_is_hashed_again_and_fresh_files_are_not_remembered(tmp_path, monkeypatch):
    hashed = []
    real_md5 = download.md5_of
    monkeypatch.setattr(download, "md5_of", lambda path: hashed.append(path.name) or real_md5(path))
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    # Written just now: a second edit within the same mtime tick could keep size and mtime, so the
    # md5 is not remembered yet.
    for _ in range(2):
        assert download.md5s(tmp_path, ["f.txt", "absent"], tmp_path / "cache") == {"f.txt": md5(path)}
    assert hashed == ["f.txt", "f.txt"]
    old = time.time_ns() - 3_600_000_000_000
    os.utime(path, ns=(old, old))
    for _ in range(2):
        download.md5s(tmp_path, ["f.txt"], tmp_path / "cache")
    assert hashed == ["f.txt"] * 3
    # Same size, new content, another mtime (by one nanosecond): hashed again.
    path.write_bytes(b"abd")
    os.utime(path, ns=(old + 1, old + 1))
    assert download.md5s(tmp_path, ["f.txt"], tmp_path / "cache") == {"f.txt": md5(path)}
    assert hashed == ["f.txt"] * 4


# ----------------------------------------------------------------------------- download


# Members dated like a real release: extracted files keep this date, as unzip does.
ZIP_DATE = (1998, 4, 22, 23, 10, 0)


def make_zip(path, files, prefix="", compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(prefix + name, date_time=ZIP_DATE), data, compress_type=compression)
    return path


def use_spec(monkeypatch, name, **changes):
    spec = dataclasses.replace(registry.get_spec(name), **changes)
    monkeypatch.setattr(download, "get_spec", lambda _: spec)
    return spec


def test_download_verify_extract_then_reuse(raw, tmp_path, monkeypatch, capsys):
    files = {f: (raw / "ml-100k" / f).read_bytes() for f in ("u.data", "u.item")}
    archive = make_zip(tmp_path / "ml-100k.zip", files, prefix="ml-100k/")
    use_spec(monkeypatch, "ml-100k", url=archive.as_uri(),
             checksums={f: hashlib.md5(data).hexdigest() for f, data in files.items()})
    cache = tmp_path / "cache"
    folder = download.locate("ml-100k", data_dir=cache)
    assert folder == cache / "ml-100k"
    assert (folder / "u.data").read_bytes() == files["u.data"]
    assert "downloading ml-100k" in capsys.readouterr().err
    # Only the extracted folder and the verification stamp remain (no archive, no staging).
    assert sorted(p.name for p in cache.iterdir()) == [".verified", "ml-100k"]
    assert time.localtime((folder / "u.data").stat().st_mtime)[:6] == ZIP_DATE

    def no_network(*args):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(download, "_fetch", no_network)
    assert download.locate("ml-100k", data_dir=cache) == folder


def test_download_flat_zip_tar_gz_and_single_files(raw, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    # Last.fm 2K's zip unpacks flat: its files go into the folder named after the dataset.
    lastfm = {f: (raw / "hetrec2011-lastfm-2k" / f).read_bytes() for f in ("user_artists.dat", "artists.dat")}
    use_spec(monkeypatch, "lastfm-2k", url=make_zip(tmp_path / "l.zip", lastfm).as_uri(), checksums={})
    assert download.locate("lastfm-2k", data_dir=cache) == cache / "hetrec2011-lastfm-2k"
    # Last.fm 360K is a tar.gz with a top folder.
    tsv = raw / "lastfm-dataset-360K" / "usersha1-artmbid-artname-plays.tsv"
    with tarfile.open(tmp_path / "l.tar.gz", "w:gz") as tf:
        tf.add(tsv, arcname="lastfm-dataset-360K/" + tsv.name)
    use_spec(monkeypatch, "lastfm-360k", url=(tmp_path / "l.tar.gz").as_uri())
    folder = download.locate("lastfm-360k", data_dir=cache)
    assert (folder / tsv.name).read_bytes() == tsv.read_bytes()
    # Pinterest-20 is fetched file by file from a base URL.
    use_spec(monkeypatch, "pinterest-20", url=(raw / "pinterest-20").as_uri() + "/")
    folder = download.locate("pinterest-20", data_dir=cache)
    assert sorted(p.name for p in folder.iterdir()) == ["pinterest-20.test.rating", "pinterest-20.train.rating"]


def test_downloaded_file_with_wrong_checksum(raw, tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip", {"u.data": b"1\t2\t3\t4\n", "u.item": b"2|x\n"}, prefix="ml-100k/")
    use_spec(monkeypatch, "ml-100k", url=archive.as_uri())
    with pytest.raises(DatasetError) as info:
        download.locate("ml-100k", data_dir=tmp_path / "cache")
    assert "expected md5 6e47046882bad158b0efbb84cd5cb987" in one_line(info)


def test_no_download_when_told_not_to(tmp_path):
    with pytest.raises(DatasetError) as info:
        download.locate("ml-1m", data_dir=tmp_path, download=False)
    message = one_line(info)
    assert str(tmp_path / "ml-1m" / "ratings.dat") in message and "download=True" in message
    assert "TFCF_DATA_MIRROR" in message


@pytest.mark.parametrize("url", ["file:///nonexistent/tfcf/ml-1m.zip", "http://127.0.0.1:9/ml-1m.zip"])
def test_network_failure_is_one_line(tmp_path, monkeypatch, url):
    use_spec(monkeypatch, "ml-1m", url=url)
    with pytest.raises(DatasetError) as info:
        download.locate("ml-1m", data_dir=tmp_path)
    message = one_line(info)
    assert message.startswith(f"could not download {url} (") and "set TFCF_DATA_MIRROR" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert [p.name for p in tmp_path.iterdir()] == []  # The staging folder was cleaned up.


class ShortResponse(io.BytesIO):
    """A response that promises 100 bytes and delivers 10, as a dropped connection does."""
    headers = {"Content-Length": "100"}


def test_truncated_download_is_refused(tmp_path, monkeypatch):
    use_spec(monkeypatch, "ml-1m", url="https://example.invalid/ml-1m.zip")
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: ShortResponse(b"x" * 10))
    with pytest.raises(DatasetError) as info:
        download.locate("ml-1m", data_dir=tmp_path)
    assert "(the connection closed after 10 of 100 bytes)" in one_line(info)
    assert list(tmp_path.iterdir()) == []


def test_archive_without_the_expected_folder(tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "a.zip", {"u.data": b"1\t2\t3\t4\n"}, prefix="other/")
    use_spec(monkeypatch, "ml-100k", url=archive.as_uri())
    with pytest.raises(DatasetError, match="has no folder ml-100k/"):
        download.locate("ml-100k", data_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------- unsafe archives


def zip_with(path, name, data=b"x", mode=None):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-100k/u.data", b"1\t2\t3\t4\n")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name, data, mode, why", [
    ("../evil.txt", b"x", None, "escapes the target folder"),
    ("ml-100k/../../evil.txt", b"x", None, "escapes the target folder"),
    ("/tmp/tfcf-evil.txt", b"x", None, "absolute path"),
    ("ml-100k/link", b"../../evil.txt", stat.S_IFLNK | 0o777, "escapes the target folder"),
    ("ml-100k/link", b"/etc/passwd", stat.S_IFLNK | 0o777, "absolute path"),
])
def test_zip_slip_is_refused(tmp_path, name, data, mode, why):
    archive = zip_with(tmp_path / "evil.zip", name, data, mode)
    dest = tmp_path / "a" / "b"
    with pytest.raises(DatasetError) as info:
        download.extract(archive, dest)
    message = one_line(info)
    assert f"refusing member {name!r}" in message and why in message
    assert list(dest.rglob("*")) == []  # Nothing was written, not even the good member.
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()


def tar_with(path, member, data=b"x"):
    with tarfile.open(path, "w:gz") as tf:
        good = tarfile.TarInfo("lastfm-dataset-360K/ok.tsv")
        good.size = 1
        tf.addfile(good, io.BytesIO(b"x"))
        if member.isreg():
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
        else:
            tf.addfile(member)
    return path


def tar_member(name, kind=tarfile.REGTYPE, linkname=""):
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member


@pytest.mark.parametrize("member, why", [
    (tar_member("../evil.txt"), "escapes the target folder"),
    (tar_member("/tmp/tfcf-evil.txt"), "absolute path"),
    (tar_member("lastfm-dataset-360K/l", tarfile.SYMTYPE, "../../evil.txt"), "escapes the target folder"),
    (tar_member("lastfm-dataset-360K/l", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
    (tar_member("lastfm-dataset-360K/h", tarfile.LNKTYPE, "../evil.txt"), "escapes the target folder"),
    (tar_member("lastfm-dataset-360K/dev", tarfile.CHRTYPE), "not a file, folder or link"),
])
def test_tar_path_escape_is_refused(tmp_path, member, why):
    archive = tar_with(tmp_path / "evil.tar.gz", member)
    dest = tmp_path / "a" / "b"
    with pytest.raises(DatasetError) as info:
        download.extract(archive, dest)
    message = one_line(info)
    assert f"refusing member {member.name!r}" in message and why in message
    assert list(dest.rglob("*")) == []
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a" / "evil.txt").exists()


def test_links_inside_the_folder_are_fine(tmp_path):
    archive = tar_with(tmp_path / "ok.tar.gz", tar_member("lastfm-dataset-360K/l", tarfile.SYMTYPE, "ok.tsv"))
    download.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "lastfm-dataset-360K" / "l").read_bytes() == b"x"


def test_malicious_download_leaves_nothing(tmp_path, monkeypatch):
    use_spec(monkeypatch, "ml-100k", url=zip_with(tmp_path / "evil.zip", "../../evil.txt").as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="refusing member '../../evil.txt'"):
        download.locate("ml-100k", data_dir=cache)
    assert list(cache.iterdir()) == [] and not (tmp_path / "evil.txt").exists()


def test_corrupt_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(os.urandom(64))
    with pytest.raises(DatasetError, match="neither a zip nor a tar archive"):
        download.extract(tmp_path / "x.zip", tmp_path / "out")
    # A stored member whose bytes changed after zipping fails its CRC.
    data = make_zip(tmp_path / "t.zip", {"a": b"x" * 1000}).read_bytes()
    (tmp_path / "t.zip").write_bytes(data.replace(b"x" * 10, b"y" * 10, 1))
    with pytest.raises(DatasetError) as info:
        download.extract(tmp_path / "t.zip", tmp_path / "out2")
    assert one_line(info) == (f"{tmp_path / 't.zip'}: member 'a' fails to extract (BadZipFile: Bad CRC-32 for "
                              f"file 'a'); the archive is corrupt: delete it and download again")


def test_corrupt_compressed_member_is_named(tmp_path):
    # A deflated member whose compressed bytes are damaged fails in zlib, after a good member.
    text = bytes(range(256)) * 64
    data = bytearray(make_zip(tmp_path / "d.zip", {"ok.txt": b"fine", "u.data": text}, prefix="ml-100k/",
                              compression=zipfile.ZIP_DEFLATED).read_bytes())
    start = data.index(b"ml-100k/u.data") + len(b"ml-100k/u.data")  # the member's data follow its local header
    data[start + 10:start + 40] = b"\xff" * 30
    (tmp_path / "d.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError) as info:
        download.extract(tmp_path / "d.zip", tmp_path / "out")
    message = one_line(info)
    assert message.startswith(f"{tmp_path / 'd.zip'}: member 'ml-100k/u.data' fails to extract (")
    assert message.endswith("); the archive is corrupt: delete it and download again")


# ----------------------------------------------------------------------------- archive checksum and size cap


def test_archive_md5_is_checked_before_extraction(raw, tmp_path, monkeypatch):
    files = {f: (raw / "ml-100k" / f).read_bytes() for f in ("u.data", "u.item")}
    archive = make_zip(tmp_path / "ml-100k.zip", files, prefix="ml-100k/")
    extracted = []
    real_extract = download.extract
    monkeypatch.setattr(download, "extract", lambda *args: extracted.append(args) or real_extract(*args))
    use_spec(monkeypatch, "ml-100k", url=archive.as_uri(), checksums={}, archive_md5="0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as info:
        download.locate("ml-100k", data_dir=cache)
    assert one_line(info).startswith(
        f"checksum mismatch for the download {archive.as_uri()}: expected md5 {'0' * 32}, got {md5(archive)}; "
        f"nothing was extracted")
    assert extracted == [] and list(cache.iterdir()) == []
    # The right md5 passes, and the archive is extracted.
    use_spec(monkeypatch, "ml-100k", url=archive.as_uri(), checksums={}, archive_md5=md5(archive))
    assert (download.locate("ml-100k", data_dir=cache) / "u.data").read_bytes() == files["u.data"]
    assert len(extracted) == 1


class Response(io.BytesIO):
    """A response with the given headers (none: a server that does not say how much it sends)."""

    def __init__(self, data, headers):
        super().__init__(data)
        self.headers = headers


@pytest.mark.parametrize("headers, how", [({"Content-Length": "1001"}, "its announced 1001 bytes exceed"),
                                          ({}, "it sent more than")])
def test_download_over_the_size_cap_is_refused(tmp_path, monkeypatch, headers, how):
    # approx_bytes 100: ten times that, 1000 bytes, is the most a download may have.
    use_spec(monkeypatch, "ml-1m", url="https://example.invalid/ml-1m.zip", approx_bytes=100)
    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response(b"x" * 1001, headers))
    with pytest.raises(DatasetError) as info:
        download.locate("ml-1m", data_dir=tmp_path)
    assert one_line(info).startswith(
        f"refusing to download https://example.invalid/ml-1m.zip: {how} the limit of 1000 bytes for ml-1m; "
        f"download and unpack it by hand and set TFCF_DATA_MIRROR to the folder holding it")
    assert list(tmp_path.iterdir()) == []


def test_size_cap_without_a_known_size():
    assert download._download_cap(registry.get_spec("netflix")) == download.MAX_DOWNLOAD_BYTES
    assert download._download_cap(registry.get_spec("ml-100k")) == 10 * registry.get_spec("ml-100k").approx_bytes
