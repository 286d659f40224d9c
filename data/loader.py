"""One call from a dataset name to its interactions: registry + locate + parser."""

from __future__ import annotations

import dataclasses
from typing import Optional

from data import formats
from data.download import PathLike, locate
from data.registry import get_spec
from data.types import Interactions


def load(name: str, data_dir: Optional[PathLike] = None, mirror: Optional[PathLike] = None) -> Interactions:
    """Loads a registered dataset as interactions.

    Args:
      name: a registry key such as ``"ml-100k"``.
      data_dir: download/cache folder (see :func:`data.download.locate`).
      mirror: a local mirror folder (default ``$TFCF_DATA_MIRROR``).

    Returns:
      Interactions with [n] user, item (dense int64), rating (float32) and
      timestamp (int64, -1 if none) arrays and the original ids;
      ``name`` is the registry key.

    Raises:
      DatasetError: unknown name, missing or corrupt files, a malformed line.
    """
    spec = get_spec(name)
    folder = locate(name, data_dir=data_dir, mirror=mirror)
    interactions = getattr(formats, spec.parser)(folder)
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
