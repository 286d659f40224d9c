"""Matrix factorization: epoch speed, the homework's four MultiTaskNet runs, MF on the ML-100K folds.

    python bench/bench_mf.py speed      # s/epoch of mf and multitask: ml-latest-small, 1M synthetic ratings
    python bench/bench_mf.py homework   # seed 003: shared/separate x (0.99, 0.01)/(0.5, 0.5), vs popularity
    python bench/bench_mf.py folds      # seed 004's model on ML-100K u1..u5: mean test RMSE
    python bench/bench_mf.py surprise   # mf at its defaults against Surprise's SVD (pip install scikit-surprise)

Each prints a markdown table. Everything trains through the engine
(every model trained through ``training.fit.fit``);
``homework`` and ``folds`` read ML-100K from ``--data_mirror`` (default
``$TFCF_DATA_MIRROR``). Not run by the tests.

``speed`` times epochs with :func:`training.runner.benchmark` (the first
epoch, with tracing, is not timed) on a random 95/5 split of each data set.
The synthetic set has ML-1M's shape (6,040 users x 3,706 items, 1,000,000
ratings) from :func:`data.synthetic.power_law_interactions`.

``homework`` is the homework's protocol: a random 95/5 split of ML-100K, the
four runs, the test set evaluated after every epoch (the homework's TensorBoard
curves: ``<logdir>/<run>/validation/{mse,mrr}``, plus ``train/{mse,bpr_loss}``)
and the final epoch's values in the table. Each run equals the printed
``main.py`` command (same seed, data order and weights), whose test numbers are
the table's last epoch. The popularity ranking scores items by their number of
training ratings.

``folds`` trains on each ``uN.base`` with a shuffled 90/10 train/validation
split and early stopping on the validation RMSE, then tests on ``uN.test``.
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

SYNTHETIC_SHAPE = (6040, 3706, 1_000_000)  # ML-1M
HOMEWORK_RUNS = [(True, 0.99, 0.01), (True, 0.5, 0.5), (False, 0.5, 0.5), (False, 0.99, 0.01)]


def _dist():
    from training import distribute

    return distribute.Distribution()


def rating_split(dataset: str, args, protocol: str = "random", **data_kwargs):
    from data.prepare import DataConfig, prepare

    data = DataConfig(dataset=dataset, mirror=args.data_mirror, data_dir=args.data_dir, protocol=protocol,
                             **data_kwargs)
    return prepare(data, "rating", args.seed, verbose=False)[0]


def synthetic_split(seed: int):
    from data import protocols
    from data.synthetic import power_law_interactions

    interactions = power_law_interactions(*SYNTHETIC_SHAPE, seed=seed)
    return protocols.random_split(interactions, protocols.RandomSplitConfig(test_fraction=0.05), seed)


# --- speed --------------------------------------------------------------------------------
def epoch_seconds(model: str, split, batch_size, epochs: int, use_amp: bool, seed: int,
                  steps_per_call=None) -> tuple[dict, int]:
    """:func:`training.runner.benchmark` of one family on one split (a fresh model, a temporary folder).

    ``batch_size`` and ``steps_per_call`` None: the run's defaults. Returns
    the benchmark record and the batch it trained with.
    """
    from training import fit, precision, runner
    from training.config import OptimConfig, RunConfig, TrainConfig

    with tempfile.TemporaryDirectory(prefix="bench-mf-") as tmp:
        cfg = RunConfig(model=model, seed=seed, export_dir=tmp, use_amp=use_amp,
                        optim=OptimConfig(batch_size_train=batch_size),
                        train=TrainConfig(verbose=False, steps_per_call=steps_per_call), warm_up_epochs=1,
                        benchmark_epochs=epochs)
        cfg, _ = fit.resolve(cfg, split)
        return runner.benchmark(cfg, split, _dist(), precision.policy_name(use_amp)), cfg.optim.batch_size_train


def speed(args) -> None:
    from training import families

    t0 = time.perf_counter()
    splits = {"ml-latest-small": rating_split("ml-latest-small", args)}
    splits["synthetic 1M"] = synthetic_split(args.seed)
    print(f"data ready in {time.perf_counter() - t0:.1f} s", flush=True)
    print("| data | users x items | train ratings | model | batch | steps a call | s/epoch | ratings/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    batches = [None if b == "default" else int(b) for b in args.batch_size.split(",")]
    for name, split in splits.items():
        for model in ("mf", "multitask"):
            for batch in batches:
                # One step a call is the loop before steps_per_call; the model's default after it.
                for per_call in (1, families.get(model).cls.default_steps_per_call()):
                    r, used = epoch_seconds(model, split, batch, args.epochs, args.use_amp, args.seed, per_call)
                    print(f"| {name} | {split.n_users:,} x {split.n_items:,} | {split.train.nnz:,} | {model} | "
                          f"{used}{' (default)' if batch is None else ''} | {per_call} | "
                          f"{r['mean_epoch_train_seconds']:.2f} | {r['rows_per_second']:,.0f} |", flush=True)


# --- against Surprise --------------------------------------------------------------------------
def _surprise_svd(split, seed: int) -> tuple[float, float]:
    """Surprise's SVD at its defaults (100 factors, 20 epochs) on the split: (fit seconds, test RMSE)."""
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    train = split.train.tocoo()
    frame = pd.DataFrame({"u": train.row, "i": train.col, "r": train.data})
    trainset = Dataset.load_from_df(frame, Reader(rating_scale=(float(train.data.min()), float(train.data.max()))))
    trainset = trainset.build_full_trainset()
    t0 = time.perf_counter()
    algo = SVD(random_state=seed).fit(trainset)
    seconds = time.perf_counter() - t0
    test = split.test.tocoo()
    errors = [algo.predict(u, i).est - r for u, i, r in zip(test.row, test.col, test.data)]
    return seconds, float(np.sqrt(np.mean(np.square(errors))))


def surprise(args) -> None:
    """Seconds of training until tfcf's mf (its defaults) reaches Surprise SVD's test RMSE, on the same split."""
    import dataclasses

    try:
        import surprise as _  # noqa: F401
    except ImportError:
        sys.exit("bench_mf.py surprise needs Surprise: pip install scikit-surprise (not a tfcf dependency)")
    from cli import config_file
    from training import fit
    from training.config import OptimConfig, RunConfig, TrainConfig

    # mf at its defaults, as `main.py --model mf` runs it on a data set without a preset: configs/mf/default.toml.
    flags_ = config_file.read(config_file.PRESETS / "mf" / "default.toml").flags
    params = {k: flags_[k] for k in ("rank", "use_bias", "lam")}
    optim = OptimConfig(lr=flags_["lr"], weight_decay=flags_["weight_decay"])
    splits = {"ml-latest-small": rating_split("ml-latest-small", args), "synthetic 1M": synthetic_split(args.seed)}
    print("| data | train ratings | Surprise SVD fit s | its test RMSE | mf epochs to reach it | mf train s to reach it "
          f"| mf best test RMSE in {args.epochs} epochs (epoch) | mf s/epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, split in splits.items():
        svd_s, svd_rmse = _surprise_svd(split, args.seed)
        with tempfile.TemporaryDirectory(prefix="bench-mf-") as tmp:
            # The race is scored on the test ratings after every epoch (they play the validation part here; nothing
            # is chosen on them): training seconds only, the evaluations left out.
            cfg = RunConfig(model="mf", seed=args.seed, export_dir=tmp, model_params=params, optim=optim,
                            train=TrainConfig(epochs=args.epochs, validation_step=1, export_dir=tmp, verbose=False,
                                              patience=0))
            history = fit.fit(cfg, dataclasses.replace(split, val=split.test)).summary["history"]
        elapsed, reached = 0.0, None
        for record in history:
            elapsed += record["train_seconds"]
            if reached is None and record["validation"]["rmse"] <= svd_rmse:
                reached = (record["epoch"], elapsed)
        best = min(history, key=lambda r: r["validation"]["rmse"])
        mean_epoch = np.mean([r["train_seconds"] for r in history[1:]]) if len(history) > 1 else float("nan")
        print(f"| {name} | {split.train.nnz:,} | {svd_s:.2f} | {svd_rmse:.4f} | "
              f"{reached[0] if reached else 'not reached'} | {f'{reached[1]:.2f}' if reached else '-'} | "
              f"{best['validation']['rmse']:.4f} ({best['epoch']}) | {mean_epoch:.2f} |", flush=True)


# --- homework -------------------------------------------------------------------------------
def popularity_mrr(split) -> dict:
    """MRR of ranking items by their number of training ratings (same evaluation as the models)."""
    import tensorflow as tf

    from training import fit, metrics, trainer

    counts = tf.constant(np.asarray((split.train != 0).sum(axis=0), np.float32).ravel())

    def step(batch):
        scores = tf.tile(counts[None, :], [tf.shape(batch["row"])[0], 1])
        return {"mrr": metrics.mrr(scores, batch["target"], seen=batch["input"])}

    return trainer.evaluate(step, fit.eval_batches(split.train, split.test, 2000, _dist()))


def homework_run(split, shared: bool, fw: float, rw: float, args, logdir: Path) -> dict:
    """One MultiTaskNet run, the test set evaluated every epoch; returns the last epoch's record."""
    import dataclasses

    from training import fit
    from training.config import OptimConfig, RunConfig, TrainConfig

    params = {"shared_embeddings": shared, "factorization_weight": fw, "regression_weight": rw,
              "bpr_form": args.bpr_form}
    optim = OptimConfig(lr=args.lr, weight_decay=args.weight_decay, batch_size_train=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-mf-") as tmp:
        tcfg = TrainConfig(epochs=args.epochs, validation_step=1, export_dir=tmp, fresh=True, verbose=False,
                           log_dir=str(logdir), patience=0)
        # The homework reports the test set after every epoch: here it plays the validation part.
        result = fit.fit(RunConfig(model="multitask", seed=args.seed, export_dir=tmp, optim=optim, train=tcfg,
                                   model_params=params), dataclasses.replace(split, val=split.test))
    return result.summary["history"][-1]


def homework(args) -> None:
    split = rating_split("ml-100k", args, test_fraction=0.05)
    pop = popularity_mrr(split)["mrr"]
    logroot = Path(args.logdir)
    print(f"popularity MRR {pop:.4f}; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
          f"weight decay {args.weight_decay}, BPR form {args.bpr_form}", flush=True)
    rows = []
    for shared, fw, rw in HOMEWORK_RUNS:
        name = f"shared={shared}_LF={fw}_LR={rw}"
        t0 = time.perf_counter()
        last = homework_run(split, shared, fw, rw, args, logroot / name)
        test = last["validation"]
        rows.append(f"| {'shared' if shared else 'separate'} | {fw} / {rw} | {last['mse']:.4f} | "
                    f"{last['bpr_loss']:.4f} | {test['mse']:.4f} | {test['mrr']:.4f} | {test['mrr'] / pop:.2f} | "
                    f"{time.perf_counter() - t0:.0f} |")
        command = (f"python main.py --model multitask --train --test --dataset ml-100k --protocol random "
                   f"--number_of_epochs {args.epochs} --batch_size_train {args.batch_size} --lr {args.lr} "
                   f"--weight_decay {args.weight_decay} --bpr_form {args.bpr_form} --seed {args.seed} "
                   f"--factorization_weight {fw} --regression_weight {rw}"
                   f"{'' if shared else ' --no_shared_embeddings'} --export_dir runs/homework/{name}")
        print(f"{name}: test MSE {test['mse']:.4f}, MRR {test['mrr']:.4f}  <- {command}", flush=True)
    print("\n| embeddings | lambda_F / lambda_R | train MSE | train BPR | test MSE | test MRR | MRR / popularity | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"| popularity | | | | | {pop:.4f} | 1.00 | |")


# --- folds ------------------------------------------------------------------------------------
def folds(args) -> None:
    from experiments import mf_grid as grid
    from training import fit as fitting
    from training import trainer
    from training.config import OptimConfig

    params = {"rank": args.rank, "use_bias": not args.no_bias}
    if args.lam is not None:
        params["lam"] = args.lam
    optim = OptimConfig(lr=args.lr, weight_decay=args.weight_decay, batch_size_train=args.batch_size)
    print("| fold | best epoch | train RMSE | val RMSE | test RMSE | global mean RMSE | s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tests = []
    for fold in args.folds.split(","):
        split = rating_split("ml-100k", args, protocol="fold", fold=fold, val_fraction=0.1)
        fit = grid.fit_on_split(split, params, optim, epochs=args.epochs, patience=args.patience, seed=args.seed)
        test_batches = fitting.eval_batches(split.train, split.test, 2000, _dist())
        test = trainer.evaluate(fit.model.evaluate_step, test_batches)
        tests.append(test["rmse"])
        mean_rmse = float(np.sqrt(np.mean((split.test.data - split.train.data.mean()) ** 2)))
        print(f"| {fold} | {fit.best_epoch} | {fit.train_rmse:.4f} | {fit.val_rmse:.4f} | {test['rmse']:.4f} | "
              f"{mean_rmse:.4f} | {fit.seconds:.0f} |", flush=True)
    print(f"| mean | | | | {np.mean(tests):.4f} | | |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/bench_mf.py", description=__doc__.split("\n\n")[0])
    p.add_argument("table", choices=["speed", "homework", "folds", "surprise"])
    p.add_argument("--data_mirror", default=None)
    p.add_argument("--data_dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None,
                   help="speed: timed epochs (3); homework: epochs (30); folds: most epochs (200)")
    p.add_argument("--batch_size", default=None, help="speed: comma-separated, 'default' the model's rule by data "
                   "size (default,1000); folds 1000, homework 256")
    p.add_argument("--lr", type=float, default=None, help="homework 1e-3, folds 3e-3")
    p.add_argument("--weight_decay", type=float, default=None, help="decoupled (AdamW): homework 0.5, folds 1e-5")
    p.add_argument("--use_amp", action="store_true", help="speed: mixed precision")
    p.add_argument("--bpr_form", default="homework", help="homework: homework or log")
    p.add_argument("--logdir", default="run", help="homework: TensorBoard root")
    p.add_argument("--folds", default="u1,u2,u3,u4,u5")
    p.add_argument("--rank", type=int, default=25)
    p.add_argument("--lam", type=float, default=None, help="folds: MF lam (default: MFConfig's)")
    p.add_argument("--no_bias", action="store_true")
    p.add_argument("--patience", type=int, default=5)
    args = p.parse_args(argv)
    defaults = {"speed": dict(epochs=3, batch_size="default,1000", lr=1e-3, weight_decay=0.0),
                "surprise": dict(epochs=30, batch_size="0", lr=None, weight_decay=None),
                "homework": dict(epochs=30, batch_size=256, lr=1e-3, weight_decay=0.5),
                "folds": dict(epochs=200, batch_size=1000, lr=3e-3, weight_decay=1e-5)}[args.table]
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.table != "speed":
        args.batch_size = int(args.batch_size)
    {"speed": speed, "homework": homework, "folds": folds, "surprise": surprise}[args.table](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
