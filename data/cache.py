"""Prepared splits on disk: one ``.npz`` of arrays plus a ``.json`` of metadata.

A split is stored under a name derived from the sha256 of its key (protocol,
config, seed, dataset, source checksums: whatever decides its content), so a
changed config or source file gives a new file instead of a stale hit.

Both files are written atomically (:mod:`data.files`: temporary file in the
same folder, fsync, ``os.replace``) and the ``.json`` goes last: a split is only
read back when its ``.json`` exists, names the same key and agrees with the
arrays. Anything else (a killed writer, a truncated or foreign file) is logged
and rebuilt. Temp files a killed writer left are removed by the next writer
once they are an hour old.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import scipy.sparse as sp

from data import files
from data.errors import ConfigError
from data.types import HeldoutSplit, RatingSplit

logger = logging.getLogger(__name__)

Split = Union[HeldoutSplit, RatingSplit]

# Part of every hash: bump it when the stored layout changes.
FORMAT_VERSION = 1

# Temp files older than this in the cache folder are a killed writer's: the
# folder is shared, and a live writer's temp file is seconds old.
STALE_TEMP_SECONDS = 3600.0

_KINDS = {"heldout": HeldoutSplit, "rating": RatingSplit}
_CSR_PARTS = ("data", "indices", "indptr", "shape")


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready builtins: dataclasses, numpy scalars/arrays and paths converted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ConfigError(f"cache key value {value!r} of type {type(value).__name__} cannot be written as JSON: "
                      f"use strings, numbers, lists, dicts or dataclasses")


def cache_path(cache_dir: Path, key: dict) -> Path:
    """The ``.npz`` path a key maps to (its ``.json`` sits beside it).

    The name starts with the key's ``dataset`` and ``protocol`` (when present)
    for humans; the sha256 of the canonical JSON of the key decides it.
    """
    canonical = json.dumps({"format": FORMAT_VERSION, "key": _plain(key)}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    label = "-".join(str(key[k]) for k in ("dataset", "protocol") if key.get(k))
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:60]
    return Path(cache_dir) / f"{label + '-' if label else ''}{digest[:32]}.npz"


def _ids_to_store(name: str, ids: np.ndarray) -> tuple[np.ndarray, str]:
    """An id array npz can hold without pickle, and the dtype tag to restore it."""
    ids = np.asarray(ids)
    if ids.dtype == object:
        if not all(isinstance(v, str) for v in ids.tolist()):
            raise ConfigError(f"{name} mixes strings with other objects: ids must be all ints or all strings")
        return ids.astype(str), "object"
    return ids, ids.dtype.str


def _arrays_of(split: Split) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The split's arrays by name, and JSON metadata (kind, part counts, id dtypes)."""
    arrays, parts, id_dtypes = {}, {}, {}
    for field in dataclasses.fields(split):
        value = getattr(split, field.name)
        if value is None:
            continue
        if sp.issparse(value):
            m = sp.csr_matrix(value)
            m.sum_duplicates()
            arrays.update({f"{field.name}.data": m.data, f"{field.name}.indices": m.indices,
                           f"{field.name}.indptr": m.indptr,
                           f"{field.name}.shape": np.asarray(m.shape, dtype=np.int64)})
            parts[field.name] = {"rows": m.shape[0], "cols": m.shape[1], "nnz": int(m.nnz)}
        else:
            arrays[field.name], id_dtypes[field.name] = _ids_to_store(field.name, value)
    kind = "heldout" if isinstance(split, HeldoutSplit) else "rating"
    return arrays, {"kind": kind, "parts": parts, "id_dtypes": id_dtypes}


def _split_of(arrays: dict[str, np.ndarray], meta: dict) -> Split:
    """Rebuilds a split from stored arrays, checking them against ``meta``."""
    values = {}
    for name, counts in meta["parts"].items():
        data, indices, indptr, shape = (arrays[f"{name}.{p}"] for p in _CSR_PARTS)
        m = sp.csr_matrix((data, indices, indptr), shape=tuple(int(s) for s in shape))
        m.check_format(full_check=False)
        if {"rows": m.shape[0], "cols": m.shape[1], "nnz": int(m.nnz)} != counts:
            raise ValueError(f"part {name} has shape {m.shape} and {m.nnz} entries, metadata says {counts}")
        values[name] = m
    for name, dtype in meta["id_dtypes"].items():
        values[name] = arrays[name].astype(object) if dtype == "object" else arrays[name]
    return _KINDS[meta["kind"]](**values)


def _load(path: Path, key: dict) -> Split:
    """Reads a stored split; raises (OSError, ValueError, KeyError, ...) if absent, partial or foreign."""
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("key") != _plain(key) or meta.get("format") != FORMAT_VERSION:
        raise ValueError("its metadata holds another key")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return _split_of(arrays, meta)


def load_or_build(cache_dir: Path, key: dict, build: Callable[[], Split]) -> Split:
    """The split stored for ``key`` in ``cache_dir``, built and stored first if needed.

    Args:
      cache_dir: folder of cached splits; created if missing.
      key: everything that decides the split, JSON-able (dataclasses, numpy
        scalars and paths are converted), e.g. ``{"protocol": "heldout_users",
        "config": HeldoutConfig(), "seed": 0, "dataset": "ml-20m",
        "sources": {"ratings.csv": md5}}``.
      build: makes the split when there is no valid stored copy.

    Returns:
      The HeldoutSplit or RatingSplit, equal (parts, ids and id dtypes) to what
      ``build`` returned when it was stored.

    Raises:
      ConfigError: the key cannot be written as JSON, or ``build`` returned
        something else than a split.
    """
    path = cache_path(cache_dir, key)
    if path.with_suffix(".json").exists():
        try:
            return _load(path, key)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
            logger.warning("cache %s is unreadable (%s: %s); rebuilding it", path, type(e).__name__, e)
    split = build()
    if not isinstance(split, (HeldoutSplit, RatingSplit)):
        raise ConfigError(f"the cache build function returned a {type(split).__name__}, "
                          f"not a HeldoutSplit or RatingSplit")
    arrays, meta = _arrays_of(split)
    meta = {"format": FORMAT_VERSION, "key": _plain(key), **meta,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        files.clean_leftovers(cache_dir, max_age_seconds=STALE_TEMP_SECONDS)
        # A stale .json must not vouch for the new .npz while it is being replaced.
        path.with_suffix(".json").unlink(missing_ok=True)
        files.save_npz(path, **arrays)
        files.write_json(path.with_suffix(".json"), meta, indent=1, sort_keys=True)
    except OSError as e:
        # A full disk or read-only folder costs the next run a rebuild, not this run.
        logger.warning("could not write cache %s (%s); continuing without it", path, e)
    return split
