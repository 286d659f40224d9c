"""Training users/s with 1 and N replicas of each data-parallel backend on this host, through main.py --benchmark.

    python bench/bench_distribute.py                          # Mult-VAE on ml-100k: horovod, mirrored, multiworker
    python bench/bench_distribute.py --backends horovod --dataset ml-latest-small --workers 1,2 --batch_size 500

Each row is one `main.py --benchmark` run (a fresh model in a temporary folder; the mean of the timed epochs
after the warm-up ones), with N replicas of a backend: horovod re-launches main.py as N workers under horovodrun
(`--number_of_gpus N`); mirrored is one process mirrored over N devices (N logical CPU devices on a host without
GPUs: they share its cores); multiworker starts N main.py processes with TF_CONFIG on loopback. One replica is the
plain one-process run. With N > 1 the time includes the gradient allreduce of every step. Users/s counts the users of
the whole epoch (all replicas). Rows marked "same global batch" give each of N replicas batch/N users, i.e. the
updates of the 1-replica run. Horovod needs `bash scripts/install_horovod.sh`; the data TFCF_DATA_MIRROR or
--data_mirror.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("horovod", "mirrored", "multiworker")


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def bench_once(args, backend: str, replicas: int, batch_size: int) -> dict:
    """One main.py --benchmark run of ``replicas`` replicas of ``backend``; returns its benchmark.json."""
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        command = [sys.executable, str(REPO / "main.py"), "--benchmark", "--model", args.model,
                   "--dataset", args.dataset, "--batch_size_train", str(batch_size),
                   "--warm_up_epochs", str(args.warm_up_epochs), "--benchmark_epochs", str(args.epochs),
                   "--export_dir", tmp]
        if args.data_mirror:
            command += ["--data_mirror", args.data_mirror]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        envs = [env]
        if replicas > 1 and backend == "horovod":
            command += ["--number_of_gpus", str(replicas)]
        elif replicas > 1 and backend == "mirrored":
            command += ["--distribution", "mirrored", "--number_of_gpus", str(replicas)]
        elif replicas > 1:
            ports = _ports(replicas)
            command += ["--distribution", "multiworker"]
            envs = [{**env, "TF_CONFIG": json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                                                     "task": {"type": "worker", "index": i}})}
                    for i in range(replicas)]
        procs = [subprocess.Popen(command, cwd=REPO, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for e in envs]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"{' '.join(command)} failed ({proc.returncode}):\n{err[-2000:]}")
        return json.loads((Path(tmp) / "benchmark.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_mirror", default=None)
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: " + ", ".join(BACKENDS))
    parser.add_argument("--workers", default="1,2", help="comma-separated replica counts")
    parser.add_argument("--batch_size", type=int, default=500, help="per-replica batch of the main rows")
    parser.add_argument("--warm_up_epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; the best is reported")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; use {', '.join(BACKENDS)}")
    counts = [int(w) for w in args.workers.split(",")]
    print(f"{args.model} on {args.dataset}, {os.cpu_count()} CPU cores, {args.warm_up_epochs} warm-up + "
          f"{args.epochs} timed epochs, best of {args.repeats}")
    print("| backend | replicas | batch per replica | global batch | s/epoch | users/s | speed-up | note |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    base = None
    rows = [("none", 1, args.batch_size, "one process")] if 1 in counts else []
    for backend in backends:
        rows += [(backend, n, args.batch_size, "per-replica batch") for n in counts if n > 1]
        rows += [(backend, n, args.batch_size // n, "same global batch") for n in counts if n > 1]
    for backend, n, batch, note in rows:
        best = min((bench_once(args, backend, n, batch) for _ in range(args.repeats)),
                   key=lambda r: r["mean_epoch_train_seconds"])
        ups = best["rows_per_second"]
        base = base or ups
        print(f"| {backend} | {n} | {batch} | {n * batch} | {best['mean_epoch_train_seconds']:.3f} | {ups:,.0f} | "
              f"{ups / base:.2f}x | {note} |", flush=True)


if __name__ == "__main__":
    main()
