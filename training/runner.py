"""One library call per ``main.py`` mode: prepare data, train, test, benchmark.

``main.py`` turns flags into the config objects below and calls :func:`run`;
notebooks and scripts call the same functions. Every run writes
``results.json`` into its export folder so that runs can be compared by scripts.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import keras
import numpy as np
import tensorflow as tf

from data.errors import ConfigError
from data.prepare import DataConfig, default_protocol, prepare, split_counts  # noqa: F401 (re-exported)
from data.prepare import titles as data_titles
from training import distribute, export, families, precision
from training.trainer import TrainConfig, Trainer


@dataclasses.dataclass
class OptimConfig:
    """The optimizer and the batch sizes.

    ``batch_size_train`` is per worker, as in the thesis: with N Horovod workers
    one step sees N x batch_size_train users.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size_train: int = 500
    batch_size_validation: int = 2000
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1


@dataclasses.dataclass
class RunConfig:
    """Everything one ``main.py`` invocation does."""

    model: str = "vae"
    modes: tuple[str, ...] = ("train", "test")
    seed: int = 0
    export_dir: str = "runs/ml-100k-vae"
    use_amp: bool = False
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model_params: dict = dataclasses.field(default_factory=dict)
    warm_up_epochs: int = 1
    benchmark_epochs: int = 3
    distribution: str = "auto"


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """A Keras optimizer from the config.

    ``weight_decay`` is decoupled (AdamW style). ``lr_milestones`` (epochs)
    multiply the learning rate by ``lr_gamma`` at each milestone, like the
    DeepRec reference's MultiStepLR schedule.
    """
    name = cfg.optimizer.lower()
    wd = cfg.weight_decay or None
    lr = cfg.lr
    if cfg.lr_milestones:
        boundaries = [int(m) * steps_per_epoch for m in sorted(cfg.lr_milestones)]
        values = [cfg.lr * cfg.lr_gamma ** i for i in range(len(boundaries) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if name == "adam":
        return keras.optimizers.AdamW(lr, weight_decay=wd) if wd else keras.optimizers.Adam(lr)
    if name in ("sgd", "momentum"):
        return keras.optimizers.SGD(lr, momentum=cfg.momentum if name == "momentum" else 0.0, weight_decay=wd)
    if name == "adagrad":
        return keras.optimizers.Adagrad(lr, weight_decay=wd)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(lr, weight_decay=wd)
    raise ConfigError(f"unknown optimizer '{cfg.optimizer}'; use adam, momentum, sgd, adagrad or rmsprop")


# --- datasets -----------------------------------------------------------------------
@dataclasses.dataclass
class Datasets:
    """What the trainer consumes for one model on one split (this worker's part)."""

    train: Any  # epoch -> tf.data.Dataset
    steps_per_epoch: int
    rows_per_epoch: int
    validation: Optional[Any]  # () -> tf.data.Dataset
    test: Any  # () -> tf.data.Dataset


def _rows_part(matrix, rank: int, size: int):
    """This worker's contiguous block of rows (evaluation is split, not sampled)."""
    n = matrix.shape[0]
    lo, hi = n * rank // size, n * (rank + 1) // size
    return matrix[lo:hi], lo


def eval_batches(inputs, targets, batch_size: int, dist: distribute.Distribution) -> tf.data.Dataset:
    """{'input', 'target', 'row'} batches of aligned rows of two CSR matrices [n, I].

    ``row`` (int32 [b]) is the row index in the full matrices: rating models
    need the user of each row; top-k models ignore it.
    """
    from data import pipeline

    x, offset = _rows_part(inputs, dist.rank, dist.size)
    y, _ = _rows_part(targets, dist.rank, dist.size)
    pairs = pipeline.row_batches((x, y), batch_size)
    rows = tf.data.Dataset.range(offset, offset + x.shape[0]).batch(batch_size).map(lambda r: tf.cast(r, tf.int32))
    return tf.data.Dataset.zip(pairs, rows).map(lambda p, r: {"input": p[0], "target": p[1], "row": r})


def make_datasets(model_cls, split, optim: OptimConfig, seed: int, dist: distribute.Distribution,
                  xla: bool = False) -> Datasets:
    """The train/validation/test pipelines a model of ``model_cls`` needs."""
    from data import pipeline

    bs, bsv = optim.batch_size_train, optim.batch_size_validation
    shard = dict(shard_index=dist.rank, num_shards=dist.size)
    train = split.train
    kind = model_cls.input_kind
    if kind == "rows":
        n_rows = train.shape[0]
        if xla:
            # A fixed batch size keeps the compiled shapes few.
            fn = lambda epoch: pipeline.xla_row_batches(train, bs, shuffle=True, seed=seed, epoch=epoch,
                                                        drop_remainder=True, **shard).map(lambda d: {"input": d})
        else:
            fn = lambda epoch: pipeline.row_batches(train, bs, shuffle=True, seed=seed, epoch=epoch,
                                                    **shard).map(lambda sp: {"input": sp})
        steps = pipeline.steps_per_epoch(n_rows, bs, dist.size, drop_remainder=xla)
    elif kind == "triples":
        n_rows = train.nnz
        fn = lambda epoch: pipeline.rating_triples(train, bs, shuffle=True, seed=seed, epoch=epoch, **shard).map(
            lambda u, i, r: {"user": u, "item": i, "rating": r})
        steps = pipeline.steps_per_epoch(n_rows, bs, dist.size)
    elif kind == "bpr":
        n_rows = train.nnz
        fn = lambda epoch: pipeline.bpr_triples(train, bs, seed=seed, epoch=epoch, **shard).map(
            lambda u, p, n, r: {"user": u, "pos": p, "neg": n, "rating": r})
        steps = pipeline.steps_per_epoch(n_rows, bs, dist.size)
    else:
        raise ValueError(f"unknown input kind {kind}")
    if model_cls.task == "topk":
        val = (split.val_input, split.val_target)
        test = (split.test_input, split.test_target)
    else:
        val = (split.train, split.val) if split.val.nnz else None
        test = (split.train, split.test)
    if steps == 0:
        raise ConfigError(f"--batch_size_train {bs} is larger than the {n_rows // dist.size} training rows each of "
                          f"{dist.size} worker(s) has{' (--xla drops incomplete batches)' if xla else ''}; "
                          f"lower --batch_size_train")
    for part, pair in (("validation", val), ("test", test)):
        if pair is not None and pair[0].shape[0] < dist.size:
            raise ConfigError(f"the {part} split has {pair[0].shape[0]} rows, fewer than the {dist.size} workers "
                              f"that share its evaluation; use fewer workers or more held-out users")
    validation = (lambda: eval_batches(*val, bsv, dist)) if val is not None and val[1].nnz else None
    return Datasets(train=fn, steps_per_epoch=steps, rows_per_epoch=n_rows, validation=validation,
                    test=lambda: eval_batches(*test, bsv, dist))


# --- modes --------------------------------------------------------------------------
class _ScoreEvaluator:
    """The evaluation step of a closed-form top-k baseline."""

    def __init__(self, baseline) -> None:
        self.baseline = baseline

    def evaluate_step(self, batch):
        from training import metrics

        return metrics.topk_metrics(self.baseline.score(batch["input"]), batch["target"], seen=batch["input"])


def _evaluate_model(model, family: families.Family, dataset: tf.data.Dataset, dist) -> dict[str, float]:
    from training import trainer

    step = model.evaluate_step if family.trainable else _ScoreEvaluator(model).evaluate_step
    return trainer.evaluate(tf.function(step, reduce_retracing=True) if family.trainable else step, dataset, dist)


def _dims(family: families.Family, split) -> dict[str, int]:
    if family.task == "topk":
        return {"n_items": split.n_items}
    return {"n_users": split.n_users, "n_items": split.n_items}


def build_model(family: families.Family, split, params: dict, policy: str):
    """A fresh model of the family for this split, built under the dtype policy."""
    config = family.make_config(_dims(family, split), params)
    with precision.policy_scope(policy):
        return family.build(config)


def train(cfg: RunConfig, split, dist: distribute.Distribution, policy: str, titles: dict, info: dict):
    """Trains (or fits) the model and exports the best one. Returns (model, summary dict)."""
    family = families.get(cfg.model)
    export_dir = Path(cfg.export_dir)
    t0 = time.perf_counter()
    if not family.trainable:
        model = family.fit_baseline(split.train, cfg.model_params)
        summary = {"epochs": 0, "train_seconds": time.perf_counter() - t0}
        data = make_datasets(_FitShim, split, cfg.optim, cfg.seed, dist)
        if data.validation is not None:
            summary["validation"] = _evaluate_model(model, family, data.validation(), dist)
    else:
        params = {**cfg.model_params, "seed": cfg.seed}
        model = build_model(family, split, params, policy)
        model.observe_training_data(split.train)
        data = make_datasets(family.cls(), split, cfg.optim, cfg.seed, dist, xla=cfg.train.xla)
        optimizer = make_optimizer(cfg.optim, data.steps_per_epoch)
        trainer = Trainer(model, optimizer, cfg.train, dist, policy)
        history = trainer.fit(data.train, data.steps_per_epoch, data.rows_per_epoch, data.validation)
        if trainer.restore_best():
            if dist.is_chief and cfg.train.verbose:
                print(f"best epoch {history.best['epoch']}: {model.main_metric} "
                      f"{history.best[model.main_metric]:.4f}", flush=True)
        last = history.epochs[-1] if history.epochs else {}
        summary = {"epochs": int(trainer.epoch.numpy()), "resumed_from_epoch": history.resumed_from_epoch,
                   "stopped_early": history.stopped_early, "best": history.best,
                   "train_seconds": sum(e["train_seconds"] for e in history.epochs),
                   "mean_epoch_seconds": float(np.mean([e["train_seconds"] for e in history.epochs]))
                   if history.epochs else None,
                   "final_loss": last.get("loss"), "history": history.epochs}
        if data.validation is not None:
            summary["validation"] = trainer.evaluate(data.validation())
    if dist.is_chief:
        user_ids = getattr(split, "user_ids", None)
        export.save(model, export_dir, cfg.model, split.item_ids, user_ids, titles,
                    extra={"task": family.task, "dataset": info["dataset"], "protocol": info["protocol"],
                           "major": info.get("major", "users")})
        export.save_known(export_dir, split, info.get("major", "users"))
        if family.task == "topk":
            score = model if family.trainable else model.score
            export.save_serving(lambda sp: score(sp), split.item_ids, export_dir,
                                owner=model if family.trainable else None)
    return model, summary


class _FitShim:
    """Pipeline choices of closed-form baselines: they are evaluated like top-k models."""

    input_kind = "rows"
    task = "topk"


def benchmark(cfg: RunConfig, split, dist: distribute.Distribution, policy: str) -> dict:
    """Average epoch training and validation time after ``warm_up_epochs``, and users/s.

    Trains a fresh model in a temporary folder: the run's checkpoints are untouched.
    """
    family = families.get(cfg.model)
    if not family.trainable:
        raise ConfigError(f"--benchmark times training epochs; '{cfg.model}' has no training loop")
    epochs = cfg.warm_up_epochs + cfg.benchmark_epochs
    with tempfile.TemporaryDirectory() as tmp:
        tcfg = dataclasses.replace(cfg.train, epochs=epochs, validation_step=1, export_dir=tmp, fresh=True,
                                   patience=None)
        model = build_model(family, split, {**cfg.model_params, "seed": cfg.seed}, policy)
        data = make_datasets(family.cls(), split, cfg.optim, cfg.seed, dist, xla=cfg.train.xla)
        trainer = Trainer(model, make_optimizer(cfg.optim, data.steps_per_epoch), tcfg, dist, policy)
        history = trainer.fit(data.train, data.steps_per_epoch, data.rows_per_epoch, data.validation)
    timed = history.epochs[cfg.warm_up_epochs:]
    train_s = float(np.mean([e["train_seconds"] for e in timed]))
    val_s = [e["validation_seconds"] for e in timed if "validation_seconds" in e]
    result = {"model": cfg.model, "dataset": cfg.data.dataset, "precision": policy, "xla": cfg.train.xla,
              "workers": dist.size, "warm_up_epochs": cfg.warm_up_epochs, "timed_epochs": len(timed),
              "batch_size_train": cfg.optim.batch_size_train,
              "mean_epoch_train_seconds": train_s,
              "mean_epoch_validation_seconds": float(np.mean(val_s)) if val_s else None,
              "rows_per_second": data.rows_per_epoch / train_s}
    if dist.is_chief:
        export.write_json(Path(cfg.export_dir) / "benchmark.json", result)
        print(f"benchmark: {train_s:.3f} s/epoch training ({result['rows_per_second']:,.0f} rows/s), "
              f"{result['mean_epoch_validation_seconds'] or 0:.3f} s/epoch validation, {policy}"
              f"{', xla' if cfg.train.xla else ''}", flush=True)
    return result


def run(cfg: RunConfig) -> dict:
    """Runs the modes of ``cfg`` in order (train, test, benchmark) and writes results.json.

    Returns:
      The results dict that was written.
    """
    modes = [m for m in ("train", "test", "benchmark") if m in cfg.modes]
    if not modes:
        raise ConfigError("nothing to do: give at least one of --train, --test, --benchmark")
    family = families.get(cfg.model)
    dist = distribute.get(cfg.distribution)
    policy = precision.policy_name(cfg.use_amp)
    if not dist.is_chief:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, verbose=False))
    t0 = time.perf_counter()
    split, info = prepare(cfg.data, family.task, cfg.seed, verbose=dist.is_chief and cfg.train.verbose)
    titles = data_titles(cfg.data)
    if family.task == "rating" and cfg.model_params.get("major") == "items":
        # Item-based autoencoder: rows are items; ids and titles follow the transpose.
        split = split.transpose()
        info["major"] = "items"
    results: dict[str, Any] = {"config": _config_dict(cfg), "data": info, "precision": policy,
                               "workers": dist.size, "modes": modes}
    model = None
    if "train" in modes:
        model, summary = train(cfg, split, dist, policy, titles, info)
        results["train"] = summary
        if "validation" in summary:
            results["validation"] = summary["validation"]
    if "test" in modes:
        if model is None:
            model, meta, _, _ = export.load(cfg.export_dir, families.FAMILIES)
            if meta["family"] != cfg.model:
                raise ConfigError(f"{cfg.export_dir} holds a '{meta['family']}' model, not '{cfg.model}'; "
                                  f"pass --model {meta['family']}")
        data = make_datasets(_FitShim if not family.trainable else family.cls(), split, cfg.optim, cfg.seed, dist)
        results["test"] = _evaluate_model(model, family, data.test(), dist)
        if dist.is_chief and cfg.train.verbose:
            shown = {k: round(v, 4) for k, v in results["test"].items() if not k.endswith("/count")}
            print(f"test: {json.dumps(shown)}", flush=True)
    if "benchmark" in modes:
        results["benchmark"] = benchmark(cfg, split, dist, policy)
    results["seconds"] = time.perf_counter() - t0
    if dist.is_chief:
        export.write_json(Path(cfg.export_dir) / "results.json", results)
    return results


def _config_dict(cfg: RunConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
