"""repeats: one run over several seeds, the mean and a 95% t-interval per test metric; main.py --seeds."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from conftest import main_process as _main
from data.errors import ConfigError
from training import repeats
from training.config import DataConfig, RunConfig, TrainConfig


def test_t_interval_by_hand():
    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653; half width 4.302653 / sqrt(3) = 2.484138.
    mean, low, high = repeats.t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert math.isclose(high - mean, 4.302653 / math.sqrt(3), rel_tol=1e-6)
    assert math.isclose(mean - low, high - mean)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_t_interval_equals_scipys(seed):
    values = np.random.default_rng(seed).normal(0.4, 0.02, size=5)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    mean, lo, hi = repeats.t_interval(values)
    assert math.isclose(mean, values.mean()) and math.isclose(lo, low) and math.isclose(hi, high)


def test_one_value_has_no_spread():
    assert repeats.t_interval([0.3]) == (0.3, 0.3, 0.3)


@pytest.mark.parametrize("seeds,message", [("0", "at least two seeds"), ("0,x", "whole numbers"),
                                           ("1,-2", "whole numbers"), ("", "whole numbers"), ("3,3", "two seeds")])
def test_bad_seed_lists(seeds, message):
    with pytest.raises(ConfigError, match=message):
        repeats.parse_seeds(seeds)


def test_repeat_reports_each_seed_and_resumes(mirror, tmp_path, capsys):
    out = tmp_path / "seeds"
    cfg = RunConfig(model="popularity", data=DataConfig(dataset="ml-100k", mirror=str(mirror),
                                                        data_dir=str(tmp_path / "data")),
                    train=TrainConfig(verbose=False))
    report = repeats.repeat(cfg, [0, 1, 2], out, verbose=False)
    ndcg = [r["test"]["ndcg@100"] for r in report["runs"]]
    assert len(set(ndcg)) == 3  # each seed draws its own held-out users
    m = report["metrics"]["ndcg@100"]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(ndcg), scale=stats.sem(ndcg))
    assert math.isclose(m["mean"], np.mean(ndcg)) and math.isclose(m["low"], low) and math.isclose(m["high"], high)
    saved = json.loads((out / "seeds.json").read_text())
    assert saved["metrics"]["ndcg@100"]["values"] == ndcg
    table = (out / "seeds.md").read_text()
    assert f"| ndcg@100 | {m['mean']:.4f} | {low:.4f} .. {high:.4f} |" in table
    # Again: every seed's finished run is reused, nothing is retrained.
    again = repeats.repeat(cfg, [0, 1, 2], out, verbose=False)
    assert all(r["reused"] for r in again["runs"]) and again["metrics"] == report["metrics"]


def test_main_seeds_writes_the_table(mirror, tmp_path):
    out = tmp_path / "runs"
    proc = _main("--model", "ease", "--seeds", "0,1", "--export_dir", str(out), "--data_mirror", str(mirror),
                 "--data_dir", str(tmp_path / "data"))
    assert "seeds: run 2/2: seed 1" in proc.stdout and "| ndcg@100 |" in proc.stdout
    assert "settings: preset configs/ease/ml-100k.toml" in proc.stdout
    report = json.loads((out / "seeds.json").read_text())
    assert report["seeds"] == [0, 1] and report["model"] == "ease"
    manifest = json.loads((out / "seed-1" / "run.json").read_text())
    assert manifest["seed"] == 1 and manifest["model"]["config"]["ease_lambda"] == 200.0
    assert manifest["settings"]["file"].endswith("configs/ease/ml-100k.toml")
    bad = _main("--model", "ease", "--seeds", "0,1", "--seed", "3", "--export_dir", str(out), check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == ("error: --seeds runs --train and --test for each seed: "
                                                          "drop --seed and --benchmark")
