"""Data preparation of a run: dataset + protocol config -> a cached split.

:func:`prepare` loads a dataset (registry name or the user's own file),
applies the preparation protocol of :mod:`data.protocols` and caches the
result (:mod:`data.cache`), keyed by everything that determines it, the md5 of
the source files included. The files are verified on every call, a warm cache
too, so an edited file is refused (registered datasets) or makes a new split
(your own file) instead of being served stale from the cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Optional

from data.errors import ConfigError, DatasetError


@dataclasses.dataclass
class DataConfig:
    """Which data and which preparation protocol.

    Attributes:
      dataset: a registry name (``ml-100k``...) or a path to a ratings file.
      data_dir: download/cache folder (None: ``$TFCF_DATA_DIR`` or ``~/.cache/tfcf``).
      mirror: a local mirror folder (None: ``$TFCF_DATA_MIRROR``).
      protocol: ``heldout`` (top-k models), ``fold``, ``random`` or ``time``
        (rating models); None picks the task's default.
      threshold: binarization threshold (None: the dataset's default).
      min_uc, min_sc: heldout-users filters (users/items with at least that many positives).
      val_users, test_users: heldout users, a fraction (< 1) or a count.
      fold: ML-100K official fold for ``fold`` (``u1``..``u5``, ``ua``, ``ub``).
      test_fraction, val_fraction: the ``random`` split; ``val_fraction`` is
        also the validation slice of ``fold`` (None: :data:`VAL_FRACTION`, so
        that rating models validate, keep their best epoch and stop early by
        default; 0: no validation).
      time_window: a ``data.protocols.NETFLIX_WINDOWS`` key for ``time``, or
        explicit dates ``TRAIN_START..TRAIN_END,TEST_START..TEST_END``.
      cache: reuse prepared splits from the cache.
      user_col, item_col, rating_col, time_col, sep: how to read your own
        file (see :class:`data.custom.CustomFormat`; None: detect).
    """

    dataset: str = "ml-100k"
    data_dir: Optional[str] = None
    mirror: Optional[str] = None
    protocol: Optional[str] = None
    threshold: Optional[float] = None
    min_uc: int = 5
    min_sc: int = 0
    val_users: float = 0.1
    test_users: float = 0.1
    fold: str = "u1"
    test_fraction: float = 0.05
    val_fraction: Optional[float] = None
    time_window: str = "3m"
    cache: bool = True
    user_col: Optional[str] = None
    item_col: Optional[str] = None
    rating_col: Optional[str] = None
    time_col: Optional[str] = None
    sep: Optional[str] = None

    def custom_format(self):
        """The :class:`data.custom.CustomFormat` of these fields."""
        from data.custom import CustomFormat

        return CustomFormat(user_col=self.user_col, item_col=self.item_col, rating_col=self.rating_col,
                            time_col=self.time_col, sep=self.sep)


# The share of the training ratings a rating split moves to validation unless told otherwise.
VAL_FRACTION = 0.05


def default_protocol(task: str, dataset: str) -> str:
    from data import prepared

    if prepared.looks_prepared(dataset):
        return "prepared"
    if task == "topk":
        return "heldout"
    if dataset == "ml-100k":
        return "fold"
    if dataset == "netflix":
        return "time"
    return "random"


def prepare(cfg: DataConfig, task: str, seed: int, verbose: bool = True):
    """Loads a dataset and applies the protocol (through the split cache).

    Before the cache is looked at, a registered dataset's files are located
    and verified against the registry's md5s (:func:`data.download.locate`;
    remembered by size and mtime, so this is cheap), and the md5 of the files
    the split is read from (remembered the same way; your own file included)
    goes into the cache key.

    Args:
      cfg: the dataset and protocol settings.
      task: ``"topk"`` or ``"rating"``; picks the default protocol.
      seed: the protocol's only source of randomness.
      verbose: print one line with the split's counts; when the split is
        built (not in the cache), a line before and one with the time taken
        after, and progress lines with an ETA while a large own file is read.

    Returns:
      (split, info): a ``HeldoutSplit`` or ``RatingSplit``, and a dict with the
      dataset, protocol, its config, the seed, the split's counts and
      ``checksums`` (source file -> md5 of the files the split was built from).

    Raises:
      ConfigError: a protocol that does not fit the task or the dataset.
      DatasetError: missing, corrupt or malformed data, or a split with an
        empty part.
    """
    from data import cache, custom, download, loader, protocols, registry

    protocol = cfg.protocol or default_protocol(task, cfg.dataset)
    if task == "topk" and protocol not in ("heldout", "prepared"):
        raise ConfigError(f"top-k models train on the heldout protocol (or a prepared split), not '{protocol}'")
    if task == "rating" and protocol == "heldout":
        raise ConfigError("rating models need a rating split: --protocol fold, random, time or prepared")
    spec = registry.get_spec(cfg.dataset) if cfg.dataset in registry.names() else None
    progress = _ReadProgress(cfg.dataset) if verbose else None
    val_fraction = VAL_FRACTION if cfg.val_fraction is None else cfg.val_fraction
    load = lambda: loader.load(cfg.dataset, cfg.data_dir, cfg.mirror, cfg.custom_format(), progress)
    if protocol == "heldout":
        threshold = cfg.threshold if cfg.threshold is not None else (spec.threshold if spec else None)
        pconfig = protocols.HeldoutConfig(threshold=threshold, min_uc=cfg.min_uc, min_sc=cfg.min_sc,
                                          val_users=cfg.val_users, test_users=cfg.test_users)
        build = lambda: protocols.heldout_users(load(), pconfig, seed)
    elif protocol == "fold":
        if cfg.dataset != "ml-100k":
            raise ConfigError("--protocol fold is ML-100K's official folds u1..u5/ua/ub; use random or time")
        pconfig = {"fold": cfg.fold, "val_fraction": val_fraction}

        def build():
            from data import download

            split = protocols.official_fold(download.locate("ml-100k", cfg.data_dir, cfg.mirror), cfg.fold)
            if val_fraction:
                split = protocols.validation_slice(split, val_fraction, seed)
            return split
    elif protocol == "random":
        pconfig = protocols.RandomSplitConfig(test_fraction=cfg.test_fraction, val_fraction=val_fraction)
        build = lambda: protocols.random_split(load(), pconfig, seed)
    elif protocol == "time":
        pconfig = custom.time_window(cfg.time_window)
        build = lambda: protocols.time_split(load(), pconfig, seed)
    elif protocol == "prepared":
        from data import prepared

        folder = Path(cfg.dataset).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"--protocol prepared reads a folder of split files; {cfg.dataset} is not a folder")
        pconfig = {"files": prepared.files(folder, task)}
        if task == "topk":
            build = lambda: prepared.read_heldout(folder)
        else:
            # Without validation.csv, rating models validate on a slice of train.csv, as on every other split.
            own_val = prepared.RATING_VALIDATION_FILE in pconfig["files"]
            if own_val and cfg.val_fraction:
                raise ConfigError(f"--val_fraction: {folder} has its own {prepared.RATING_VALIDATION_FILE}; drop "
                                  f"the flag (or the file, to validate on a slice of train.csv)")
            pconfig["val_fraction"] = 0.0 if own_val else val_fraction

            def build():
                split = prepared.read_ratings(folder)
                if pconfig["val_fraction"]:
                    split = protocols.validation_slice(split, pconfig["val_fraction"], seed)
                return split
    else:
        raise ConfigError(f"unknown protocol '{protocol}'; use heldout, fold, random, time or prepared")
    pdict = pconfig if isinstance(pconfig, dict) else dataclasses.asdict(pconfig)
    data_dir = download.data_dir_path(cfg.data_dir)
    if spec is not None:
        folder = download.locate(cfg.dataset, cfg.data_dir, cfg.mirror)
        sources = ([f"{cfg.fold}.base", f"{cfg.fold}.test"] if protocol == "fold" else _parser_files(spec, folder))
        checksums = _summarize(download.md5s(folder, sources, data_dir))
    elif protocol == "prepared":
        folder = Path(cfg.dataset).expanduser()
        for name in pdict["files"]:
            if not (folder / name).is_file():
                build()  # Raises the reader's one-line error naming the missing file.
        checksums = {str((folder / k).resolve()): v for k, v in download.md5s(folder, pdict["files"], data_dir).items()}
    else:
        path = Path(cfg.dataset).expanduser()
        md5 = download.md5s(path.parent, [path.name], data_dir).get(path.name) if path.is_file() else None
        if md5 is None:
            build()  # Raises the reader's one-line error: no such file, a folder, an unknown dataset.
        checksums = {str(path.resolve()): md5}
    key = {"dataset": cfg.dataset, "protocol": protocol, "config": pdict, "seed": seed, "checksums": checksums}
    if spec is None and not cfg.custom_format().is_default():
        key["columns"] = dataclasses.asdict(cfg.custom_format())
    if verbose:
        build = _announced(build, f"data: preparing {cfg.dataset} ({protocol})")
    if cfg.cache:
        split = cache.load_or_build(data_dir / "prepared", key, build)
    else:
        split = build()
    info = {"dataset": cfg.dataset, "protocol": protocol, "protocol_config": pdict, "seed": seed,
            "counts": split_counts(split), "checksums": checksums}
    if verbose:
        print(f"data: {cfg.dataset} ({protocol}) {json.dumps(info['counts'])}", flush=True)
    return split, info


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _announced(build, what: str):
    """``build`` with a line before (``what...``) and one with the time taken after."""
    def run():
        print(f"{what}...", flush=True)
        t0 = time.perf_counter()
        split = build()
        print(f"{what}: done in {time.perf_counter() - t0:.1f} s", flush=True)
        return split
    return run


class _ReadProgress:
    """Progress lines while a large own file is read: one at the first chunk, then one per ``every`` seconds."""

    def __init__(self, name: str, every: float = 10.0) -> None:
        self.name, self.every = name, every
        self.t0 = self.last = None
        self.start = 0

    def __call__(self, done: int, size: int) -> None:
        now = time.perf_counter()
        if self.t0 is None:  # the first chunk: a line saying how big the file is
            self.t0 = self.last = now
            self.start = done
            print(f"data: reading {self.name} ({size / 2 ** 20:,.0f} MiB) in chunks", flush=True)
            return
        if now - self.last >= self.every and done < size:
            self.last = now
            left = (now - self.t0) / max(done - self.start, 1) * (size - done)
            print(f"data: reading {self.name}: {done / size:.0%} ETA {_fmt_duration(left)}", flush=True)


# More source files than this (Netflix: 17,770) are recorded as one combined md5.
_MAX_LISTED = 16


def _parser_files(spec, folder: Path) -> list[str]:
    """The files of ``folder`` the dataset's parser reads, relative to it."""
    if spec.files:
        return list(spec.files)
    from data.formats import netflix_files

    return [path.relative_to(folder).as_posix() for path in netflix_files(folder)]


def _summarize(checksums: dict[str, str]) -> dict[str, str]:
    """``checksums``, or for many files one md5 over their sorted ``name md5`` lines."""
    if len(checksums) <= _MAX_LISTED:
        return checksums
    names = sorted(checksums)
    lines = "".join(f"{name} {checksums[name]}\n" for name in names)
    return {f"{len(names)} files {names[0]} .. {names[-1]}": hashlib.md5(lines.encode()).hexdigest()}


def split_counts(split) -> dict[str, int]:
    """Rows and non-zeros of every part of a split."""
    counts = {}
    for f in dataclasses.fields(split):
        value = getattr(split, f.name)
        if hasattr(value, "nnz"):
            counts[f"{f.name}_rows"] = int(value.shape[0])
            counts[f"{f.name}_nnz"] = int(value.nnz)
    counts["items"] = int(split.train.shape[1])
    return counts


def titles(cfg: DataConfig) -> dict:
    """Item titles of the dataset, keyed by original item id; ``{}`` where there are none.

    Titles are a nicety, so a run goes on without them: a dataset without
    titles (Netflix, Pinterest, Last.fm 360K, your own file) gives ``{}``
    quietly; a titles file that cannot be read (missing, malformed, wrong
    checksum, unreadable) gives ``{}`` and one warning line on stderr naming
    the file and the reason. Other exceptions are bugs and propagate.

    Args:
      cfg: the dataset settings.

    Returns:
      dict original item id -> title.
    """
    from data import formats, loader, registry

    if cfg.dataset not in registry.names() or not formats.has_titles(cfg.dataset):
        return {}
    try:
        return loader.load_titles(cfg.dataset, cfg.data_dir, cfg.mirror)
    except (DatasetError, OSError) as err:
        reason = " ".join(str(err).split())
        print(f"warning: {reason}; continuing without item titles", file=sys.stderr, flush=True)
        return {}
