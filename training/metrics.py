"""Ranking and rating metrics as batched TensorFlow ops that run on the device.

Every metric is returned as a *stat*: a pair ``(sum, count)`` of float32
scalars. Stats of batches (and of Horovod workers) are added up first and
divided once at the end by :func:`finalize`, so a split's metric does not
depend on how it was batched (a mean of per-batch means would).

Conventions shared by all metrics:

* ``scores`` / ``pred`` are dense ``[b, I]``; any float dtype is accepted and
  cast to float32 first, so bf16/fp16 model outputs give float32 metrics.
* ``targets`` and ``seen`` are ``tf.SparseTensor`` ``[b, I]``; an entry counts
  when its value is non-zero (duplicate indices count once for the ranking
  metrics).
* Higher score = better. Ties in the ranking are broken by item index (the
  lower index ranks first), which is what ``tf.math.top_k`` does, so
  Recall/NDCG and MRR see the same ranking.
* Users with no held-out item are left out of the count (not scored 0).

Shape mismatches between arguments are programming errors and fail an
assertion; there is nothing here a user can get wrong.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf

Stat = Tuple[tf.Tensor, tf.Tensor]
_Int = Union[int, tf.Tensor]


def _check_shape(dense: tf.Tensor, sparse: tf.SparseTensor, what: str) -> None:
    """Asserts that ``sparse`` has the dense shape of ``dense`` ([b, I])."""
    assert dense.shape.rank == 2, f"expected a [b, I] tensor, got shape {dense.shape}"
    assert dense.shape.is_compatible_with(sparse.shape), (
        f"{what} has shape {sparse.shape}, scores have {dense.shape}")
    tf.debugging.assert_equal(
        tf.shape(dense, out_type=tf.int64), sparse.dense_shape,
        message=f"{what} and scores differ in shape")


def _as_float32(scores) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(scores), tf.float32)


def _indicator(sparse: tf.SparseTensor, like: tf.Tensor) -> tf.Tensor:
    """float32 [b, I] with 1 at the non-zero entries of ``sparse``.

    A max-scatter (not a sum) so duplicate indices count once and the
    indices need not be in canonical order.
    """
    nonzero = tf.cast(tf.not_equal(sparse.values, 0), tf.float32)
    return tf.tensor_scatter_nd_max(tf.zeros_like(like, tf.float32), sparse.indices, nonzero)


def mask_seen(scores: tf.Tensor, seen: tf.SparseTensor) -> tf.Tensor:
    """Puts -inf at the items a user has already seen, so they rank last.

    Args:
      scores: [b, I] any float dtype; the dtype is kept.
      seen: SparseTensor [b, I], the fold-in / training items of each row.

    Returns:
      [b, I] ``scores`` with -inf wherever ``seen`` has a non-zero entry.
    """
    scores = tf.convert_to_tensor(scores)
    _check_shape(scores, seen, "seen")
    # One scatter into a copy of the scores instead of a dense [b, I] indicator and a select: min with -inf at
    # the non-zero entries, with +inf (no change) at explicit zeros; duplicates are harmless.
    inf = tf.constant(math.inf, scores.dtype)
    return tf.tensor_scatter_nd_min(scores, seen.indices, tf.where(tf.not_equal(seen.values, 0), -inf, inf))


def _masked(scores, targets: tf.SparseTensor, seen: Optional[tf.SparseTensor]) -> tf.Tensor:
    """float32 scores [b, I] with the ``seen`` items at -inf."""
    scores = _as_float32(scores)
    _check_shape(scores, targets, "targets")
    return scores if seen is None else mask_seen(scores, seen)


class _Relevant:
    """The held-out items of a batch as sorted keys ``row * I + item``, without a dense [b, I] indicator.

    Args:
      targets: SparseTensor [b, I]; entries with value 0 do not count and
        duplicates count once.
    """

    def __init__(self, targets: tf.SparseTensor):
        self.n_items = targets.dense_shape[1]
        nonzero = tf.not_equal(targets.values, 0)
        indices = tf.boolean_mask(targets.indices, nonzero)
        keys, _ = tf.unique(tf.sort(indices[:, 0] * self.n_items + indices[:, 1]))  # still sorted
        # float32 [b]: distinct held-out items per row.
        self.count = tf.math.unsorted_segment_sum(tf.ones_like(keys, tf.float32), keys // self.n_items,
                                                  targets.dense_shape[0])
        # A sentinel above every key keeps the lookup in range when there are none.
        self.keys = tf.concat([keys, [tf.int64.max]], axis=0)

    def hits(self, items: tf.Tensor) -> tf.Tensor:
        """float32 [b, k]: 1 where ``items`` (int [b, k], a row's item ids) is held out in that row."""
        items = tf.cast(items, tf.int64)
        rows = tf.range(tf.shape(items, out_type=tf.int64)[0])[:, None]
        query = rows * self.n_items + items
        at = tf.searchsorted(self.keys[None, :], tf.reshape(query, [1, -1]), side="left")
        found = tf.reshape(tf.gather(self.keys, at[0]), tf.shape(query))
        return tf.cast(tf.equal(found, query), tf.float32)


def _clip_k(k: int, scores: tf.Tensor) -> _Int:
    """K clipped to the number of items; a Python int when I is static."""
    assert int(k) > 0, f"K must be positive, got {k}"
    n_items = scores.shape[-1]
    if n_items is None:
        return tf.minimum(tf.constant(int(k)), tf.shape(scores)[-1])
    return min(int(k), int(n_items))


def _top_hits(scores: tf.Tensor, relevant: _Relevant, k: _Int) -> tf.Tensor:
    """float32 [b, k]: relevance of each user's top-k items, best first."""
    _, top = tf.math.top_k(scores, k=k, sorted=True)
    return relevant.hits(top)


def _discounts(k: _Int) -> tf.Tensor:
    """float32 [k]: 1 / log2(r + 1) for ranks r = 1..k."""
    ranks = tf.range(1, k + 1, dtype=tf.float32)
    return math.log(2.0) / tf.math.log(ranks + 1.0)


def _recall(hits: tf.Tensor, n_rel: tf.Tensor, k: _Int) -> tf.Tensor:
    """[b] hits in the top k / min(k, n_rel) (Liang et al. 2018); 0 where n_rel = 0."""
    found = tf.reduce_sum(hits[:, :k], axis=1)
    return found / tf.maximum(tf.minimum(tf.cast(k, tf.float32), n_rel), 1.0)


def _ndcg(hits: tf.Tensor, n_rel: tf.Tensor, k: _Int) -> tf.Tensor:
    """[b] DCG@k / IDCG@k with binary relevance; 0 where n_rel = 0."""
    disc = _discounts(k)
    dcg = tf.reduce_sum(hits[:, :k] * disc, axis=1)
    # The ideal ranking puts all min(k, n_rel) relevant items first.
    n_ideal = tf.minimum(tf.cast(k, tf.int32), tf.cast(n_rel, tf.int32))
    idcg = tf.gather(tf.cumsum(disc), tf.maximum(n_ideal - 1, 0))
    return dcg / idcg


def _precision(hits: tf.Tensor, n_rel: tf.Tensor, k: _Int) -> tf.Tensor:
    """[b] hits in the top k / k."""
    return tf.reduce_sum(hits[:, :k], axis=1) / tf.cast(k, tf.float32)


def _hit(hits: tf.Tensor, n_rel: tf.Tensor, k: _Int) -> tf.Tensor:
    """[b] 1 where the top k hold at least one held-out item, else 0."""
    return tf.cast(tf.reduce_sum(hits[:, :k], axis=1) > 0, tf.float32)


# The ranking metrics by name (``--metrics ndcg@100,recall@20,precision@10,hit@10``).
RANKING = {"recall": _recall, "ndcg": _ndcg, "precision": _precision, "hit": _hit}
DEFAULT_RANKING = ("recall@20", "recall@50", "ndcg@100")


def parse_ranking(names: Sequence[str], main: Optional[str] = None) -> tuple[str, ...]:
    """Checked ranking metric names (``name@K``, name one of :data:`RANKING`), with ``main`` added if missing.

    Raises:
      ConfigError: an unknown name or a K that is not a whole number >= 1.
    """
    from data.errors import ConfigError

    out = []
    for raw in names:
        name = str(raw).strip().lower()
        kind, _, k = name.partition("@")
        if kind not in RANKING or not k.isdigit() or int(k) < 1:
            raise ConfigError(f"--metrics: {raw!r} is not a ranking metric; use NAME@K with NAME one of "
                              f"{', '.join(RANKING)} and K >= 1, e.g. ndcg@100,recall@20,precision@10,hit@10")
        out.append(f"{kind}@{int(k)}")
    if main is not None and main not in out:
        out.append(main)  # the best checkpoint is chosen on it
    return tuple(dict.fromkeys(out))


def _per_user(values: tf.Tensor, n_rel: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    valid = n_rel > 0
    return tf.where(valid, values, 0.0), valid


def _stat(per_user: tf.Tensor, valid: tf.Tensor) -> Stat:
    return tf.reduce_sum(per_user), tf.reduce_sum(tf.cast(valid, tf.float32))


def _one_k(scores, targets, k, seen, metric) -> Tuple[tf.Tensor, tf.Tensor]:
    scores, relevant = _masked(scores, targets, seen), _Relevant(targets)
    k = _clip_k(k, scores)
    return _per_user(metric(_top_hits(scores, relevant, k), relevant.count, k), relevant.count)


def recall_at_k(scores: tf.Tensor, targets: tf.SparseTensor, k: int,
                seen: Optional[tf.SparseTensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Recall@K per user: hits in the top K / min(K, number of held-out items).

    Args:
      scores: [b, I] float (any precision).
      targets: SparseTensor [b, I], the held-out items.
      k: cut-off; clipped to I.
      seen: optional SparseTensor [b, I] of items to exclude from the ranking.

    Returns:
      ``(per_user float32 [b], valid bool [b])``; ``valid`` is False (and the
      value 0) for users with no held-out item.
    """
    return _one_k(scores, targets, k, seen, _recall)


def ndcg_at_k(scores: tf.Tensor, targets: tf.SparseTensor, k: int,
              seen: Optional[tf.SparseTensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """NDCG@K per user with binary relevance.

    DCG = sum over hits at ranks r = 1..K of 1 / log2(r + 1); IDCG is the same
    sum over the first min(K, number of held-out items) ranks.

    Args:
      scores: [b, I] float (any precision).
      targets: SparseTensor [b, I], the held-out items.
      k: cut-off; clipped to I.
      seen: optional SparseTensor [b, I] of items to exclude from the ranking.

    Returns:
      ``(per_user float32 [b], valid bool [b])`` as :func:`recall_at_k`.
    """
    return _one_k(scores, targets, k, seen, _ndcg)


def topk_metrics(scores: tf.Tensor, targets: tf.SparseTensor, *,
                 seen: Optional[tf.SparseTensor] = None, names: Sequence[str] = DEFAULT_RANKING) -> dict:
    """Ranking metrics at several cut-offs from a single ``top_k``.

    Args:
      scores: [b, I] float (any precision).
      targets: SparseTensor [b, I], the held-out items.
      seen: optional SparseTensor [b, I] (fold-in items) ranked last.
      names: ``name@K`` of :data:`RANKING` (recall, ndcg, precision, hit);
        each K is clipped to I.

    Returns:
      ``{"recall@20": (sum, count), ..., "ndcg@100": ...}``: float32 scalars;
      ``count`` is the number of users with a held-out item.
    """
    parsed = [(n, n.split("@")[0], int(n.split("@")[1])) for n in names]
    assert parsed, "topk_metrics needs at least one metric"
    scores, relevant = _masked(scores, targets, seen), _Relevant(targets)
    n_rel = relevant.count
    hits = _top_hits(scores, relevant, _clip_k(max(k for _, _, k in parsed), scores))
    return {name: _stat(*_per_user(RANKING[kind](hits, n_rel, _clip_k(k, scores)), n_rel))
            for name, kind, k in parsed}


def squared_error(pred: tf.Tensor, targets: tf.SparseTensor) -> Stat:
    """Masked squared error over the targets' non-zero entries.

    Args:
      pred: [b, I] predicted ratings, any float dtype.
      targets: SparseTensor [b, I] of true ratings; only its non-zero entries
        are scored.

    Returns:
      ``(sum of squared errors, number of scored entries)``, float32. The RMSE
      of a split is ``sqrt(total sum / total count)`` (see :func:`finalize`).
    """
    pred = _as_float32(pred)
    _check_shape(pred, targets, "targets")
    truth = tf.cast(targets.values, tf.float32)
    scored = tf.not_equal(truth, 0.0)
    err = tf.gather_nd(pred, targets.indices) - truth
    return (tf.reduce_sum(tf.where(scored, tf.square(err), 0.0)),
            tf.reduce_sum(tf.cast(scored, tf.float32)))


def mrr(scores: tf.Tensor, targets: tf.SparseTensor,
        seen: Optional[tf.SparseTensor] = None) -> Stat:
    """Mean reciprocal rank as in the multi-task MF homework (seed 003).

    Each user's items are ranked by score with the ``seen`` (training) items
    removed; a held-out item's rank is 1 + the number of unseen items ranked
    before it (ties: lower item index first, as ``top_k``). Other held-out
    items stay in the ranking. A user's value is the mean of 1 / rank over
    their held-out items; users with none are not counted. A held-out item
    that is also in ``seen`` ranks after every unseen item.

    Args:
      scores: [b, I] float (any precision).
      targets: SparseTensor [b, I], the held-out items.
      seen: optional SparseTensor [b, I], the items removed from the ranking.

    Returns:
      ``(sum over users of their mean reciprocal rank, number of users)``.
    """
    scores = _masked(scores, targets, seen)
    relevant = _indicator(targets, scores)
    # Seen items hold -inf, so they sort after every unseen item and the
    # position in the full descending order is the rank among unseen items.
    order = tf.argsort(scores, axis=1, direction="DESCENDING", stable=True)
    position = tf.argsort(order, axis=1, stable=True)  # inverse permutation
    reciprocal = 1.0 / (tf.cast(position, tf.float32) + 1.0)
    n_rel = tf.reduce_sum(relevant, axis=1)
    per_user = tf.reduce_sum(relevant * reciprocal, axis=1) / tf.maximum(n_rel, 1.0)
    return _stat(*_per_user(per_user, n_rel))


def add_stats(total: Optional[Mapping[str, Stat]], stats: Mapping[str, Stat]) -> dict:
    """Adds two dicts of stats key by key (a key missing on one side counts as 0).

    Args:
      total: the running totals, or None for the first batch.
      stats: this batch's stats.

    Returns:
      A new dict ``{name: (sum, count)}``.
    """
    out = dict(total or {})
    for name, (s, c) in stats.items():
        if name in out:
            out[name] = (out[name][0] + s, out[name][1] + c)
        else:
            out[name] = (s, c)
    return out


def finalize(stats: Mapping[str, Stat]) -> dict:
    """Turns summed stats into metric values.

    Args:
      stats: ``{name: (sum, count)}`` with tensors or numbers.

    Returns:
      ``{name: sum / count}`` as Python floats (NaN where count is 0); a key
      ``mse`` (or ending in ``/mse``) also yields ``rmse`` (``/rmse``).
    """
    out = {}
    for name, (total, count) in stats.items():
        total, count = float(total), float(count)
        out[name] = total / count if count > 0 else math.nan
        if name.rsplit("/", 1)[-1] == "mse":
            out[name[:-len("mse")] + "rmse"] = math.sqrt(out[name])
    return out
