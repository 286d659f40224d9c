"""Data preparation of a run: dataset + protocol config -> a cached split.

:func:`prepare` loads a dataset (registry name or the user's own file),
applies the preparation protocol of :mod:`data.protocols` and caches the
result (:mod:`data.cache`), keyed by everything that determines it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

from data.errors import ConfigError


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
      test_fraction, val_fraction: the ``random`` split.
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
    val_fraction: float = 0.0
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


def default_protocol(task: str, dataset: str) -> str:
    if task == "topk":
        return "heldout"
    if dataset == "ml-100k":
        return "fold"
    if dataset == "netflix":
        return "time"
    return "random"


def prepare(cfg: DataConfig, task: str, seed: int, verbose: bool = True):
    """Loads a dataset and applies the protocol (through the split cache).

    Returns:
      (split, info): a ``HeldoutSplit`` or ``RatingSplit``, and a dict with the
      dataset, protocol, its config and the split's counts.
    """
    from data import cache, custom, loader, protocols, registry

    protocol = cfg.protocol or default_protocol(task, cfg.dataset)
    if task == "topk" and protocol != "heldout":
        raise ConfigError(f"top-k models train on the heldout protocol, not '{protocol}'")
    if task == "rating" and protocol == "heldout":
        raise ConfigError("rating models need a rating split: --protocol fold, random or time")
    spec = registry.get_spec(cfg.dataset) if cfg.dataset in registry.names() else None
    load = lambda: loader.load(cfg.dataset, cfg.data_dir, cfg.mirror, cfg.custom_format())
    if protocol == "heldout":
        threshold = cfg.threshold if cfg.threshold is not None else (spec.threshold if spec else None)
        pconfig = protocols.HeldoutConfig(threshold=threshold, min_uc=cfg.min_uc, min_sc=cfg.min_sc,
                                          val_users=cfg.val_users, test_users=cfg.test_users)
        build = lambda: protocols.heldout_users(load(), pconfig, seed)
    elif protocol == "fold":
        if cfg.dataset != "ml-100k":
            raise ConfigError("--protocol fold is ML-100K's official folds u1..u5/ua/ub; use random or time")
        pconfig = {"fold": cfg.fold, "val_fraction": cfg.val_fraction}

        def build():
            from data import download

            split = protocols.official_fold(download.locate("ml-100k", cfg.data_dir, cfg.mirror), cfg.fold)
            if cfg.val_fraction:
                split = protocols.validation_slice(split, cfg.val_fraction, seed)
            return split
    elif protocol == "random":
        pconfig = protocols.RandomSplitConfig(test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)
        build = lambda: protocols.random_split(load(), pconfig, seed)
    elif protocol == "time":
        pconfig = custom.time_window(cfg.time_window)
        build = lambda: protocols.time_split(load(), pconfig, seed)
    else:
        raise ConfigError(f"unknown protocol '{protocol}'; use heldout, fold, random or time")
    pdict = pconfig if isinstance(pconfig, dict) else dataclasses.asdict(pconfig)
    key = {"dataset": cfg.dataset, "protocol": protocol, "config": pdict, "seed": seed,
           "checksums": dict(spec.checksums) if spec else _file_stamp(cfg.dataset)}
    if spec is None and not cfg.custom_format().is_default():
        key["columns"] = dataclasses.asdict(cfg.custom_format())
    if cfg.cache:
        cache_dir = Path(cfg.data_dir or os.environ.get("TFCF_DATA_DIR") or Path.home() / ".cache" / "tfcf")
        split = cache.load_or_build(cache_dir / "prepared", key, build)
    else:
        split = build()
    info = {"dataset": cfg.dataset, "protocol": protocol, "protocol_config": pdict, "seed": seed,
            "counts": split_counts(split)}
    if verbose:
        print(f"data: {cfg.dataset} ({protocol}) {json.dumps(info['counts'])}", flush=True)
    return split, info


def _file_stamp(path: str) -> dict:
    """A cache key part for a user's file: its size and modification time."""
    p = Path(path)
    if not p.exists():
        return {"path": path}
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


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
    from data import loader, registry

    if cfg.dataset not in registry.names():
        return {}
    try:
        return loader.load_titles(cfg.dataset, cfg.data_dir, cfg.mirror)
    except Exception:  # titles are a nicety; a run never fails for them
        return {}
