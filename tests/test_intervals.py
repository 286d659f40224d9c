"""training/intervals.py: the bootstrap interval over test rows, against a slow NumPy reference."""

import json
import math

import numpy as np
import pytest

from training import intervals


def _reference(sums, counts, resamples, seed, confidence=0.95, sqrt=False):
    """One replicate at a time: draw n rows with replacement, sum their statistics, take the ratio."""
    rng = np.random.default_rng(seed)
    n = len(sums)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        total, count = sum(sums[i] for i in idx), sum(counts[i] for i in idx)
        if count > 0:
            values.append(math.sqrt(total / count) if sqrt else total / count)
    tail = (1 - confidence) / 2 * 100
    return list(np.percentile(values, [tail, 100 - tail]))


@pytest.mark.parametrize("resamples,seed", [(50, 0), (250, 3), (1000, 7)])
def test_bootstrap_equals_the_reference(resamples, seed):
    rng = np.random.default_rng(seed + 100)
    n = 37
    hits = rng.random(n)  # e.g. each user's NDCG, count 1 per user; some users count 0 (nothing held out)
    valid = (rng.random(n) > 0.2).astype(float)
    se = rng.random(n) * 4  # squared errors summed per user, with that user's number of ratings
    ratings = rng.integers(1, 6, n).astype(float)
    rows = {"ndcg@100": (hits * valid, valid), "mse": (se * ratings, ratings)}
    got = intervals.bootstrap(rows, resamples=resamples, seed=seed)
    # Both metrics come from the same draws: the reference is run once per metric with the same seed.
    np.testing.assert_allclose(got["ndcg@100"], _reference(hits * valid, valid, resamples, seed), rtol=1e-12)
    np.testing.assert_allclose(got["mse"], _reference(se * ratings, ratings, resamples, seed), rtol=1e-12)
    np.testing.assert_allclose(got["rmse"], _reference(se * ratings, ratings, resamples, seed, sqrt=True),
                               rtol=1e-12)


def test_identical_rows_give_a_point_interval_and_more_rows_a_narrower_one():
    same = {"recall@20": (np.full(10, 0.5), np.ones(10))}
    assert intervals.bootstrap(same) == {"recall@20": [0.5, 0.5]}
    rng = np.random.default_rng(0)
    few, many = rng.random(20), rng.random(2000)
    width = lambda x: np.diff(intervals.bootstrap({"m": (x, np.ones_like(x))})["m"])[0]
    assert width(many) < width(few) / 5  # ~ 1/sqrt(n): sqrt(100) = 10
    lo, hi = intervals.bootstrap({"m": (many, np.ones_like(many))})["m"]
    assert lo < many.mean() < hi


def test_group_size_bounds_the_units():
    assert intervals.group_size(93) == 1 and intervals.group_size(2000) == 1
    assert intervals.group_size(2001) == 2 and intervals.group_size(138_493) == 70


def test_row_stats_and_the_point_values_match_the_batched_evaluation(mirror, tmp_path):
    from training import fit, trainer
    from training.config import DataConfig, RunConfig, TrainConfig
    from data.prepare import prepare

    cfg = RunConfig(model="ease", data=DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(tmp_path)),
                    train=TrainConfig(verbose=False, export_dir=str(tmp_path / "run")))
    split, _ = prepare(cfg.data, "topk", 0, verbose=False)
    result = fit.fit(cfg, split)
    rows = intervals.row_stats(result.model.evaluate_step, result.data.test_rows())
    assert len(rows["ndcg@100"][0]) == split.test_input.shape[0]
    batched = trainer.evaluate(result.model.evaluate_step, result.data.test(), verbose=False)
    for name, value in intervals.point_values(rows).items():
        assert math.isclose(value, batched[name], rel_tol=1e-5), name


def test_a_run_reports_its_test_interval(mirror, tmp_path):
    from conftest import main_process

    proc = main_process("--model", "popularity", "--train", "--test", "--export_dir", tmp_path / "run",
                        "--data_mirror", mirror, "--data_dir", tmp_path / "d")
    assert "test 95% interval (bootstrap over 93 test rows)" in proc.stdout
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    low, high = results["test_interval"]["ndcg@100"]
    assert low < results["test"]["ndcg@100"] < high and results["test_interval"]["units"] == 93
