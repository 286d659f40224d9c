"""Chooses top-k hyper-parameters by VALIDATION NDCG@100 only (test metrics are printed, never used to choose).

    python bench/tune_topk.py --dataset ml-100k --out /tmp/tune.md

Each configuration is one ``training.runner.run`` with its own export folder (reruns resume / reuse them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data import files  # noqa: E402
from training import runner  # noqa: E402
from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig  # noqa: E402

GRID = {
    "vae": [dict(batch=b, lr=lr, params=p) for b, lr, p in itertools.product(
        (100,), (1e-3, 3e-3),
        (dict(), dict(total_anneal_steps=2000), dict(lam=0.01), dict(hidden=(200,), latent=50)))],
    # Second round, after the first showed Mult-DAE (lam 0.001, one 200-wide layer) ahead on small data.
    "vae2": [dict(batch=100, lr=1e-3, params=p) for p in (
        dict(lam=0.001), dict(hidden=(), lam=0.001), dict(hidden=()), dict(total_anneal_steps=2000, lam=0.001))],
    "dae": [dict(batch=100, lr=lr, params=p) for lr, p in itertools.product(
        (1e-3, 3e-3), (dict(), dict(lam=0.001)))],
    # RecVAE (3 encoder + 1 decoder passes an epoch, the paper's): its lr, the decoder's input (mean or sample), then
    # what regularizes it on data far smaller than the paper's (width, the KL weight, dropout).
    "recvae": [dict(batch=None, lr=lr, params=p) for lr, p in (
        (1e-3, dict()), (5e-4, dict()), (1e-3, dict(decoder_noise=True)),
        (1e-3, dict(hidden=(200,) * 3, latent=64)), (1e-3, dict(kl_gamma=0.02)), (1e-3, dict(dropout=0.7)),
        (1e-3, dict(hidden=(200,) * 3, latent=64, kl_gamma=0.02)))] + [
        # More updates per epoch on small data: a batch of 50 users.
        dict(batch=50, lr=lr, params=p) for lr, p in ((1e-3, dict()), (5e-4, dict()))] + [
        # Mult-VAE's L2 on the weight matrices (not in the paper).
        dict(batch=None, lr=1e-3, params=dict(lam=lam)) for lam in (1e-3, 1e-2)],
    "ease": [dict(params=dict(ease_lambda=lam)) for lam in (50.0, 100.0, 200.0, 500.0, 1000.0)],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", default="ease,vae,dae")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--validation_step", type=int, default=10)
    ap.add_argument("--root", default="/tmp/tune")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for model in args.models.split(","):
        for i, setting in enumerate(GRID[model]):
            export_dir = Path(args.root) / f"{args.dataset}-{model}-{i}"
            results_path = export_dir / "results.json"
            if not results_path.exists():
                cfg = RunConfig(
                    model=model.rstrip("0123456789"), modes=("train", "test"), export_dir=str(export_dir),
                    data=DataConfig(dataset=args.dataset),
                    optim=OptimConfig(lr=setting.get("lr", 1e-3), batch_size_train=setting.get("batch", 500)),  # None: the model's rule
                    train=TrainConfig(epochs=args.epochs, validation_step=args.validation_step, export_dir=str(export_dir),
                                      verbose=False),
                    model_params=setting.get("params", {}))
                runner.run(cfg)
            res = json.loads(results_path.read_text())
            row = {"model": model, "setting": json.dumps(setting, default=str),
                   "val_ndcg@100": res["validation"]["ndcg@100"], **{f"test_{k}": res["test"][k]
                                                                   for k in ("recall@20", "recall@50", "ndcg@100")},
                   "best_epoch": (res["train"].get("best") or {}).get("epoch")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = ["| model | setting | val NDCG@100 | test R@20 | test R@50 | test NDCG@100 | best epoch |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        table.append(f"| {r['model']} | `{r['setting']}` | {r['val_ndcg@100']:.4f} | {r['test_recall@20']:.4f} | "
                     f"{r['test_recall@50']:.4f} | {r['test_ndcg@100']:.4f} | {r['best_epoch']} |")
    print("\n".join(table))
    if args.out:
        files.write_text(args.out, "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
