"""Tests of data/protocols.py: invariants, hand-computed values, plain-pandas references, errors."""

import dataclasses
import datetime

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from data.errors import ConfigError, DatasetError
from data.loader import load
from data.protocols import (NETFLIX_WINDOWS, HeldoutConfig, RandomSplitConfig, TimeSplitConfig, heldout_users,
                            official_fold, random_split, time_split, validation_slice)
from data.types import Interactions


def make_interactions(user_ids, item_ids, rating, timestamp=None, name="toy"):
    """Interactions from [n] original ids (dense index = rank of the sorted id)."""
    uids, user = np.unique(np.asarray(user_ids), return_inverse=True)
    iids, item = np.unique(np.asarray(item_ids), return_inverse=True)
    n = len(user)
    ts = np.full(n, -1, np.int64) if timestamp is None else np.asarray(timestamp, np.int64)
    return Interactions(user=user.astype(np.int64), item=item.astype(np.int64),
                        rating=np.asarray(rating, np.float32), timestamp=ts, user_ids=uids, item_ids=iids,
                        name=name)


def random_interactions(n_users=60, n_items=40, density=0.3, seed=1):
    """Unique (user, item) pairs with ratings 1..5 and timestamps over 1998-2000."""
    rng = np.random.default_rng(seed)
    user, item = np.nonzero(rng.random((n_users, n_items)) < density)
    n = len(user)
    return make_interactions(user + 100, item + 1000, rng.integers(1, 6, n),
                             rng.integers(883612800, 946684800, n))


def as_frame(x: Interactions) -> pd.DataFrame:
    return pd.DataFrame({"user": x.user_ids[x.user], "item": x.item_ids[x.item], "rating": x.rating,
                         "timestamp": x.timestamp})


def rows_as_sets(m: sp.csr_matrix, row_ids, col_ids) -> dict:
    """{original row id: set of original column ids} of a CSR matrix (the slow obvious way)."""
    return {row_ids[r]: {col_ids[c] for c in m.indices[m.indptr[r]:m.indptr[r + 1]]} for r in range(m.shape[0])}


def entries(m: sp.csr_matrix, row_ids, col_ids) -> dict:
    """{(original row id, original column id): value} of a CSR matrix."""
    coo = m.tocoo()
    return {(row_ids[r], col_ids[c]): v for r, c, v in zip(coo.row, coo.col, coo.data)}


# ----------------------------------------------------------------------------
# heldout_users


def check_heldout_invariants(x: Interactions, split, config: HeldoutConfig):
    df = as_frame(x)
    pos = df if config.threshold is None else df[df.rating >= config.threshold]
    item_count = pos.groupby("item").size()
    pos = pos[pos["item"].isin(item_count.index[item_count >= config.min_sc])]
    positives = pos.groupby("user")["item"].apply(set).to_dict()
    train_ids, val_ids, test_ids = (set(a.tolist()) for a in
                                    (split.train_user_ids, split.val_user_ids, split.test_user_ids))
    assert not (train_ids & val_ids or train_ids & test_ids or val_ids & test_ids)
    for part in ("train", "val_input", "val_target", "test_input", "test_target"):
        m = getattr(split, part)
        assert m.dtype == np.float32 and m.has_canonical_format and m.shape[1] == len(split.item_ids)
        assert np.all(m.data == 1)
    train_rows = rows_as_sets(split.train, split.train_user_ids, split.item_ids)
    # Columns are exactly the items clicked by train users.
    assert set(split.item_ids.tolist()) == set().union(*train_rows.values())
    assert np.all(np.diff(split.train.indptr) > 0) and np.all(split.train.getnnz(axis=0) > 0)
    for uid, items in train_rows.items():
        assert items == positives[uid]
    columns = set(split.item_ids.tolist())
    for part in ("val", "test"):
        ids = getattr(split, f"{part}_user_ids")
        inputs = rows_as_sets(getattr(split, f"{part}_input"), ids, split.item_ids)
        targets = rows_as_sets(getattr(split, f"{part}_target"), ids, split.item_ids)
        for uid in ids:
            assert not inputs[uid] & targets[uid]
            assert inputs[uid] | targets[uid] == positives[uid] & columns
            n = len(positives[uid] & columns)
            assert n > 0  # users left with nothing are dropped
            # Liang et al.: int(0.2 * n) targets when n >= 5, else none; 0.2 n floored = n // 5.
            assert len(targets[uid]) == (n // 5 if n >= 5 else 0)


def test_heldout_invariants_on_random_data():
    x = random_interactions()
    config = HeldoutConfig(threshold=3.0, min_uc=5, val_users=0.2, test_users=7)
    split = heldout_users(x, config, seed=3)
    check_heldout_invariants(x, split, config)
    assert len(split.test_user_ids) == 7


def test_heldout_fold_in_counts_by_hand():
    # One train user clicks items 0..19, so every held-out click stays in a column.
    # Held-out users click 10, 7, 5, 4 items: targets int(0.2 n) = 2, 1, 1, 0 (n < 5 keeps all as input).
    # 10 is the case 1 - 0.8 = 0.19999999999999996 would floor to 1.
    sizes = {"hub": 20, "a": 10, "b": 7, "c": 5, "d": 4}
    users = [u for u, n in sizes.items() for _ in range(n)]
    items = [i for n in sizes.values() for i in range(n)]
    x = make_interactions(users, items, np.ones(len(users)))
    config = HeldoutConfig(threshold=None, min_uc=0, val_users=4, test_users=0)
    # Kept users in dense order are a, b, c, d, hub: pick a seed whose permutation puts hub (4) last, in train.
    seed = next(s for s in range(100) if np.random.default_rng(s).permutation(5)[-1] == 4)
    split = heldout_users(x, config, seed)
    assert split.train_user_ids.tolist() == ["hub"]
    targets = dict(zip(split.val_user_ids, np.diff(split.val_target.indptr)))
    inputs = dict(zip(split.val_user_ids, np.diff(split.val_input.indptr)))
    assert targets == {"a": 2, "b": 1, "c": 1, "d": 0}
    assert inputs == {"a": 8, "b": 6, "c": 4, "d": 4}


def test_heldout_drops_unseen_items_and_emptied_users():
    # Only "lonely" clicks item 8: when it is held out, no train user has item 8, so item 8 is no
    # column and "lonely" is left with nothing and dropped. Its part keeps the other held-out user,
    # whose 5 clicks give one target, so no part is empty.
    regular = ["a", "b", "c", "d", "e", "f"]
    users = [u for u in regular for _ in range(5)] + ["lonely"]
    items = [1, 2, 3, 4, 5] * len(regular) + [8]
    x = make_interactions(users, items, np.ones(len(users)))
    config = HeldoutConfig(threshold=None, min_uc=1, val_users=2, test_users=2)
    held_out_lonely = 0
    for seed in range(10):
        split = heldout_users(x, config, seed)
        check_heldout_invariants(x, split, config)
        if "lonely" in split.train_user_ids:
            assert split.item_ids.tolist() == [1, 2, 3, 4, 5, 8]
            assert len(split.val_user_ids) + len(split.test_user_ids) == 4
        else:
            held_out_lonely += 1
            assert split.item_ids.tolist() == [1, 2, 3, 4, 5]
            assert len(split.val_user_ids) + len(split.test_user_ids) == 3
    assert 0 < held_out_lonely < 10


@pytest.mark.parametrize("val_users, test_users, part, field", [
    (1, 0, "validation", "val_users"),
    (0, 1, "test", "test_users"),
])
def test_heldout_part_without_targets_is_refused(val_users, test_users, part, field):
    # Every user clicks 3 items, fewer than the 5 a held-out user needs for a target: the held-out
    # part would have no target, and its Recall/NDCG would be NaN.
    x = make_interactions(["a"] * 3 + ["b"] * 3 + ["c"] * 3, [1, 2, 3] * 3, np.ones(9))
    config = HeldoutConfig(threshold=None, min_uc=1, val_users=val_users, test_users=test_users)
    with pytest.raises(DatasetError) as e:
        heldout_users(x, config, 0)
    assert str(e.value) == (
        f"the 1 {part} users held out of toy have no clicks left to score (a held-out user needs >= 5 clicks "
        f"on items of training users): raise {field} (--heldout_users), set min_uc >= 5 or use more data")
    # With 5 clicks each, one is a target and the same split works.
    x = make_interactions(["a"] * 5 + ["b"] * 5 + ["c"] * 5, [1, 2, 3, 4, 5] * 3, np.ones(15))
    split = heldout_users(x, config, 0)
    assert (split.val_target.nnz, split.test_target.nnz) == (val_users, test_users)


def test_heldout_deterministic_from_seed():
    x = random_interactions()
    config = HeldoutConfig(threshold=2.0)
    a, b, c = heldout_users(x, config, 5), heldout_users(x, config, 5), heldout_users(x, config, 6)
    for part in ("train", "val_input", "val_target", "test_input", "test_target"):
        assert (getattr(a, part) != getattr(b, part)).nnz == 0
    np.testing.assert_array_equal(a.val_user_ids, b.val_user_ids)
    assert set(a.val_user_ids) != set(c.val_user_ids)


def pandas_heldout_counts(x: Interactions, config: HeldoutConfig, seed: int) -> dict:
    """The heldout-users rules written in plain pandas (independent of the vectorized code).

    Only the documented user permutation is shared: kept users in dense-index order,
    permuted by default_rng(seed), first val then test.
    """
    df = as_frame(x)
    pos = df if config.threshold is None else df[df.rating >= config.threshold]
    if config.min_sc:
        item_count = pos.groupby("item").size()
        pos = pos[pos["item"].isin(item_count.index[item_count >= config.min_sc])]
    user_count = pos.groupby("user").size()
    pos = pos[pos["user"].isin(user_count.index[user_count >= config.min_uc])]
    kept_set = set(pos["user"])
    kept = [uid for uid in x.user_ids if uid in kept_set]  # dense order
    n = len(kept)

    def amount(v):
        return int(v) if v >= 1 else int(np.floor(v * n + 1e-9))

    n_val, n_test = amount(config.val_users), amount(config.test_users)
    shuffled = np.asarray(kept)[np.random.default_rng(seed).permutation(n)]
    val_users, test_users, train_users = shuffled[:n_val], shuffled[n_val:n_val + n_test], shuffled[n_val + n_test:]
    train = pos[pos["user"].isin(train_users)]
    items = set(train["item"])
    out = {"kept": n, "train_users": train["user"].nunique(), "items": len(items), "train": len(train)}
    for part, users in (("val", val_users), ("test", test_users)):
        held = pos[pos["user"].isin(users) & pos["item"].isin(items)]
        sizes = held.groupby("user").size()
        n_target = int(sum(s // 5 for s in sizes if s >= 5))
        out.update({f"{part}_users": len(sizes), f"{part}_target": n_target, f"{part}_input": len(held) - n_target})
    return out


@pytest.mark.parametrize("name,config", [
    ("ml-100k", HeldoutConfig()),
    ("ml-latest-small", HeldoutConfig(threshold=3.5, min_uc=5, min_sc=2, val_users=50, test_users=0.07)),
])
def test_heldout_counts_on_real_data_match_pandas(mirror, name, config):
    x = load(name, mirror=mirror)
    split = heldout_users(x, config, seed=98765)
    expected = pandas_heldout_counts(x, config, seed=98765)
    got = {"kept": len(split.train_user_ids) + len(split.val_user_ids) + len(split.test_user_ids),
           "train_users": split.train.shape[0], "items": len(split.item_ids), "train": split.train.nnz}
    for part in ("val", "test"):
        got.update({f"{part}_users": getattr(split, f"{part}_input").shape[0],
                    f"{part}_target": getattr(split, f"{part}_target").nnz,
                    f"{part}_input": getattr(split, f"{part}_input").nnz})
    # Kept counts all three parts: no held-out user of real MovieLens loses every click.
    assert got == expected
    check_heldout_invariants(x, split, config)


def test_heldout_threshold_none_uses_every_row():
    x = random_interactions(density=0.2)
    split = heldout_users(x, HeldoutConfig(threshold=None, min_uc=0, val_users=0, test_users=0), 0)
    assert split.train.nnz == len(x) and split.val_input.shape == (0, split.n_items)


@pytest.mark.parametrize("config,message", [
    (HeldoutConfig(threshold=6.0), "no rating in toy is >= 6 (threshold)"),
    (HeldoutConfig(min_uc=500), "no user in toy has >= 500 ratings >= 4 (min_uc/threshold)"),
    (HeldoutConfig(min_sc=500), "no item in toy has >= 500 ratings >= 4 (min_sc/threshold)"),
    (HeldoutConfig(threshold=None, min_uc=500), "no user in toy has >= 500 interactions (min_uc/threshold)"),
    (HeldoutConfig(min_uc=500, min_sc=1), "(min_uc/min_sc/threshold)"),
])
def test_heldout_empty_filter_errors(config, message):
    with pytest.raises(DatasetError) as e:
        heldout_users(random_interactions(), config, 0)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"val_users": -0.1}, "val_users=-0.1 must be a fraction of the kept users in [0, 1) or a whole count >= 1"),
    ({"test_users": 1.5}, "test_users=1.5 must be"),
    ({"val_users": True}, "val_users=True must be"),
    ({"fold_in": 1.0}, "fold_in=1.0 is not a fraction in (0, 1)"),
    ({"fold_in": 0}, "fold_in=0 is not a fraction in (0, 1)"),
    ({"min_uc": -1}, "min_uc=-1 must be a whole number >= 0"),
    ({"threshold": "4"}, "threshold='4' must be a number or None"),
])
def test_heldout_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as e:
        HeldoutConfig(**kwargs)
    assert message in str(e.value)


def test_heldout_too_many_heldout_users():
    x = random_interactions(n_users=10)
    with pytest.raises(ConfigError, match=r"hold out 6 \+ 4 of the 10 users kept in toy, leaving none to train"):
        heldout_users(x, HeldoutConfig(threshold=None, min_uc=1, val_users=6, test_users=4), 0)


# ----------------------------------------------------------------------------
# time_split


def unix(day: str) -> int:
    return int(datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc).timestamp())


def test_netflix_windows_by_hand():
    # 2005-09-01 is day 13027 since 1970-01-01 -> 13027 * 86400 = 1125532800; December 2005 is
    # [1133395200, 1136073600) since 2005-12-01 is day 13118 and 2006-01-01 day 13149.
    assert NETFLIX_WINDOWS["3m"].bounds() == (1125532800, 1133395200, 1133395200, 1136073600)
    assert NETFLIX_WINDOWS["full"].bounds()[0] == unix("1999-12-01")
    assert NETFLIX_WINDOWS["6m"].bounds()[:2] == (unix("2005-06-01"), unix("2005-12-01"))
    assert NETFLIX_WINDOWS["1y"].bounds() == (unix("2004-06-01"), unix("2005-06-01"), unix("2005-06-01"),
                                              unix("2005-07-01"))


def test_time_split_window_edges_by_hand():
    # Train 2000-01-01..2000-01-31, test 2000-02-01..2000-02-29 (leap year), all test ratings to val.
    config = TimeSplitConfig("2000-01-01", "2000-01-31", "2000-02-01", "2000-02-29", val_fraction=1.0)
    rows = [  # user, item, rating, time
        ("u1", "a", 1, "1999-12-31T23:59:59"),  # before train: dropped
        ("u1", "b", 2, "2000-01-01T00:00:00"),  # first second of train
        ("u2", "a", 3, "2000-01-31T23:59:59"),  # last second of train
        ("u1", "a", 4, "2000-02-01T00:00:00"),  # test, user and item seen -> val
        ("u2", "b", 5, "2000-02-29T23:59:59"),  # last second of test -> val
        ("u3", "a", 1, "2000-02-10T00:00:00"),  # test, user unseen: dropped
        ("u2", "c", 2, "2000-02-10T00:00:00"),  # test, item unseen: dropped
        ("u1", "c", 3, "2000-03-01T00:00:00"),  # after test: dropped
    ]
    users, items, ratings, times = zip(*rows)
    x = make_interactions(users, items, ratings, [unix(t) for t in times])
    split = time_split(x, config, seed=0)
    assert split.user_ids.tolist() == ["u1", "u2"] and split.item_ids.tolist() == ["a", "b"]
    assert entries(split.train, split.user_ids, split.item_ids) == {("u1", "b"): 2, ("u2", "a"): 3}
    assert entries(split.val, split.user_ids, split.item_ids) == {("u1", "a"): 4, ("u2", "b"): 5}
    assert split.test.nnz == 0


def test_time_split_on_ml100k(mirror):
    x = load("ml-100k", mirror=mirror)
    config = TimeSplitConfig("1997-09-01", "1998-01-31", "1998-02-01", "1998-04-30")
    split = time_split(x, config, seed=0)
    df = as_frame(x)
    stamp = df.set_index(["user", "item"])["timestamp"]
    train_lo, train_hi, test_lo, test_hi = (unix("1997-09-01"), unix("1998-02-01"), unix("1998-02-01"),
                                            unix("1998-05-01"))
    train = entries(split.train, split.user_ids, split.item_ids)
    assert all(train_lo <= stamp[k] < train_hi for k in train)
    held = {}
    for part in ("val", "test"):
        part_entries = entries(getattr(split, part), split.user_ids, split.item_ids)
        assert all(test_lo <= stamp[k] < test_hi for k in part_entries)
        held.update(part_entries)
    # Every row and column has a train rating: no unseen users or items in val/test.
    assert np.all(split.train.getnnz(axis=1) > 0) and np.all(split.train.getnnz(axis=0) > 0)
    # Independent counts: pandas filter on the windows.
    in_train = df[(df.timestamp >= train_lo) & (df.timestamp < train_hi)]
    in_test = df[(df.timestamp >= test_lo) & (df.timestamp < test_hi)
                 & df.user.isin(in_train.user) & df.item.isin(in_train.item)]
    assert len(train) == len(in_train) and len(held) == len(in_test)
    assert split.n_users == in_train.user.nunique() and split.n_items == in_train.item.nunique()
    assert all(held[(u, i)] == r for u, i, r in zip(in_test.user, in_test.item, in_test.rating))
    # val ~ Binomial(N, 1/2): sd = sqrt(N)/2 (about 33 for N ~ 4400); 4 sd is out with p < 1e-4.
    n = len(in_test)
    assert abs(split.val.nnz - n / 2) <= 4 * np.sqrt(n) / 2


def test_time_split_is_deterministic_from_seed():
    x = random_interactions()
    config = TimeSplitConfig("1998-01-01", "1998-12-31", "1999-01-01", "1999-12-31")
    a, b, c = time_split(x, config, 1), time_split(x, config, 1), time_split(x, config, 2)
    assert (a.val != b.val).nnz == 0 and (a.val != c.val).nnz > 0


def test_time_split_errors():
    x = random_interactions()
    untimed = make_interactions(["a", "b"], [1, 2], [3, 4], [5, -1], name="plays")
    with pytest.raises(ConfigError, match="time_split needs timestamps but 1 of 2 rows of plays have none"):
        time_split(untimed, NETFLIX_WINDOWS["3m"])
    first, last = (datetime.datetime.fromtimestamp(t, datetime.timezone.utc).date()
                   for t in (x.timestamp.min(), x.timestamp.max()))
    with pytest.raises(DatasetError, match=r"no rating of toy falls in the train window 2005-09-01..2005-11-30 "
                                           rf"\(train_start/train_end\); its ratings span {first}..{last}$"):
        time_split(x, NETFLIX_WINDOWS["3m"])
    with pytest.raises(DatasetError, match="no rating of toy in the test window 2005-01-01..2005-01-31"):
        time_split(x, TimeSplitConfig("1998-01-01", "1999-12-31", "2005-01-01", "2005-01-31"))
    with pytest.raises(ConfigError, match=r"train_end='2005-13-01' is not an ISO date: write it as YYYY-MM-DD"):
        TimeSplitConfig("2005-01-01", "2005-13-01", "2006-01-01", "2006-01-31")
    with pytest.raises(ConfigError, match="test window starts 2005-06-01, before the train window ends 2005-06-30"):
        TimeSplitConfig("2005-01-01", "2005-06-30", "2005-06-01", "2005-07-31")
    with pytest.raises(ConfigError, match="train window 2005-02-01..2005-01-01 is empty"):
        TimeSplitConfig("2005-02-01", "2005-01-01", "2006-01-01", "2006-01-31")
    with pytest.raises(ConfigError, match=r"val_fraction=1.5 must be in \[0, 1\]"):
        TimeSplitConfig("2005-01-01", "2005-01-31", "2006-01-01", "2006-01-31", val_fraction=1.5)


def test_rating_protocols_reject_duplicate_pairs():
    x = make_interactions(["a", "a"], [1, 1], [3, 4], [unix("2005-10-01"), unix("2005-10-02")])
    with pytest.raises(DatasetError, match="toy has 1 duplicate .user, item. ratings in the train window"):
        time_split(x, NETFLIX_WINDOWS["3m"])
    with pytest.raises(DatasetError, match="toy has 1 duplicate .user, item. ratings: keep one rating per pair"):
        random_split(x)


def test_empty_interactions():
    empty = make_interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), [], name="empty")
    with pytest.raises(DatasetError, match="^empty has no interactions to split$"):
        heldout_users(empty, HeldoutConfig(threshold=None, min_uc=0))
    with pytest.raises(DatasetError, match="^empty has no ratings to split$"):
        random_split(empty)


# ----------------------------------------------------------------------------
# random_split, official_fold, validation_slice


def test_random_split_fractions():
    x = random_interactions()
    n = len(x)
    split = random_split(x, RandomSplitConfig(test_fraction=0.05, val_fraction=0.1), seed=0)
    assert split.train.shape == split.val.shape == split.test.shape == (x.n_users, x.n_items)
    assert split.test.nnz == round(0.05 * n) and split.val.nnz == round(0.1 * n)
    parts = [entries(getattr(split, p), split.user_ids, split.item_ids) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == n
    merged = {k: v for p in parts for k, v in p.items()}
    df = as_frame(x)
    assert merged == dict(zip(zip(df.user, df.item), df.rating))
    again, other = random_split(x, RandomSplitConfig(0.05, 0.1), 0), random_split(x, RandomSplitConfig(0.05, 0.1), 1)
    assert (again.test != split.test).nnz == 0 and (other.test != split.test).nnz > 0


@pytest.mark.parametrize("kwargs,message", [
    ({"test_fraction": 1.2}, r"test_fraction=1.2 is not a fraction in \[0, 1\)"),
    ({"val_fraction": -0.1}, r"val_fraction=-0.1 is not a fraction"),
    ({"test_fraction": 0.6, "val_fraction": 0.4}, "test_fraction . val_fraction = 1 leaves nothing to train on"),
])
def test_random_split_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RandomSplitConfig(**kwargs)


def test_random_split_parts_that_round_to_nothing_are_refused():
    # 10 ratings: 5% of them rounds to 0 test ratings, 4% + 95% to all of them.
    x = make_interactions(list(range(10)), list(range(10)), np.ones(10))
    with pytest.raises(DatasetError) as e:
        random_split(x, RandomSplitConfig(test_fraction=0.05))
    assert str(e.value) == ("test_fraction=0.05 of the 10 ratings of toy rounds to no test rating (its metrics "
                            "would be NaN): raise test_fraction (--test_fraction) or use more ratings")
    with pytest.raises(DatasetError, match="^val_fraction=0.01 of the 10 ratings of toy rounds to no validation"):
        random_split(x, RandomSplitConfig(test_fraction=0.2, val_fraction=0.01))
    with pytest.raises(DatasetError, match="^test_fraction/val_fraction hold out 10 of the 10 ratings of toy, "
                                           "leaving none to train: lower test_fraction/val_fraction"):
        random_split(x, RandomSplitConfig(test_fraction=0.5, val_fraction=0.49))
    # An explicit 0 asks for no part (matrix completion trains and validates only).
    split = random_split(x, RandomSplitConfig(test_fraction=0.0, val_fraction=0.1))
    assert (split.train.nnz, split.val.nnz, split.test.nnz) == (9, 1, 0)
    split = random_split(x, RandomSplitConfig(test_fraction=0.1))
    assert (split.train.nnz, split.val.nnz, split.test.nnz) == (9, 0, 1)


def test_validation_slice_that_moves_nothing_is_refused():
    x = make_interactions(list(range(10)), list(range(10)), np.ones(10))
    split = random_split(x, RandomSplitConfig(test_fraction=0.1))
    with pytest.raises(DatasetError, match=r"^val_fraction=0.05 of the 9 ratings of the training part rounds to "
                                           r"no validation rating .*raise val_fraction \(--val_fraction\)"):
        validation_slice(split, 0.05)
    assert validation_slice(split, 0.2).val.nnz == 2


def test_time_split_empty_test_or_validation_is_refused():
    # Two train ratings, one usable rating in the test window: with val_fraction 0.5 it goes to one part only.
    x = make_interactions(["a", "b", "a"], [1, 2, 2], [3, 4, 5],
                          [unix("2005-10-01"), unix("2005-10-02"), unix("2005-12-02")])
    draw = lambda seed: np.random.default_rng(seed).random(1)[0] < 0.5
    to_val, to_test = (next(s for s in range(100) if draw(s) == v) for v in (True, False))
    window = NETFLIX_WINDOWS["3m"]
    with pytest.raises(DatasetError) as e:
        time_split(x, window, seed=to_val)
    assert str(e.value) == ("the time split of toy leaves no test ratings: all 1 usable ratings of the test window "
                            "2005-12-01..2005-12-31 went to validation (val_fraction=0.5): widen the test window or "
                            "lower val_fraction")
    with pytest.raises(DatasetError, match=r"^the time split of toy leaves no validation ratings: none of the 1 "
                                           r"usable ratings .* or set it to 0 to train without validation$"):
        time_split(x, window, seed=to_test)
    no_val = TimeSplitConfig(*dataclasses.astuple(window)[:4], val_fraction=0.0)
    split = time_split(x, no_val, seed=to_val)
    assert (split.train.nnz, split.val.nnz, split.test.nnz) == (2, 0, 1)


def test_official_fold_u1(mirror):
    split = official_fold(mirror / "ml-100k", "u1")
    assert split.train.nnz == 80000 and split.test.nnz == 20000 and split.val.nnz == 0
    assert split.train.shape == split.test.shape == split.val.shape == (943, 1682)
    assert split.user_ids[0] == 1 and split.item_ids[-1] == 1682
    # First lines of u1.base and u1.test: "1\t1\t5\t874965758" and "1\t6\t5\t887431973".
    assert split.train[0, 0] == 5 and split.test[0, 5] == 5 and split.train[0, 5] == 0
    assert split.train.multiply(split.test).nnz == 0


def test_official_fold_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown ML-100K fold 'u9': use one of u1, u2, u3, u4, u5, ua, ub"):
        official_fold(tmp_path, "u9")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'u1.base'} not found"):
        official_fold(tmp_path, "u1")


@pytest.mark.parametrize("part, data, line, reason", [
    ("base", b"1\t1\t5\t874965758\n1\t2\tfive\t874965758\n", 2, "expected an integer, got 'five'"),
    ("test", b"1\t3\t4\t874965758\t7\n", 1, "expected 4 fields separated by '\\t', found 5"),
    # MovieLens 100K ratings are whole stars 1..5.
    ("base", b"1\t1\t5\t874965758\n1\t2\t6\t874965758\n", 2, "rating 6 outside [1, 5]"),
    ("base", b"1\t1\t0\t874965758\n", 1, "rating 0 outside [1, 5]"),
    ("test", b"1\t3\t3.5\t874965758\n", 1, "expected an integer, got '3.5'"),
    # A truncated file: the last line is cut in the middle of its fields.
    ("base", b"1\t1\t5\t874965758\n1\t2\t3\t874965758\n1\t3", 3, "expected 4 fields separated by '\\t', found 2"),
    ("base", b"1\t1\t5\t874965758\n1\t2\t3\t", 2, "expected an integer, got ''"),
    # A latin-1 byte (0xe9) where UTF-8 is expected; the quoted line shows it as U+FFFD.
    ("test", b"1\t3\t4\t874965758\n1\t4\xe9\t4\t874965758\n", 2, "byte 0xe9 at column 4 is not valid UTF-8"),
    # An id too large for int64 is no id of ML-100K (pandas would raise OverflowError).
    ("base", b"99999999999999999999\t1\t5\t874965758\n", 1, "integer '99999999999999999999' does not fit in 64 bits"),
])
def test_official_fold_bad_lines_name_file_and_line(tmp_path, part, data, line, reason):
    (tmp_path / "u1.base").write_bytes(b"1\t1\t5\t874965758\n")
    (tmp_path / "u1.test").write_bytes(b"1\t3\t4\t874965758\n")
    (tmp_path / f"u1.{part}").write_bytes(data)
    with pytest.raises(DatasetError) as e:
        official_fold(tmp_path, "u1")
    text = data.split(b"\n")[line - 1].decode("utf-8", "replace")
    assert str(e.value) == (f"{tmp_path / f'u1.{part}'}:{line}: {reason}: {text!r}; "
                            f"fix or delete that line, or re-download the dataset")


def test_official_fold_empty_file(tmp_path):
    (tmp_path / "u1.base").write_bytes(b"1\t1\t5\t874965758\n")
    (tmp_path / "u1.test").write_bytes(b"")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'u1.test'}: no ratings could be read"):
        official_fold(tmp_path, "u1")
    # The hand-made fold itself reads: user 1, items 1 and 3.
    (tmp_path / "u1.test").write_bytes(b"1\t3\t4\t874965758\n")
    split = official_fold(tmp_path, "u1")
    assert split.item_ids.tolist() == [1, 3] and split.train[0, 0] == 5 and split.test[0, 1] == 4


def test_validation_slice():
    x = random_interactions()
    split = random_split(x, RandomSplitConfig(test_fraction=0.1), 0)
    tuned = validation_slice(split, 0.25, seed=4)
    assert tuned.val.nnz == round(0.25 * split.train.nnz)
    assert tuned.train.nnz + tuned.val.nnz == split.train.nnz
    assert tuned.train.multiply(tuned.val).nnz == 0
    assert abs(tuned.train + tuned.val - split.train).max() == 0
    assert (tuned.test != split.test).nnz == 0
    with pytest.raises(ConfigError, match=r"fraction=1 is not a fraction in \(0, 1\)"):
        validation_slice(split, 1)


def test_netflix_raw_files_through_the_time_split_by_hand(raw):
    """The fixture's 5 ratings (tests/fixtures/raw/netflix): train Apr..Aug 2005, test Sep..Oct 2005, no val.

    Train window: (822109, movie 1, 05-13) and (1488844, movie 2, 04-29) -> users {822109, 1488844},
    movies {1, 2}. Test window: (1488844, 1, 09-06) is kept; (885013, 1, 10-19) and (2059652, 2, 09-05)
    are dropped (users never seen in training). So val + test hold exactly one rating: 3 for (1488844, 1).
    """
    from data import formats

    x = formats.parse_netflix(raw / "netflix")
    window = TimeSplitConfig("2005-04-01", "2005-08-31", "2005-09-01", "2005-10-31", val_fraction=0.0)
    split = time_split(x, window, seed=0)
    assert split.train.shape == (2, 2) and split.train.nnz == 2
    assert sorted(split.user_ids.tolist()) == [822109, 1488844] and sorted(split.item_ids.tolist()) == [1, 2]
    held = (split.val + split.test).tocoo()
    assert held.nnz == 1
    assert (split.user_ids[held.row[0]], split.item_ids[held.col[0]], held.data[0]) == (1488844, 1, 3.0)
