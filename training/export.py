"""Exported models: weights + config + id maps, and a SavedModel for serving.

Layout of ``<export_dir>/model/``::

    model.json     {"family": "vae", "config": {...}, "task": "topk", ...}
    weights.*      the model's weights (tf.train.Checkpoint.write)
    ids.npz        original ids of the columns (items) and rows (users)
    titles.json    item id -> title, where the dataset has titles
    known.npz      every row's known entries (what predict and recommend start from) and, for
                   rating models, the fallback statistics: item means, global mean, rating range

and ``<export_dir>/saved_model/``, a TensorFlow SavedModel whose ``serving_default``
signature maps a batch of item-id lists to the top-k recommended item ids.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data import files
from data.errors import TrainingError
from training import metrics

MODEL_DIR = "model"
SAVED_MODEL_DIR = "saved_model"

# Atomic JSON (numpy values, tuples, paths converted); many modules call it by this name.
write_json = files.write_json


def id_array(ids) -> np.ndarray:
    """Original ids as int64 or fixed-width str: object arrays would need pickle to load."""
    ids = np.asarray(ids)
    return ids.astype(str) if ids.dtype == object else ids


def save(model, export_dir: str | Path, family: str, item_ids: np.ndarray, user_ids: Optional[np.ndarray] = None,
         titles: Optional[dict] = None, extra: Optional[dict] = None) -> Path:
    """Writes the model's weights, config and id maps under ``export_dir/model``.

    Args:
      model: a :class:`training.model.Model`, or a baseline with ``save``/``load``.
      family: the model family name of :mod:`training.families` (``vae``, ``ease``...).
      item_ids: [n_items] original item ids of the model's columns.
      user_ids: [n_users] original ids of the training rows (rating models).
      titles: original item id -> title.
      extra: more JSON-able metadata (dataset, protocol...).
    """
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "evaluate_step") and hasattr(model, "get_config"):
        tf.train.Checkpoint(model=model.state()).write(str(folder / "weights"))
        config = model.get_config()
    else:
        model.save(folder / "baseline.npz")
        config = {}
    ids = {"item_ids": id_array(item_ids)}
    if user_ids is not None:
        ids["user_ids"] = id_array(user_ids)
    files.save_npz(folder / "ids.npz", **ids)
    write_json(folder / "titles.json", {str(k): v for k, v in (titles or {}).items()})
    write_json(folder / "model.json", {"family": family, "config": config, **(extra or {})})
    return folder


RETRAIN = "retrain with --train --fresh or point --export_dir at a finished run"


def _reason(err: BaseException) -> str:
    """The first line of an exception's message (TensorFlow's run over several), kept short."""
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return line if len(line) <= 200 else line[:197] + "..."


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


def load(export_dir: str | Path, families: dict) -> tuple[Any, dict, dict, dict]:
    """Loads what :func:`save` wrote.

    Args:
      families: family name -> :class:`training.families.Family`.

    Returns:
      (model, metadata dict, ids dict of arrays, titles dict keyed by str id).

    Raises:
      TrainingError: nothing exported there, or a file of the export is
        missing, truncated or corrupt (one line naming the file).
    """
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
    if not getattr(family, "trainable", True) and not (folder / "baseline.npz").is_file():
        raise damaged(folder / "baseline.npz", "missing (a partial export?)")
    try:
        model = family.load(folder, config)
    except TrainingError as e:  # the baselines' own loader names the file; add how to fix it
        raise (e if RETRAIN in str(e) else TrainingError(f"{e}; {RETRAIN}")) from None
    except (TypeError, ValueError, KeyError) as e:  # from_config: the config does not fit the model
        raise damaged(meta_path, f"its config does not fit the '{name}' model ({_reason(e)})") from None
    ids = _read_npz(folder / "ids.npz", ("item_ids",))
    titles = _read_json(folder / "titles.json", required=False) or {}
    if not isinstance(titles, dict):
        raise damaged(folder / "titles.json", "not an object of item id -> title")
    return model, meta, ids, titles


def restore_weights(model, folder: Path) -> None:
    """Restores weights written by :func:`save` into a freshly built model.

    Raises:
      TrainingError: ``weights.index`` or a ``weights.data-*`` file is
        missing, truncated or corrupt, or holds another model's weights.
    """
    folder = Path(folder)
    prefix = folder / "weights"
    index = folder / "weights.index"
    if not index.is_file():
        raise damaged(index, "missing (a partial export?)")
    shards = sorted(folder.glob("weights.data-*-of-*"))
    total = shards[0].name.rsplit("-of-", 1)[-1] if shards else "00001"
    wanted = [folder / f"weights.data-{i:05d}-of-{total}" for i in range(int(total) if total.isdigit() else 1)]
    absent = [p for p in wanted if not p.is_file()]
    if absent:
        raise damaged(absent[0], "missing (a partial export?)")
    model.ensure_built()
    try:
        tf.train.Checkpoint(model=model.state()).read(str(prefix)).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, OSError) as e:
        try:  # reads the index alone: if that works, a data file is at fault
            tf.train.load_checkpoint(str(prefix))
            culprit = wanted[0] if len(wanted) == 1 else folder / "weights.data-*"
        except (tf.errors.OpError, ValueError, IndexError, OSError):
            culprit = index
        mismatch = isinstance(e, AssertionError) or (isinstance(e, ValueError) and "incompatible" in str(e))
        what = "holds weights that do not fit the model of model.json" if mismatch else "truncated or corrupt"
        raise damaged(culprit, f"{what} ({_reason(e)})") from None


class TopKServer(tf.Module):
    """Serving wrapper: item-id lists in original ids -> top-k item ids.

    Args:
      score_fn: SparseTensor [b, I] -> scores [b, I] float32.
      item_ids: [I] original item ids of the columns (int64 or str).
    """

    def __init__(self, score_fn: Callable[[tf.SparseTensor], tf.Tensor], item_ids: np.ndarray,
                 variables_owner: Optional[tf.Module] = None) -> None:
        super().__init__()
        self._score_fn = score_fn
        self.owner = variables_owner
        self.n_items = int(len(item_ids))
        is_str = item_ids.dtype.kind in "USO"
        key_dtype = tf.string if is_str else tf.int64
        keys = tf.constant(item_ids.astype(str) if is_str else item_ids.astype(np.int64), key_dtype)
        self.item_ids = tf.Variable(keys, trainable=False)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(self.n_items, dtype=tf.int64)), default_value=-1)
        self.key_dtype = key_dtype
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, None], key_dtype, name="items"), tf.TensorSpec([], tf.int32, name="k")])

    def _serve(self, items: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        cols = self.table.lookup(items)  # unknown ids and padding map to -1
        known = tf.where(cols >= 0)  # [n, 2] (list, position)
        indices = tf.stack([known[:, 0], tf.gather_nd(cols, known)], axis=1)
        shape = tf.cast(tf.stack([tf.shape(items)[0], self.n_items]), tf.int64)
        seen = tf.sparse.reorder(tf.SparseTensor(indices, tf.ones([tf.shape(indices)[0]]), shape))
        scores = metrics.mask_seen(self._score_fn(seen), seen)
        top = tf.math.top_k(scores, k=tf.minimum(k, self.n_items))
        return {"item_ids": tf.gather(self.item_ids, top.indices), "scores": top.values}


def save_serving(score_fn, item_ids: np.ndarray, export_dir: str | Path, owner: Optional[tf.Module] = None) -> Path:
    """Writes the SavedModel with the ``serving_default`` top-k signature."""
    server = TopKServer(score_fn, np.asarray(item_ids), owner)
    path = Path(export_dir) / SAVED_MODEL_DIR
    tf.saved_model.save(server, str(path), signatures={"serving_default": server.serve})
    return path


# --- what predict and recommend need besides the weights ----------------------------------------
KNOWN_FILE = "known.npz"


def known_rows(split) -> tuple[sp.csr_matrix, np.ndarray]:
    """Every row's known entries in the model's orientation, with the rows' original ids.

    Rating splits: ``train`` [n_rows, n_cols] (users, or items for item-based
    exports) and ``user_ids``. Heldout splits: the training users' rows, then
    the validation and test users' fold-in plus target rows (all they have).

    Returns:
      (float32 CSR [n_rows, n_cols], [n_rows] original row ids).
    """
    if hasattr(split, "train_user_ids"):
        parts = [split.train, split.val_input + split.val_target, split.test_input + split.test_target]
        ids = np.concatenate([split.train_user_ids, split.val_user_ids, split.test_user_ids])
        return sp.vstack(parts, format="csr", dtype=np.float32), ids
    return split.train.tocsr().astype(np.float32), np.asarray(split.user_ids)


def save_known(export_dir: str | Path, split, major: str = "users") -> Path:
    """Writes ``model/known.npz``: each row's known entries and, for rating splits, the fallback statistics.

    Holds the CSR parts of :func:`known_rows` (``data``, ``indices``,
    ``indptr``, ``shape``), ``row_ids``, and for rating splits
    ``item_mean`` (float32 [n_items] mean training rating of each item, NaN
    where it has none, in the order of the item ids), ``global_mean`` and
    ``rating_range`` ([min, max] training rating).

    Args:
      split: the split the model was trained on (transposed for ``major="items"``).
      major: ``users`` or ``items`` (rows of the model are items).
    """
    known, row_ids = known_rows(split)
    arrays = {"data": known.data, "indices": known.indices, "indptr": known.indptr,
              "shape": np.asarray(known.shape, np.int64), "row_ids": id_array(row_ids)}
    if not hasattr(split, "train_user_ids") and known.nnz:
        axis = 1 if major == "items" else 0  # the axis that runs over users
        sums = np.asarray(known.sum(axis=axis)).ravel()
        counts = np.asarray((known != 0).sum(axis=axis)).ravel()
        with np.errstate(invalid="ignore", divide="ignore"):
            arrays["item_mean"] = (sums / counts).astype(np.float32)
        arrays["global_mean"] = np.float64(known.data.mean())
        arrays["rating_range"] = np.array([known.data.min(), known.data.max()], np.float64)
    folder = Path(export_dir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / KNOWN_FILE
    files.save_npz(path, **arrays)
    return path


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
