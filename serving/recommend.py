"""Top-k recommendations from an exported model, in original ids with titles.

Thesis ch. 7.3's experiment: give the model a handful of movies a user liked
and read what it recommends.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from data.errors import ConfigError, DatasetError
from serving import loader
from serving.loader import check_output, write_output
from training import metrics


def check_top_k(k) -> int:
    """Refuses a ``--top_k`` below 1 (``-1`` would be a TensorFlow traceback, ``0`` an empty list)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"--top_k must be >= 1, got {k}")
    return int(k)


def _columns(item_ids: np.ndarray, wanted: Sequence) -> np.ndarray:
    """Columns of original ids (given as str or int); unknown ids -> ConfigError."""
    as_str = np.asarray(item_ids).astype(str)
    lookup = {v: i for i, v in enumerate(as_str)}
    missing = [str(w) for w in wanted if str(w) not in lookup]
    if missing:
        raise ConfigError(f"item ids not known to the model: {', '.join(missing[:10])}"
                          f"{' ...' if len(missing) > 10 else ''} (ids are the dataset's original item ids)")
    return np.array([lookup[str(w)] for w in wanted], np.int64)


def _open(export) -> loader.Exported:
    """An :class:`~serving.loader.Exported` as given, or the export folder ``export`` loaded."""
    return export if isinstance(export, loader.Exported) else loader.open_export(export)


def recommend(export_dir: str | Path | loader.Exported, items: Sequence, k: int = 10) -> list[dict]:
    """The top-k items for a user who has ``items``, excluding those items.

    Top-k models read the items as clicks; rating models as top ratings (the
    highest rating seen in training). Models that embed users (MF) score an
    average user here: use :func:`recommend_users` for known users.

    Args:
      export_dir: a run folder with an exported model, or one already loaded
        (:func:`serving.loader.open_export`).
      items: original item ids (e.g. MovieLens movie ids).
      k: how many items.

    Returns:
      ``k`` dicts ``{'item': id, 'title': str or None, 'score': float}``, best first.

    Raises:
      ConfigError: ``k`` < 1, no items, or ids the model does not know.
    """
    k = check_top_k(k)
    if not items:
        raise ConfigError("give at least one item id to recommend from")
    exp = _open(export_dir)
    value = 1.0  # a click, for top-k models
    if exp.meta.get("task") == "rating":
        if exp.rows_are_items:
            raise ConfigError("an item-based model's rows are items, not users: recommend from an item list needs "
                              "a user-based model (--major users), or use --recommend_users")
        # A rating model reads the listed items as loved: the highest training rating.
        value = float(exp.stats.get("rating_range", [0.0, 5.0])[1])
    item_ids = exp.item_ids
    cols = np.unique(_columns(item_ids, items))
    rows = tf.SparseTensor(np.stack([np.zeros_like(cols), cols], 1), np.full(len(cols), value, np.float32),
                           [1, len(item_ids)])
    scores = metrics.mask_seen(exp.model.predict_rows(rows), rows)
    top = tf.math.top_k(scores, k=min(k, len(item_ids) - len(cols)))
    out = []
    for col, score in zip(top.indices.numpy()[0], top.values.numpy()[0]):
        item = item_ids[col].item() if hasattr(item_ids[col], "item") else item_ids[col]
        out.append({"item": item, "title": exp.titles.get(str(item)), "score": float(score)})
    return out


@dataclasses.dataclass
class Batch:
    """Recommendations for many users at once.

    Attributes:
      recs: one list per input (item list or user), in input order: dicts
        ``{'item', 'title', 'score'}`` best first; empty for a skipped input.
      skipped: inputs skipped entirely (an unknown user, or a list without any known item).
      unknown: the unknown ids met (users, or items of the lists), each once, in order.
    """

    recs: list[list[dict]]
    skipped: int
    unknown: list[str]


def recommend_lists(export_dir: str | Path | loader.Exported, item_lists: Sequence[Sequence], k: int = 10,
                    batch_size: int = 1000) -> Batch:
    """The top-k items for many new users, each given by the items they have (folded in, one export load).

    Reads the items like :func:`recommend` (clicks, or top ratings for a
    user-based rating model); ids the model does not know are left out of
    their list and counted, a list with no known item is skipped, not an
    error for the batch.

    Args:
      export_dir: a run folder, or an export already loaded (:func:`serving.loader.open_export`).
      item_lists: one list of original item ids per new user.
      k: items per user.
      batch_size: lists per forward pass.

    Raises:
      ConfigError: ``k`` < 1, or an item-based rating model.
    """
    k = check_top_k(k)
    exp = _open(export_dir)
    value = 1.0
    if exp.meta.get("task") == "rating":
        if exp.rows_are_items:
            raise ConfigError("an item-based model's rows are items, not users: recommend from an item list needs "
                              "a user-based model (--major users), or use --recommend_users")
        value = float(exp.stats.get("rating_range", [0.0, 5.0])[1])
    item_ids, unknown = exp.item_ids, {}
    cols = []
    for items in item_lists:
        index = exp.item_index([str(i) for i in items]) if len(items) else np.zeros(0, np.int64)
        unknown.update((str(i), None) for i, c in zip(items, index) if c < 0)
        cols.append(np.unique(index[index >= 0]))
    recs: list[list[dict]] = [[] for _ in cols]
    todo = [b for b, c in enumerate(cols) if len(c)]
    for lo in range(0, len(todo), batch_size):
        part = todo[lo:lo + batch_size]
        rows = np.concatenate([np.full(len(cols[b]), j) for j, b in enumerate(part)])
        flat = np.concatenate([cols[b] for b in part])
        inputs = tf.SparseTensor(np.stack([rows, flat], 1).astype(np.int64), np.full(len(flat), value, np.float32),
                                 [len(part), len(item_ids)])
        scores = np.array(metrics.mask_seen(exp.model.predict_rows(inputs), inputs), np.float32)
        top, values = _top_k(scores, k)
        for j, b in enumerate(part):
            keep = np.isfinite(values[j])
            recs[b] = [{"item": _plain(item_ids[c]), "title": exp.titles.get(str(_plain(item_ids[c]))),
                        "score": float(v)} for c, v in zip(top[j][keep], values[j][keep])]
    return Batch(recs=recs, skipped=len(cols) - len(todo), unknown=list(unknown))


def recommend_many_users(export_dir: str | Path | loader.Exported, users: Sequence, k: int = 10,
                         batch_size: int = 1000) -> Batch:
    """The top-k items for many known users (like :func:`recommend_users`), the export loaded once.

    Unknown user ids are skipped and counted (an empty list for each), not an
    error for the batch; repeats get the same list.

    Raises:
      ConfigError: ``k`` < 1.
    """
    k = check_top_k(k)
    exp = _open(export_dir)
    given = [str(u) for u in users]
    distinct = list(dict.fromkeys(given))
    index = exp.user_index(distinct)
    known = [u for u, i in zip(distinct, index) if i >= 0]
    by_user: dict[str, list[dict]] = {u: [] for u in known}
    for rec in _known_users(exp, known, index[index >= 0], k, batch_size):
        by_user[rec["user"]].append({key: rec[key] for key in ("item", "title", "score")})
    unknown = [u for u, i in zip(distinct, index) if i < 0]
    return Batch(recs=[list(by_user.get(u, [])) for u in given], skipped=sum(u not in by_user for u in given),
                 unknown=unknown)


def _plain(value):
    """A numpy scalar as a Python value."""
    return value.item() if hasattr(value, "item") else value


def print_recommendations(export_dir: str | Path | loader.Exported, items: Sequence, k: int = 10) -> None:
    """Prints :func:`recommend`'s list, one item a line (the export is loaded once)."""
    check_top_k(k)
    exp = _open(export_dir)
    given = ", ".join(f"{i} ({exp.titles.get(str(i), '?')})" for i in items)
    print(f"given: {given}")
    write_recommendations(recommend(exp, items, k), "text")


# --- recommendations for known users, by original id; text or CSV ------------------------------------
def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [b, k] columns, float32 [b, k] scores) of the k best columns per row, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    cols = np.take_along_axis(part, order, axis=1)
    return cols, np.take_along_axis(scores, cols, axis=1)


def recommend_users(export_dir: str | Path | loader.Exported, users: Sequence, k: int = 10, batch_size: int = 1000) -> list[dict]:
    """The top-k items for known users, excluding every item they already have.

    Works for every exported model: top-k models score a user's known items
    (a heldout user's fold-in and target items, a training user's row);
    rating models rank items by predicted rating (item-based DeepRec runs
    every item row and reads the user's column) and leave out items without
    any training rating.

    Args:
      export_dir: a run folder with an exported model.
      users: original user ids (int or str, as in the data).
      k: items per user.
      batch_size: users (or item rows) per forward pass.

    Returns:
      Dicts ``{'user', 'rank', 'item', 'title', 'score'}``, user by user in the
      given order (repeats dropped), best item first; fewer than ``k`` for a
      user who has nearly every item.

    Raises:
      ConfigError: ``k`` < 1, no users, or ids the model does not know (listed).
    """
    k = check_top_k(k)
    users = list(dict.fromkeys(str(u) for u in users))
    if not users:
        raise ConfigError("give at least one user id to recommend for")
    exp = _open(export_dir)
    index = exp.user_index(users)
    if (index < 0).any():
        missing = [u for u, i in zip(users, index) if i < 0]
        raise ConfigError(f"user ids not known to the model: {', '.join(missing[:10])}"
                          f"{' ...' if len(missing) > 10 else ''} (ids are the dataset's original user ids)")
    return _known_users(exp, users, index, k, batch_size)


def _known_users(exp: loader.Exported, users: list[str], index: np.ndarray, k: int, batch_size: int) -> list[dict]:
    """:func:`recommend_users`'s dicts for known users (``index``: their user indices)."""
    if not len(index):
        return []
    if exp.rows_are_items:
        # Every item row is run once; each user is a column of the output.
        n_rows = exp.known.shape[0]
        scores = np.empty((len(index), n_rows), np.float32)
        for start, block in loader.row_scores(exp, np.arange(n_rows), batch_size):
            scores[:, start:start + len(block)] = block[:, index].T
        seen = exp.known[:, index].T.tocoo()
        blocks = [(0, scores, seen)]
    else:
        def blocks_of():
            for start, block in loader.row_scores(exp, index, batch_size):
                yield start, block, exp.known[index[start:start + len(block)]].tocoo()
        blocks = blocks_of()
    # A rating model's prediction for an item without training ratings is untrained noise: never recommend one.
    cold = exp.counts()[1] == 0 if exp.meta.get("task") == "rating" else np.zeros(len(exp.item_ids), bool)
    out = []
    for start, scores, seen in blocks:
        scores = scores.copy()
        scores[seen.row, seen.col] = -np.inf
        scores[:, cold] = -np.inf
        cols, values = _top_k(scores, k)
        ranks = np.broadcast_to(np.arange(1, cols.shape[1] + 1), cols.shape)
        rows = np.broadcast_to(np.arange(cols.shape[0])[:, None], cols.shape)
        keep = np.isfinite(values)
        item_ids = exp.item_ids[cols[keep]]
        out += [{"user": users[start + r], "rank": int(rank), "item": item.item() if hasattr(item, "item") else item,
                 "title": exp.titles.get(str(item)), "score": float(v)}
                for r, rank, item, v in zip(rows[keep], ranks[keep], item_ids, values[keep])]
    return out


def write_recommendations(recs: list[dict], fmt: str = "text", output: Optional[str | Path] = None) -> None:
    """Writes recommendations as text (one block per user) or CSV.

    Args:
      recs: dicts of :func:`recommend_users` (with ``user`` and ``rank``) or of
        :func:`recommend` (without them).
      fmt: ``text`` or ``csv`` (columns ``user,rank,item,title,score``; no
        ``user`` column for an item-list recommendation).
      output: a file (written atomically: a failure leaves no half file); None writes to stdout.

    Raises:
      ConfigError: an unknown format, or an ``output`` that cannot be written.
    """
    if fmt not in ("text", "csv"):
        raise ConfigError(f"--format {fmt!r}: use text or csv")
    output = check_output(output)
    frame = pd.DataFrame(recs, columns=["user", "rank", "item", "title", "score"])
    frame["title"] = frame["title"].fillna("")
    if "rank" not in (recs[0] if recs else {}):
        frame["rank"] = np.arange(1, len(frame) + 1)
        frame = frame.drop(columns="user")
    if fmt == "csv":
        to_csv = lambda f: frame.to_csv(f, index=False, float_format="%.6g", lineterminator="\n")
        if output is None:
            to_csv(sys.stdout)
        else:
            write_output(output, to_csv)
        return
    lines = []
    for user, group in frame.groupby("user", sort=False) if "user" in frame else [(None, frame)]:
        if user is not None:
            lines.append(f"user {user}:")
        lines += [f"{r.rank:3d}. {r.item}  {r.title}  ({r.score:.3f})" for r in group.itertuples()]
    text = "\n".join(lines) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(output, lambda f: f.write(text))


def read_user_ids(path: str | Path) -> list[str]:
    """User ids from a file: one a line, or the user column of a CSV/TSV with a header.

    Args:
      path: the file.

    Returns:
      The ids as text, in file order.

    Raises:
      DatasetError: missing or empty file, or an empty id (``file:line``).
    """
    from data.custom import ALIASES, column_key

    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path} is a folder: give a file of user ids, one a line")
    if not path.is_file():
        raise DatasetError(f"no such file {path}: give a file of user ids, one a line")
    lines = pd.Series(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), dtype=str)
    lines = lines[lines.str.strip() != ""]
    fields = lines.str.split(r",|\t|;|\||::", regex=True)
    header = fields.iloc[0] if len(fields) else []
    column = next((i for i, name in enumerate(header) if column_key(name) in ALIASES["user"]), None)
    ids = fields.iloc[1:].str[column] if column is not None else fields.str[0]
    ids = ids.str.strip()
    if not len(ids):
        raise DatasetError(f"{path}: no user ids; write one id a line")
    empty = (ids.isna() | (ids == "")).to_numpy()
    if empty.any():
        line = int(ids.index[np.argmax(empty)]) + 1
        raise DatasetError(f"{path}:{line}: no user id on this line; write one id a line")
    return ids.tolist()
