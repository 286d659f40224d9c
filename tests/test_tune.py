"""training/tune.py: a resumable Optuna study on validation data, pruning, reports; main.py --tune writes a preset."""

import json
import tomllib

import optuna
import pytest

from conftest import main_process
from data.errors import ConfigError, TrainingError
from training import tune
from training.config import DataConfig, RunConfig, TrainConfig

EASE_SPACE = {"model_params.ease_lambda": ("log", 50.0, 1000.0)}


def _base(mirror, tmp_path, model="ease", **train):
    return RunConfig(model=model, data=DataConfig(dataset="ml-100k", mirror=str(mirror), data_dir=str(tmp_path / "d")),
                     train=TrainConfig(verbose=False, **train))


def _study(folder):
    return optuna.load_study(study_name="tfcf", storage=f"sqlite:///{folder / tune.STUDY}")


def test_a_study_runs_resumes_and_reruns_a_killed_trial(mirror, tmp_path):
    out = tmp_path / "tune"
    first = tune.tune(_base(mirror, tmp_path), EASE_SPACE, 3, out, verbose=False)
    assert (first.trials, first.complete, first.run_now) == (3, 3, 3)
    values = [t.value for t in _study(out).trials]
    assert first.best_value == max(values) and first.metric == "ndcg@100"
    assert 50 <= first.best_params["model_params.ease_lambda"] <= 1000
    assert {p.name for p in out.iterdir()} >= {"study.db", "trials.md", "trials.csv", "tune.png", "trials"}
    assert len(list((out / "trials").iterdir())) == 3
    table = (out / "trials.md").read_text()
    assert table.startswith("3 trials (3 complete, 0 pruned)") and f"| {first.best_value:.4f} |" in table

    # A fourth trial only: the three finished ones are not repeated.
    again = tune.tune(_base(mirror, tmp_path), EASE_SPACE, 4, out, verbose=False)
    assert (again.trials, again.run_now) == (4, 1)

    # A trial a kill interrupted (still "running" in the study) runs again with the same parameters.
    study = _study(out)
    killed = study.ask()
    lam = killed.suggest_float("model_params.ease_lambda", 50.0, 1000.0, log=True)
    third = tune.tune(_base(mirror, tmp_path), EASE_SPACE, 5, out, verbose=False)
    trials = _study(out).trials
    assert third.run_now == 1
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    rerun = trials[-1]
    assert rerun.state == optuna.trial.TrialState.COMPLETE and rerun.params["model_params.ease_lambda"] == lam


def test_a_study_of_other_settings_is_refused(mirror, tmp_path):
    out = tmp_path / "tune"
    tune.tune(_base(mirror, tmp_path), EASE_SPACE, 1, out, verbose=False)
    with pytest.raises(ConfigError, match="holds a study of other settings"):
        tune.tune(_base(mirror, tmp_path), {"model_params.ease_lambda": ("log", 10.0, 20.0)}, 2, out, verbose=False)


def test_pruned_trials_stop_after_their_first_validation(mirror, tmp_path):
    out = tmp_path / "tune"
    space = {"model_params.lam": ("log", 1e-4, 1e-2)}
    # Every value is below 1.0: each trial is pruned at its first report, after epoch 1 of 3.
    with pytest.raises(TrainingError, match="no trial .* finished"):
        tune.tune(_base(mirror, tmp_path, model="dae", epochs=3, validation_step=1), space, 2, out, verbose=False,
                  pruner=optuna.pruners.ThresholdPruner(lower=1.0))
    trials = _study(out).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(list(t.intermediate_values) == [1] for t in trials)
    for folder in (out / "trials").iterdir():  # the pruned run stopped at epoch 1, resumable from its checkpoint
        assert [p.name for p in (folder / "checkpoints").glob("ckpt-*.index")] == ["ckpt-1.index"]


def test_rating_models_tune_on_a_validation_slice(mirror, tmp_path):
    result = tune.tune(_base(mirror, tmp_path, model="mf", epochs=2, validation_step=1),
                       {"model_params.rank": ("int", 2, 8)}, 1, tmp_path / "tune", verbose=False)
    assert result.metric == "rmse" and result.direction == "minimize"  # on the default 5% validation slice
    assert 0.8 < result.best_value < 2.0


@pytest.mark.parametrize("space,message", [
    ({"lam": ("log", 1e-3, 1.0)}, "use model_params"),
    ({"model_params.lam": ("log", 0.0, 1.0)}, "is not"),
    ({"model_params.lam": ("float", 2.0, 1.0)}, "is not"),
    ({"model_params.hidden": ("choice", [])}, "is not"),
    ({"model_params.hidden": ("normal", 0, 1)}, "is not"),
])
def test_malformed_spaces_are_refused(space, message):
    with pytest.raises(ConfigError, match=message):
        tune.check_space(space)


def test_every_family_space_is_well_formed():
    from training import families

    for name, family in families.FAMILIES.items():
        tune.check_space(family.space)
        names = family.cls.param_names()
        assert all(k.split(".", 1)[1] in names for k in family.space if k.startswith("model_params.")), name
    assert not families.get("popularity").space


def test_choices_of_tuples_round_trip():
    study = optuna.create_study()
    space = {"model_params.hidden": ("choice", [(), (600,), (300, 100)])}
    trial = study.ask()
    drawn = tune.sample(trial, space)
    assert drawn["model_params.hidden"] in space["model_params.hidden"][1]
    study.tell(trial, 0.5)
    assert tune._params_of(study.best_trial, space) == drawn


def test_main_tune_writes_a_preset_a_run_then_uses(mirror, tmp_path):
    out = tmp_path / "tune"
    common = ["--model", "ease", "--data_mirror", mirror, "--data_dir", tmp_path / "d"]
    proc = main_process("--tune", "--trials", "2", "--export_dir", out, *common)
    assert "tune: trial 1 (2/2): ease_lambda=" in proc.stdout and f"wrote {out}/preset.toml" in proc.stdout
    preset = tomllib.loads((out / "preset.toml").read_text())
    assert preset["provenance"]["chosen_by"].startswith("python main.py --tune --trials 2")
    assert preset["provenance"]["validation"].startswith("ndcg@100 0.")
    lam = preset["flags"]["ease_lambda"]
    main_process("--train", "--config", out / "preset.toml", "--export_dir", tmp_path / "run", *common)
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["model"]["config"]["ease_lambda"] == lam
    assert manifest["settings"]["file"] == str(out / "preset.toml")
    # EASE has a preset for ML-100K (lambda 200): the study starts from it and says so.
    assert preset["provenance"]["started_from"] == "configs/ease/ml-100k.toml"
    bad = main_process("--tune", "--train", "--export_dir", out, *common, check=False)
    assert bad.returncode == 2 and "--tune runs alone" in bad.stderr
