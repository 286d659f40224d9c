"""Hyper-parameter search on validation data: Optuna's TPE sampler, pruning, a study that resumes after a kill.

:func:`tune` runs trials of one model on one dataset; each trial samples the
family's search space (declared next to its config, e.g. :data:`vae.config.VAE_SPACE`),
trains through the one fit wiring in its own run folder
``<out>/trials/<params hash>/`` and reports its validation metric after every
validation, where Optuna's median pruner may stop it. Test data is never read.

The study lives in ``<out>/study.db`` (SQLite): a second call continues it,
runs only the trials still missing, and re-runs a trial that a kill interrupted
with the same parameters, from its run folder's latest checkpoint. The tuning
folder is locked while it runs, and refuses a study of other settings.

It writes into ``<out>/``: ``trials.csv`` and ``trials.md`` (every trial, its
state, validation value and parameters) and ``tune.png`` (the optimization
history and the parameter importances). The caller writes the best settings
as a preset (``main.py --tune`` writes ``<out>/preset.toml``).

A search space maps a run setting (``model_params.lam``, ``optim.lr``...) to
``("log", low, high)``, ``("float", low, high)``, ``("int", low, high)`` or
``("choice", [values])`` (values may be tuples, e.g. layer widths).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

from data import files
from data.errors import ConfigError, TrainingError
from training import families, runner
from training.config import RunConfig, jsonable
from training.run_folder import RunFolder

STUDY = "study.db"
Space = dict[str, tuple]


# No trial is pruned before this epoch: a model that validates every epoch is still far from its best after one
# (DeepRec's first-epoch RMSE is ~1.5 whatever its settings), so comparing it to the median there prunes at random.
WARMUP_EPOCHS = 10


# --- search spaces -------------------------------------------------------------------

def check_space(space: Space) -> None:
    """Raises ConfigError for a malformed search space (what :func:`sample` cannot draw from)."""
    for key, spec in space.items():
        if not key.startswith(("model_params.", "optim.", "train.", "data.")):
            raise ConfigError(f"search space key {key!r}: use model_params.<field>, optim.<field>, train.<field> "
                              f"or data.<field>")
        kind = spec[0] if spec else None
        if kind == "choice" and len(spec) == 2 and len(spec[1]) >= 1:
            continue
        if kind in ("log", "float", "int") and len(spec) == 3 and spec[1] < spec[2] and (kind != "log" or spec[1] > 0):
            continue
        raise ConfigError(f"search space {key!r}: {spec!r} is not (log|float|int, low, high) or (choice, [values])")


def _choice_name(value) -> Union[str, int, float, bool, None]:
    """How Optuna stores a choice (it keeps only None, bool, int, float and str)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(jsonable(value))


def sample(trial, space: Space) -> dict[str, Any]:
    """One draw of ``space`` from an Optuna trial: run setting -> value."""
    out = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "choice":
            names = [_choice_name(v) for v in spec[1]]
            out[key] = spec[1][names.index(trial.suggest_categorical(key, names))]
        elif kind == "int":
            out[key] = trial.suggest_int(key, int(spec[1]), int(spec[2]))
        else:
            out[key] = trial.suggest_float(key, float(spec[1]), float(spec[2]), log=kind == "log")
    return out


def with_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """``cfg`` with run settings replaced (``model_params.lam``, ``optim.lr``, ``train.epochs``, ``data.val_fraction``)."""
    model_params = dict(cfg.model_params)
    sections = {"optim": {}, "train": {}, "data": {}}
    for key, value in params.items():
        section, name = key.split(".", 1)
        if section == "model_params":
            model_params[name] = value
        else:
            sections[section][name] = value
    return dataclasses.replace(
        cfg, model_params=model_params, optim=dataclasses.replace(cfg.optim, **sections["optim"]),
        train=dataclasses.replace(cfg.train, **sections["train"]),
        data=dataclasses.replace(cfg.data, **sections["data"]))


def _folder_name(params: dict[str, Any]) -> str:
    """The trial's run folder: the same parameters resume the same folder."""
    return hashlib.sha1(json.dumps(jsonable(params), sort_keys=True).encode()).hexdigest()[:12]


# --- the study -----------------------------------------------------------------------
@dataclasses.dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes:
      best_params: run setting -> value of the best trial.
      best_value: its best validation value of ``metric``.
      metric: the main metric (``ndcg@100``, ``rmse``...) and ``direction``.
      trials: finished trials (complete or pruned) in the study; ``complete``
        and ``pruned`` count them, ``run_now`` how many this call ran.
      folder: the tuning folder.
    """

    best_params: dict[str, Any]
    best_value: float
    metric: str
    direction: str
    trials: int
    complete: int
    pruned: int
    run_now: int
    folder: Path


def _identity(base: RunConfig, space: Space) -> dict:
    """What a study's trials must share: the model, the data, the fixed settings and the space."""
    fixed = dataclasses.replace(base, export_dir="", command=None, explicit=None, settings=None,
                                train=dataclasses.replace(base.train, export_dir="", verbose=False, log_dir=None),
                                data=dataclasses.replace(base.data, data_dir=None, mirror=None))
    return jsonable({"config": dataclasses.asdict(fixed), "space": space})


def tune(base: RunConfig, space: Space, trials: int, out_dir: Union[str, Path], verbose: bool = True,
         pruner=None) -> TuneResult:
    """Runs the study until it has ``trials`` finished trials.

    Args:
      base: the fixed settings of every trial (model, data, seed, epochs...);
        its data must have a validation part (validation users, or the
        validation slice rating splits have by default).
      space: the search space (see the module doc); at least one setting.
      trials: finished trials (complete or pruned) the study should hold.
      out_dir: the tuning folder.
      verbose: one line per trial, and the tables at the end.
      pruner: an Optuna pruner (default: the median pruner after 3 trials).

    Returns:
      A :class:`TuneResult`.

    Raises:
      ConfigError: an empty or malformed space, fewer than one trial, the
        folder in use or holding a study of other settings, a model without
        validation data.
    """
    import optuna

    family = families.get(base.model)
    if not space:
        raise ConfigError(f"--tune: {base.model} has nothing to tune (no search space)")
    check_space(space)
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    base = dataclasses.replace(base, train=dataclasses.replace(base.train, verbose=False))
    out_dir = Path(out_dir)
    folder = RunFolder(out_dir)
    metric = family.cls.main_metric
    direction = "maximize" if family.cls.higher_is_better else "minimize"
    with folder.lock("tfcf tune"):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name="tfcf", storage=f"sqlite:///{(out_dir / STUDY).resolve()}", load_if_exists=True,
            direction=direction, sampler=optuna.samplers.TPESampler(seed=base.seed),
            pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=WARMUP_EPOCHS))
        identity = _identity(base, space)
        held = study.user_attrs.get("identity")
        if held is None:
            study.set_user_attr("identity", identity)
        elif held != identity:
            raise ConfigError(f"{out_dir} holds a study of other settings (model, data, fixed flags or search "
                              f"space); use another --export_dir for this one")
        states = optuna.trial.TrialState
        # The lock says no other process runs this study: a trial still "running" was killed. Run it again.
        for stale in study.get_trials(deepcopy=False, states=(states.RUNNING,)):
            study.enqueue_trial(stale.params, skip_if_exists=False)
            study.tell(stale.number, state=states.FAIL)
        finished = lambda: study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
        remaining = trials - len(finished())
        t0 = time.perf_counter()
        run_now = max(remaining, 0)

        def objective(trial) -> float:
            params = sample(trial, space)
            cfg = dataclasses.replace(with_params(base, params).in_series(out_dir / "trials" / _folder_name(params)),
                                      modes=("train",))
            seen: list[float] = []

            def report(epoch: int, values: dict) -> None:
                seen.append(values[metric])
                trial.report(values[metric], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            try:
                results = runner.run(cfg, on_validation=report)
                if not seen and metric in results.get("validation", {}):
                    seen.append(results["validation"][metric])  # a closed-form model validates once, after solve
            finally:
                if verbose:
                    _progress(trial.number, len(finished()) + 1, trials, params, seen, metric, t0, run_now)
            best = results.get("train", {}).get("best")
            if best:
                return float(best[metric])
            if "validation" not in results:
                raise ConfigError(f"--tune: the {base.model} runs have no validation data to tune on; give the "
                                  f"protocol a validation part (--val_fraction, validation users)")
            return float(results["validation"][metric])

        if remaining > 0:
            study.optimize(objective, n_trials=remaining, catch=(TrainingError,))
        done = finished()
        complete = [t for t in done if t.state == states.COMPLETE]
        if not complete:
            raise TrainingError(f"--tune: no trial of {out_dir} finished (all were pruned or failed); widen the "
                                f"search space or give more epochs")
        best = study.best_trial
        result = TuneResult(best_params=_params_of(best, space), best_value=float(best.value), metric=metric,
                            direction=direction, trials=len(done), complete=len(complete),
                            pruned=len(done) - len(complete), run_now=run_now, folder=out_dir)
        write_reports(study, space, result)
    return result


def _params_of(trial, space: Space) -> dict[str, Any]:
    """A finished trial's parameters as run settings (choices back to their values)."""
    out = {}
    for key, value in trial.params.items():
        spec = space[key]
        out[key] = spec[1][[_choice_name(v) for v in spec[1]].index(value)] if spec[0] == "choice" else value
    return out


def _progress(number: int, done: int, trials: int, params: dict, seen: list, metric: str, t0: float,
              run_now: int) -> None:
    shown = ", ".join(f"{k.split('.', 1)[1]}={_show(v)}" for k, v in params.items())
    value = f"{metric} {seen[-1]:.4f} after {len(seen)} validation(s)" if seen else "no validation"
    elapsed = time.perf_counter() - t0
    left = max(trials - done, 0)
    eta = f", ETA {elapsed / max(min(done, run_now), 1) * left:.0f} s" if left else ""
    print(f"tune: trial {number} ({done}/{trials}): {shown} -> {value}{eta}", flush=True)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value)) or "none"
    return str(value)


# --- reports -------------------------------------------------------------------------
def write_reports(study, space: Space, result: TuneResult) -> None:
    """``trials.csv``, ``trials.md`` and ``tune.png`` in the tuning folder."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
    files.write_text(result.folder / "trials.csv", frame.to_csv(index=False))
    files.write_text(result.folder / "trials.md", markdown(study, space, result))
    plot(study, result.folder / "tune.png", result)


def markdown(study, space: Space, result: TuneResult) -> str:
    """The trials as a markdown table, best first."""
    import optuna

    keys = list(space)
    head = (f"{result.trials} trials ({result.complete} complete, {result.pruned} pruned), validation "
            f"{result.metric} ({result.direction}); best {result.best_value:.4f}\n\n")
    lines = ["| trial | state | " + " | ".join(k.split(".", 1)[1] for k in keys) + f" | val {result.metric} |",
             "| --- | --- | " + " | ".join("---" for _ in keys) + " | --- |"]
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    order = sorted(done, key=lambda t: (t.value is None, -(t.value or 0) if result.direction == "maximize"
                                        else (t.value or 0)))
    for t in order:
        params = _params_of(t, space) if t.params else {}
        value = t.value if t.value is not None else (max(t.intermediate_values.values()) if
                                                     t.intermediate_values else None)
        state = "pruned" if t.state == optuna.trial.TrialState.PRUNED else t.state.name.lower()
        lines.append(f"| {t.number} | {state} | " + " | ".join(_show(params.get(k, "")) for k in keys)
                     + f" | {'' if value is None else f'{value:.4f}'} |")
    return head + "\n".join(lines) + "\n"


def plot(study, path: Path, result: TuneResult) -> None:
    """Two panels: each trial's validation value with the best so far, and the parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    fig, (history, importance) = plt.subplots(1, 2, figsize=(11, 4))
    numbers, values = [t.number for t in complete], [t.value for t in complete]
    pick = max if result.direction == "maximize" else min
    best = [pick(values[:i + 1]) for i in range(len(values))]
    history.plot(numbers, values, "o", label="trial")
    history.plot(numbers, best, "-", label="best so far")
    history.set_xlabel("trial")
    history.set_ylabel(f"validation {result.metric}")
    history.set_title("optimization history")
    history.legend()
    try:
        scores = optuna.importance.get_param_importances(study) if len(complete) >= 2 else {}
    except (RuntimeError, ValueError):  # e.g. every trial drew the same values
        scores = {}
    if scores:
        names = list(scores)[::-1]
        importance.barh([n.split(".", 1)[1] for n in names], [scores[n] for n in names])
        importance.set_xlabel("importance (fANOVA)")
    else:
        importance.text(0.5, 0.5, "importances need two complete trials\nwith different values", ha="center")
        importance.set_axis_off()
    importance.set_title("parameter importances")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100), mode="wb")
    plt.close(fig)
