"""The README's "models and the numbers" tables, from fresh runs: every model at its defaults, over 5 seeds.

    python bench/readme_tables.py                    # all tables (hours on 2 CPU cores; resumable)
    python bench/readme_tables.py --tables topk --datasets ml-100k --seeds 0,1

Each cell is ``python main.py --model M --dataset D --seeds S`` (the defaults: a model's preset for the dataset
where ``configs/`` has one), run in ``--out/<dataset>-<model>/`` so that an interrupted call resumes and a finished
one is read back. Tables: ``topk`` (NDCG@100 of every top-k model on the three data sets, the models significantly
below the best of their column marked by a paired t-test over the seeds, as ``--compare --seeds``), ``rating``
(the rating models on ML-100K with their presets, MF on the five folds, the popularity MRR MultiTaskNet is measured
against) and ``untuned`` (the rating models on ml-latest-small, where none was tuned). Paste the output into the
README's "Models and the numbers they reach here".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TABLES = {
    "topk": {"models": ["popularity", "ease", "ease:none", "dae", "vae", "recvae"], "metric": "ndcg@100",
             "also": ["recall@20", "recall@50"],
             "datasets": ["ml-100k", "ml-latest-small", "lastfm-2k"]},
}
# The rating table: one row per (label, model, extra main.py flags, metrics shown); every model with its preset.
RATING_ROWS = [
    ("DeepRec", "deeprec", (), ("rmse",)),
    ("low-rank MF", "mf", (), ("rmse",)),
    ("MultiTaskNet", "multitask", (), ("mse", "mrr")),
]
RATING_DATASET = "ml-100k"
FOLDS = ("u1", "u2", "u3", "u4", "u5")
# Rating models on a data set none of them was tuned on: their default.toml and the size rules alone.
UNTUNED = {"models": ["mf", "deeprec", "multitask"], "dataset": "ml-latest-small", "metric": "rmse"}


def run_cell(model: str, dataset: str, seeds: str, out: Path, extra=()) -> dict:
    """``main.py --seeds`` for one model and dataset; returns its seeds.json.

    ``model`` may end in ``:none``: the model without presets (``--config none``, the built-in defaults).
    """
    name, _, variant = model.partition(":")
    folder = out / f"{dataset}-{model.replace(':', '-')}"
    if variant:
        extra = (*extra, "--config", variant)
    cmd = [sys.executable, str(REPO / "main.py"), "--model", name, "--dataset", dataset, "--seeds", seeds,
           "--export_dir", str(folder), *extra]
    print("readme_tables:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return json.loads((folder / "seeds.json").read_text())


def table(kind: str, cells: dict[str, dict[str, dict]], seeds: str, metric: str | None = None) -> str:
    """The markdown table of one kind: a row per model, a column per dataset.

    Args:
      cells: dataset -> model -> seeds.json report.
      metric: the metric shown (default: the kind's main one).
    """
    from training import compare

    spec = TABLES[kind]
    metric = metric or spec["metric"]
    datasets = [d for d in spec["datasets"] if d in cells]
    marks = {}
    for dataset in datasets:
        rows = [compare.seeds_row(cells[dataset][m], m) for m in spec["models"] if m in cells[dataset]]
        compare.versus_best(rows, metric)
        marks[dataset] = {r["model"]: r for r in rows}
    lines = [f"Test {metric}, mean (95% t-interval) over seeds {seeds}; 'below': significantly worse than the best "
             f"of its column (paired t-test over the seeds, p < {compare.SIGNIFICANCE}). Command: "
             f"`python main.py --model M --dataset D --seeds {seeds}`.", "",
             "| model | " + " | ".join(datasets) + " |", "| --- | " + " | ".join("---" for _ in datasets) + " |"]
    for model in spec["models"]:
        out = []
        for dataset in datasets:
            row = marks[dataset].get(model)
            if row is None:
                out.append("")
                continue
            low, high = row["interval"][metric]
            mark = row["versus_best"]
            verdict = " **best**" if mark.get("best") else (" below" if mark["below"] else "")
            out.append(f"{row['test'][metric]:.4f} ({low:.4f}..{high:.4f}){verdict}")
        label = model.replace(":none", " (`--config none`: built-in defaults)")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def _cell(report: dict, metric: str) -> str:
    m = report["metrics"][metric]
    return f"{m['mean']:.4f} ({m['low']:.4f}..{m['high']:.4f})"


def folds_report(model: str, out: Path) -> dict:
    """``main.py --model M --fold uK --train --test`` for ML-100K's five folds, as a seeds.json-like report."""
    from training import repeats

    values = {}
    for fold in FOLDS:
        folder = out / f"{RATING_DATASET}-{model}-folds" / fold
        cmd = [sys.executable, str(REPO / "main.py"), "--model", model, "--dataset", RATING_DATASET, "--fold", fold,
               "--train", "--test", "--export_dir", str(folder)]
        if not (folder / "results.json").is_file() or "test" not in json.loads((folder / "results.json").read_text()):
            print("readme_tables:", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True, cwd=REPO)
        for name, value in json.loads((folder / "results.json").read_text())["test"].items():
            values.setdefault(name, []).append(value)
    return {"metrics": repeats.summarize(values)}


def popularity_mrr(report: dict, data_dir=None) -> dict:
    """The MRR of ranking items by their training count, on the splits of a seeds.json report's runs.

    The yardstick of MultiTaskNet's interaction task: the same metric (:func:`training.metrics.mrr`), the same
    splits (each run's, rebuilt from its run folder), no model.
    """
    import numpy as np

    from cli import tf_logs

    tf_logs.import_tensorflow()  # without the CUDA start-up noise on a CPU machine
    import tensorflow as tf

    from training import metrics, repeats, runner

    def as_sparse(m):
        coo = m.tocoo()
        return tf.sparse.reorder(tf.SparseTensor(np.stack([coo.row, coo.col], 1).astype(np.int64),
                                                 coo.data.astype(np.float32), coo.shape))

    values = []
    for run in report["runs"]:
        split, _ = runner.split_of_run(run["export_dir"], data_dir)
        counts = np.asarray(split.train.getnnz(axis=0), np.float32)
        scores = tf.constant(np.tile(counts, (split.train.shape[0], 1)))
        total, n = metrics.mrr(scores, as_sparse(split.test), seen=as_sparse(split.train))
        values.append(float(total) / float(n))
    return {"metrics": repeats.summarize({"mrr": values})}


def rating_table(cells: dict[str, dict], seeds: str) -> str:
    """The markdown table of the rating models on ML-100K (each with its preset).

    Args:
      cells: label -> seeds.json report (and ``"folds"``: the five-fold MF report, ``"popularity"``: its MRR).
    """
    lines = [f"Test metrics on {RATING_DATASET}, mean (95% t-interval) over seeds {seeds} (each model's preset: "
             f"u1 for DeepRec and MF, the homework's 95/5 random split for MultiTaskNet). Command: "
             f"`python main.py --model M --seeds {seeds}`.", "",
             "| model | protocol | RMSE | MSE | MRR |", "| --- | --- | --- | --- | --- |"]
    cols = ("rmse", "mse", "mrr")
    for label, model, _, shown in RATING_ROWS:
        report = cells.get(label)
        if report is None:
            continue
        row = [(_cell(report, c) if c in shown and c in report["metrics"] else "") for c in cols]
        lines.append(f"| {label} (`--model {model}`) | {report.get('protocol', '')} | " + " | ".join(row) + " |")
        if model == "mf" and "folds" in cells:
            lines.append(f"| low-rank MF, the preset on folds u1..u5 (`--model mf --fold uK`, seed 0) | fold | "
                         f"{_cell(cells['folds'], 'rmse')} |  |  |")
        if model == "multitask" and "popularity" in cells:
            lines.append(f"| popularity: items by training count, on MultiTaskNet's splits | random |  |  | "
                         f"{_cell(cells['popularity'], 'mrr')} |")
    return "\n".join(lines) + "\n"


def untuned_table(cells: dict[str, dict], seeds: str) -> str:
    """Rating models on a data set none of them was tuned on: their default.toml and the size rules only."""
    metric = UNTUNED["metric"]
    lines = [f"Rating models on {UNTUNED['dataset']}, tuned on none of its data (no preset for it: each model's "
             f"configs/<model>/default.toml and the size rules), test {metric.upper()}, mean (95% t-interval) over seeds {seeds}. Command: "
             f"`python main.py --model M --dataset {UNTUNED['dataset']} --seeds {seeds}`.", "",
             f"| model | {metric.upper()} |", "| --- | --- |"]
    for model in UNTUNED["models"]:
        if model in cells:
            lines.append(f"| {model} | {_cell(cells[model], metric)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/readme_tables.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default="topk,rating,untuned")
    p.add_argument("--datasets", default=None, help="only these datasets of the top-k table (default: all)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--out", default="runs/readme")
    p.add_argument("--data_dir", default=None)
    args = p.parse_args(argv)
    only = set(args.datasets.split(",")) if args.datasets else None
    out = Path(args.out)
    for kind in args.tables.split(","):
        if kind == "topk":
            spec = TABLES[kind]
            cells: dict[str, dict[str, dict]] = {}
            for dataset in spec["datasets"]:
                if only is not None and dataset not in only:
                    continue
                cells[dataset] = {m: run_cell(m, dataset, args.seeds, out) for m in spec["models"]}
            for metric in (spec["metric"], *spec.get("also", ())):
                print(table(kind, cells, args.seeds, metric), flush=True)
        elif kind == "rating":
            cells = {label: run_cell(model, RATING_DATASET, args.seeds, out, extra)
                     for label, model, extra, _ in RATING_ROWS}
            cells["folds"] = folds_report("mf", out)
            cells["popularity"] = popularity_mrr(cells["MultiTaskNet"], args.data_dir)
            print(rating_table(cells, args.seeds), flush=True)
        elif kind == "untuned":
            cells = {m: run_cell(m, UNTUNED["dataset"], args.seeds, out) for m in UNTUNED["models"]}
            print(untuned_table(cells, args.seeds), flush=True)
        else:
            raise SystemExit(f"error: unknown table {kind!r}; use topk, rating or untuned")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
