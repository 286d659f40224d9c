"""One run repeated over seeds: the mean and a 95% t-interval of every test metric.

:func:`repeat` trains and tests the same settings once per seed (each seed a
new split where the protocol draws one, a new initialization and data order),
each in its own run folder ``<out>/seed-<s>/``, and writes into ``<out>/``:

* ``seeds.md``   a markdown table: per metric the mean, the 95% interval and each seed's value;
* ``seeds.json`` the same numbers.

Like :mod:`training.compare` it is resumable: a seed whose folder holds exactly
this run with test metrics is not retrained; one whose folder holds other
settings is moved aside and retrained.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from scipy import stats

from data import files
from data.errors import ConfigError
from training import distribute, runner
from training.config import RunConfig

REPORT = "seeds"
CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high) of Student's t-interval of the mean of ``values``.

    ``mean ± t_{(1 + confidence) / 2, n - 1} · s / √n`` with ``s`` the sample
    standard deviation; with one value the interval is that value (no spread known).
    """
    x = np.asarray(values, np.float64)
    if x.size == 0:
        raise ValueError("t_interval of no values")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def parse_seeds(seeds: Union[str, Sequence]) -> list[int]:
    """The seeds of ``--seeds`` (``"0,1,2"`` or ints), distinct and in order.

    Raises:
      ConfigError: empty, or not whole numbers >= 0.
    """
    items = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    out = []
    for item in items:
        text = str(item).strip()
        if not text.isdigit():
            raise ConfigError(f"--seeds takes whole numbers >= 0 separated by commas, e.g. 0,1,2,3,4; got {item!r}")
        out.append(int(text))
    out = list(dict.fromkeys(out))
    if len(out) < 2:
        raise ConfigError("--seeds needs at least two seeds for an interval, e.g. --seeds 0,1,2,3,4")
    return out


def repeat(base: RunConfig, seeds: Sequence[int], out_dir: Union[str, Path], verbose: bool = True) -> dict:
    """Trains and tests ``base`` once per seed; writes the table and the JSON.

    Args:
      base: the run; ``seed``, ``modes`` and ``export_dir`` are replaced per
        seed; ``base.train.fresh`` retrains every seed.
      seeds: at least two seeds.
      out_dir: seed ``s`` runs in ``out_dir/seed-<s>``.
      verbose: print progress and the final table.

    Returns:
      The report of ``seeds.json``: ``model``, ``dataset``, ``protocol``,
      ``seeds``, ``runs`` (``seed``, ``export_dir``, ``test``, ``reused``) and
      ``metrics``: name -> ``mean``, ``low``, ``high``, ``std``, ``values``.
    """
    seeds = parse_seeds(seeds)
    out_dir = Path(out_dir)
    runs, info = [], {}
    for i, seed in enumerate(seeds):
        run_dir = out_dir / f"seed-{seed}"
        cfg = base.in_series(run_dir, seed=seed)
        if verbose:
            print(f"seeds: run {i + 1}/{len(seeds)}: seed {seed} in {run_dir}", flush=True)
        results = runner.run(cfg)
        info = results.get("data", info)
        runs.append({"seed": seed, "export_dir": str(run_dir), "reused": bool(results.get("reused")),
                     "test": {k: v for k, v in results["test"].items() if not k.endswith("/count")}})
    metrics = summarize({name: [r["test"][name] for r in runs] for name in runs[0]["test"]})
    report = {"model": base.model, "dataset": base.data.dataset, "protocol": info.get("protocol"), "seeds": seeds,
              "confidence": CONFIDENCE, "metrics": metrics, "runs": runs}
    if distribute.get(base.distribution, base.devices).is_chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        files.write_json(out_dir / f"{REPORT}.json", report)
        files.write_text(out_dir / f"{REPORT}.md", markdown(report))
        if verbose:
            print(markdown(report), flush=True)
            print(f"seeds: wrote {REPORT}.md and {REPORT}.json in {out_dir}", flush=True)
    return report


def summarize(values: dict[str, Sequence[float]]) -> dict[str, dict]:
    """Metric -> its repeated values, as ``seeds.json`` reports them: ``mean``, ``low``, ``high`` (the 95%
    t-interval), ``std`` and ``values``."""
    out = {}
    for name, vals in values.items():
        mean, low, high = t_interval(vals)
        out[name] = {"mean": mean, "low": low, "high": high, "std": float(np.std(vals, ddof=1)), "values": list(vals)}
    return out


def markdown(report: dict) -> str:
    """The table of :func:`repeat`'s report: metric, mean, 95% interval, then one column per seed."""
    seeds = report["seeds"]
    head = (f"{report['model']} on {report['dataset']} ({report.get('protocol')}), {len(seeds)} seeds, "
            f"mean and {report['confidence']:.0%} t-interval of the test metrics\n\n")
    lines = ["| metric | mean | interval | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in seeds) + " |"]
    for name, m in report["metrics"].items():
        lines.append(f"| {name} | {m['mean']:.4f} | {m['low']:.4f} .. {m['high']:.4f} | "
                     + " | ".join(f"{v:.4f}" for v in m["values"]) + " |")
    return head + "\n".join(lines) + "\n"
