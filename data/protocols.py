"""Evaluation protocols: :class:`~data.types.Interactions` -> a split of CSR matrices.

Each protocol is a pure function of ``(interactions, config, seed)``: the same
inputs give the same split bit for bit, and all randomness comes from
``np.random.default_rng(seed)``.

* :func:`heldout_users` — Mult-VAE (Liang et al. 2018; the thesis' 86/7/7):
  binarize, filter items then users, hold out whole users, split each held-out
  user's clicks into fold-in input and targets.
* :func:`time_split` — DeepRec (Kuchaiev & Ginsburg 2017, Table 1): train on a
  time window, predict a later window; :data:`NETFLIX_WINDOWS` holds the paper's.
* :func:`random_split`, :func:`official_fold`, :func:`validation_slice` — rating
  splits for matrix factorization.

Every entry array is kept sorted by (user, item), so each CSR matrix is built
directly from its sorted parts (no scipy COO round trip) and splitting a matrix
is a boolean mask over its entries.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from pathlib import Path
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp

from data.errors import ConfigError, DatasetError
from data.types import HeldoutSplit, Interactions, RatingSplit

# Liang et al.'s split_train_test_proportion: a held-out user with fewer clicks
# than this gives all of them as input and has no targets.
MIN_ITEMS_TO_SPLIT = 5

OFFICIAL_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

_DAY = 86400


# ----------------------------------------------------------------------------
# Configs


def is_real_number(value) -> bool:
    """True for a finite int or float (numpy scalars too), False for bools and the rest."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_fraction(name: str, value: float, *, low_open: bool = False) -> None:
    """Raises ConfigError unless ``value`` is a number in [0, 1) ((0, 1) if ``low_open``)."""
    ok = is_real_number(value) and (0 < value < 1 if low_open else 0 <= value < 1)
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ConfigError(f"{name}={value!r} is not a fraction in {interval}: pass e.g. 0.1")


def _check_user_amount(name: str, value: Union[int, float]) -> None:
    """A held-out user amount is a fraction in [0, 1) or a whole count >= 1."""
    ok = is_real_number(value) and value >= 0 and (value < 1 or float(value).is_integer())
    if not ok:
        raise ConfigError(f"{name}={value!r} must be a fraction of the kept users in [0, 1) "
                          f"or a whole count >= 1 (e.g. 0.1 or 10000)")


def _user_amount(value: Union[int, float], n_users: int) -> int:
    """The number of users a checked amount means out of ``n_users``.

    A positive fraction holds out at least one user; the epsilon keeps e.g.
    ``0.29 * 100`` (28.999999999999996) from flooring to 28.
    """
    if value >= 1:
        return int(value)
    if value == 0:
        return 0
    return max(1, int(math.floor(value * n_users + 1e-9)))


def check_whole_number(name: str, value: int, low: int = 0) -> None:
    """Raises ConfigError unless ``value`` is an int (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name}={value!r} must be a whole number >= {low}")


@dataclasses.dataclass(frozen=True)
class HeldoutConfig:
    """Settings of :func:`heldout_users`.

    Attributes:
      threshold: rows with ``rating >= threshold`` are clicks; None makes every
        row a click (implicit data).
      min_uc: keep users with at least this many clicks (after ``min_sc``).
      min_sc: keep items with at least this many clicks; applied first, as in
        Liang et al.'s ``filter_triplets``.
      val_users, test_users: held-out users; a float in [0, 1) is a fraction of
        the kept users (floored, at least one if positive), a whole number >= 1
        a count (Liang et al. use 10000 on ML-20M, the thesis 0.07).
      fold_in: fraction of each held-out user's clicks given as input; the
        targets are ``floor((1 - fold_in) * n)`` of a user's ``n`` clicks when
        ``n >= 5``, none otherwise (Liang et al.'s rule).
    """

    threshold: Optional[float] = 4.0
    min_uc: int = 5
    min_sc: int = 0
    val_users: Union[int, float] = 0.1
    test_users: Union[int, float] = 0.1
    fold_in: float = 0.8

    def __post_init__(self):
        if self.threshold is not None and not is_real_number(self.threshold):
            raise ConfigError(f"threshold={self.threshold!r} must be a number or None "
                              f"(None: every row is a positive)")
        check_whole_number("min_uc", self.min_uc)
        check_whole_number("min_sc", self.min_sc)
        _check_user_amount("val_users", self.val_users)
        _check_user_amount("test_users", self.test_users)
        _check_fraction("fold_in", self.fold_in, low_open=True)


def _parse_date(name: str, value: str) -> int:
    """Unix seconds of 00:00 UTC of an ISO date ``YYYY-MM-DD``."""
    try:
        day = datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not an ISO date: write it as YYYY-MM-DD") from None
    return (day - datetime.date(1970, 1, 1)).days * _DAY


@dataclasses.dataclass(frozen=True)
class TimeSplitConfig:
    """Settings of :func:`time_split`: two windows of inclusive ISO dates (UTC).

    Attributes:
      train_start, train_end: the training window, e.g. ``"2005-09-01"``,
        ``"2005-11-30"`` (the whole last day is included).
      test_start, test_end: the testing window; it must start after train_end.
      val_fraction: chance of a testing-window rating going to ``val``
        (the rest go to ``test``); DeepRec uses 0.5.
    """

    train_start: str
    train_end: str
    test_start: str
    test_end: str
    val_fraction: float = 0.5

    def __post_init__(self):
        lo, hi, test_lo, test_hi = self.bounds()
        if hi <= lo:
            raise ConfigError(f"train window {self.train_start}..{self.train_end} is empty: "
                              f"train_end must not be before train_start")
        if test_hi <= test_lo:
            raise ConfigError(f"test window {self.test_start}..{self.test_end} is empty: "
                              f"test_end must not be before test_start")
        if test_lo < hi:
            raise ConfigError(f"test window starts {self.test_start}, before the train window ends "
                              f"{self.train_end}: the test window must come after the train window")
        if not (is_real_number(self.val_fraction) and 0 <= self.val_fraction <= 1):
            raise ConfigError(f"val_fraction={self.val_fraction!r} must be in [0, 1]")

    def bounds(self) -> tuple[int, int, int, int]:
        """(train_lo, train_hi, test_lo, test_hi) unix seconds; each ``hi`` excluded."""
        return (_parse_date("train_start", self.train_start),
                _parse_date("train_end", self.train_end) + _DAY,
                _parse_date("test_start", self.test_start),
                _parse_date("test_end", self.test_end) + _DAY)


NETFLIX_WINDOWS: dict[str, TimeSplitConfig] = {
    "full": TimeSplitConfig("1999-12-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "3m": TimeSplitConfig("2005-09-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "6m": TimeSplitConfig("2005-06-01", "2005-11-30", "2005-12-01", "2005-12-31"),
    "1y": TimeSplitConfig("2004-06-01", "2005-05-31", "2005-06-01", "2005-06-30"),
}
"""DeepRec Table 1 (after Wu et al. 2017): Netflix Full, 3 months, 6 months, 1 year."""


@dataclasses.dataclass(frozen=True)
class RandomSplitConfig:
    """Settings of :func:`random_split`: fractions of all ratings, drawn uniformly.

    Attributes:
      test_fraction: share of ratings moved to ``test`` (the homework's 5%).
      val_fraction: share moved to ``val``; the rest stay in ``train``.
    """

    test_fraction: float = 0.05
    val_fraction: float = 0.0

    def __post_init__(self):
        _check_fraction("test_fraction", self.test_fraction)
        _check_fraction("val_fraction", self.val_fraction)
        if self.test_fraction + self.val_fraction >= 1:
            raise ConfigError(f"test_fraction + val_fraction = {self.test_fraction + self.val_fraction:g} "
                              f"leaves nothing to train on: keep their sum below 1")


# ----------------------------------------------------------------------------
# Sorted entries -> CSR


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A float32 CSR matrix from entries sorted by (row, col), without duplicates.

    Args:
      rows: int [nnz] non-decreasing row of each entry.
      cols: int [nnz] column of each entry, increasing within a row.
      values: [nnz] entry values.
      shape: (n_rows, n_cols).

    Returns:
      float32 CSR [n_rows, n_cols] in canonical format.
    """
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    index_dtype = np.int32 if max(indptr[-1], shape[1]) < np.iinfo(np.int32).max else np.int64
    m = sp.csr_matrix((np.asarray(values, dtype=np.float32), cols.astype(index_dtype, copy=False),
                       indptr.astype(index_dtype, copy=False)), shape=shape)
    m.has_sorted_indices = True
    m.has_canonical_format = True
    return m


def _select(m: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    """The entries of CSR ``m`` where bool [nnz] ``mask`` holds, same shape."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return _csr(rows[mask], m.indices[mask], m.data[mask], m.shape)


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """The distinct values of sorted non-negative int [n] ``a`` (no re-sort)."""
    return a[np.flatnonzero(np.diff(a, prepend=-1))]


def _dense_rank(selected: np.ndarray, size: int) -> np.ndarray:
    """int64 [size] new index of each old index in sorted ``selected``, -1 elsewhere."""
    rank = np.full(size, -1, dtype=np.int64)
    rank[selected] = np.arange(len(selected))
    return rank


def _sorted_ratings(interactions: Interactions, mask: Optional[np.ndarray], where: str):
    """(user, item, rating) of the rows in ``mask`` (all if None), sorted by (user, item).

    Raises:
      DatasetError: two rows share a (user, item) pair.
    """
    user, item, rating = interactions.user, interactions.item, interactions.rating
    if mask is not None:
        user, item, rating = user[mask], item[mask], rating[mask]
    key = user.astype(np.int64) * interactions.n_items + item
    order = np.argsort(key, kind="stable")
    key = key[order]
    n_dup = int(np.count_nonzero(key[1:] == key[:-1]))
    if n_dup:
        raise DatasetError(f"{_name(interactions)} has {n_dup} duplicate (user, item) ratings{where}: "
                           f"keep one rating per pair (data.formats keeps the latest)")
    return user[order], item[order], rating[order]


def _name(interactions: Interactions) -> str:
    return interactions.name or "the interactions"


# ----------------------------------------------------------------------------
# Heldout users (Mult-VAE)


def _fold_in(m: sp.csr_matrix, test_prop: float, rng: np.random.Generator):
    """Splits each row of binary CSR ``m`` into fold-in input and targets.

    A row of ``n >= MIN_ITEMS_TO_SPLIT`` entries gets ``floor(test_prop * n)``
    uniformly chosen targets; shorter rows are all input. Rows are ranked by
    one random key per entry inside their row (a lexsort, no per-user loop).

    Returns:
      (input, target): float32 CSR, both of ``m``'s shape, disjoint, summing to ``m``.
    """
    counts = np.diff(m.indptr)
    n_target = np.where(counts >= MIN_ITEMS_TO_SPLIT, np.floor(counts * test_prop), 0).astype(np.int64)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((rng.random(m.nnz), rows))
    rank_in_row = np.arange(m.nnz) - m.indptr[rows[order]]
    is_target = np.empty(m.nnz, dtype=bool)
    is_target[order] = rank_in_row < n_target[rows[order]]
    return _select(m, ~is_target), _select(m, is_target)


def heldout_users(interactions: Interactions, config: HeldoutConfig = HeldoutConfig(),
                  seed: int = 0) -> HeldoutSplit:
    """The heldout-users protocol of Liang et al. (2018), vectorized.

    1. Rows with ``rating >= threshold`` are clicks (all rows if None);
       repeated (user, item) clicks count once.
    2. Items with fewer than ``min_sc`` clicks are dropped, then users with
       fewer than ``min_uc`` clicks.
    3. The kept users (ascending dense index) are permuted with
       ``np.random.default_rng(seed)``: the first ``val_users`` are validation,
       the next ``test_users`` test, the rest train.
    4. Columns are the items clicked by a train user (ascending dense index);
       held-out users lose their other clicks, and those left with none are
       dropped (so a part may have fewer users than asked for).
    5. Each held-out user's clicks are split into fold-in input and targets by
       :func:`_fold_in` with ``test_prop = 1 - fold_in`` (see HeldoutConfig).
       Users with fewer than 5 clicks have an empty target row.

    Rows of every matrix are in ascending dense user index, not in shuffled order.

    Args:
      interactions: the log; ``rating`` float32 [n].
      config: thresholds and held-out amounts.
      seed: the only source of randomness.

    Returns:
      HeldoutSplit with binary float32 CSR ``train`` [n_train, n_items],
      ``val_input``/``val_target`` [n_val, n_items], ``test_input``/``test_target``
      [n_test, n_items] and the original ids of rows and columns.

    Raises:
      DatasetError: a filter leaves nothing (the message names it), or the
        validation or test users asked for have no target to score.
      ConfigError: the held-out users leave no training user.
    """
    name = _name(interactions)
    n_users, n_items = interactions.n_users, interactions.n_items
    user, item = interactions.user, interactions.item
    positives = "interactions"
    if config.threshold is not None:
        keep = interactions.rating >= config.threshold
        user, item = user[keep], item[keep]
        positives = f"ratings >= {config.threshold:g}"
        if not user.size:
            raise DatasetError(f"no rating in {name} is >= {config.threshold:g} (threshold): "
                               f"lower threshold, or set it to None to use every row")
    if not user.size:
        raise DatasetError(f"{name} has no interactions to split")
    # One sort both removes repeated clicks and orders entries by (user, item).
    key = np.unique(user.astype(np.int64) * n_items + item)
    user, item = np.divmod(key, n_items)
    del key

    if config.min_sc > 0:
        keep = np.bincount(item, minlength=n_items)[item] >= config.min_sc
        user, item = user[keep], item[keep]
        if not user.size:
            raise DatasetError(f"no item in {name} has >= {config.min_sc} {positives} "
                               f"(min_sc/threshold): lower min_sc or threshold")
    if config.min_uc > 0:
        keep = np.bincount(user, minlength=n_users)[user] >= config.min_uc
        user, item = user[keep], item[keep]
        if not user.size:
            filters = "min_uc/min_sc/threshold" if config.min_sc > 0 else "min_uc/threshold"
            raise DatasetError(f"no user in {name} has >= {config.min_uc} {positives} "
                               f"({filters}): lower min_uc or threshold")

    kept = _sorted_unique(user)
    n_val = _user_amount(config.val_users, len(kept))
    n_test = _user_amount(config.test_users, len(kept))
    if n_val + n_test >= len(kept):
        raise ConfigError(f"val_users + test_users hold out {n_val} + {n_test} of the {len(kept)} users "
                          f"kept in {name}, leaving none to train: lower val_users/test_users")
    rng = np.random.default_rng(seed)
    shuffled = kept[rng.permutation(len(kept))]
    role = np.zeros(n_users, dtype=np.int8)  # 0 train, 1 val, 2 test
    role[shuffled[:n_val]] = 1
    role[shuffled[n_val:n_val + n_test]] = 2
    entry_role = role[user]

    is_train = entry_role == 0
    train_items = np.zeros(n_items, dtype=bool)
    train_items[item[is_train]] = True
    columns = np.flatnonzero(train_items)
    column_of = _dense_rank(columns, n_items)

    def part(mask):
        users = _sorted_unique(user[mask])
        return users, _csr(_dense_rank(users, n_users)[user[mask]], column_of[item[mask]],
                           np.ones(np.count_nonzero(mask), np.float32), (len(users), len(columns)))

    train_users, train = part(is_train)
    test_prop = round(1.0 - config.fold_in, 12)  # 1 - 0.8 is 0.19999999999999996
    heldout = {}
    for role_id in (1, 2):
        users, m = part((entry_role == role_id) & train_items[item])
        heldout[role_id] = (users, *_fold_in(m, test_prop, rng))
    for role_id, field, asked in ((1, "val_users", n_val), (2, "test_users", n_test)):
        # Asked-for held-out users without a single target would score NaN metrics later.
        if asked and not heldout[role_id][2].nnz:
            fixes = [f"raise {field} (--heldout_users)"]
            if config.min_uc < MIN_ITEMS_TO_SPLIT:
                fixes.append(f"set min_uc >= {MIN_ITEMS_TO_SPLIT}")
            raise DatasetError(
                f"the {asked} {'validation' if role_id == 1 else 'test'} users held out of {name} have no "
                f"clicks left to score (a held-out user needs >= {MIN_ITEMS_TO_SPLIT} clicks on items of "
                f"training users): {', '.join(fixes)} or use more data")
    ids = interactions.user_ids
    return HeldoutSplit(
        train=train,
        val_input=heldout[1][1], val_target=heldout[1][2],
        test_input=heldout[2][1], test_target=heldout[2][2],
        item_ids=interactions.item_ids[columns],
        train_user_ids=ids[train_users], val_user_ids=ids[heldout[1][0]], test_user_ids=ids[heldout[2][0]])


# ----------------------------------------------------------------------------
# Rating splits (DeepRec, MF)


def _format_day(unix_seconds: int) -> str:
    return str(np.datetime64(int(unix_seconds), "s").astype("datetime64[D]"))


def time_split(interactions: Interactions, config: TimeSplitConfig, seed: int = 0) -> RatingSplit:
    """DeepRec's time split (Wu et al. 2017): train on one window, test on a later one.

    Ratings timed inside the train window form ``train``. Ratings inside the
    test window whose user and item both appear in ``train`` go to ``val`` with
    probability ``val_fraction`` (one uniform draw each from
    ``np.random.default_rng(seed)``) and to ``test`` otherwise; other ratings
    are dropped.

    Args:
      interactions: a log with ``timestamp`` int64 [n] unix seconds, all >= 0.
      config: the two windows.
      seed: the only source of randomness.

    Returns:
      RatingSplit whose rows are the users with a train rating and columns the
      items with one (both ascending dense index): float32 CSR ``train``,
      ``val``, ``test`` [n_users, n_items].

    Raises:
      ConfigError: the log has rows without a timestamp.
      DatasetError: a window holds no usable rating, ``val`` or ``test`` gets
        none although ``val_fraction`` asks for it, or a pair repeats.
    """
    name = _name(interactions)
    ts = interactions.timestamp
    n_untimed = int(np.count_nonzero(ts < 0))
    if n_untimed:
        raise ConfigError(f"time_split needs timestamps but {n_untimed} of {len(ts)} rows of {name} have "
                          f"none: use random_split or heldout_users for this dataset")
    lo, hi, test_lo, test_hi = config.bounds()
    in_train = (ts >= lo) & (ts < hi)
    if not in_train.any():
        span = f"{_format_day(ts.min())}..{_format_day(ts.max())}" if len(ts) else "nothing"
        raise DatasetError(f"no rating of {name} falls in the train window {config.train_start}.."
                           f"{config.train_end} (train_start/train_end); its ratings span {span}")
    user, item, rating = _sorted_ratings(interactions, in_train, " in the train window")
    users = _sorted_unique(user)
    items = np.unique(item)
    row_of = _dense_rank(users, interactions.n_users)
    column_of = _dense_rank(items, interactions.n_items)
    shape = (len(users), len(items))
    train = _csr(row_of[user], column_of[item], rating, shape)

    in_test = ((ts >= test_lo) & (ts < test_hi)
               & (row_of[interactions.user] >= 0) & (column_of[interactions.item] >= 0))
    if not in_test.any():
        raise DatasetError(f"no rating of {name} in the test window {config.test_start}..{config.test_end} "
                           f"has a user and an item seen in the train window: move or widen the windows")
    user, item, rating = _sorted_ratings(interactions, in_test, " in the test window")
    held = _csr(row_of[user], column_of[item], rating, shape)
    to_val = np.random.default_rng(seed).random(held.nnz) < config.val_fraction
    n_val = int(np.count_nonzero(to_val))
    window = f"the test window {config.test_start}..{config.test_end}"
    if config.val_fraction < 1 and n_val == held.nnz:
        raise DatasetError(f"the time split of {name} leaves no test ratings: all {held.nnz} usable ratings of "
                           f"{window} went to validation (val_fraction={config.val_fraction:g}): widen the "
                           f"test window or lower val_fraction")
    if config.val_fraction > 0 and n_val == 0:
        raise DatasetError(f"the time split of {name} leaves no validation ratings: none of the {held.nnz} "
                           f"usable ratings of {window} went to validation (val_fraction="
                           f"{config.val_fraction:g}): widen the test window, raise val_fraction, or set it "
                           f"to 0 to train without validation")
    return RatingSplit(train=train, val=_select(held, to_val), test=_select(held, ~to_val),
                       user_ids=interactions.user_ids[users], item_ids=interactions.item_ids[items])


def _check_parts(name: str, n: int, parts: tuple[tuple[str, str, float, int], ...]) -> None:
    """Refuses a split of ``n`` ratings where a part asked for (fraction > 0) or train gets none.

    Args:
      name: what is split, for the message.
      n: the number of ratings split.
      parts: (part, config field, fraction, ratings it gets) per held-out part.

    Raises:
      DatasetError: an empty part; the message names the field to change.
    """
    for part, field, fraction, count in parts:
        if fraction > 0 and count == 0:
            raise DatasetError(f"{field}={fraction:g} of the {n} ratings of {name} rounds to no {part} rating "
                               f"(its metrics would be NaN): raise {field} (--{field}) or use more ratings")
    held = sum(count for *_, count in parts)
    if held >= n:
        fields = "/".join(field for _, field, fraction, _ in parts if fraction > 0)
        raise DatasetError(f"{fields} hold out {held} of the {n} ratings of {name}, leaving none to train: "
                           f"lower {fields} or use more ratings")


def random_split(interactions: Interactions, config: RandomSplitConfig = RandomSplitConfig(),
                 seed: int = 0) -> RatingSplit:
    """Ratings split uniformly at random into train / val / test.

    ``round(test_fraction * n)`` ratings chosen by a permutation from
    ``np.random.default_rng(seed)`` go to ``test``, the next
    ``round(val_fraction * n)`` to ``val``, the rest to ``train``.

    Args:
      interactions: the log; ``rating`` float32 [n].
      config: the fractions.
      seed: the only source of randomness.

    Returns:
      RatingSplit over all users and items of ``interactions``: float32 CSR
      ``train``, ``val``, ``test`` [n_users, n_items].

    Raises:
      DatasetError: no ratings, a part with a positive fraction rounds to no
        rating or ``train`` to none, or a (user, item) pair repeats.
    """
    if not len(interactions):
        raise DatasetError(f"{_name(interactions)} has no ratings to split")
    user, item, rating = _sorted_ratings(interactions, None, "")
    full = _csr(user, item, rating, (interactions.n_users, interactions.n_items))
    n_test = int(round(config.test_fraction * full.nnz))
    n_val = int(round(config.val_fraction * full.nnz))
    _check_parts(_name(interactions), full.nnz, (("test", "test_fraction", config.test_fraction, n_test),
                                                 ("validation", "val_fraction", config.val_fraction, n_val)))
    part = np.zeros(full.nnz, dtype=np.int8)
    order = np.random.default_rng(seed).permutation(full.nnz)
    part[order[:n_test]] = 2
    part[order[n_test:n_test + n_val]] = 1
    return RatingSplit(train=_select(full, part == 0), val=_select(full, part == 1),
                       test=_select(full, part == 2),
                       user_ids=interactions.user_ids, item_ids=interactions.item_ids)


def validation_slice(split: RatingSplit, fraction: float, seed: int = 0) -> RatingSplit:
    """Moves ``round(fraction * nnz)`` random train ratings into ``val``.

    Used to tune on an official fold's ``.base`` without touching its
    ``.test``. Ratings already in ``split.val`` stay there.

    Args:
      split: any RatingSplit; float32 CSR [n_users, n_items] parts.
      fraction: share of train ratings to move, in (0, 1).
      seed: the only source of randomness.

    Returns:
      A new RatingSplit with the same shape, ids and test.

    Raises:
      ConfigError: ``fraction`` is not in (0, 1).
      DatasetError: it moves no rating, or every one.
    """
    _check_fraction("fraction", fraction, low_open=True)
    train = split.train.tocsr()
    train.sum_duplicates()
    n_val = int(round(fraction * train.nnz))
    _check_parts("the training part", train.nnz, (("validation", "val_fraction", fraction, n_val),))
    moved = np.zeros(train.nnz, dtype=bool)
    moved[np.random.default_rng(seed).permutation(train.nnz)[:n_val]] = True
    val = (split.val + _select(train, moved)).tocsr().astype(np.float32)
    val.sort_indices()
    return dataclasses.replace(split, train=_select(train, ~moved), val=val)


def _read_ml100k_file(path: Path) -> dict[str, np.ndarray]:
    """The columns of one official fold file, validated by :func:`data.formats.read_ml100k_ratings`.

    Raises:
      DatasetError: missing file, or a bad line (``file:line: reason``).
    """
    from data.formats import read_ml100k_ratings

    if not path.is_file():
        raise DatasetError(f"{path} not found: official_fold needs the unpacked ml-100k folder "
                           f"(files.grouplens.org/datasets/movielens/ml-100k.zip)")
    return dict(zip(("user", "item", "rating", "timestamp"), read_ml100k_ratings(path)))


def official_fold(folder: Path, fold: str) -> RatingSplit:
    """An official ML-100K fold: ``<fold>.base`` is train, ``<fold>.test`` test.

    Args:
      folder: the unpacked ``ml-100k`` folder.
      fold: one of ``u1`` .. ``u5``, ``ua``, ``ub``.

    Returns:
      RatingSplit whose rows and columns are the sorted user and item ids seen
      in either file: float32 CSR ``train``, ``test`` and an empty ``val``
      [n_users, n_items].

    Raises:
      ConfigError: unknown fold name.
      DatasetError: missing or malformed file.
    """
    if fold not in OFFICIAL_FOLDS:
        raise ConfigError(f"unknown ML-100K fold {fold!r}: use one of {', '.join(OFFICIAL_FOLDS)}")
    folder = Path(folder)
    base, test = (_read_ml100k_file(folder / f"{fold}.{part}") for part in ("base", "test"))
    user_ids = np.unique(np.concatenate([base["user"], test["user"]])).astype(np.int64)
    item_ids = np.unique(np.concatenate([base["item"], test["item"]])).astype(np.int64)

    def ratings(columns, part):
        return Interactions(
            user=np.searchsorted(user_ids, columns["user"]), item=np.searchsorted(item_ids, columns["item"]),
            rating=columns["rating"].astype(np.float32), timestamp=columns["timestamp"],
            user_ids=user_ids, item_ids=item_ids, name=f"{folder / fold}.{part}")

    shape = (len(user_ids), len(item_ids))
    train, test = (_csr(*_sorted_ratings(ratings(f, p), None, ""), shape)
                   for f, p in ((base, "base"), (test, "test")))
    return RatingSplit(train=train, val=sp.csr_matrix(shape, dtype=np.float32), test=test,
                       user_ids=user_ids, item_ids=item_ids)
