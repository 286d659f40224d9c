"""tf.data pipelines over CSR matrices: sparse row batches, their XLA form, rating and BPR triples.

:data:`TRAIN_INPUTS` says which of them feeds each kind of model in training.

Each call puts this epoch's rows (or non-zeros) in order once in NumPy and
holds the arrays as constant tensors; tf.data then walks (start, stop) bounds
and a graph function slices each batch out (for rows: ``indptr[start]`` to
``indptr[stop]`` of the reordered CSR), so no Python runs per batch and no
per-element tf.data work is done.

Order and sharding are plain NumPy, decided when the dataset is made:

* The order of an epoch is ``np.random.default_rng([seed, epoch]).permutation(n)``
  when shuffling (rows for row batches, non-zeros for triples): a resumed run
  rebuilds epoch ``e`` exactly without saved RNG state.
* Shard ``r`` of ``N`` takes the positions ``[r * k, (r + 1) * k)`` of that
  order, ``k = n // N``: the last ``n % N`` (at most ``N - 1``) are dropped,
  so every rank runs the same number of steps. With shuffling a different
  few are dropped each epoch; for exact evaluation use one shard.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, Union

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from data.errors import ConfigError
from data.protocols import check_whole_number
from data.synthetic import sample_unobserved

Matrices = Union[sp.spmatrix, sp.sparray, Sequence[Union[sp.spmatrix, sp.sparray]]]


def _check(batch_size: int, seed: int, epoch: int, shard_index: int, num_shards: int) -> None:
    check_whole_number("batch_size", batch_size, 1)
    check_whole_number("seed", seed, 0)
    check_whole_number("epoch", epoch, 0)
    check_whole_number("num_shards", num_shards, 1)
    check_whole_number("shard_index", shard_index, 0)
    if shard_index >= num_shards:
        raise ConfigError(f"shard_index={shard_index} must be below num_shards={num_shards}")


def _canonical(m) -> sp.csr_matrix:
    """float32 CSR with sorted, summed indices (copied only if needed)."""
    if not sp.issparse(m):
        raise ConfigError(f"expected a scipy.sparse matrix, got {type(m).__name__}")
    m = sp.csr_matrix(m, dtype=np.float32)
    if not m.has_canonical_format:
        m = m.copy()
        m.sum_duplicates()
    return m


def _shard_order(n: int, shuffle: bool, seed: int, epoch: int, shard_index: int, num_shards: int,
                 unit: str = "rows") -> np.ndarray:
    """int64 [n // num_shards] the positions (of ``n`` ``unit``) this shard visits this epoch, in order."""
    if 0 < n < num_shards:
        raise ConfigError(f"{n} {unit} cannot be shared by {num_shards} shards: each needs at least one")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n, dtype=np.int64)
    per_shard = n // num_shards
    return order[shard_index * per_shard:(shard_index + 1) * per_shard]


def _batch_bounds(n: int, batch_size: int, drop_remainder: bool) -> tf.data.Dataset:
    """(start, stop) int64 scalars of consecutive batches of ``n`` positions.

    tf.data handles only these, never the ``n`` single elements: batching
    millions of scalars one by one took tens of seconds an epoch.
    """
    n_batches = n // batch_size if drop_remainder else -(-n // batch_size)
    starts = np.arange(n_batches, dtype=np.int64) * batch_size
    return tf.data.Dataset.from_tensor_slices((starts, np.minimum(starts + batch_size, n)))


def _finish(ds: tf.data.Dataset, fn, prefetch: bool = True) -> tf.data.Dataset:
    """``ds.map(fn)`` in order, in parallel, prefetched."""
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def steps_per_epoch(n_rows: int, batch_size: int, num_shards: int = 1, drop_remainder: bool = False) -> int:
    """Batches one shard yields per epoch over ``n_rows`` rows (or triples).

    Args:
      n_rows: rows (row batches) or non-zeros (triples) in the matrix.
      batch_size: rows per batch.
      num_shards: workers sharing the epoch; each gets ``n_rows // num_shards``.
      drop_remainder: whether the last partial batch is dropped.
    """
    _check(batch_size, 0, 0, 0, num_shards)
    per_shard = n_rows // num_shards
    return per_shard // batch_size if drop_remainder else -(-per_shard // batch_size)


def _prepare(matrices: Matrices) -> tuple[tuple[sp.csr_matrix, ...], bool]:
    """The canonical CSR matrices and whether a single one was given."""
    single = sp.issparse(matrices)
    ms = tuple(_canonical(m) for m in ((matrices,) if single else matrices))
    if not ms:
        raise ConfigError("row_batches needs at least one matrix")
    if len({m.shape[0] for m in ms}) > 1:
        raise ConfigError(f"matrices with {[m.shape[0] for m in ms]} rows cannot be batched together: "
                          f"give matrices whose rows are the same users")
    return ms, single


def _row_dataset(matrices: Matrices, batch_size: int, shuffle: bool, seed: int, epoch: int, shard_index: int,
                 num_shards: int, drop_remainder: bool, prefetch: bool, to_element) -> tf.data.Dataset:
    """Row batches, each mapped through ``to_element(b, batch_rows, cols, values, n_cols)``.

    The shard's rows are first put in epoch order in NumPy (one O(nnz) CSR
    row gather), so a batch is a contiguous slice of the CSR arrays: two
    ``indptr`` reads and slices, no per-entry gather in the graph.
    """
    _check(batch_size, seed, epoch, shard_index, num_shards)
    ms, single = _prepare(matrices)
    order = _shard_order(ms[0].shape[0], shuffle, seed, epoch, shard_index, num_shards)
    tensors = []
    for m in ms:
        if len(order) != m.shape[0] or shuffle:
            m = m[order]
        entry_row = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        tensors.append((tf.constant(m.indptr, tf.int64), tf.constant(entry_row), tf.constant(m.indices, tf.int32),
                        tf.constant(m.data, tf.float32), m.shape[1]))

    def batch(start, stop):
        elements = []
        for indptr, entry_row, indices, data, n_cols in tensors:
            lo, hi = indptr[start], indptr[stop]
            # Rows in batch order, columns ascending within a row (canonical CSR).
            elements.append(to_element(stop - start, entry_row[lo:hi] - start, indices[lo:hi], data[lo:hi],
                                       n_cols))
        return elements[0] if single else tuple(elements)

    return _finish(_batch_bounds(len(order), batch_size, drop_remainder), batch, prefetch)


def row_batches(matrices: Matrices, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                shard_index: int = 0, num_shards: int = 1, drop_remainder: bool = False,
                prefetch: bool = True) -> tf.data.Dataset:
    """Batches of CSR rows as ``tf.SparseTensor``.

    Args:
      matrices: one CSR [n, I] or a tuple of CSRs with the same n rows (e.g.
        fold-in input and targets); their rows stay aligned.
      batch_size: rows per batch.
      shuffle: visit rows in the epoch's permutation (see the module doc).
      seed, epoch: decide the permutation.
      shard_index, num_shards: this worker's disjoint equal share of the rows.
      drop_remainder: drop the last partial batch.
      prefetch: prefetch batches.

    Returns:
      A dataset of float32 SparseTensor [b, I] (a tuple of them for a tuple
      input), indices in row-major order, row ``j`` being the ``j``-th row id
      of the batch.
    """
    def to_sparse(b, batch_rows, cols, values, n_cols):
        indices = tf.stack([batch_rows, tf.cast(cols, tf.int64)], axis=1)
        return tf.SparseTensor(indices, values, tf.stack([b, tf.constant(n_cols, tf.int64)]))

    return _row_dataset(matrices, batch_size, shuffle, seed, epoch, shard_index, num_shards, drop_remainder,
                        prefetch, to_sparse)


def _next_power_of_two(n: tf.Tensor) -> tf.Tensor:
    """The smallest power of two >= max(n, 1), for int32 scalar ``n``."""
    n = tf.maximum(n, 1) - 1
    for shift in (1, 2, 4, 8, 16):
        n = tf.bitwise.bitwise_or(n, tf.bitwise.right_shift(n, shift))
    return n + 1


def xla_row_batches(matrices: Matrices, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                    shard_index: int = 0, num_shards: int = 1, drop_remainder: bool = False,
                    prefetch: bool = True) -> tf.data.Dataset:
    """The batches of :func:`row_batches` in padded COO form for an XLA first layer.

    A layer computes ``unsorted_segment_sum(values[:, None] * gather(W, cols),
    rows, n_rows)``; padding entries (row 0, column 0, value 0) add nothing.
    Padding the entry count ``P`` up to a power of two keeps the number of
    shapes XLA compiles to a few.

    Args:
      Same as :func:`row_batches`.

    Returns:
      A dataset of dicts (a tuple of dicts for a tuple input):
      ``rows`` int32 [P], ``cols`` int32 [P], ``values`` float32 [P],
      ``n_rows`` int32 scalar (the batch's rows).
    """
    def to_coo(b, batch_rows, cols, values, n_cols):
        nnz = tf.size(cols)
        pad = [[0, _next_power_of_two(nnz) - nnz]]
        return {"rows": tf.pad(tf.cast(batch_rows, tf.int32), pad), "cols": tf.pad(cols, pad),
                "values": tf.pad(values, pad), "n_rows": tf.cast(b, tf.int32)}

    return _row_dataset(matrices, batch_size, shuffle, seed, epoch, shard_index, num_shards, drop_remainder,
                        prefetch, to_coo)


def _entries(csr) -> tuple[sp.csr_matrix, np.ndarray]:
    """Canonical CSR and the int32 [nnz] row of each of its entries."""
    m = _canonical(csr)
    return m, np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))


def _slice_batches(columns: tuple[np.ndarray, ...], batch_size: int) -> tf.data.Dataset:
    """Consecutive slices of [n] arrays already in epoch order: tuples of [b] tensors.

    Putting the entries in order once in NumPy beats a random tf.gather per batch.
    """
    tensors = tuple(tf.constant(c) for c in columns)
    return _finish(_batch_bounds(len(columns[0]), batch_size, False),
                   lambda start, stop: tuple(t[start:stop] for t in tensors))


def rating_triples(csr, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                   shard_index: int = 0, num_shards: int = 1) -> tf.data.Dataset:
    """The non-zeros of a CSR matrix as (user, item, rating) batches.

    Each epoch visits every non-zero once (this shard's share of them, see the
    module doc), in CSR order or the epoch's permutation.

    Args:
      csr: [n_users, n_items] ratings.
      batch_size: triples per batch (the last batch may be smaller).
      shuffle, seed, epoch, shard_index, num_shards: as in :func:`row_batches`.

    Returns:
      A dataset of (user int32 [b], item int32 [b], rating float32 [b]).
    """
    _check(batch_size, seed, epoch, shard_index, num_shards)
    m, users = _entries(csr)
    order = _shard_order(m.nnz, shuffle, seed, epoch, shard_index, num_shards, "ratings")
    return _slice_batches((users[order], m.indices[order].astype(np.int32), m.data[order]), batch_size)


def bpr_triples(csr, batch_size: int, *, seed: int = 0, epoch: int = 0, shard_index: int = 0,
                num_shards: int = 1) -> tf.data.Dataset:
    """Shuffled (user, positive item, negative item, rating) batches for BPR.

    Positives are the non-zeros of ``csr`` in the epoch's permutation, sharded
    as in :func:`rating_triples`. Each gets one negative drawn uniformly from
    the items its user has no entry for, by
    :func:`data.synthetic.sample_unobserved` with
    ``np.random.default_rng([seed, epoch, num_shards, shard_index])``.

    Args:
      csr: [n_users, n_items] ratings or clicks (positives).
      batch_size: triples per batch (the last batch may be smaller).
      seed, epoch, shard_index, num_shards: as in :func:`row_batches`.

    Returns:
      A dataset of (user int32 [b], pos int32 [b], neg int32 [b], rating float32 [b]).

    Raises:
      DatasetError: a user of this shard has every item (no negative exists).
    """
    _check(batch_size, seed, epoch, shard_index, num_shards)
    m, users = _entries(csr)
    order = _shard_order(m.nnz, True, seed, epoch, shard_index, num_shards, "ratings")
    # Draw in CSR order (rows ascending: fast searches, no sort), then read in epoch order.
    in_shard = np.zeros(m.nnz, dtype=bool)
    in_shard[order] = True
    positions = np.flatnonzero(in_shard)
    negatives = np.zeros(m.nnz, dtype=np.int32)
    rng = np.random.default_rng([seed, epoch, num_shards, shard_index])
    negatives[positions] = sample_unobserved(users[positions], m.indptr, m.indices, m.shape[1], rng)
    return _slice_batches((users[order], m.indices[order].astype(np.int32), negatives[order], m.data[order]),
                          batch_size)


# --- the training input of each kind of model ----------------------------------------
@dataclasses.dataclass(frozen=True)
class TrainInput:
    """How one input kind (:attr:`training.recommender.Recommender.input_kind`) is fed in training.

    Attributes:
      batches: (train CSR, batch_size, seed, epoch, shard_index, num_shards, xla) -> a dataset of
        dict batches, the keys the model's ``compute_loss`` reads.
      units: (train CSR) -> how many examples an epoch visits (rows or non-zeros).
      xla: whether the kind has an XLA form (fixed batch sizes, padded COO rows).
    """

    batches: Callable[..., tf.data.Dataset]
    units: Callable[[sp.csr_matrix], int]
    xla: bool = False


def _rows_input(train, batch_size, seed, epoch, shard_index, num_shards, xla):
    shard = dict(shuffle=True, seed=seed, epoch=epoch, shard_index=shard_index, num_shards=num_shards)
    if xla:  # a fixed batch size keeps the compiled shapes few
        return xla_row_batches(train, batch_size, drop_remainder=True, **shard).map(lambda d: {"input": d})
    return row_batches(train, batch_size, **shard).map(lambda rows: {"input": rows})


def _triples_input(train, batch_size, seed, epoch, shard_index, num_shards, xla):
    return rating_triples(train, batch_size, shuffle=True, seed=seed, epoch=epoch, shard_index=shard_index,
                          num_shards=num_shards).map(lambda u, i, r: {"user": u, "item": i, "rating": r})


def _bpr_input(train, batch_size, seed, epoch, shard_index, num_shards, xla):
    return bpr_triples(train, batch_size, seed=seed, epoch=epoch, shard_index=shard_index,
                       num_shards=num_shards).map(lambda u, p, n, r: {"user": u, "pos": p, "neg": n, "rating": r})


TRAIN_INPUTS: dict[str, TrainInput] = {
    # {'input': SparseTensor [b, I]} (or its padded COO form under XLA): a batch of users' rows.
    "rows": TrainInput(_rows_input, lambda train: train.shape[0], xla=True),
    # {'user', 'item', 'rating'} [b]: the training ratings.
    "triples": TrainInput(_triples_input, lambda train: train.nnz),
    # {'user', 'pos', 'neg', 'rating'} [b]: each training entry with one sampled unobserved item.
    "bpr": TrainInput(_bpr_input, lambda train: train.nnz),
}
