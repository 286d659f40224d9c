"""The one fit wiring: family + split + config -> model, datasets, optimizer, Trainer, fit, result.

Every caller that trains a model goes through :func:`fit` (the runner's modes,
compare, the DeepRec experiments, the MF grid, the bench scripts, the
notebooks), so whatever a run must get right (warm starts, the learning-rate
schedule in epochs, the best weights at the end, a divergence that keeps the
last good weights) is done once, here. Closed-form baselines come through the
same call and are fitted once.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from data.errors import ConfigError
from training import distribute, families, intervals, metrics, optimizers, precision
from training.config import OptimConfig, RunConfig
from training.recommender import Recommender
from training.trainer import Diverged, Trainer


def make_optimizer(cfg: OptimConfig, updates_per_epoch: int = 1) -> keras.optimizers.Optimizer:
    """A Keras optimizer from the config.

    ``weight_decay`` is decoupled (AdamW style). ``lr_milestones`` (epochs)
    multiply the learning rate by ``lr_gamma`` at each milestone, like the
    DeepRec reference's MultiStepLR schedule.

    Args:
      updates_per_epoch: optimizer updates in one epoch (steps times the
        model's updates per step), so that milestones count epochs.
    """
    name = cfg.optimizer.lower()
    wd = cfg.weight_decay or None
    lr = cfg.lr
    if cfg.lr_milestones:
        boundaries = [int(m) * updates_per_epoch for m in sorted(cfg.lr_milestones)]
        values = [cfg.lr * cfg.lr_gamma ** i for i in range(len(boundaries) + 1)]
        lr = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if name == "adam":
        return optimizers.AdamW(lr, weight_decay=wd) if wd else optimizers.Adam(lr)
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
    test_rows: Any = None  # () -> the whole test set (every worker's part) in groups of rows, for intervals


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


def make_datasets(model: Recommender, split, optim: OptimConfig, seed: int, dist: distribute.Distribution,
                  xla: bool = False) -> Datasets:
    """The train/validation/test pipelines ``model`` (a Recommender, or its class) needs."""
    from data import pipeline

    bs, bsv = optim.batch_size_train, optim.batch_size_validation
    train = split.train
    feed = pipeline.TRAIN_INPUTS.get(model.input_kind)
    if feed is None:
        raise ValueError(f"unknown input kind {model.input_kind!r}; data.pipeline.TRAIN_INPUTS has "
                         f"{', '.join(pipeline.TRAIN_INPUTS)}")
    xla = xla and feed.xla
    n_rows = feed.units(train)
    shards = dist.local_shards

    def fn(epoch):
        # One disjoint shard per replica; a process that feeds several replicas zips their batches.
        parts = [feed.batches(train, bs, seed, epoch, shard, dist.shards, xla) for shard in shards]
        return parts[0] if len(parts) == 1 else tf.data.Dataset.zip(tuple(parts))

    steps = pipeline.steps_per_epoch(n_rows, bs, dist.shards, drop_remainder=xla)
    if model.task == "topk":
        val = (split.val_input, split.val_target)
        test = (split.test_input, split.test_target)
    else:
        val = (split.train, split.val) if split.val.nnz else None
        test = (split.train, split.test)
    if steps == 0:
        raise ConfigError(f"--batch_size_train {bs} is larger than the {n_rows // dist.shards} training rows each of "
                          f"{dist.shards} replica(s) has{' (--xla drops incomplete batches)' if xla else ''}; "
                          f"lower --batch_size_train")
    for part, pair in (("validation", val), ("test", test)):
        if pair is not None and pair[0].shape[0] < dist.size:
            raise ConfigError(f"the {part} split has {pair[0].shape[0]} rows, fewer than the {dist.size} workers "
                              f"that share its evaluation; use fewer workers or more held-out users")
    validation = (lambda: eval_batches(*val, bsv, dist)) if val is not None and val[1].nnz else None
    group = intervals.group_size(test[0].shape[0])
    return Datasets(train=fn, steps_per_epoch=steps, rows_per_epoch=n_rows, validation=validation,
                    test=lambda: eval_batches(*test, bsv, dist),
                    test_rows=lambda: eval_batches(*test, group, distribute.Distribution()))


def datasets_for(family: families.Family, split, cfg: RunConfig, dist: distribute.Distribution) -> Datasets:
    """:func:`make_datasets` for a family's model (the run's defaults resolved for the split)."""
    cfg, _ = resolve(cfg, split, dist.shards)
    return make_datasets(family.cls, split, cfg.optim, cfg.seed, dist, xla=cfg.train.xla)


# --- defaults that scale with the data ----------------------------------------------
def resolve(cfg: RunConfig, split, replicas: int = 1) -> tuple[RunConfig, list[str]]:
    """``cfg`` with the settings it leaves to the data filled in, and the rules used, one phrase each.

    What a run does not set and must scale with the data rather than be a
    constant: the training batch (:meth:`Recommender.default_batch_size` of
    the split's rows or ratings) and the hyper-parameters counted in updates
    (:meth:`Recommender.epoch_scaled_params`, Mult-VAE's KL annealing). They
    never depend on the epoch count, so a run continued for more epochs is the
    same run. Idempotent: a resolved config resolves to itself, so the
    manifest of a resumed run matches.

    Args:
      cfg: the run (``optim.batch_size_train`` None: by rule; a model
        parameter absent from ``model_params``: by rule where there is one).
      split: the split it trains on, in the model's orientation.
      replicas: replicas sharing each epoch (the steps per epoch shrink with them).
    """
    from data import pipeline

    family = families.get(cfg.model)
    cls = family.cls
    notes = []
    units = pipeline.TRAIN_INPUTS[cls.input_kind].units(split.train)
    optim = cfg.optim
    if optim.batch_size_train is None:
        batch, why = cls.default_batch_size(units)
        batch = max(1, min(batch, units // replicas))  # a tiny data set: one step an epoch, even with XLA
        optim = dataclasses.replace(optim, batch_size_train=batch)
        if not family.closed_form:
            notes.append(f"batch_size_train {batch} ({why})")
    params = dict(cfg.model_params)
    if not family.closed_form:
        steps = pipeline.steps_per_epoch(units, optim.batch_size_train, replicas, drop_remainder=cfg.train.xla)
        config = family.make_config(_dims(family, split), params)
        for name, (value, why) in cls.epoch_scaled_params(config, steps).items():
            if name not in params:
                params[name] = value
                notes.append(f"{name} {value:,} ({why})" if isinstance(value, int) else f"{name} {value} ({why})")
    if optim is cfg.optim and params == cfg.model_params:
        return cfg, notes
    return dataclasses.replace(cfg, optim=optim, model_params=params), notes


# --- models -------------------------------------------------------------------------
def _dims(family: families.Family, split) -> dict[str, int]:
    if family.task == "topk":
        return {"n_items": split.n_items}
    return {"n_users": split.n_users, "n_items": split.n_items}


def build_model(family: families.Family, split, params: dict, policy: str):
    """A fresh model of the family for this split, built under the dtype policy."""
    config = family.make_config(_dims(family, split), params)
    with precision.policy_scope(policy):
        return family.build(config)


def model_config(family: families.Family, split, params: dict, seed: int) -> dict:
    """The resolved hyper-parameters of a run (every default filled in), as recorded in its manifest."""
    return dataclasses.asdict(family.make_config(_dims(family, split), {**params, "seed": seed}))


def set_metrics(model: Recommender, cfg: RunConfig) -> None:
    """Gives a top-k model the run's ranking metrics (``cfg.metrics``, with its main metric)."""
    if model.task == "topk":
        model.ranking_metrics = metrics.parse_ranking(cfg.metrics or metrics.DEFAULT_RANKING, model.main_metric)


def evaluation_step(model: Recommender):
    """The model's ``evaluate_step`` compiled (one trace per batch shape)."""
    return tf.function(model.evaluate_step, reduce_retracing=True)


def evaluate_model(model: Recommender, dataset: tf.data.Dataset, dist, step=None) -> dict[str, float]:
    """Metrics of a trained or solved model on an evaluation dataset (see :func:`training.trainer.evaluate`).

    ``step``: an :func:`evaluation_step` of the model to reuse (default: a new one).
    """
    from training import trainer

    return trainer.evaluate(step or evaluation_step(model), dataset, dist)


# --- the one fit --------------------------------------------------------------------
@dataclasses.dataclass
class FitResult:
    """What :func:`fit` produced.

    Attributes:
      model: the model, holding its best validated weights (the last epoch's
        when nothing was validated; the last good checkpoint's after a divergence).
      summary: ``epochs``, ``train_seconds`` (every invocation of the run),
        ``history`` (every epoch), ``best``, ``validation`` metrics...
      data: the datasets it trained on (their ``test`` is what ``--test`` scores).
      trainer: the :class:`Trainer` (None for closed-form baselines).
      diverged: the divergence that stopped training, or None.
    """

    model: Any
    summary: dict
    data: Datasets
    trainer: Optional[Trainer] = None
    diverged: Optional[Diverged] = None


def warm_start_weights(model, folder: str | Path) -> None:
    """Initializes ``model`` from the exported weights of another run folder."""
    from serving import loader

    source = Path(folder) / loader.MODEL_DIR
    if not (source / "model.json").exists():
        raise ConfigError(f"--warm_start {folder}: no exported model there (model/model.json)")
    loader.restore_weights(model, source)


def fit(cfg: RunConfig, split, dist: Optional[distribute.Distribution] = None, policy: Optional[str] = None,
        observe_data: bool = True, on_validation: Optional[Callable[[int, dict], None]] = None) -> FitResult:
    """Trains (or fits) ``cfg.model`` on ``split`` in the run folder ``cfg.train.export_dir``.

    Resumes from the folder's latest checkpoint unless ``cfg.train.fresh``;
    the folder's identity is the caller's business (:mod:`training.run_folder`).
    Exports nothing.

    Args:
      cfg: the run; ``cfg.model_params`` are the family's hyper-parameters,
        ``cfg.seed`` seeds the weights, noise and data order.
      split: a HeldoutSplit (top-k) or RatingSplit (rating models), already
        transposed for item-based DeepRec.
      dist: the distribution (single process if None).
      policy: the dtype policy (None: from ``cfg.use_amp``).
      on_validation: (epoch, validation metrics) after each validation (see
        :meth:`training.trainer.Trainer.fit`); not called for a closed-form
        model (its one validation is the result).
      observe_data: let the model record training statistics it needs at
        inference (see :meth:`training.model.Model.observe_training_data`).

    Returns:
      A :class:`FitResult`; a divergence is returned in ``diverged``, not raised,
      so the caller can still export the last good weights.
    """
    family = families.get(cfg.model)
    dist = dist or distribute.Distribution()
    policy = policy or precision.policy_name(cfg.use_amp)
    cfg, _ = resolve(cfg, split, dist.shards)
    t0 = time.perf_counter()
    data = make_datasets(family.cls, split, cfg.optim, cfg.seed, dist, xla=cfg.train.xla)
    with dist.scope():  # a tf.distribute strategy mirrors the weights and optimizer over its replicas
        model = build_model(family, split, {**cfg.model_params, "seed": cfg.seed}, policy)
    set_metrics(model, cfg)
    if model.closed_form:
        model.solve(split.train, verbose=dist.is_chief and cfg.train.verbose)
        summary = {"epochs": 0, "train_seconds": time.perf_counter() - t0}
        if data.validation is not None:
            summary["validation"] = evaluate_model(model, data.validation(), dist)
        return FitResult(model, summary, data)
    if observe_data:
        model.observe_training_data(split.train)
    if cfg.warm_start:
        warm_start_weights(model, cfg.warm_start)
    with dist.scope():
        optimizers = {phase.name: make_optimizer(cfg.optim,
                                                 data.steps_per_epoch * phase.passes * model.updates_per_step())
                      for phase in model.phases()}  # one per phase; milestones count epochs in each
    patience = model.default_patience if cfg.train.patience is None else cfg.train.patience
    steps_per_call = cfg.train.steps_per_call or model.default_steps_per_call()
    trainer = Trainer(model, optimizers, dataclasses.replace(cfg.train, patience=patience or None,
                                                             steps_per_call=steps_per_call), dist, policy)
    diverged = None
    try:
        history = trainer.fit(data.train, data.steps_per_epoch, data.rows_per_epoch, data.validation, on_validation)
    except Diverged as err:
        diverged, history = err, err.history
        trainer.restore_latest()
    if trainer.restore_best() and diverged is None and dist.is_chief and cfg.train.verbose and history.best:
        print(f"best epoch {history.best['epoch']}: {model.main_metric} "
              f"{history.best[model.main_metric]:.4f}", flush=True)
    epochs = history.epochs
    last = epochs[-1] if epochs else {}
    summary = {"epochs": int(trainer.epoch.numpy()), "resumed_from_epoch": history.resumed_from_epoch,
               "stopped_early": history.stopped_early, "best": history.best,
               "train_seconds": sum(e["train_seconds"] for e in epochs),
               "mean_epoch_seconds": float(np.mean([e["train_seconds"] for e in epochs])) if epochs else None,
               "final_loss": last.get("loss"), "history": epochs}
    if history.steps:
        summary["steps"] = history.steps
    if diverged is not None:
        summary["diverged"] = {"epoch": diverged.epoch, "step": diverged.step, "loss": diverged.loss,
                               "restored": diverged.last_checkpoint}
    elif data.validation is not None:
        summary["validation"] = trainer.evaluate(data.validation())
    return FitResult(model, summary, data, trainer, diverged)
