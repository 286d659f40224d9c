"""Synthetic power-law interactions at a real dataset's shape, for benchmarks.

Also home of :func:`sample_unobserved`, the vectorized "an item this user has
not seen" sampler that both the generator (to fill users up) and the BPR
pipeline (negatives) use; it lives here so that neither needs TensorFlow.
"""

from __future__ import annotations

import datetime

import numpy as np

from data.errors import ConfigError, DatasetError
from data.protocols import check_whole_number, is_real_number
from data.types import Interactions

SHAPES: dict[str, tuple[int, int, int]] = {
    "ml-20m": (136677, 20108, 10_000_000),
    "netflix": (480189, 17770, 100_000_000),
}
"""(users, items, interactions): ML-20M after Liang et al.'s filtering (ratings >= 3.5 give
~10M clicks of 136,677 users on 20,108 movies) and the Netflix Prize training set."""

# Percent of ratings 1..5, close to MovieLens' whole stars (about half are >= 4).
RATING_PERCENT = (6, 11, 27, 34, 22)
_RATING_TABLE = np.repeat(np.arange(1, 6, dtype=np.float32), RATING_PERCENT)

_MAX_DRAW_ROUNDS = 4


def _row_of_entries(indptr: np.ndarray) -> np.ndarray:
    """int64 [nnz] row of each entry of a CSR matrix with row pointers ``indptr``."""
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _contains(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """bool [m]: whether each of int64 [m] ``queries`` is in int64 [k] ``sorted_keys``."""
    if not len(sorted_keys):
        return np.zeros(len(queries), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return sorted_keys[at] == queries


def sample_unobserved(rows: np.ndarray, indptr: np.ndarray, indices: np.ndarray, n_cols: int,
                      rng: np.random.Generator, *, max_rounds: int = _MAX_DRAW_ROUNDS) -> np.ndarray:
    """One column per entry of ``rows``, uniform over the columns absent from that row.

    First rejection sampling: uniform draws are tested against the sorted
    keys ``row * n_cols + col`` of the matrix with one ``np.searchsorted``,
    and only the collisions are drawn again, for up to ``max_rounds`` rounds.
    Collisions left after that (rows that are nearly full) are drawn exactly:
    the ``r``-th absent column of a row is ``r`` plus the number of present
    columns ``p_i`` (``i``-th of the row, sorted) with ``p_i - i <= r``, one
    more ``searchsorted``. Both stages are uniform over the absent columns.

    Rows in ascending order keep the searches cache-friendly (about 10x faster
    on ML-20M-sized matrices); other orders are sorted here first.

    Args:
      rows: int [m] row of each draw.
      indptr: int [n_rows + 1] CSR row pointers.
      indices: int [nnz] CSR columns, sorted within each row, no duplicates.
      n_cols: number of columns.
      rng: the source of randomness.
      max_rounds: rejection rounds before the exact stage (0: exact only).

    Returns:
      int64 [m] columns, never present in their row.

    Raises:
      DatasetError: a row of ``rows`` has every column.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if np.any(rows[1:] < rows[:-1]):
        order = np.argsort(rows, kind="stable")
        out = np.empty(len(rows), dtype=np.int64)
        out[order] = sample_unobserved(rows[order], indptr, indices, n_cols, rng, max_rounds=max_rounds)
        return out
    degree = np.diff(indptr)
    full = degree[rows] >= n_cols
    if full.any():
        raise DatasetError(f"row {rows[np.argmax(full)]} has all {n_cols} columns, so none is left to "
                           f"sample: drop users who interacted with every item")
    entry_row = _row_of_entries(indptr)
    keys = entry_row * np.int64(n_cols) + indices

    out = rng.integers(0, n_cols, size=len(rows))
    todo = np.arange(len(rows))
    for _ in range(max_rounds):
        todo = todo[_contains(keys, rows[todo] * np.int64(n_cols) + out[todo])]
        if not len(todo):
            return out
        out[todo] = rng.integers(0, n_cols, size=len(todo))

    # Exact stage for the rest. Offsets by row keep the shifted columns
    # (p_i - i, in [0, n_cols)) globally sorted.
    shifted = entry_row * np.int64(n_cols) + (indices - (np.arange(len(indices)) - indptr[entry_row]))
    left = rows[todo]
    rank = (rng.random(len(todo)) * (n_cols - degree[left])).astype(np.int64)
    below = np.searchsorted(shifted, left * np.int64(n_cols) + rank, side="right") - indptr[left]
    out[todo] = rank + below
    return out


def _power_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """float64 [n] probabilities proportional to rank**-exponent, ranks shuffled over the ids."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    return (weights / weights.sum())[rng.permutation(n)]


def _power_law_ranks(n: int, exponent: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [size] ranks in [0, n) with P(r) proportional to the integral of x**-exponent over [r+1, r+2).

    The continuous inverse CDF is a few float ops per draw where a search of
    the discrete CDF costs a cache miss per step.
    """
    u = rng.random(size)
    if exponent == 1:
        x = (n + 1.0) ** u
    else:
        a = 1.0 - exponent
        x = (1.0 + u * ((n + 1.0) ** a - 1.0)) ** (1.0 / a)
    return np.minimum(x.astype(np.int64) - 1, n - 1)


def _degrees(n_users: int, n_items: int, n: int, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 [n_users] interactions per user summing to ``n``, none above ``n_items``."""
    degree = rng.multinomial(n, weights).astype(np.int64)
    over = degree > n_items
    while over.any():
        excess = int((degree[over] - n_items).sum())
        degree[over] = n_items
        free = degree < n_items
        degree[free] += rng.multinomial(excess, weights[free] / weights[free].sum())
        over = degree > n_items
    return degree


def _add_new(keys: np.ndarray, rows: np.ndarray, cols: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted ``keys`` merged with the distinct new ``rows * n_items + cols`` not in it."""
    new = np.unique(rows * np.int64(n_items) + cols)
    new = new[~_contains(keys, new)]
    # Two sorted runs: the stable sort (timsort) merges them in linear time.
    return np.sort(np.concatenate([keys, new]), kind="stable")


def power_law_interactions(n_users: int, n_items: int, n_interactions: int, *, seed: int = 0,
                           alpha: float = 1.0, user_alpha: float = 0.5,
                           start: str = "1995-01-09", end: str = "2015-03-31") -> Interactions:
    """Random interactions with power-law item popularity and user activity.

    User ``u`` gets ``d_u`` distinct items, ``d_u`` multinomial with weights
    ``rank**-user_alpha`` (ranks shuffled over users, capped at ``n_items``).
    Items are drawn with probability about ``rank**-alpha`` (see
    :func:`_power_law_ranks`; ranks shuffled over items),
    repeats dropped and the shortfall drawn again a few rounds; what a round
    cannot place (users who already hold the popular items) is filled
    uniformly from the items the user lacks, so the count is exact. With the
    defaults the ML-20M shape has about 15..13.5K items per user (mean 73).

    Args:
      n_users, n_items: the id space; ids are ``0..n-1``.
      n_interactions: the exact number of distinct (user, item) pairs.
      seed: the only source of randomness.
      alpha: item popularity exponent.
      user_alpha: user activity exponent.
      start, end: ISO dates (UTC); timestamps are uniform in [start, end).

    Returns:
      Interactions sorted by (user, item): int ratings 1..5 as float32 drawn
      with :data:`RATING_PERCENT`, int64 timestamps, int64 ids.

    Raises:
      ConfigError: a size or exponent that cannot work.
    """
    check_whole_number("n_users", n_users, 1)
    check_whole_number("n_items", n_items, 1)
    check_whole_number("n_interactions", n_interactions, 0)
    if n_interactions > n_users * n_items:
        raise ConfigError(f"n_interactions={n_interactions} exceeds the {n_users} x {n_items} = "
                          f"{n_users * n_items} possible (user, item) pairs")
    for name, value in (("alpha", alpha), ("user_alpha", user_alpha)):
        if not (is_real_number(value) and value >= 0):
            raise ConfigError(f"{name}={value!r} must be a number >= 0")
    try:
        t0, t1 = (int(datetime.datetime.fromisoformat(d).replace(tzinfo=datetime.timezone.utc).timestamp())
                  for d in (start, end))
    except ValueError:
        raise ConfigError(f"start={start!r}, end={end!r} must be ISO dates YYYY-MM-DD") from None
    if t1 <= t0:
        raise ConfigError(f"end={end} must come after start={start}")

    rng = np.random.default_rng(seed)
    degree = _degrees(n_users, n_items, n_interactions, _power_weights(n_users, user_alpha, rng), rng)
    item_of_rank = rng.permutation(n_items)
    all_users = np.arange(n_users, dtype=np.int64)

    def short_rows(keys):
        """int64 [deficit] one user index per item a user still lacks."""
        return np.repeat(all_users, degree - np.bincount(keys // n_items, minlength=n_users))

    keys = np.zeros(0, dtype=np.int64)
    rows = short_rows(keys)
    for _ in range(_MAX_DRAW_ROUNDS):
        if not len(rows):
            break
        cols = item_of_rank[_power_law_ranks(n_items, alpha, len(rows), rng)]
        keys = _add_new(keys, rows, cols, n_items)
        rows = short_rows(keys)
    # What is still short is filled uniformly from each user's missing items;
    # draws for one user may coincide, so repeat until nobody is short.
    while len(rows):
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(keys // n_items, minlength=n_users), out=indptr[1:])
        keys = _add_new(keys, rows, sample_unobserved(rows, indptr, keys % n_items, n_items, rng), n_items)
        rows = short_rows(keys)
    user, item = np.divmod(keys, n_items)
    n = len(keys)
    return Interactions(
        user=user, item=item,
        rating=_RATING_TABLE[rng.integers(0, len(_RATING_TABLE), size=n)],
        timestamp=rng.integers(t0, t1, size=n, dtype=np.int64),
        user_ids=np.arange(n_users, dtype=np.int64), item_ids=np.arange(n_items, dtype=np.int64),
        name=f"synthetic-{n_users}x{n_items}x{n_interactions}")
