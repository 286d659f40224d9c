"""The README's "models and the numbers" tables, from fresh runs: every model at its defaults, over 5 seeds.

    python bench/readme_tables.py                    # all tables (hours on 2 CPU cores; resumable)
    python bench/readme_tables.py --tables topk --datasets ml-100k --seeds 0,1

Each cell is ``python main.py --model M --dataset D --seeds S`` (the defaults: a model's preset for the dataset
where ``configs/`` has one), run in ``--out/<dataset>-<model>/`` so that an interrupted call resumes and a finished
one is read back. The tables give the mean and 95% t-interval of the test metric and mark the models
significantly below the best of their table (paired t-test over the seeds, as ``--compare --seeds``). Paste the
output into the README's "Models and the numbers they reach here".
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
    "topk": {"models": ["popularity", "ease", "dae", "vae"], "metric": "ndcg@100",
             "datasets": ["ml-100k", "ml-latest-small", "lastfm-2k"]},
    "rating": {"models": ["mf", "deeprec", "multitask"], "metric": "rmse", "datasets": ["ml-100k"]},
}


def run_cell(model: str, dataset: str, seeds: str, out: Path, extra=()) -> dict:
    """``main.py --seeds`` for one model and dataset; returns its seeds.json."""
    folder = out / f"{dataset}-{model}"
    cmd = [sys.executable, str(REPO / "main.py"), "--model", model, "--dataset", dataset, "--seeds", seeds,
           "--export_dir", str(folder), *extra]
    print("readme_tables:", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    return json.loads((folder / "seeds.json").read_text())


def row_of(report: dict, model: str) -> dict:
    """A seeds.json report as a row of :func:`training.compare.versus_best`."""
    return {"model": model, "test": {k: m["mean"] for k, m in report["metrics"].items()},
            "interval": {k: [m["low"], m["high"]] for k, m in report["metrics"].items()},
            "values": {k: m["values"] for k, m in report["metrics"].items()}}


def table(kind: str, cells: dict[str, dict[str, dict]], seeds: str) -> str:
    """The markdown table of one kind: a row per model, a column per dataset.

    Args:
      cells: dataset -> model -> seeds.json report.
    """
    from training import compare

    spec = TABLES[kind]
    metric = spec["metric"]
    datasets = [d for d in spec["datasets"] if d in cells]
    marks = {}
    for dataset in datasets:
        rows = [row_of(cells[dataset][m], m) for m in spec["models"] if m in cells[dataset]]
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
        lines.append(f"| {model} | " + " | ".join(out) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/readme_tables.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", default="topk,rating")
    p.add_argument("--datasets", default=None, help="only these datasets (default: each table's)")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--out", default="runs/readme")
    args = p.parse_args(argv)
    only = set(args.datasets.split(",")) if args.datasets else None
    for kind in args.tables.split(","):
        spec = TABLES[kind]
        cells: dict[str, dict[str, dict]] = {}
        for dataset in spec["datasets"]:
            if only is not None and dataset not in only:
                continue
            cells[dataset] = {m: run_cell(m, dataset, args.seeds, Path(args.out)) for m in spec["models"]}
        print(table(kind, cells, args.seeds), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
