"""A split prepared elsewhere, read as it is (``--protocol prepared``, ``--dataset FOLDER``).

Top-k models read the files of Liang et al.'s preprocessing (the VAE-CF notebook, which the NVIDIA and thesis code
reuse): ``train.csv``, ``validation_tr.csv``, ``validation_te.csv``, ``test_tr.csv`` and ``test_te.csv``, each with
a header and the columns ``uid,sid`` (dense user and item numbers), and optionally ``unique_sid.txt``, the original
item id of each ``sid`` (one a line). Rating models read ``train.csv``, ``test.csv`` and optionally
``validation.csv`` with the columns ``user,item,rating`` (original ids, any type).

Nothing is filtered, binarized or resampled: the split is the one the files hold, so results compare with the tool
that wrote them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.errors import DatasetError
from data.types import HeldoutSplit, RatingSplit

HELDOUT_FILES = ("train.csv", "validation_tr.csv", "validation_te.csv", "test_tr.csv", "test_te.csv")
ITEM_IDS_FILE = "unique_sid.txt"
RATING_FILES = ("train.csv", "test.csv")
RATING_VALIDATION_FILE = "validation.csv"


def files(folder: Path, task: str) -> list[str]:
    """The files of the folder a split of ``task`` is read from (for checksums)."""
    if task == "topk":
        return [*HELDOUT_FILES, *([ITEM_IDS_FILE] if (folder / ITEM_IDS_FILE).is_file() else [])]
    return [*RATING_FILES, *([RATING_VALIDATION_FILE] if (folder / RATING_VALIDATION_FILE).is_file() else [])]


def looks_prepared(dataset: str) -> bool:
    """Whether ``dataset`` is a folder holding a prepared split (then the default protocol is ``prepared``)."""
    folder = Path(dataset).expanduser()
    return folder.is_dir() and (folder / "train.csv").is_file() and (
        (folder / "test_te.csv").is_file() or (folder / "test.csv").is_file())


def _read(folder: Path, name: str, columns: tuple[str, ...], needed: tuple[str, ...]) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        raise DatasetError(f"{folder}: no {name} (a prepared split needs {', '.join(needed)}: see --protocol "
                           f"prepared in the README)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: not a CSV file with a header ({str(err).splitlines()[0]})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: no column {', '.join(missing)} (its header has {', '.join(map(str, frame.columns))};"
                           f" expected {','.join(columns)})")
    if frame[list(columns)].isna().any().any():
        raise DatasetError(f"{path}: empty cells in {','.join(columns)}")
    return frame


def _numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    if values.isna().any() or (values < 0).any() or (values % 1 != 0).any():
        raise DatasetError(f"{path}: column {column} must hold whole numbers >= 0 (Liang et al.'s dense ids)")
    return values.to_numpy(np.int64)


def _clicks(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_items: int) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_rows, n_items))
    m.sum_duplicates()
    m.data[:] = 1.0  # a click is a click, however often the file repeats it
    return m


def read_heldout(folder: Path) -> HeldoutSplit:
    """The heldout-users split of Liang et al.'s preprocessed files in ``folder``.

    Rows of each part are its users in increasing ``uid``; the fold-in and target files of a part share those rows.

    Raises:
      DatasetError: a missing file or column, ids that are not whole numbers, an item beyond ``unique_sid.txt``,
        a user in two parts, or a part without users.
    """
    parts = {name: _read(folder, name, ("uid", "sid"), HELDOUT_FILES) for name in HELDOUT_FILES}
    ids = {name: (_numbers(f, "uid", folder / name), _numbers(f, "sid", folder / name)) for name, f in parts.items()}
    top = max(int(s.max(initial=-1)) for _, s in ids.values()) + 1
    item_ids: Optional[np.ndarray] = None
    if (folder / ITEM_IDS_FILE).is_file():
        item_ids = pd.read_csv(folder / ITEM_IDS_FILE, header=None, dtype=str)[0].to_numpy()
        if top > len(item_ids):
            raise DatasetError(f"{folder}: sid {top - 1} is beyond the {len(item_ids)} items of {ITEM_IDS_FILE}")
    else:
        item_ids = np.arange(top, dtype=np.int64)
    n_items = len(item_ids)

    def users(*names):
        return np.unique(np.concatenate([ids[n][0] for n in names]))

    groups = {"train": users("train.csv"), "validation": users("validation_tr.csv", "validation_te.csv"),
              "test": users("test_tr.csv", "test_te.csv")}
    for name, group in groups.items():
        if len(group) == 0:
            raise DatasetError(f"{folder}: the {name} part has no users")
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        both = np.intersect1d(groups[a], groups[b])
        if len(both):
            raise DatasetError(f"{folder}: uid {both[0]} is in both the {a} and the {b} part ({len(both)} such "
                               f"users): heldout users must be new users")

    def matrix(name, group):
        uid, sid = ids[name]
        return _clicks(np.searchsorted(group, uid), sid, len(group), n_items)

    return HeldoutSplit(
        train=matrix("train.csv", groups["train"]),
        val_input=matrix("validation_tr.csv", groups["validation"]),
        val_target=matrix("validation_te.csv", groups["validation"]),
        test_input=matrix("test_tr.csv", groups["test"]),
        test_target=matrix("test_te.csv", groups["test"]),
        item_ids=item_ids, train_user_ids=groups["train"], val_user_ids=groups["validation"],
        test_user_ids=groups["test"])


def read_ratings(folder: Path) -> RatingSplit:
    """The rating split of ``train.csv``, ``test.csv`` and (optional) ``validation.csv`` in ``folder``.

    Users and items are the union of the files' ids, in sorted order; a test rating of a user or item without
    training ratings is kept (the models' fallbacks answer it).

    Raises:
      DatasetError: a missing file or column, a rating that is not a number, or a part without ratings.
    """
    columns = ("user", "item", "rating")
    names = [*RATING_FILES, *([RATING_VALIDATION_FILE] if (folder / RATING_VALIDATION_FILE).is_file() else [])]
    frames = {name: _read(folder, name, columns, RATING_FILES) for name in names}
    for name, frame in frames.items():
        rating = pd.to_numeric(frame["rating"], errors="coerce")
        if rating.isna().any() or not np.isfinite(rating).all():
            raise DatasetError(f"{folder / name}: column rating must hold numbers")
        if len(frame) == 0:
            raise DatasetError(f"{folder / name}: no ratings")
        frame["rating"] = rating.astype(np.float32)
        twice = frame.duplicated(["user", "item"])
        if twice.any():
            row = frame[twice].iloc[0]
            raise DatasetError(f"{folder / name}: user {row['user']} rates item {row['item']} more than once "
                               f"({int(twice.sum())} repeated pairs)")
    user_ids = np.unique(np.concatenate([f["user"].to_numpy() for f in frames.values()]))
    item_ids = np.unique(np.concatenate([f["item"].to_numpy() for f in frames.values()]))
    shape = (len(user_ids), len(item_ids))

    def matrix(frame):
        rows = np.searchsorted(user_ids, frame["user"].to_numpy())
        cols = np.searchsorted(item_ids, frame["item"].to_numpy())
        m = sp.csr_matrix((frame["rating"].to_numpy(np.float32), (rows, cols)), shape=shape)
        m.sort_indices()
        return m

    empty = sp.csr_matrix(shape, dtype=np.float32)
    return RatingSplit(train=matrix(frames["train.csv"]), test=matrix(frames["test.csv"]),
                       val=matrix(frames[RATING_VALIDATION_FILE]) if RATING_VALIDATION_FILE in frames else empty,
                       user_ids=user_ids, item_ids=item_ids)
