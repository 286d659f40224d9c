"""Training users/s with 1 and N Horovod workers on this host, through main.py --benchmark.

    python bench/bench_horovod.py                                  # Mult-VAE on ml-100k, 1 and 2 workers
    python bench/bench_horovod.py --dataset ml-latest-small --workers 1,2 --batch_size 500

Each row is one `main.py --benchmark` run (a fresh model in a temporary folder; the mean of the timed epochs
after the warm-up ones). `--number_of_gpus N` re-launches main.py under horovodrun, so with N > 1 the time includes
the gradient allreduce of every step. Users/s counts the users of the whole epoch (all workers). Rows marked
"same global batch" give each of N workers batch/N users, i.e. the updates of the 1-worker run.
Needs Horovod for N > 1 (bash scripts/install_horovod.sh) and the data (TFCF_DATA_MIRROR or --data_mirror).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_once(args, workers: int, batch_size: int) -> dict:
    """One main.py --benchmark run; returns its benchmark.json."""
    with tempfile.TemporaryDirectory(prefix="bench-hvd-") as tmp:
        command = [sys.executable, str(REPO / "main.py"), "--benchmark", "--model", args.model,
                   "--dataset", args.dataset, "--number_of_gpus", str(workers), "--batch_size_train", str(batch_size),
                   "--warm_up_epochs", str(args.warm_up_epochs), "--benchmark_epochs", str(args.epochs),
                   "--export_dir", tmp]
        if args.data_mirror:
            command += ["--data_mirror", args.data_mirror]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        return json.loads((Path(tmp) / "benchmark.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_mirror", default=None)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--batch_size", type=int, default=500, help="per-worker batch of the main rows")
    parser.add_argument("--warm_up_epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; the best is reported")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    rows = [(n, args.batch_size, "per-worker batch") for n in counts]
    rows += [(n, args.batch_size // n, "same global batch") for n in counts if n > 1]
    print(f"{args.model} on {args.dataset}, {os.cpu_count()} CPU cores, {args.warm_up_epochs} warm-up + "
          f"{args.epochs} timed epochs, best of {args.repeats}")
    print("| workers | batch per worker | global batch | s/epoch | users/s | speed-up | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = None
    for n, batch, note in rows:
        best = min((bench_once(args, n, batch) for _ in range(args.repeats)),
                   key=lambda r: r["mean_epoch_train_seconds"])
        ups = best["rows_per_second"]
        base = base or ups
        print(f"| {n} | {batch} | {n * batch} | {best['mean_epoch_train_seconds']:.3f} | {ups:,.0f} | "
              f"{ups / base:.2f}x | {note} |", flush=True)


if __name__ == "__main__":
    main()
