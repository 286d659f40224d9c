"""Atomic file writes and the cleanup of what killed writers leave behind.

Every file the project writes for later reading (results, exported models, the
split cache, verification stamps, reports) goes through :func:`atomic_write`:
the content is written to a temporary file in the target's folder, flushed and
fsynced, given the permissions a plain ``open`` would give (``0o666`` less the
umask; ``tempfile.mkstemp`` alone gives ``0o600``) and renamed over the target
with ``os.replace``. A reader sees the old file or the complete new one, never
half of one.

Our temporary files are named ``.<target name>.<8 random chars>.tmp``.
:func:`clean_leftovers` removes those, and the temporaries TensorFlow's
checkpoint writer leaves when killed mid-save, from a folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional, Union

import numpy as np

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TMP_SUFFIX = ".tmp"

# Leftover names, matched on the whole name:
_OURS = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # .<name>.<mkstemp chars>.tmp (atomic_write)
# tf.io atomic_write_string_to_file (the CheckpointManager's "checkpoint" state file):
# <name>.tmp<uuid4 hex>.
_TF_FILE = re.compile(r".+\.tmp[0-9a-f]+")
# The tensor bundle writer's temporaries: <name>.tempstate<random uint64>.
_TF_TEMPSTATE = re.compile(r".+\.tempstate\d+")
# The functional saver's staging folder "<checkpoint prefix>_temp/" (older TF: _temp_<uuid hex>).
_TF_DIR = re.compile(r".+_temp(_[0-9a-f]{32})?")

_umask: Optional[int] = None
_umask_lock = threading.Lock()


def _file_mode() -> int:
    """``0o666`` less the process umask, read once (``os.umask`` can only be read by setting it)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0)
            os.umask(_umask)
    return 0o666 & ~_umask


def _fsync_folder(folder: Path) -> None:
    """Persists a rename in ``folder``; not every platform can open a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_special(path: Path) -> bool:
    """Whether ``path`` exists as a device, FIFO or socket (following links)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write(path: PathLike, write: Callable[[IO], Any], mode: str = "wb") -> Path:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``.

    Missing parent folders are created. If ``write`` (or anything after it)
    raises, the temporary file is removed and ``path`` keeps its old content.
    A ``path`` that exists and is no regular file (``/dev/stdout``, a FIFO) is
    written in place.

    Args:
      path: the target file.
      write: writes the content to the open file it is given.
      mode: ``"wb"`` (binary) or ``"w"`` (text: UTF-8, ``\\n`` line ends untranslated).

    Returns:
      ``path`` as a Path.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', not {mode!r}")
    path = Path(path)
    text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
    if _is_special(path):  # /dev/stdout, a FIFO: cannot be replaced, only written
        with open(path, mode, **text) as f:
            write(f)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode, **text) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def json_default(obj: Any) -> Any:
    """``json`` fallback for numpy scalars and arrays, sets, tuples and paths."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: PathLike, obj: Any, indent: Optional[int] = 2, sort_keys: bool = False) -> Path:
    """Writes ``obj`` as JSON atomically (numpy values, tuples, sets and paths converted)."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=json_default)
    return write_text(path, text)


def write_text(path: PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text), mode="w")


def save_npz(path: PathLike, /, **arrays: Any) -> Path:
    """``np.savez`` to ``path`` atomically; ``path`` is used as given (no ``.npz`` appended)."""
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _is_leftover(entry: os.DirEntry) -> bool:
    name = entry.name
    if entry.is_dir(follow_symlinks=False):
        return bool(_TF_DIR.fullmatch(name))
    return any(p.fullmatch(name) for p in (_OURS, _TF_FILE, _TF_TEMPSTATE))


def clean_leftovers(folder: PathLike, max_age_seconds: Optional[float] = None) -> list[Path]:
    """Removes the temporary files and folders killed writers left in ``folder`` (not below it).

    These are :func:`atomic_write`'s ``.<name>.<random>.tmp`` files and
    TensorFlow's checkpoint temporaries: ``checkpoint.tmp<hex>`` (the
    CheckpointManager's state file), ``<prefix>_temp/`` staging folders and
    ``*.tempstate<n>`` bundle files.

    Args:
      folder: the folder to clean; a missing one is nothing to do.
      max_age_seconds: only remove entries last modified longer ago than this:
        use it where another process may be writing right now (a shared
        cache). None removes them all (a folder only this process writes).

    Returns:
      The removed paths. Entries that vanish meanwhile or cannot be removed are skipped.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    now = time.time()
    for entry in entries:
        try:
            if not _is_leftover(entry):
                continue
            if max_age_seconds is not None and now - entry.stat(follow_symlinks=False).st_mtime <= max_age_seconds:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another cleaner or the writer itself was faster
        except OSError as e:
            logger.warning("could not remove the leftover %s (%s)", entry.path, e)
            continue
        logger.info("removed the leftover %s", entry.path)
        removed.append(Path(entry.path))
    return removed
