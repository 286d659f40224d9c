"""Top-k recommendations from an exported model, in original ids with titles.

Thesis ch. 7.3's experiment: give the model a handful of movies a user liked
and read what it recommends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from data.errors import ConfigError
from training import export, families, metrics


def _columns(item_ids: np.ndarray, wanted: Sequence) -> np.ndarray:
    """Columns of original ids (given as str or int); unknown ids -> ConfigError."""
    as_str = np.asarray(item_ids).astype(str)
    lookup = {v: i for i, v in enumerate(as_str)}
    missing = [str(w) for w in wanted if str(w) not in lookup]
    if missing:
        raise ConfigError(f"item ids not known to the model: {', '.join(missing[:10])}"
                          f"{' ...' if len(missing) > 10 else ''} (ids are the dataset's original item ids)")
    return np.array([lookup[str(w)] for w in wanted], np.int64)


def score_rows(model, inputs: tf.SparseTensor, rows=None) -> tf.Tensor:
    """Scores [b, I] of any exported model (a trained model or a closed-form baseline).

    Args:
      inputs: SparseTensor [b, I] of the users' known items.
      rows: int32 [b] training-row indices of the users, where known.
    """
    if hasattr(model, "predict_rows"):
        return model.predict_rows(inputs, rows)
    return tf.convert_to_tensor(model.score(inputs))


def recommend(export_dir: str | Path, items: Sequence, k: int = 10) -> list[dict]:
    """The top-k items for a user who has ``items``, excluding those items.

    Args:
      export_dir: a run folder with an exported model.
      items: original item ids (e.g. MovieLens movie ids).
      k: how many items.

    Returns:
      ``k`` dicts ``{'item': id, 'title': str or None, 'score': float}``, best first.
    """
    if not items:
        raise ConfigError("give at least one item id to recommend from")
    model, meta, ids, titles = export.load(export_dir, families.FAMILIES)
    item_ids = ids["item_ids"]
    cols = np.unique(_columns(item_ids, items))
    rows = tf.SparseTensor(np.stack([np.zeros_like(cols), cols], 1), np.ones(len(cols), np.float32),
                           [1, len(item_ids)])
    scores = metrics.mask_seen(score_rows(model, rows), rows)
    top = tf.math.top_k(scores, k=min(k, len(item_ids) - len(cols)))
    out = []
    for col, score in zip(top.indices.numpy()[0], top.values.numpy()[0]):
        item = item_ids[col].item() if hasattr(item_ids[col], "item") else item_ids[col]
        out.append({"item": item, "title": titles.get(str(item)), "score": float(score)})
    return out


def print_recommendations(export_dir: str | Path, items: Sequence, k: int = 10) -> None:
    """Prints :func:`recommend`'s list, one item a line."""
    _, _, ids, titles = export.load(export_dir, families.FAMILIES)
    given = ", ".join(f"{i} ({titles.get(str(i), '?')})" for i in items)
    print(f"given: {given}")
    for rank, rec in enumerate(recommend(export_dir, items, k), 1):
        print(f"{rank:3d}. {rec['item']}  {rec['title'] or ''}  ({rec['score']:.3f})")
