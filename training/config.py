"""Every config object of a run, and what makes two runs the same run.

``main.py`` turns flags into a :class:`RunConfig`; notebooks, compare, the
experiments and the bench scripts build one directly. A run's identity (what
determines its result) is written to the run folder's manifest
(:mod:`training.run_folder`); :data:`RUN_LENGTH_KEYS` are the settings that may
change between invocations of the same run.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

from data.prepare import DataConfig

__all__ = ["DataConfig", "OptimConfig", "RunConfig", "TrainConfig", "RUN_LENGTH_KEYS", "LOCATION_KEYS",
           "flatten", "jsonable"]


@dataclasses.dataclass
class TrainConfig:
    """How the engine trains (not what the model is).

    Attributes:
      epochs: number of epochs to reach (a resumed run trains the remainder).
      validation_step: validate every this many epochs (and after the last).
      export_dir: run folder: ``checkpoints/``, ``best/``, ``logs/``.
      xla: compile the train step with XLA (``jit_compile=True``).
      fresh: start over instead of resuming (the runner moves an old run aside).
      keep_checkpoints: how many latest checkpoints to keep.
      patience: stop after this many validations without improvement (None: never).
      progress_seconds: at most one progress line per this many seconds.
      verbose: print progress and epoch lines (chief only).
      record_steps: keep every step's logs in the history (for per-batch plots).
      max_steps_per_epoch: cut epochs short (benchmarks and tests only).
      log_dir: TensorBoard folder (None: ``<export_dir>/logs``).
      steps_per_call: training steps per compiled call, looping on the device
        (None: the model's :meth:`Recommender.default_steps_per_call`; 1
        with ``record_steps``); the results do not depend on it.
    """

    epochs: int = 200
    validation_step: int = 1
    export_dir: str = "runs/default"
    xla: bool = False
    fresh: bool = False
    keep_checkpoints: int = 2
    patience: Optional[int] = None
    progress_seconds: float = 10.0
    verbose: bool = True
    record_steps: bool = False
    max_steps_per_epoch: Optional[int] = None
    log_dir: Optional[str] = None
    steps_per_call: Optional[int] = None


@dataclasses.dataclass
class OptimConfig:
    """The optimizer and the batch sizes.

    ``batch_size_train`` is per worker, as in the thesis: with N Horovod workers
    one step sees N x batch_size_train users; None leaves it to the model's
    rule for the data's size (:func:`training.fit.resolve`). ``lr_milestones``
    are epochs.
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size_train: Optional[int] = None
    batch_size_validation: int = 2000
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1


@dataclasses.dataclass
class RunConfig:
    """Everything one ``main.py`` invocation does.

    Attributes:
      model: the family name (``--model``).
      modes: any of ``train``, ``test``, ``benchmark``, run in that order.
      seed: seed of the split, the data order, the weights and the noise.
      export_dir: the run folder.
      use_amp: mixed precision.
      model_params: the family's hyper-parameters by config field name (and
        ``major`` for DeepRec; ``ease_lambda`` for EASE).
      warm_start: a finished run folder whose exported weights initialize this
        run (same model and split; used to continue a diverged run at a lower
        learning rate in a new folder).
      explicit: the config keys (dotted, as in :func:`flatten`) the user set
        on the command line; a run-reading mode refuses those that contradict
        the run folder. None: every key counts as given (library callers).
      command: the command line, recorded in the manifest and used in advice.
      settings: the config file or preset the flags came from (its path and
        provenance), recorded in the manifest.
      metrics: top-k models' ranking metrics (``--metrics``; None: recall@20,
        recall@50, ndcg@100); the main metric is always added.
      replace_mismatch: a run folder of another setup is moved aside and
        retrained instead of refused (``--compare`` does this and says why).
      reuse_finished: return a finished run's results instead of testing it
        again when the folder holds exactly this run (``--compare``).
    """

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
    devices: int = 1
    warm_start: Optional[str] = None
    explicit: Optional[frozenset] = None
    command: Optional[tuple[str, ...]] = None
    settings: Optional[dict] = None
    metrics: Optional[tuple[str, ...]] = None
    replace_mismatch: bool = False
    reuse_finished: bool = False

    def in_series(self, folder, **changes) -> "RunConfig":
        """This run, trained and tested in ``folder`` as one of a series (``--compare``'s models, ``--seeds``).

        A folder holding another setup's run is moved aside, a finished run of
        this setup is reused (unless ``train.fresh``); ``changes`` replace fields.
        """
        return dataclasses.replace(self, modes=("train", "test"), export_dir=str(folder),
                                   train=dataclasses.replace(self.train, export_dir=str(folder)),
                                   replace_mismatch=True, reuse_finished=not self.train.fresh, **changes)


# Keys of a manifest that may differ between invocations of one run: how long it trains and what
# it reports, never what a trained epoch computes. Everything else must match to resume.
RUN_LENGTH_KEYS = frozenset({
    "train.epochs", "train.validation_step", "train.patience", "train.verbose", "train.progress_seconds",
    "train.keep_checkpoints", "train.record_steps", "train.steps_per_call", "optim.batch_size_validation",
})
# Where things are, not what they are: the data's content is pinned by checksums and the split fingerprint.
LOCATION_KEYS = frozenset({"data.data_dir", "data.mirror", "data.cache", "train.export_dir", "train.log_dir",
                           "train.fresh"})


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types (tuples become lists), so manifests compare as they are stored."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
