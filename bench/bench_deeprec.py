"""Users/s of DeepRec training epochs at the Netflix shape, fp32 vs mixed precision.

    python bench/bench_deeprec.py                     # 4,096 synthetic users, 17,768 items
    python bench/bench_deeprec.py --users 20000 --epochs 3

The paper's Netflix Full model n-512-512-1024-dp(0.8)-512-512-n (n = 17,768
movies) trains on synthetic power-law ratings (``data.synthetic``) with about
Netflix's 205 ratings per user, momentum SGD, batch 128, through the engine's
Trainer; each epoch runs one dense re-feeding update per batch (``--aug_step``,
so two updates per batch). Mixed precision is the toolkit's ``--use_tf_amp``
policy: bfloat16 on a CPU, float16 with loss scaling on a GPU. The first
epoch (tracing, warm-up) is not timed. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

NETFLIX_ITEMS = 17_768  # the paper's n (Sec. 3.3)
RATINGS_PER_USER = 205  # Netflix Full: 98,074,901 ratings / 477,412 users (Table 1)


def synthetic_rows(n_users: int, n_items: int, per_user: int, seed: int) -> sp.csr_matrix:
    """float32 CSR [n_users, n_items] of power-law ratings 1..5."""
    from data.synthetic import power_law_interactions

    x = power_law_interactions(n_users, n_items, n_users * per_user, seed=seed)
    return sp.csr_matrix((x.rating, (x.user, x.item)), shape=(n_users, n_items), dtype=np.float32)


def time_epochs(rows: sp.csr_matrix, use_amp: bool, aug_step: int, epochs: int, batch_size: int, lr: float,
                xla: bool, seed: int = 0) -> dict:
    """Trains ``epochs + 1`` epochs; returns the mean of the timed ones."""
    from data.types import RatingSplit
    from training import fit, precision
    from training.config import OptimConfig, RunConfig, TrainConfig

    policy = precision.policy_name(use_amp)
    empty = sp.csr_matrix(rows.shape, dtype=np.float32)
    split = RatingSplit(train=rows, val=empty, test=empty, user_ids=np.arange(rows.shape[0]),
                        item_ids=np.arange(rows.shape[1]))
    n = rows.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=epochs + 1, export_dir=tmp, verbose=False, xla=xla, keep_checkpoints=1)
        cfg = RunConfig(model="deeprec", seed=seed, export_dir=tmp, use_amp=use_amp, train=config,
                        optim=OptimConfig(optimizer="momentum", lr=lr, batch_size_train=batch_size),
                        model_params={"aug_step": aug_step})
        result = fit.fit(cfg, split, observe_data=False)
        updates = int(result.trainer.updater.updates.numpy())
    history = result.summary["history"]
    timed = history[1:]
    seconds = float(np.mean([e["train_seconds"] for e in timed]))
    return {"precision": policy, "aug_step": aug_step, "xla": xla, "users": n, "seconds": seconds,
            "users_per_s": n / seconds, "updates_per_epoch": updates // (epochs + 1),
            "final_loss": timed[-1]["loss"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=4096, help="synthetic users (rows) per epoch")
    p.add_argument("--items", type=int, default=NETFLIX_ITEMS)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one untimed)")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.005, help="the paper's rate with re-feeding")
    p.add_argument("--aug_step", type=int, nargs="+", default=[1], help="re-feeding steps to time (e.g. 0 1)")
    p.add_argument("--xla", action="store_true", help="also time the XLA-compiled step")
    args = p.parse_args(argv)

    import tensorflow as tf

    t0 = time.perf_counter()
    rows = synthetic_rows(args.users, args.items, RATINGS_PER_USER, seed=0)
    device = tf.config.list_physical_devices("GPU")
    print(f"data: {rows.shape[0]:,} users x {rows.shape[1]:,} items, {rows.nnz:,} ratings "
          f"({time.perf_counter() - t0:.1f}s); device: {'GPU ' + device[0].name if device else 'CPU'}, "
          f"{os.cpu_count()} cores", flush=True)
    results = []
    for aug in args.aug_step:
        for xla in ([False, True] if args.xla else [False]):
            for amp in (False, True):
                results.append(time_epochs(rows, amp, aug, args.epochs, args.batch_size, args.lr, xla))
                print(f"  {results[-1]}", flush=True)
    base = {(r["aug_step"], r["xla"]): r["users_per_s"] for r in results if r["precision"] == "float32"}
    print("\n| precision | re-feeding steps | XLA | updates/epoch | s/epoch | users/s | vs fp32 |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['precision']} | {r['aug_step']} | {'yes' if r['xla'] else 'no'} | {r['updates_per_epoch']} | "
              f"{r['seconds']:.2f} | {r['users_per_s']:,.0f} | "
              f"{r['users_per_s'] / base[(r['aug_step'], r['xla'])]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
