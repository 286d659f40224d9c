"""A 95% bootstrap interval of every test metric of one run, over its test users (or test rows).

Every metric of tfcf is a ratio of summable statistics ``(sum, count)``
(:mod:`training.metrics`), so one generic bootstrap serves every model: the
test rows are evaluated one at a time, giving each row's ``(sum, count)`` per
metric, and each bootstrap replicate draws the rows with replacement and
recomputes ``Σ sum / Σ count`` (RMSE: the square root of the resampled MSE).
For top-k models a row is a held-out user; for rating models it is a user (an
item for item-based DeepRec) with all of its test ratings, so ratings of one
user are resampled together. Past :data:`MAX_GROUPS` rows, groups of
consecutive rows are the resampled units, which bounds the cost.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from training import metrics

RESAMPLES = 1000
CONFIDENCE = 0.95
MAX_GROUPS = 2000  # beyond this many test rows, consecutive rows are resampled in groups (bounded cost)
_CHUNK = 100  # replicates drawn at once: [chunk, n_rows] indices in memory


def group_size(n_rows: int) -> int:
    """Rows per resampled unit: 1 up to :data:`MAX_GROUPS` rows, then ``ceil(n_rows / MAX_GROUPS)``."""
    return max(1, -(-int(n_rows) // MAX_GROUPS))


def row_stats(step_fn: Callable[[dict], dict], dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each row's statistics: metric -> (float64 sums [n], float64 counts [n]).

    Args:
      step_fn: a model's ``evaluate_step``.
      dataset: evaluation batches, each one resampled unit (:func:`training.fit.eval_batches` with
        :func:`group_size` rows per batch).
    """
    sums: dict[str, list] = {}
    counts: dict[str, list] = {}
    for batch in dataset:
        for name, (total, count) in step_fn(batch).items():
            sums.setdefault(name, []).append(float(total))
            counts.setdefault(name, []).append(float(count))
    return {k: (np.asarray(sums[k], np.float64), np.asarray(counts[k], np.float64)) for k in sums}


def bootstrap(rows: dict[str, tuple[np.ndarray, np.ndarray]], resamples: int = RESAMPLES,
              confidence: float = CONFIDENCE, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of the metrics of :func:`row_stats`.

    Replicate ``b`` draws ``n`` row indices uniformly with replacement
    (``numpy.random.default_rng(seed)``, ``integers(0, n, size=n)`` per
    replicate, in order) and computes each metric from the drawn rows' summed
    statistics; the interval is the ``(1 ± confidence) / 2`` percentiles of
    the replicates (replicates where a metric's count is 0 are left out).

    Returns:
      metric -> [low, high], with ``rmse`` next to each ``mse`` as in
      :func:`training.metrics.finalize`.
    """
    names = sorted(rows)
    if not names:
        return {}
    n = len(rows[names[0]][0])
    rng = np.random.default_rng(seed)
    sums = np.stack([rows[k][0] for k in names], axis=1)  # [n, m]
    counts = np.stack([rows[k][1] for k in names], axis=1)
    replicates = {name: [] for name in names}
    done = 0
    while done < resamples:
        chunk = min(_CHUNK, resamples - done)
        picks = rng.integers(0, n, size=(chunk, n))
        s, c = sums[picks].sum(axis=1), counts[picks].sum(axis=1)  # [chunk, m]
        for j, name in enumerate(names):
            replicates[name].append(np.where(c[:, j] > 0, s[:, j] / np.where(c[:, j] > 0, c[:, j], 1), np.nan))
        done += chunk
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name in names:
        values = np.concatenate(replicates[name])
        values = values[~np.isnan(values)]
        if not values.size:
            continue
        out[name] = [float(v) for v in np.percentile(values, [tail, 100 - tail])]
        if name.rsplit("/", 1)[-1] == "mse":
            out[name[:-len("mse")] + "rmse"] = [float(v) for v in np.percentile(np.sqrt(values), [tail, 100 - tail])]
    return out


def point_values(rows: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The metrics of all rows together (what the batched evaluation reports)."""
    return metrics.finalize({k: (float(s.sum()), float(c.sum())) for k, (s, c) in rows.items()})
