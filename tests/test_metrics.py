"""Tests of training/metrics.py against hand-computed values and slow NumPy references."""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf

from training import metrics


# ---------------------------------------------------------------- references
# Plain Python over users and items, written from the definitions.

def ref_ranking(scores, seen_row):
    """Items best first: unseen by (score desc, index asc), then the seen ones by index."""
    n = len(scores)
    unseen = sorted((j for j in range(n) if j not in seen_row), key=lambda j: (-scores[j], j))
    return unseen + sorted(seen_row)


def ref_user_sets(dense):
    return [set(np.flatnonzero(row).tolist()) for row in dense]


def ref_per_user(scores, targets, seen, value):
    """value(ranking, held-out set) for each user; None for users with no held-out item."""
    return [value(ref_ranking(s, z), t) if t else None
            for s, t, z in zip(scores, ref_user_sets(targets), ref_user_sets(seen))]


def ref_recall(scores, targets, seen, k):
    def value(ranking, t):
        kk = min(k, len(ranking))
        return len(set(ranking[:kk]) & t) / min(kk, len(t))
    return ref_per_user(scores, targets, seen, value)


def ref_ndcg(scores, targets, seen, k):
    def value(ranking, t):
        kk = min(k, len(ranking))
        dcg = sum(1.0 / math.log2(r + 1) for r, item in enumerate(ranking[:kk], start=1) if item in t)
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(kk, len(t)) + 1))
        return dcg / idcg
    return ref_per_user(scores, targets, seen, value)


def ref_precision(scores, targets, seen, k):
    def value(ranking, t):
        kk = min(k, len(ranking))
        return len(set(ranking[:kk]) & t) / kk
    return ref_per_user(scores, targets, seen, value)


def ref_hit(scores, targets, seen, k):
    def value(ranking, t):
        return float(bool(set(ranking[:min(k, len(ranking))]) & t))
    return ref_per_user(scores, targets, seen, value)


def ref_mrr(scores, targets, seen):
    def value(ranking, t):
        return np.mean([1.0 / (ranking.index(item) + 1) for item in t])
    return ref_per_user(scores, targets, seen, value)


def ref_stat(values):
    kept = [v for v in values if v is not None]
    return sum(kept), len(kept)


def ref_squared_error(pred, targets):
    total, count = 0.0, 0
    for u in range(targets.shape[0]):
        for i in range(targets.shape[1]):
            if targets[u, i] != 0:
                total += (pred[u, i] - targets[u, i]) ** 2
                count += 1
    return total, count


# ---------------------------------------------------------------- cases

def sparse(dense):
    return tf.sparse.from_dense(tf.constant(dense, tf.float32))


def random_case(seed, n_users=9, n_items=30):
    """Continuous scores (no ties), disjoint targets/seen, and users with no targets."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    draw = rng.random((n_users, n_items))
    seen = (draw < 0.3).astype(np.float32)
    targets = ((draw >= 0.3) & (draw < 0.3 + rng.uniform(0.05, 0.4, size=(n_users, 1)))).astype(np.float32)
    targets[0] = 0.0  # a user with no held-out item
    targets[1] = 0.0
    targets[1, 3] = 1.0  # exactly one held-out item
    return scores, targets, seen


def per_user_close(got, ref):
    values, valid = got
    assert values.dtype == tf.float32 and valid.dtype == tf.bool
    np.testing.assert_array_equal(valid.numpy(), [r is not None for r in ref])
    np.testing.assert_allclose(values.numpy(), [0.0 if r is None else r for r in ref], rtol=1e-5, atol=1e-6)


def stat_close(got, ref):
    np.testing.assert_allclose([float(got[0]), float(got[1])], ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- hand cases
# 5 items, scores order [3, 0, 2, 1, 4], held-out targets {1, 3}.
HAND_SCORES = np.array([[0.3, 0.1, 0.2, 0.9, 0.0]], np.float32)
HAND_TARGETS = np.array([[0, 1, 0, 1, 0]], np.float32)


def test_hand_recall_and_ndcg():
    stats = metrics.topk_metrics(HAND_SCORES, sparse(HAND_TARGETS),
                                 names=("recall@1", "recall@2", "recall@4", "ndcg@2", "ndcg@4"))
    values = metrics.finalize(stats)
    # recall@1: top [3] holds 1 of min(1, 2) = 1 -> 1.
    assert values["recall@1"] == pytest.approx(1.0)
    # recall@2: top [3, 0] holds 1 of min(2, 2) = 2 -> 1/2.
    assert values["recall@2"] == pytest.approx(0.5)
    # recall@4: top [3, 0, 2, 1] holds both -> 2/2.
    assert values["recall@4"] == pytest.approx(1.0)
    # ndcg@2: DCG = 1/log2(2) (hit at rank 1); IDCG = 1/log2(2) + 1/log2(3).
    assert values["ndcg@2"] == pytest.approx(1.0 / (1.0 + 1.0 / math.log2(3)), rel=1e-6)
    # ndcg@4: DCG = 1/log2(2) + 1/log2(5) (hits at ranks 1 and 4); IDCG as above.
    assert values["ndcg@4"] == pytest.approx((1.0 + 1.0 / math.log2(5)) / (1.0 + 1.0 / math.log2(3)), rel=1e-6)
    assert set(values) == {"recall@1", "recall@2", "recall@4", "ndcg@2", "ndcg@4"}


def test_hand_precision_and_hit_rate():
    stats = metrics.topk_metrics(HAND_SCORES, sparse(HAND_TARGETS),
                                 names=("precision@1", "precision@2", "precision@4", "hit@1", "hit@3"))
    values = metrics.finalize(stats)
    # Ranking [3, 0, 2, 1, 4], held out {1, 3}: precision@1 = 1/1, @2 = 1/2, @4 = 2/4; a hit at rank 1.
    assert values == pytest.approx({"precision@1": 1.0, "precision@2": 0.5, "precision@4": 0.5, "hit@1": 1.0,
                                    "hit@3": 1.0})
    # Seen item 3 moves to the end: [0, 2, 1, 4, 3]; the first hit is item 1 at rank 3.
    seen = sparse(np.array([[0, 0, 0, 1, 0]], np.float32))
    masked = metrics.finalize(metrics.topk_metrics(HAND_SCORES, sparse(HAND_TARGETS), seen=seen,
                                                   names=("hit@2", "hit@3", "precision@3")))
    assert masked == pytest.approx({"hit@2": 0.0, "hit@3": 1.0, "precision@3": 1 / 3})


@pytest.mark.parametrize("names,main,expected", [
    (["NDCG@100", " recall@20"], None, ("ndcg@100", "recall@20")),
    (["recall@20", "hit@10"], "ndcg@100", ("recall@20", "hit@10", "ndcg@100")),
    (["precision@05", "precision@5"], None, ("precision@5",)),
])
def test_parse_ranking(names, main, expected):
    assert metrics.parse_ranking(names, main) == expected


@pytest.mark.parametrize("bad", ["ndcg", "ndcg@0", "map@10", "recall@x"])
def test_parse_ranking_refuses(bad):
    from data.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a ranking metric"):
        metrics.parse_ranking([bad])


def test_hand_seen_masking_moves_the_ranking():
    seen = np.array([[1, 0, 0, 0, 0]], np.float32)  # item 0 removed: order [3, 2, 1, 4]
    # recall@2: top [3, 2] -> 1/2 ; recall@3: top [3, 2, 1] -> 2/2.
    values, _ = metrics.recall_at_k(HAND_SCORES, sparse(HAND_TARGETS), 3, seen=sparse(seen))
    assert values.numpy() == pytest.approx([1.0])
    # ndcg@3: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3).
    values, _ = metrics.ndcg_at_k(HAND_SCORES, sparse(HAND_TARGETS), 3, seen=sparse(seen))
    assert values.numpy() == pytest.approx([1.5 / (1.0 + 1.0 / math.log2(3))], rel=1e-6)
    masked = metrics.mask_seen(HAND_SCORES, sparse(seen)).numpy()
    assert masked[0, 0] == -np.inf and np.array_equal(masked[0, 1:], HAND_SCORES[0, 1:])


def test_hand_mrr():
    # Target 3 ranks 1st, target 1 ranks 4th: (1/1 + 1/4) / 2 = 0.625.
    stat_close(metrics.mrr(HAND_SCORES, sparse(HAND_TARGETS)), (0.625, 1))
    # Without training item 0 the order is [3, 2, 1, 4]: (1/1 + 1/3) / 2 = 2/3.
    seen = np.array([[1, 0, 0, 0, 0]], np.float32)
    stat_close(metrics.mrr(HAND_SCORES, sparse(HAND_TARGETS), seen=sparse(seen)), (2.0 / 3.0, 1))


def test_mrr_ties_are_broken_by_item_index():
    # All scores equal: item 2 comes after items 0 and 1 -> rank 3 -> 1/3.
    stat_close(metrics.mrr(np.ones((1, 4), np.float32), sparse([[0, 0, 1, 0]])), (1.0 / 3.0, 1))
    # A held-out item that is also seen ranks after all 3 unseen items -> 1/4.
    stat_close(metrics.mrr(np.array([[5.0, 1, 2, 3]], np.float32), sparse([[1, 0, 0, 0]]),
                           seen=sparse([[1, 0, 0, 0]])), (0.25, 1))


def test_k_larger_than_items_is_clipped():
    # 3 items, targets {0, 2}, order [2, 1, 0]: recall@50 = 2 / min(3, 2) = 1;
    # ndcg@100 = (1 + 1/log2(4)) / (1 + 1/log2(3)).
    scores = np.array([[0.1, 0.5, 0.9]], np.float32)
    values = metrics.finalize(metrics.topk_metrics(scores, sparse([[1, 0, 1]])))
    assert values["recall@20"] == pytest.approx(1.0)
    assert values["recall@50"] == pytest.approx(1.0)
    assert values["ndcg@100"] == pytest.approx(1.5 / (1.0 + 1.0 / math.log2(3)), rel=1e-6)


def test_users_without_targets_are_not_counted():
    scores = np.array([[0.1, 0.5, 0.9], [0.3, 0.2, 0.1]], np.float32)
    targets = sparse([[0, 0, 0], [1, 0, 0]])  # user 0 has none; user 1's target ranks 1st
    stats = metrics.topk_metrics(scores, targets, names=("recall@1", "ndcg@1"))
    stat_close(stats["recall@1"], (1.0, 1))
    stat_close(stats["ndcg@1"], (1.0, 1))
    stat_close(metrics.mrr(scores, targets), (1.0, 1))
    values, valid = metrics.recall_at_k(scores, targets, 1)
    assert valid.numpy().tolist() == [False, True] and values.numpy().tolist() == [0.0, 1.0]


def test_zero_valued_and_duplicate_target_entries():
    # Entry (0, 1) holds an explicit 0 and (0, 2) appears twice, out of order:
    # the relevant set is {2} only, ranked 1st -> recall@1 = 1, mrr = 1.
    targets = tf.SparseTensor([[0, 2], [0, 1], [0, 2]], [1.0, 0.0, 1.0], [1, 3])
    scores = np.array([[0.1, 0.5, 0.9]], np.float32)
    stat_close(metrics.topk_metrics(scores, targets, names=("recall@1",))["recall@1"], (1.0, 1))
    stat_close(metrics.mrr(scores, targets), (1.0, 1))
    stat_close(metrics.squared_error(scores, targets), ((0.9 - 1.0) ** 2 * 2, 2))
    # The same for seen items: (0, 1) is an explicit 0 and stays ranked, (0, 0) appears twice and goes last.
    seen = tf.SparseTensor([[0, 1], [0, 0], [0, 0]], [0.0, 1.0, 1.0], [1, 3])
    assert metrics.mask_seen(scores, seen).numpy().tolist() == [[-np.inf, np.float32(0.5), np.float32(0.9)]]


def test_squared_error_hand_and_finalize():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    targets = tf.SparseTensor([[0, 1], [1, 0]], [3.0, 1.0], [2, 2])
    # (2 - 3)^2 + (3 - 1)^2 = 5 over 2 ratings.
    stat = metrics.squared_error(pred, targets)
    stat_close(stat, (5.0, 2))
    values = metrics.finalize({"mse": stat, "val/mse": stat})
    assert values == pytest.approx({"mse": 2.5, "rmse": math.sqrt(2.5), "val/mse": 2.5, "val/rmse": math.sqrt(2.5)})


def test_finalize_empty_count_is_nan():
    values = metrics.finalize({"recall@20": (0.0, 0.0), "mse": (0.0, 0.0)})
    assert math.isnan(values["recall@20"]) and math.isnan(values["rmse"])


# ---------------------------------------------------------------- vs references

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("use_seen", [False, True])
def test_topk_metrics_match_reference(seed, use_seen):
    scores, targets, seen = random_case(seed)
    ref_seen = seen if use_seen else np.zeros_like(seen)
    seen_st = sparse(seen) if use_seen else None
    stats = metrics.topk_metrics(scores, sparse(targets), seen=seen_st,
                                 names=("recall@1", "recall@5", "recall@20", "ndcg@3", "ndcg@100", "precision@1",
                                        "precision@7", "precision@50", "hit@1", "hit@4", "hit@50"))
    for k in (1, 7, 50):  # 50 > 30 items: clipped
        stat_close(stats[f"precision@{k}"], ref_stat(ref_precision(scores, targets, ref_seen, k)))
    for k in (1, 4, 50):
        stat_close(stats[f"hit@{k}"], ref_stat(ref_hit(scores, targets, ref_seen, k)))
    for k in (1, 5, 20):
        stat_close(stats[f"recall@{k}"], ref_stat(ref_recall(scores, targets, ref_seen, k)))
        per_user_close(metrics.recall_at_k(scores, sparse(targets), k, seen=seen_st),
                       ref_recall(scores, targets, ref_seen, k))
    for k in (3, 100):  # 100 > 30 items: clipped
        stat_close(stats[f"ndcg@{k}"], ref_stat(ref_ndcg(scores, targets, ref_seen, k)))
        per_user_close(metrics.ndcg_at_k(scores, sparse(targets), k, seen=seen_st),
                       ref_ndcg(scores, targets, ref_seen, k))
    stat_close(metrics.mrr(scores, sparse(targets), seen=seen_st), ref_stat(ref_mrr(scores, targets, ref_seen)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_squared_error_matches_reference(seed):
    rng = np.random.default_rng(seed)
    pred = rng.normal(3.0, 1.0, size=(6, 11)).astype(np.float32)
    targets = np.where(rng.random((6, 11)) < 0.3, rng.integers(1, 6, size=(6, 11)), 0).astype(np.float32)
    stat_close(metrics.squared_error(pred, sparse(targets)), ref_squared_error(pred, targets))


def test_batched_stats_add_up_to_the_whole():
    scores, targets, seen = random_case(7, n_users=10)
    whole = metrics.topk_metrics(scores, sparse(targets), seen=sparse(seen))
    whole["mrr"] = metrics.mrr(scores, sparse(targets), seen=sparse(seen))
    total = None
    for rows in (slice(0, 4), slice(4, 10)):
        batch = metrics.topk_metrics(scores[rows], sparse(targets[rows]), seen=sparse(seen[rows]))
        batch["mrr"] = metrics.mrr(scores[rows], sparse(targets[rows]), seen=sparse(seen[rows]))
        total = metrics.add_stats(total, batch)
    assert metrics.finalize(total) == pytest.approx(metrics.finalize(whole), rel=1e-6)


def test_bf16_scores_give_float32_results():
    scores, targets, seen = random_case(4)
    low = tf.cast(scores, tf.bfloat16)
    rounded = tf.cast(low, tf.float32).numpy()
    stats = metrics.topk_metrics(low, sparse(targets), seen=sparse(seen))
    stats["mrr"] = metrics.mrr(low, sparse(targets), seen=sparse(seen))
    stats["mse"] = metrics.squared_error(tf.cast(scores, tf.float16), sparse(targets))
    for total, count in stats.values():
        assert total.dtype == tf.float32 and count.dtype == tf.float32
    assert metrics.recall_at_k(low, sparse(targets), 5)[0].dtype == tf.float32
    # bf16 rounding creates ties; the reference breaks them by index as top_k does.
    stat_close(stats["ndcg@100"], ref_stat(ref_ndcg(rounded, targets, seen, 100)))
    stat_close(stats["mrr"], ref_stat(ref_mrr(rounded, targets, seen)))


def test_inside_tf_function_with_unknown_item_count():
    scores, targets, seen = random_case(5, n_items=12)
    spec = tf.TensorSpec([None, None], tf.float32)
    sparse_spec = tf.SparseTensorSpec([None, None], tf.float32)

    @tf.function(input_signature=[spec, sparse_spec, sparse_spec])
    def evaluate(s, t, z):
        out = metrics.topk_metrics(s, t, names=("recall@5", "recall@20", "ndcg@100"), seen=z)
        out["mrr"] = metrics.mrr(s, t, seen=z)
        return out

    got = metrics.finalize(evaluate(tf.constant(scores), sparse(targets), sparse(seen)))
    want = metrics.finalize({
        "recall@5": ref_stat(ref_recall(scores, targets, seen, 5)),
        "recall@20": ref_stat(ref_recall(scores, targets, seen, 20)),
        "ndcg@100": ref_stat(ref_ndcg(scores, targets, seen, 100)),
        "mrr": ref_stat(ref_mrr(scores, targets, seen))})
    assert got == pytest.approx(want, rel=1e-5)


def test_shape_mismatch_is_an_assertion():
    with pytest.raises(AssertionError, match="targets has shape"):
        metrics.topk_metrics(np.zeros((2, 5), np.float32), sparse(np.zeros((2, 4))))
