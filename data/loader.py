"""One call from a dataset name to its interactions: registry + locate + parser."""

from __future__ import annotations

import dataclasses
from typing import Optional

from data import custom, formats
from data.download import PathLike, locate
from data.errors import ConfigError
from data.registry import get_spec, names
from data.types import Interactions


def load(name: str, data_dir: Optional[PathLike] = None, mirror: Optional[PathLike] = None,
         fmt: Optional[custom.CustomFormat] = None, progress: Optional[custom.Progress] = None) -> Interactions:
    """Loads a registered dataset, or your own file, as interactions.

    Args:
      name: a registry key such as ``"ml-100k"``, or the path of your own
        CSV/TSV/``::``/Parquet file (see :mod:`data.custom`).
      data_dir: download/cache folder (see :func:`data.download.locate`).
      mirror: a local mirror folder (default ``$TFCF_DATA_MIRROR``).
      fmt: column mapping and separator of your own file (None: detect).
      progress: reading a large own file, ``progress(bytes_read, file_size)``
        after each chunk (see :func:`data.custom.read`).

    Returns:
      Interactions with [n] user, item (dense int64), rating (float32) and
      timestamp (int64, -1 if none) arrays and the original ids;
      ``name`` is the registry key (or the path).

    Raises:
      DatasetError: unknown name, missing or corrupt files, a malformed line.
      ConfigError: ``fmt`` given with a registered dataset.
    """
    if name not in names() and custom.is_path(name):
        return custom.read(name, fmt or custom.CustomFormat(), progress=progress)
    if fmt is not None and not fmt.is_default():
        raise ConfigError(f"--user_col/--item_col/--rating_col/--time_col/--sep describe your own files; "
                          f"'{name}' is a built-in dataset: drop them or pass the path of a file")
    spec = get_spec(name)
    folder = locate(name, data_dir=data_dir, mirror=mirror)
    interactions = spec.parser(folder)
    return dataclasses.replace(interactions, name=name)


def load_titles(name: str, data_dir: Optional[PathLike] = None, mirror: Optional[PathLike] = None) -> dict:
    """Item titles of a registered dataset.

    Args:
      name: a registry key.
      data_dir: download/cache folder.
      mirror: a local mirror folder (default ``$TFCF_DATA_MIRROR``).

    Returns:
      dict original item id -> title; ``{}`` for datasets without titles.
    """
    get_spec(name)
    return formats.read_titles(name, locate(name, data_dir=data_dir, mirror=mirror))
