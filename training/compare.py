"""One command, several models, one report: which model for this data?

:func:`compare` trains and tests a list of models on one dataset, protocol and
seed (so on the very same split: the prepared split is cached by exactly those),
each in its own run folder ``<out>/<model>/``, and writes into ``<out>/``:

* ``compare.md``   a markdown table of the test metrics, training time and epochs;
* ``compare.json`` the same numbers (and each run folder);
* ``compare.png``  a bar chart, one panel per metric plus training time.

It is resumable: a model whose run folder holds exactly the requested run (its
manifest equals the new one, epochs included) with test metrics is not
retrained (its numbers are reused and the log says so); an interrupted model,
or one asked for more epochs, resumes from its latest checkpoint; a model whose
folder holds another run (another seed, learning rate, data...) is moved aside
and retrained, and the log names the settings that differed.

Top-k models (``popularity``, ``ease``, ``vae``, ``dae``) are scored by
ranking metrics on held-out users, rating models (``mf``, ``deeprec``,
``multitask``) by RMSE on held-out ratings: they cannot share a table, and a
list mixing both is refused.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from data import files
from data.errors import ConfigError
from training import distribute, families, runner
from training.config import RunConfig

REPORT = "compare"
# Metrics where lower is better; every other metric is better higher.
_LOWER_IS_BETTER = ("rmse", "mse")


def parse_models(models: Union[str, Sequence[str]]) -> list[str]:
    """The model list of ``--compare``, checked.

    Args:
      models: ``"popularity,ease,vae"`` or a sequence of family names.

    Returns:
      The distinct names in the given order.

    Raises:
      ConfigError: empty, unknown names, or top-k and rating models mixed.
    """
    names = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    names = list(dict.fromkeys(names))
    if not names:
        raise ConfigError("--compare needs model names, e.g. --compare popularity,ease,vae,dae")
    tasks = {name: families.get(name).task for name in names}
    if len(set(tasks.values())) > 1:
        topk = ", ".join(n for n, t in tasks.items() if t == "topk")
        rating = ", ".join(n for n, t in tasks.items() if t == "rating")
        raise ConfigError(f"--compare: {topk} rank items (top-k metrics on held-out users) but {rating} predict "
                          f"ratings (RMSE): they cannot share a table; compare each group in its own run")
    return names


def default_dir(dataset: str, models: Union[str, Sequence[str]]) -> Path:
    """``runs/<dataset>-compare-topk`` or ``-rating``: the two kinds of comparison never share a folder."""
    task = families.get(parse_models(models)[0]).task
    return Path("runs") / f"{Path(dataset).name}-compare-{task}"


def compare(models: Union[str, Sequence[str]], base: RunConfig, out_dir: Union[str, Path],
            verbose: bool = True, seeds: Optional[Sequence[int]] = None,
            per_model: Optional[Mapping[str, RunConfig]] = None) -> dict:
    """Trains and tests each model on the same split; writes the table, JSON and chart.

    Args:
      models: family names (see :func:`parse_models`).
      base: the run settings shared by every model (data, seed, optimizer,
        epochs, hyper-parameters; each family takes only its own). ``modes``
        and ``export_dir`` are replaced; ``base.train.fresh`` retrains all.
      out_dir: the comparison folder; model ``m`` runs in ``out_dir/m``
        (with ``seeds``: ``out_dir/m/seed-<s>``, see :mod:`training.repeats`).
      seeds: repeat every model over these seeds (the same splits for all
        models): the table then gives each metric's mean and 95% t-interval,
        and the report marks the models significantly below the best on the
        task's metric (``ndcg@100``, ``rmse``) by a paired t-test over the seeds.
      verbose: print progress and the final table.
      per_model: a model's own settings instead of ``base`` (main.py: its
        preset for the dataset); they must share ``base``'s data settings.

    Returns:
      The report written to ``compare.json``: ``dataset``, ``protocol``,
      ``seed``, ``task``, ``metrics`` (the table's columns: every test metric
      but ``mse`` next to ``rmse``) and ``models``
      (``model``, ``export_dir``, ``test`` metrics, ``train_seconds``,
      ``epochs``, ``reused``; with seeds also ``interval``, ``values`` and
      ``versus_best``: ``best``, or ``p`` and ``below`` from the paired test).
    """
    names = parse_models(models)
    out_dir = Path(out_dir)
    rows = []
    info = {}
    for i, name in enumerate(names):
        run_dir = out_dir / name
        own = (per_model or {}).get(name, base)
        if own.data != base.data or own.seed != base.seed:
            raise ValueError(f"compare: the settings of {name} have other data or another seed than the others")
        cfg = own.in_series(run_dir, model=name)
        if verbose:
            print(f"compare: model {i + 1}/{len(names)}: {name} in {run_dir}", flush=True)
        if seeds:
            rows.append(_repeated(cfg, seeds, run_dir, verbose))
            info = {"protocol": rows[-1].pop("protocol")}
            continue
        results = runner.run(cfg)
        reused = bool(results.get("reused"))
        info = results.get("data", info)
        train = results.get("train", {})
        rows.append({"model": name, "export_dir": str(run_dir), "reused": reused,
                     "test": {k: v for k, v in results["test"].items() if not k.endswith("/count")},
                     "train_seconds": train.get("train_seconds"), "epochs": train.get("epochs")})
    task = families.get(names[0]).task
    report = {"dataset": base.data.dataset, "protocol": info.get("protocol"), "seed": list(seeds) if seeds else
              base.seed, "task": task, "metrics": table_metrics(rows), "models": rows}
    if seeds:
        report["versus"] = versus_best(rows, TASK_METRIC[task])
    if distribute.get(base.distribution, base.devices).is_chief:
        out_dir.mkdir(parents=True, exist_ok=True)
        files.write_json(out_dir / f"{REPORT}.json", report)
        files.write_text(out_dir / f"{REPORT}.md", markdown(report))
        plot(report, out_dir / f"{REPORT}.png")
        if verbose:
            print(markdown(report), flush=True)
            print(f"compare: wrote {REPORT}.md, {REPORT}.json and {REPORT}.png in {out_dir}", flush=True)
    return report


# The metric a comparison with seeds tests the models on.
TASK_METRIC = {"topk": "ndcg@100", "rating": "rmse"}
SIGNIFICANCE = 0.05


def _repeated(cfg: RunConfig, seeds: Sequence[int], run_dir: Path, verbose: bool) -> dict:
    """One model's row of a comparison over seeds."""
    from training import repeats

    rep = repeats.repeat(cfg, seeds, run_dir, verbose=verbose)
    return {**seeds_row(rep, cfg.model), "export_dir": str(run_dir), "reused": all(r["reused"] for r in rep["runs"]),
            "train_seconds": None, "epochs": None, "protocol": rep["protocol"]}


def seeds_row(report: dict, model: str) -> dict:
    """A ``seeds.json`` report (:func:`training.repeats.repeat`) as a row of :func:`versus_best`.

    Returns:
      ``model``, ``test`` (each metric's mean), ``interval`` ([low, high]) and ``values`` (per seed).
    """
    metrics = report["metrics"]
    return {"model": model, "test": {k: m["mean"] for k, m in metrics.items()},
            "interval": {k: [m["low"], m["high"]] for k, m in metrics.items()},
            "values": {k: m["values"] for k, m in metrics.items()}}


def versus_best(rows: list[dict], metric: str) -> dict:
    """Which models are significantly below the best on ``metric``: a paired t-test over the seeds.

    The seeds' splits are the same for every model, so model ``m``'s value on
    seed ``s`` pairs with the best model's on seed ``s``. Sets each row's
    ``versus_best`` to ``{"best": True}`` or ``{"p": p, "below": p < 0.05}``.

    Returns:
      ``{"metric", "best", "alpha"}``.
    """
    from scipy import stats

    lower = metric.rsplit("/", 1)[-1] in _LOWER_IS_BETTER
    scored = [r for r in rows if metric in r["test"]]
    best = (min if lower else max)(scored, key=lambda r: r["test"][metric])
    for row in scored:
        if row is best:
            row["versus_best"] = {"best": True}
            continue
        diffs = [(a - b) if lower else (b - a) for a, b in zip(row["values"][metric], best["values"][metric])]
        if np.ptp(diffs) == 0:  # the same gap on every seed: no spread to test, the sign says it all
            p = 0.0 if diffs[0] > 0 else 1.0
        else:
            p = float(stats.ttest_rel(best["values"][metric], row["values"][metric],
                                      alternative="less" if lower else "greater").pvalue)
        row["versus_best"] = {"p": p, "below": p < SIGNIFICANCE}
    return {"metric": metric, "best": best["model"], "alpha": SIGNIFICANCE}


def table_metrics(rows: Sequence[dict]) -> list[str]:
    """The table's metric columns: every test metric of the rows in first-seen order, but ``mse`` next to ``rmse``.

    RMSE says what MSE says, in rating units; the JSON rows keep both.
    """
    metrics = list(dict.fromkeys(k for row in rows for k in row["test"]))
    return [m for m in metrics if not (m.rsplit("/", 1)[-1] == "mse" and m[:-3] + "rmse" in metrics)]


def _best(report: dict, metric: str) -> float:
    values = [row["test"].get(metric, math.nan) for row in report["models"]]
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan
    return min(values) if metric.rsplit("/", 1)[-1] in _LOWER_IS_BETTER else max(values)


def markdown(report: dict) -> str:
    """The report as a markdown table; the best value of each metric in bold.

    Returns:
      A title line, a blank line and the table (one row per model).
    """
    metrics = report["metrics"]
    best = {m: _best(report, m) for m in metrics}

    def cell(metric: str, value, interval=None) -> str:
        if value is None or not math.isfinite(value):
            return ""
        text = f"{value:.4f}" + (f" ({interval[0]:.4f}..{interval[1]:.4f})" if interval else "")
        return f"**{text}**" if value == best[metric] else text

    if "versus" in report:
        return _markdown_seeds(report, cell)
    head = ["model", *metrics, "train time (s)", "epochs"]
    lines = [f"{report['dataset']}, protocol {report['protocol']}, seed {report['seed']} (test metrics)", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in report["models"]:
        seconds = row["train_seconds"]
        cells = [row["model"], *(cell(m, row["test"].get(m)) for m in metrics),
                 f"{seconds:.1f}" if seconds is not None else "",
                 str(row["epochs"]) if row["epochs"] is not None else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _markdown_seeds(report: dict, cell) -> str:
    versus = report["versus"]
    head = ["model", *report["metrics"], f"vs best on {versus['metric']}"]
    lines = [f"{report['dataset']}, protocol {report['protocol']}, seeds {','.join(map(str, report['seed']))}: "
             f"mean (95% t-interval) of the test metrics; 'below' = significantly worse than {versus['best']} "
             f"(paired t-test over the seeds, p < {versus['alpha']})", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in report["models"]:
        mark = row.get("versus_best", {})
        verdict = "best" if mark.get("best") else (f"{'below' if mark['below'] else 'not below'} (p={mark['p']:.3g})"
                                                   if mark else "")
        cells = [row["model"], *(cell(m, row["test"].get(m), row["interval"].get(m)) for m in report["metrics"]),
                 verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Union[str, Path]) -> Path:
    """A PNG bar chart: one panel per test metric, and one of training time.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [row["model"] for row in report["models"]]
    panels = [(m, [row["test"].get(m, math.nan) for row in report["models"]]) for m in report["metrics"]]
    if "versus" not in report:
        panels.append(("train time (s)", [row["train_seconds"] or 0.0 for row in report["models"]]))
    fig = Figure(figsize=(3.2 * len(panels), 3.2))
    FigureCanvasAgg(fig)
    for i, (title, values) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        errors = None
        if "versus" in report and title in report["metrics"]:  # the 95% t-intervals as error bars
            spans = [row["interval"].get(title, [v, v]) for row, v in zip(report["models"], values)]
            errors = [[v - s[0] for v, s in zip(values, spans)], [s[1] - v for v, s in zip(values, spans)]]
        bars = ax.bar(names, values, yerr=errors, capsize=3, color=[f"C{j}" for j in range(len(names))])
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    seeds = report["seed"]
    fig.suptitle(f"{report['dataset']} ({report['protocol']}, "
                 f"{'seeds ' + ','.join(map(str, seeds)) if isinstance(seeds, list) else f'seed {seeds}'})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
