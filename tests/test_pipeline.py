"""Tests of data/pipeline.py: batches against the CSR rows, orders, shards, XLA form, triples, BPR."""

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data.errors import ConfigError, DatasetError
from data.pipeline import bpr_triples, rating_triples, row_batches, steps_per_epoch, xla_row_batches


def tagged_matrix(n_rows=11, n_cols=9, seed=0):
    """float32 CSR whose column 0 holds row index + 1, so a row names itself; a few empty-ish rows."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_cols)) < 0.35, rng.integers(1, 6, (n_rows, n_cols)), 0)
    dense[:, 0] = np.arange(1, n_rows + 1)
    return sp.csr_matrix(dense.astype(np.float32))


def dense_rows(batches):
    """All batches of one SparseTensor per batch, densified and stacked [n, I]."""
    return np.concatenate([tf.sparse.to_dense(b).numpy() for b in batches], axis=0)


def row_ids(batches):
    return dense_rows(batches)[:, 0].astype(int) - 1


def test_batches_equal_csr_rows_and_stay_aligned():
    x = tagged_matrix()
    y = sp.csr_matrix(x.toarray() * 10)
    batches = list(row_batches((x, y), 4, prefetch=False))
    assert [b[0].dense_shape.numpy().tolist() for b in batches] == [[4, 9], [4, 9], [3, 9]]
    np.testing.assert_array_equal(dense_rows(b[0] for b in batches), x.toarray())
    np.testing.assert_array_equal(dense_rows(b[1] for b in batches), y.toarray())
    for b in batches:
        assert b[0].dtype == tf.float32
        idx = b[0].indices.numpy()
        # Canonical row-major order: (row, col) strictly increasing.
        assert np.all(np.diff(idx[:, 0] * 9 + idx[:, 1]) > 0)


def test_non_canonical_input_is_summed_and_sorted():
    # Row 0 lists column 2 twice (1 + 2 = 3) and its columns out of order.
    m = sp.csr_matrix((np.array([1, 5, 2], np.float32), np.array([2, 0, 2]), np.array([0, 3, 3])), shape=(2, 3))
    (b,) = list(row_batches(m, 2))
    assert b.indices.numpy().tolist() == [[0, 0], [0, 2]] and b.values.numpy().tolist() == [5, 3]


def test_shuffle_order_is_the_documented_permutation():
    x = tagged_matrix()
    for epoch in (0, 3):
        got = row_ids(row_batches(x, 4, shuffle=True, seed=7, epoch=epoch))
        np.testing.assert_array_equal(got, np.random.default_rng([7, epoch]).permutation(11))
    again = row_ids(row_batches(x, 4, shuffle=True, seed=7, epoch=3))
    np.testing.assert_array_equal(again, np.random.default_rng([7, 3]).permutation(11))
    epochs = [tuple(row_ids(row_batches(x, 4, shuffle=True, seed=7, epoch=e))) for e in range(4)]
    assert len(set(epochs)) == 4
    np.testing.assert_array_equal(dense_rows(row_batches(x, 5, shuffle=True, seed=2)),
                                  x.toarray()[np.random.default_rng([2, 0]).permutation(11)])


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_disjoint_equal_and_cover_all_but_a_few(shuffle):
    x = tagged_matrix(n_rows=23)
    n_shards = 4
    shards = [row_ids(row_batches(x, 2, shuffle=shuffle, seed=1, epoch=2, shard_index=r, num_shards=n_shards))
              for r in range(n_shards)]
    assert [len(s) for s in shards] == [23 // 4] * 4
    seen = np.concatenate(shards)
    assert len(set(seen)) == len(seen)  # disjoint
    assert 23 - len(seen) <= n_shards - 1
    if shuffle:  # the shards are consecutive blocks of the epoch's permutation
        np.testing.assert_array_equal(seen, np.random.default_rng([1, 2]).permutation(23)[:20])


def test_steps_per_epoch_matches_the_datasets():
    # 23 rows over 4 shards: 5 each; batches of 2 -> ceil(5 / 2) = 3, or 5 // 2 = 2 dropping the remainder.
    assert steps_per_epoch(23, 2, 4) == 3 and steps_per_epoch(23, 2, 4, drop_remainder=True) == 2
    assert steps_per_epoch(10, 4) == 3 and steps_per_epoch(10, 4, drop_remainder=True) == 2
    x = tagged_matrix(n_rows=23)
    for drop in (False, True):
        n = len(list(row_batches(x, 2, num_shards=4, shard_index=3, drop_remainder=drop)))
        assert n == steps_per_epoch(23, 2, 4, drop_remainder=drop)


def coo_to_dense(d, n_cols):
    """The slow obvious densification of one XLA dict."""
    out = np.zeros((int(d["n_rows"]), n_cols), np.float32)
    for r, c, v in zip(d["rows"].numpy(), d["cols"].numpy(), d["values"].numpy()):
        out[r, c] += v
    return out


def test_xla_form_equals_sparse_form():
    x = tagged_matrix(n_rows=13)
    y = sp.csr_matrix(x.toarray()[:, ::-1])
    kwargs = dict(shuffle=True, seed=3, epoch=1, shard_index=1, num_shards=2)
    sparse = list(row_batches((x, y), 4, **kwargs))
    xla = list(xla_row_batches((x, y), 4, **kwargs))
    assert len(sparse) == len(xla) == 2  # 13 // 2 = 6 rows per shard: batches of 4 and 2
    for s, d in zip(sparse, xla):
        for part in (0, 1):
            p, nnz = int(d[part]["rows"].shape[0]), int(s[part].values.shape[0])
            assert p >= nnz and p & (p - 1) == 0 and p < 2 * max(nnz, 1)  # next power of two
            assert d[part]["rows"].dtype == d[part]["cols"].dtype == d[part]["n_rows"].dtype == tf.int32
            # Pads are (row 0, col 0, value 0).
            assert not np.any(d[part]["rows"].numpy()[nnz:]) and not np.any(d[part]["values"].numpy()[nnz:])
            np.testing.assert_array_equal(coo_to_dense(d[part], 9), tf.sparse.to_dense(s[part]).numpy())
    drop = list(xla_row_batches(x, 4, drop_remainder=True))
    assert [int(d["n_rows"]) for d in drop] == [4, 4, 4]


def collect(dataset):
    return [np.concatenate([b[k].numpy() for b in dataset]) for k in range(len(dataset.element_spec))]


def coo_triples(m):
    coo = m.tocoo()
    return sorted(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()))


@pytest.mark.parametrize("shuffle", [False, True])
def test_rating_triples_cover_every_nonzero_once(shuffle):
    m = tagged_matrix(n_rows=17)
    users, items, ratings = collect(rating_triples(m, 8, shuffle=shuffle, seed=4, epoch=1))
    assert users.dtype == np.int32 and items.dtype == np.int32 and ratings.dtype == np.float32
    assert sorted(zip(users.tolist(), items.tolist(), ratings.tolist())) == coo_triples(m)
    keys = users.astype(np.int64) * 9 + items
    if shuffle:  # the epoch's permutation of the CSR-ordered non-zeros
        csr_keys = np.repeat(np.arange(17), np.diff(m.indptr)) * 9 + m.indices
        np.testing.assert_array_equal(keys, csr_keys[np.random.default_rng([4, 1]).permutation(m.nnz)])
    else:
        assert np.all(np.diff(keys) > 0)


def test_rating_triples_shards():
    m = tagged_matrix(n_rows=17)
    parts = [collect(rating_triples(m, 5, shuffle=True, seed=0, shard_index=r, num_shards=3)) for r in range(3)]
    keys = [set((u.astype(np.int64) * 9 + i).tolist()) for u, i, _ in parts]
    assert len({len(k) for k in keys}) == 1 and len(keys[0]) == m.nnz // 3
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert m.nnz - len(keys[0] | keys[1] | keys[2]) <= 2


def test_bpr_negatives_never_positives_on_a_dense_matrix():
    rng = np.random.default_rng(0)
    dense = rng.random((40, 30)) < 0.9  # ~27 of 30 items each: most uniform draws collide
    dense[np.arange(40), rng.integers(0, 30, 40)] = False  # nobody has everything
    m = sp.csr_matrix(dense.astype(np.float32) * rng.integers(1, 6, dense.shape))
    for shard in range(2):
        users, pos, neg, rating = collect(bpr_triples(m, 64, seed=1, epoch=0, shard_index=shard, num_shards=2))
        assert users.dtype == pos.dtype == neg.dtype == np.int32 and rating.dtype == np.float32
        assert len(users) == m.nnz // 2
        assert dense[users, pos].all() and not dense[users, neg].any()
        np.testing.assert_array_equal(rating, m.toarray()[users, pos])
    users, pos, _, _ = collect(bpr_triples(m, 64, seed=1, epoch=0))
    assert sorted(zip(users.tolist(), pos.tolist())) == [(u, i) for u, i, _ in coo_triples(m)]
    _, _, neg_a, _ = collect(bpr_triples(m, 64, seed=1, epoch=0))
    _, _, neg_b, _ = collect(bpr_triples(m, 64, seed=1, epoch=1))
    assert not np.array_equal(neg_a, neg_b)


def test_bpr_user_with_every_item_is_an_error():
    m = sp.csr_matrix(np.array([[1, 0, 1], [1, 1, 1]], np.float32))
    with pytest.raises(DatasetError, match="row 1 has all 3 columns, so none is left to sample"):
        bpr_triples(m, 2)


def test_empty_matrix_gives_no_batches():
    assert list(row_batches(sp.csr_matrix((0, 4), dtype=np.float32), 3)) == []


def test_errors():
    x = tagged_matrix()
    with pytest.raises(ConfigError, match=r"matrices with \[11, 3\] rows cannot be batched together"):
        row_batches((x, x[:3]), 2)
    with pytest.raises(ConfigError, match="shard_index=2 must be below num_shards=2"):
        row_batches(x, 2, shard_index=2, num_shards=2)
    with pytest.raises(ConfigError, match="batch_size=0 must be a whole number >= 1"):
        rating_triples(x, 0)
    with pytest.raises(ConfigError, match="11 rows cannot be shared by 12 shards"):
        xla_row_batches(x, 2, num_shards=12)
    with pytest.raises(ConfigError, match=f"{x.nnz} ratings cannot be shared by 99 shards"):
        bpr_triples(x, 2, num_shards=99)
    with pytest.raises(ConfigError, match="expected a scipy.sparse matrix, got ndarray"):
        row_batches(x.toarray(), 2)
