"""Reads an export folder: the one loader of :mod:`serving.predict` and :mod:`serving.recommend`.

:func:`open_export` loads ``<export_dir>/model/`` (what :mod:`serving.export`
wrote) once into an :class:`Exported`: the model, ``model.json``, the id
maps, titles, every row's known entries and the rating fallback statistics.
:func:`load` and :func:`load_known` are its two halves; :func:`restore_weights`
reads weights into a freshly built model (``--warm_start`` uses it too). Every
damaged or missing file is one :class:`TrainingError` line naming it.

Also here: the ``--output`` checks and atomic writer both commands share.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from data import files, pipeline
from data.errors import ConfigError, TrainingError, first_line
from training import families as family_table

MODEL_DIR = "model"
KNOWN_FILE = "known.npz"

RETRAIN = "retrain with --train --fresh or point --export_dir at a finished run"


_reason = first_line


def damaged(path: Path, problem: str) -> TrainingError:
    """The one-line error of an export file that is missing or cannot be read."""
    return TrainingError(f"{path}: {problem}; {RETRAIN}")


def _read_json(path: Path, required: bool = True) -> Any:
    if not path.is_file():
        if not required:
            return None
        raise damaged(path, "missing (a partial export?)" if not path.exists() else "is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise damaged(path, f"not valid JSON ({_reason(e)})") from None


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every array of an npz file, checking that ``keys`` are there."""
    if not path.is_file():
        raise damaged(path, "missing (a partial export?)" if not path.exists() else "is not a file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as e:
        raise damaged(path, f"not a readable .npz file, truncated or corrupt ({_reason(e)})") from None
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise damaged(path, f"lacks {', '.join(missing)}")
    return arrays


def load(export_dir: str | Path, families: Optional[dict] = None) -> tuple[Any, dict, dict, dict]:
    """Loads what :func:`serving.export.save` wrote.

    Args:
      families: family name -> :class:`training.families.Family` (default: all of them).

    Returns:
      (model, metadata dict, ids dict of arrays, titles dict keyed by str id).

    Raises:
      TrainingError: nothing exported there, or a file of the export is
        missing, truncated or corrupt (one line naming the file).
    """
    families = family_table.FAMILIES if families is None else families
    folder = Path(export_dir) / MODEL_DIR
    meta_path = folder / "model.json"
    if not meta_path.exists():
        raise TrainingError(f"no exported model in {folder} (model.json is missing): train one first (--train) or "
                            f"point --export_dir at the folder of a finished run")
    meta = _read_json(meta_path)
    if not isinstance(meta, dict) or "family" not in meta:
        raise damaged(meta_path, 'no "family" field')
    name = meta["family"]
    if not isinstance(name, str) or name not in families:
        raise damaged(meta_path, f"unknown model family {name!r} (known: {', '.join(sorted(families))})")
    family = families[name]
    config = meta.get("config", {})
    if not isinstance(config, dict):
        raise damaged(meta_path, '"config" is not an object')
    try:
        model = family.rebuild(folder, config)
    except TrainingError as e:  # the model's reader names the file; add how to fix it
        raise (e if RETRAIN in str(e) else TrainingError(f"{e}; {RETRAIN}")) from None
    except (TypeError, ValueError, KeyError) as e:  # from_config: the config does not fit the model
        raise damaged(meta_path, f"its config does not fit the '{name}' model ({_reason(e)})") from None
    ids = _read_npz(folder / "ids.npz", ("item_ids",))
    titles = _read_json(folder / "titles.json", required=False) or {}
    if not isinstance(titles, dict):
        raise damaged(folder / "titles.json", "not an object of item id -> title")
    return model, meta, ids, titles


def restore_weights(model, folder: Path) -> None:
    """Reads the weights :func:`serving.export.save` wrote in ``folder`` into a freshly built model.

    Raises:
      TrainingError: a weights file is missing, truncated or corrupt, or
        holds another model's weights (one line naming it).
    """
    try:
        model.read(Path(folder))
    except TrainingError as e:
        raise (e if RETRAIN in str(e) else TrainingError(f"{e}; {RETRAIN}")) from None


def load_known(export_dir: str | Path) -> dict:
    """Reads :func:`save_known`'s file.

    Returns:
      dict with ``matrix`` (float32 CSR [n_rows, n_cols]), ``row_ids``, and
      where present ``item_mean``, ``global_mean``, ``rating_range``.

    Raises:
      TrainingError: the export predates ``known.npz`` (retrain it), or the
        file is truncated or corrupt.
    """
    path = Path(export_dir) / MODEL_DIR / KNOWN_FILE
    if not path.exists():
        raise TrainingError(f"{path} is missing: this export was written before predict/recommend by user "
                            f"existed; rerun the training command with --fresh to re-export it")
    out = _read_npz(path, ("data", "indices", "indptr", "shape", "row_ids"))
    try:
        out["matrix"] = sp.csr_matrix((out.pop("data"), out.pop("indices"), out.pop("indptr")),
                                      shape=tuple(int(n) for n in out.pop("shape")))
        out["matrix"].check_format(full_check=False)
    except (ValueError, TypeError, IndexError) as e:
        raise damaged(path, f"not a valid known-rows matrix ({_reason(e)})") from None
    if len(out["row_ids"]) != out["matrix"].shape[0]:
        raise damaged(path, f"{len(out['row_ids'])} row ids for {out['matrix'].shape[0]} rows")
    return out


# --- the output file of --predict / --recommend*: checked first, written atomically -------------------
def _is_special(path: Path) -> bool:
    """Whether ``path`` exists as a device, FIFO or socket (``/dev/stdout``): written in place."""
    try:
        return not (stat.S_ISREG(os.stat(path).st_mode) or stat.S_ISDIR(os.stat(path).st_mode))
    except OSError:
        return False


def check_output(output: Optional[Union[str, Path]]) -> Optional[Path]:
    """Refuses an ``--output`` that cannot be written, before any model work.

    Args:
      output: the file to write, or None (stdout).

    Returns:
      ``output`` as a Path (None stays None).

    Raises:
      ConfigError: an empty path, an existing folder, a path in a missing
        folder or in one this process cannot write to, a read-only file.
    """
    if output is None:
        return None
    if str(output) == "":
        raise ConfigError("--output is empty: give the path of a file to write, or leave it out for stdout")
    path = Path(output).expanduser()
    if _is_special(path):
        return path
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder: give the path of a file to write")
    parent = path.parent
    if not parent.exists():
        raise ConfigError(f"--output {path}: the folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise ConfigError(f"--output {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {path}: the folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"--output {path}: the file is read-only")
    return path


def write_output(output: Union[str, Path], write, mode: str = "w") -> Path:
    """Calls ``write(file)`` on a temporary file beside ``output``, then renames it to ``output``.

    A failure leaves no half file: the old ``output`` (if any) stays as it was.

    Args:
      output: the file (checked with :func:`check_output`).
      write: writes the content to the open file it is given.
      mode: ``"w"`` (UTF-8 text, ``\\n`` line ends) or ``"wb"``.

    Raises:
      ConfigError: the file cannot be written (permission denied, disk full...).
    """
    path = check_output(output)
    try:
        return files.atomic_write(path, write, mode=mode)
    except OSError as e:
        raise ConfigError(f"--output {path}: cannot write it ({e.strerror or e})") from None


def lookup(ids: np.ndarray, wanted: Sequence) -> np.ndarray:
    """Positions of original ids ``wanted`` in ``ids``: int64 [n], -1 where unknown.

    Integer ids are matched as integers, anything else by its text, so a
    ``"50"`` read from a file finds item 50.
    """
    ids, wanted = np.asarray(ids), np.asarray(wanted)
    if ids.dtype.kind in "iu":
        numbers = pd.to_numeric(pd.Series(wanted, dtype=object), errors="coerce")
        whole = numbers.notna().to_numpy() & (numbers.fillna(0.5) % 1 == 0).to_numpy()
        out = np.full(len(wanted), -1, np.int64)
        out[whole] = pd.Index(ids).get_indexer(numbers[whole].to_numpy(np.int64))
        return out
    return pd.Index(ids.astype(str)).get_indexer(wanted.astype(str)).astype(np.int64)


@dataclasses.dataclass
class Exported:
    """An export folder loaded for predict and recommend.

    Attributes:
      model: the model (or closed-form baseline).
      meta: ``model.json``.
      known: float32 CSR [n_rows, n_cols] of each model row's known entries.
      row_ids: [n_rows] original ids of the model's rows (users, or items
        for an item-based export).
      col_ids: [n_cols] original ids of its columns.
      titles: original item id (str) -> title.
      stats: ``item_mean`` (per item index), ``global_mean``, ``rating_range``
        for rating exports; empty for top-k ones.
    """

    model: object
    meta: dict
    known: sp.csr_matrix
    row_ids: np.ndarray
    col_ids: np.ndarray
    titles: dict
    stats: dict

    @property
    def rows_are_items(self) -> bool:
        return self.meta.get("major", "users") == "items"

    @property
    def item_ids(self) -> np.ndarray:
        """[n_items] original item ids in item-index order."""
        return self.row_ids if self.rows_are_items else self.col_ids

    def user_index(self, users: Sequence) -> np.ndarray:
        """int64 [n] user index (row, or column of an item-based export), -1 if unknown."""
        return lookup(self.col_ids if self.rows_are_items else self.row_ids, users)

    def item_index(self, items: Sequence) -> np.ndarray:
        """int64 [n] item index (column, or row of an item-based export), -1 if unknown."""
        return lookup(self.item_ids, items)

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 [n_users] training ratings per user index, int64 [n_items] per item index)."""
        rows = np.diff(self.known.indptr)
        cols = np.bincount(self.known.indices, minlength=self.known.shape[1])
        return (cols, rows) if self.rows_are_items else (rows, cols)

    def cells(self, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(model row, model column) of user/item indices."""
        return (item, user) if self.rows_are_items else (user, item)


def open_export(export_dir: Union[str, Path]) -> Exported:
    """Loads an export folder with what predict/recommend need (see :func:`serving.export.save_known`).

    Raises:
      TrainingError: no export there, or one without ``known.npz``.
    """
    model, meta, ids, titles = load(export_dir)
    known = load_known(export_dir)
    stats = {k: known[k] for k in ("item_mean", "global_mean", "rating_range") if k in known}
    return Exported(model=model, meta=meta, known=known["matrix"].astype(np.float32), row_ids=known["row_ids"],
                    col_ids=ids["item_ids"], titles=titles, stats=stats)


def row_scores(exp: Exported, rows: np.ndarray, batch_size: int = 1000):
    """Scores of every column for model rows, batch by batch.

    Args:
      exp: the export.
      rows: int64 [n] model rows (sorted unique is cheapest).
      batch_size: rows per forward pass.

    Yields:
      (start offset into ``rows``, float32 [b, n_cols] scores or predicted ratings).
    """
    if not len(rows):
        return
    batches = pipeline.row_batches(exp.known[rows], batch_size)
    for start, inputs in zip(range(0, len(rows), batch_size), batches):
        index = tf.constant(rows[start:start + batch_size], tf.int32)
        yield start, np.asarray(exp.model.predict_rows(inputs, index))
