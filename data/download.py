"""Finding a dataset's files: a local mirror, the cache, or a download (the only network code).

:func:`locate` looks, in order, at an explicit ``mirror`` argument, the
``TFCF_DATA_MIRROR`` environment variable (a folder holding the official
archives unpacked: ``ml-100k/``, ``ml-latest-small/``...), and the data dir
(``data_dir`` argument, ``TFCF_DATA_DIR``, ``~/.cache/tfcf``) where a missing
dataset is downloaded, extracted safely and checksummed.

Checksums of key files are verified wherever the files come from. A stamp file
in the data dir remembers each file's md5 with its size and mtime (in
nanoseconds), so repeated loads do not re-hash big files, while any edit that
changes either is hashed again. A download is refused when it grows past a size
cap, and checked against the archive's md5 (where the registry knows it) before
anything is extracted.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable, Optional, TypeVar, Union

from data import files
from data.errors import DatasetError
from data.formats import netflix_files
from data.registry import DatasetSpec, get_spec

ENV_MIRROR = "TFCF_DATA_MIRROR"
ENV_DATA_DIR = "TFCF_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/tfcf"

PathLike = Union[str, os.PathLike]
T = TypeVar("T")

_BLOCK = 1 << 20

# The cap on one download whose size the registry does not know: far above any
# registered archive (the largest, Last.fm 360K, is about 550 MB).
MAX_DOWNLOAD_BYTES = 8 << 30
# A download may be this many times the registry's approx_bytes.
SIZE_MARGIN = 10
# A file modified this recently may change again within the same mtime tick
# without changing size or mtime: its md5 is not remembered (git's "racy" rule).
_RACY_NS = 2_000_000_000


def data_dir_path(data_dir: Optional[PathLike] = None) -> Path:
    """The data dir: ``data_dir``, else ``$TFCF_DATA_DIR``, else ``~/.cache/tfcf``."""
    return Path(data_dir or os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).expanduser()


def locate(name: str, data_dir: Optional[PathLike] = None, mirror: Optional[PathLike] = None,
           download: bool = True) -> Path:
    """The folder holding a dataset's extracted files, checksums verified.

    Args:
      name: a registry key (see :func:`data.registry.names`).
      data_dir: where downloads go and verification stamps are kept; default
        ``$TFCF_DATA_DIR`` or ``~/.cache/tfcf``.
      mirror: a folder holding official archives unpacked; default
        ``$TFCF_DATA_MIRROR``. When set, nothing is downloaded.
      download: fetch a dataset missing from the data dir.

    Returns:
      ``<mirror>/<spec.folder>`` or ``<data_dir>/<spec.folder>``.

    Raises:
      DatasetError: unknown name, missing files, checksum mismatch, network
        failure or an unsafe archive; each with a one-line message.
    """
    spec = get_spec(name)
    cache = data_dir_path(data_dir)
    if not mirror:
        mirror = os.environ.get(ENV_MIRROR) or None
    if spec.archive == "none":
        return _locate_user_supplied(spec, Path(mirror).expanduser() if mirror else cache)
    if mirror is not None:
        root = Path(mirror).expanduser()
        if not root.is_dir():
            raise DatasetError(f"the data mirror {root} is not a folder; point {ENV_MIRROR} (or mirror=) "
                               f"at a folder holding {spec.folder}/")
        folder = root / spec.folder
        if not folder.is_dir():
            raise DatasetError(
                f"the data mirror {root} has no folder {spec.folder}/ for {name}; unpack "
                f"{spec.url} there, or unset {ENV_MIRROR} to download into {cache}")
        _require_files(spec, folder, f"unpack {spec.url} into {root}")
        verify(spec, folder, cache)
        return folder
    folder = cache / spec.folder
    if _missing(spec, folder):
        how = f"set {ENV_MIRROR} to a folder holding {spec.folder}/ (from {spec.url})"
        if not download:
            _require_files(spec, folder, f"call with download=True, or {how}")
        _fetch_dataset(spec, cache)
        _require_files(spec, folder, how)
    verify(spec, folder, cache)
    return folder


def _missing(spec: DatasetSpec, folder: Path) -> list[Path]:
    return [folder / file for file in spec.files if not (folder / file).is_file()]


def _require_files(spec: DatasetSpec, folder: Path, how: str) -> None:
    missing = _missing(spec, folder)
    if missing:
        raise DatasetError(f"{spec.name}: missing {', '.join(map(str, missing))}; {how}")


def _locate_user_supplied(spec: DatasetSpec, root: Path) -> Path:
    folder = root / spec.folder
    if not netflix_files(folder):
        raise DatasetError(
            f"{spec.name}: no data in {folder} (looked for {folder / 'training_set' / 'mv_*.txt'} and "
            f"{folder / 'combined_data_*.txt'}); it has no public download: put the Netflix Prize "
            f"training_set/ folder or Kaggle's combined_data_1..4.txt there")
    return folder


# ----------------------------------------------------------------------------- checksums

def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _stamp_path(cache: Path, folder: Path) -> Path:
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return cache / ".verified" / f"{folder.name}-{key}.json"


def _read_stamp(path: Path) -> dict:
    try:
        stamp = json.loads(path.read_text())
        return stamp if isinstance(stamp, dict) else {}
    except (OSError, ValueError):
        return {}


def md5s(folder: Path, names: Iterable[str], cache: Path) -> dict[str, str]:
    """The md5 of each present file ``folder / name``, hashed once per content.

    Each md5 is remembered in ``<cache>/.verified/`` with the file's size and
    mtime in nanoseconds, and reused only while both are unchanged; an edit
    changes the mtime (and usually the size), so it is hashed again. A file
    modified in the last two seconds is hashed but not remembered, since a
    second edit within the same mtime tick could keep size and mtime. A
    read-only cache only costs re-hashing.

    Args:
      folder: the folder holding the files.
      names: paths relative to ``folder``; missing ones are left out.
      cache: the data dir holding the stamps.

    Returns:
      dict name -> hex md5, in the order of ``names``.
    """
    folder = Path(folder)
    stamp_path = _stamp_path(cache, folder)
    stamp = _read_stamp(stamp_path)
    changed = False
    out = {}
    for name in names:
        path = folder / name
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        key = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        entry = stamp.get(name)
        if isinstance(entry, dict) and {k: entry.get(k) for k in key} == key and isinstance(entry.get("md5"), str):
            out[name] = entry["md5"]
            continue
        out[name] = md5_of(path)
        if time.time_ns() - info.st_mtime_ns > _RACY_NS:
            stamp[name] = {**key, "md5": out[name]}
            changed = True
        elif stamp.pop(name, None) is not None:
            changed = True
    if changed:
        try:
            files.write_json(stamp_path, stamp, indent=1, sort_keys=True)
        except OSError:
            pass  # The stamp is only a cache.
    return out


def verify(spec: DatasetSpec, folder: Path, cache: Path) -> None:
    """Checks the md5 of every present file listed in ``spec.checksums``.

    Hashes are remembered by :func:`md5s`, so an unchanged file is hashed once
    and an edited one (other size or mtime) again.

    Args:
      spec: the dataset.
      folder: the dataset folder.
      cache: the data dir holding verification stamps.

    Raises:
      DatasetError: a file's md5 differs from the registry's.
    """
    if not spec.checksums:
        return
    # Only spec.files are required; the rest is checked when present.
    got = md5s(folder, spec.checksums, cache)
    for file, expected in spec.checksums.items():
        if file in got and got[file] != expected:
            raise DatasetError(f"checksum mismatch for {folder / file}: expected md5 {expected}, got {got[file]}; "
                               f"delete it and download again, or fix the mirror")


# ----------------------------------------------------------------------------- download

def _download_cap(spec: DatasetSpec) -> int:
    """The most bytes one download of ``spec`` may have."""
    return SIZE_MARGIN * spec.approx_bytes if spec.approx_bytes else MAX_DOWNLOAD_BYTES


def _fetch(url: str, dest: Path, label: str, max_bytes: int = MAX_DOWNLOAD_BYTES,
           md5: Optional[str] = None) -> None:
    """Streams ``url`` to ``dest`` with a progress line on stderr.

    Args:
      url: what to download.
      dest: the file to write.
      label: the name in the progress line.
      max_bytes: refuse a download announced as, or growing, larger than this.
      md5: the expected md5 of the whole download, or None.

    Raises:
      DatasetError: a network failure, a short read, a download over
        ``max_bytes`` or one whose md5 differs from ``md5``.
    """
    def too_large(what: str) -> DatasetError:
        return DatasetError(f"refusing to download {url}: {what} the limit of {max_bytes} bytes for {label}; "
                            f"download and unpack it by hand and set {ENV_MIRROR} to the folder holding it")

    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            if total > max_bytes:
                raise too_large(f"its announced {total} bytes exceed")
            done, shown = 0, 0.0
            while True:
                block = response.read(_BLOCK)
                if not block:
                    break
                done += len(block)
                # A server may send more than it announced, or announce nothing.
                if done > max_bytes:
                    raise too_large("it sent more than")
                out.write(block)
                digest.update(block)
                now = time.monotonic()
                if now - shown > 0.5:
                    shown = now
                    of = f" of {total / 1e6:.1f} MB ({100 * done // total}%)" if total else ""
                    sys.stderr.write(f"\rdownloading {label}: {done / 1e6:.1f} MB{of}")
                    sys.stderr.flush()
            sys.stderr.write(f"\rdownloading {label}: {done / 1e6:.1f} MB, done\n")
            if total and done != total:
                raise OSError(f"the connection closed after {done} of {total} bytes")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise DatasetError(f"could not download {url} ({' '.join(str(reason).split())}); download and unpack it "
                           f"elsewhere and set {ENV_MIRROR} to the folder holding it") from None
    if md5 is not None and digest.hexdigest() != md5:
        raise DatasetError(f"checksum mismatch for the download {url}: expected md5 {md5}, got "
                           f"{digest.hexdigest()}; nothing was extracted: try again, or download and unpack it by "
                           f"hand and set {ENV_MIRROR} to the folder holding it")


def _fetch_dataset(spec: DatasetSpec, cache: Path) -> None:
    """Downloads and extracts ``spec`` into ``<cache>/<spec.folder>`` via a staging folder."""
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=cache))
    try:
        if spec.archive == "files":
            source = staging / spec.folder
            source.mkdir()
            for file in spec.files:
                _fetch(urllib.parse.urljoin(spec.url, file), source / file, f"{spec.name} {file}",
                       _download_cap(spec))
        else:
            archive = staging / (Path(urllib.parse.urlparse(spec.url).path).name or "archive")
            _fetch(spec.url, archive, spec.name, _download_cap(spec), spec.archive_md5)
            unpacked = staging / "unpacked"
            extract(archive, unpacked)
            source = unpacked if spec.flat else unpacked / spec.folder
            if not source.is_dir():
                raise DatasetError(f"the archive {spec.url} has no folder {spec.folder}/; "
                                   f"unpack it by hand into {cache}")
        target = cache / spec.folder
        if target.exists():
            if not _missing(spec, target):
                return  # Another process finished first.
            if any(target.iterdir()):
                raise DatasetError(f"{target} exists but lacks files; delete it and try again")
            target.rmdir()
        os.replace(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- safe extraction

def _inside(root: str, archive: Path, member: str, path: str) -> str:
    """``path`` normalized, if it stays inside ``root``; else a DatasetError."""
    if os.path.isabs(path) or path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        raise DatasetError(f"{archive}: refusing member {member!r}: absolute path {path!r}; "
                           f"the archive is corrupt or malicious, do not use it")
    target = os.path.normpath(os.path.join(root, path))
    if target != root and not target.startswith(root + os.sep):
        raise DatasetError(f"{archive}: refusing member {member!r}: {path!r} escapes the target folder; "
                           f"the archive is corrupt or malicious, do not use it")
    return target


def _check_link(root: str, archive: Path, member: str, link: str) -> None:
    """A symlink ``member`` -> ``link`` (relative to the member's folder) must stay inside ``root``."""
    if os.path.isabs(link):
        _inside(root, archive, member, link)
    _inside(root, archive, member, os.path.join(os.path.dirname(member), link))


def extract(archive: Path, dest: Path) -> None:
    """Unpacks a .zip or .tar(.gz) into ``dest``, refusing anything that would land outside.

    Members with absolute paths, ``..`` escapes, links pointing out of
    ``dest`` or device files stop the whole extraction before anything is
    written. Zip members are extracted one by one, so a member that fails
    (bad CRC, corrupt compressed data, encryption) is named.

    Args:
      archive: the downloaded file.
      dest: the folder to create and fill.

    Raises:
      DatasetError: an unsafe or corrupt member, or a corrupt or unknown archive.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.normpath(str(dest.resolve()))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for info in members:
                    _inside(root, archive, info.filename, info.filename)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        link = _zip_member(archive, info, lambda: zf.read(info))
                        _check_link(root, archive, info.filename, link.decode("utf-8", "replace"))
                for info in members:
                    target = _zip_member(archive, info, lambda: zf.extract(info, dest))
                    if not info.is_dir():
                        # Like unzip, keep the member's date: a file just written would be re-hashed
                        # until it is two seconds old (see md5s).
                        try:
                            when = time.mktime(info.date_time + (0, 0, -1))
                        except (OverflowError, ValueError):
                            continue
                        os.utime(target, (when, when))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for member in members:
                    _inside(root, archive, member.name, member.name)
                    if member.issym():
                        _check_link(root, archive, member.name, member.linkname)
                    elif member.islnk():
                        _inside(root, archive, member.name, member.linkname)
                    elif not (member.isfile() or member.isdir()):
                        raise DatasetError(f"{archive}: refusing member {member.name!r}: not a file, "
                                           f"folder or link; the archive is corrupt or malicious")
                # The 'data' filter re-checks every member as a second line of defence.
                tf.extractall(dest, members=members, filter="data")
        else:
            raise DatasetError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise DatasetError(f"{archive}: corrupt archive ({' '.join(str(err).split())}); "
                           f"delete it and download again") from None
    except OSError as err:  # a full disk, a read-only folder
        raise DatasetError(f"cannot extract {archive} into {dest} ({' '.join(str(err).split())}); "
                           f"free some space or choose another data dir (TFCF_DATA_DIR)") from None


def _zip_member(archive: Path, info: zipfile.ZipInfo, read: Callable[[], T]) -> T:
    """``read()`` of one zip member, its failure as one line naming the archive and the member."""
    try:
        return read()
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method.
        raise DatasetError(f"{archive}: member {info.filename!r} fails to extract "
                           f"({type(err).__name__}: {' '.join(str(err).split())}); the archive is corrupt: "
                           f"delete it and download again") from None
