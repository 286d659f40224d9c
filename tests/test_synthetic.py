"""Tests of data/synthetic.py: exact counts, uniqueness, power-law shape, the unobserved-item sampler."""

import numpy as np
import pytest
import scipy.sparse as sp

from data.errors import ConfigError, DatasetError
from data.synthetic import RATING_PERCENT, SHAPES, _power_law_ranks, power_law_interactions, sample_unobserved


def test_exact_count_unique_pairs_and_ranges():
    x = power_law_interactions(300, 80, 5000, seed=3, start="2000-01-01", end="2000-01-02")
    assert len(x) == 5000 and x.n_users == 300 and x.n_items == 80
    key = x.user * 80 + x.item
    assert len(np.unique(key)) == 5000 and np.all(np.diff(key) > 0)  # unique, sorted by (user, item)
    assert x.rating.dtype == np.float32 and set(np.unique(x.rating)) <= {1, 2, 3, 4, 5}
    # 2000-01-01 00:00 UTC = 946684800; one day later 946771200 (excluded).
    assert x.timestamp.min() >= 946684800 and x.timestamp.max() < 946771200
    np.testing.assert_array_equal(x.user_ids, np.arange(300))


def test_every_pair_when_asked_for_all():
    # Every user must hold every item: the uniform fill has to finish what the power-law draws cannot.
    x = power_law_interactions(20, 15, 300, seed=0, alpha=2.0)
    assert len(x) == 300 and len(np.unique(x.user * 15 + x.item)) == 300


def test_deterministic_from_seed():
    a, b, c = (power_law_interactions(200, 50, 2000, seed=s) for s in (1, 1, 2))
    for field in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.item, c.item)


def test_power_law_shape():
    x = power_law_interactions(2000, 500, 40000, seed=0, alpha=1.0, user_alpha=0.5)
    items = np.sort(np.bincount(x.item, minlength=500))[::-1]
    users = np.sort(np.bincount(x.user, minlength=2000))[::-1]
    # alpha = 1 over 500 items: the top 5 ranks carry sum(1/r, r<=5)/H(500) ~ 2.28/6.8 ~ 1/3 of the draws;
    # each item holds at most one click per user and the uniform fill spreads the rest, so about 15% (seed 0):
    # still ten times the 5/500 = 1% of uniform items.
    assert items[:5].sum() > 0.10 * len(x)
    # user_alpha = 0.5: the top user's weight is 1/sum(r**-0.5, r<=2000) ~ 1/88 of 40000 ~ 450 items (cap 500),
    # the last ~ 450/sqrt(2000) ~ 10: a spread no uniform degree has.
    assert users[0] > 20 * max(users[-1], 1) and users[0] <= 500
    flat = power_law_interactions(2000, 500, 40000, seed=0, alpha=0.0, user_alpha=0.0)
    flat_items = np.bincount(flat.item, minlength=500)
    # Uniform: each item ~ Binomial(40000, 1/500): mean 80, sd ~ 9; 6 sd either way.
    assert flat_items.min() > 80 - 54 and flat_items.max() < 80 + 54
    shares = np.bincount(flat.rating.astype(int), minlength=6)[1:] / len(flat)
    # Each share of 40000 ratings has sd <= sqrt(0.25 / 40000) = 0.0025; 0.015 is 6 sd.
    np.testing.assert_allclose(shares, np.array(RATING_PERCENT) / 100, atol=0.015)


@pytest.mark.parametrize("exponent", [1.0, 0.5, 2.0])
def test_power_law_ranks_match_the_formula(exponent):
    n, draws = 4, 200_000
    ranks = _power_law_ranks(n, exponent, draws, np.random.default_rng(0))
    # P(rank = r) = integral of x**-a over [r+1, r+2) / integral over [1, n+1):
    # a = 1: log((r+2)/(r+1)) / log(n+1); otherwise ((r+2)**(1-a) - (r+1)**(1-a)) / ((n+1)**(1-a) - 1).
    r = np.arange(n)
    if exponent == 1.0:
        expected = np.log((r + 2) / (r + 1)) / np.log(n + 1)
    else:
        b = 1 - exponent
        expected = ((r + 2) ** b - (r + 1) ** b) / ((n + 1) ** b - 1)
    got = np.bincount(ranks, minlength=n) / draws
    # sd of a share <= sqrt(0.25 / 200000) ~ 0.0011; 0.006 is over 5 sd.
    np.testing.assert_allclose(got, expected, atol=0.006)


def test_shapes():
    assert SHAPES["ml-20m"] == (136677, 20108, 10_000_000)
    assert SHAPES["netflix"] == (480189, 17770, 100_000_000)


@pytest.mark.parametrize("max_rounds", [0, 1, 4])
def test_sample_unobserved_is_uniform_over_absent_columns(max_rounds):
    # Row 0 has columns {0, 2, 3} of 6: absent {1, 4, 5}. Row 1 has all but column 4. Row 2 is empty.
    m = sp.csr_matrix(np.array([[1, 0, 1, 1, 0, 0], [1, 1, 1, 1, 0, 1], [0, 0, 0, 0, 0, 0]], np.float32))
    rows = np.repeat([0, 1, 2], 30000)
    got = sample_unobserved(rows, m.indptr, m.indices, 6, np.random.default_rng(1), max_rounds=max_rounds)
    assert got.dtype == np.int64
    assert np.all(got[rows == 1] == 4)
    for row, absent in ((0, [1, 4, 5]), (2, [0, 1, 2, 3, 4, 5])):
        counts = np.bincount(got[rows == row], minlength=6)
        assert counts[np.setdiff1d(np.arange(6), absent)].sum() == 0
        # Each share of 30000 draws has sd <= sqrt(0.25 / 30000) ~ 0.0029; 0.015 is 5 sd.
        np.testing.assert_allclose(counts[absent] / 30000, 1 / len(absent), atol=0.015)


@pytest.mark.parametrize("max_rounds", [0, 4])
def test_sample_unobserved_on_dense_rows_never_hits(max_rounds):
    rng = np.random.default_rng(0)
    dense = rng.random((50, 40)) < 0.9
    dense[:, 0] = False  # no row is full
    m = sp.csr_matrix(dense.astype(np.float32))
    rows = rng.integers(0, 50, 20000)
    got = sample_unobserved(rows, m.indptr, m.indices, 40, rng, max_rounds=max_rounds)
    assert not dense[rows, got].any()


def test_errors():
    m = sp.csr_matrix(np.ones((2, 3), np.float32))
    with pytest.raises(DatasetError, match="row 1 has all 3 columns, so none is left to sample"):
        sample_unobserved(np.array([1]), m.indptr, m.indices, 3, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="n_interactions=13 exceeds the 3 x 4 = 12 possible"):
        power_law_interactions(3, 4, 13)
    with pytest.raises(ConfigError, match="n_users=0 must be a whole number >= 1"):
        power_law_interactions(0, 4, 1)
    with pytest.raises(ConfigError, match="alpha=-1 must be a number >= 0"):
        power_law_interactions(3, 4, 5, alpha=-1)
    with pytest.raises(ConfigError, match="must be ISO dates"):
        power_law_interactions(3, 4, 5, start="yesterday")
