"""Defaults that scale with the data (training.fit.resolve): the batch rules, Mult-VAE's KL annealing, idempotence,
what the user set wins, and the run records and says the resolved values."""

import dataclasses
import json
import math
import types

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import run_main
from training import fit
from training.config import DataConfig, OptimConfig, RunConfig, TrainConfig


def split_of(rows: int, cols: int, nnz_per_row: int = 3):
    """A stand-in split: a [rows, cols] CSR with ``nnz_per_row`` ones a row."""
    indices = np.concatenate([np.arange(nnz_per_row) + r % (cols - nnz_per_row) for r in range(rows)])
    indptr = np.arange(rows + 1) * nnz_per_row
    train = sp.csr_matrix((np.ones(rows * nnz_per_row, np.float32), indices, indptr), shape=(rows, cols))
    return types.SimpleNamespace(train=train, n_items=cols, n_users=rows)


def run(model, epochs=200, **optim):
    return RunConfig(model=model, optim=OptimConfig(**optim), train=TrainConfig(epochs=epochs))


@pytest.mark.parametrize("rows, batch", [(752, 100), (30_000, 150), (116_677, 500)])
def test_vae_batch_is_a_two_hundredth_of_the_users_within_100_500(rows, batch):
    cfg, notes = fit.resolve(run("vae"), split_of(rows, 50))
    # 752 // 200 = 3 -> 100; 30,000 // 200 = 150; 116,677 // 200 = 583 -> 500 (the paper's, on ML-20M).
    assert cfg.optim.batch_size_train == batch
    assert notes[0].startswith(f"batch_size_train {batch} ")


def test_vae_anneals_over_the_paper_share_of_200_epochs_whatever_the_run_length():
    cfg, notes = fit.resolve(run("vae", epochs=200), split_of(752, 50))
    steps = math.ceil(752 / 100)  # 8 steps of 100 users an epoch
    # Liang et al.: 200,000 annealing steps for 200 epochs x 234 steps = 46,800 updates of ML-20M.
    assert cfg.model_params["total_anneal_steps"] == round(200 * steps * 200_000 / 46_800) == 6838
    assert "at 85% of 200 epochs of 8 steps" in notes[1]
    # A run of 2 or 400 epochs anneals at the same pace: continuing a run for more epochs keeps its settings.
    for epochs in (2, 400):
        assert fit.resolve(run("vae", epochs=epochs), split_of(752, 50))[0].model_params == cfg.model_params
    # On ML-20M's shape the rule gives back the paper's 200,000 (within the rounding of 46,800).
    big, _ = fit.resolve(run("vae", epochs=200), split_of(116_677, 50))
    assert abs(big.model_params["total_anneal_steps"] - 200_000) / 200_000 < 0.003


def test_what_the_run_sets_wins_and_resolving_twice_changes_nothing():
    given = dataclasses.replace(run("vae", batch_size_train=64), model_params={"total_anneal_steps": 1234})
    cfg, notes = fit.resolve(given, split_of(752, 50))
    assert cfg is given and notes == []
    once, _ = fit.resolve(run("vae"), split_of(752, 50))
    twice, notes = fit.resolve(once, split_of(752, 50))
    assert twice == once and notes == []


def test_workers_shorten_the_run_the_annealing_follows():
    one, _ = fit.resolve(run("vae"), split_of(4000, 50))
    two, _ = fit.resolve(run("vae"), split_of(4000, 50), replicas=2)
    # 4,000 users, batch 100: 40 steps an epoch on one worker, 20 on each of two.
    assert one.model_params["total_anneal_steps"] == round(200 * 40 * 200_000 / 46_800)
    assert two.model_params["total_anneal_steps"] == round(200 * 20 * 200_000 / 46_800)


def test_dae_has_no_annealing_to_scale():
    cfg, notes = fit.resolve(run("dae"), split_of(752, 50))
    assert "total_anneal_steps" not in cfg.model_params and len(notes) == 1


@pytest.mark.parametrize("ratings, batch", [(760, 256), (76_000, 1024), (1_000_000, 8192), (10**8, 16384)])
def test_pair_models_take_about_a_hundred_steps_an_epoch(ratings, batch):
    # The power of two nearest ratings / 100 in log scale: 7.6 -> 256 (the floor); 760 -> 2^round(9.57) = 1024;
    # 10,000 -> 2^round(13.29) = 8192; 1e6 -> 16384 (the ceiling).
    rows = ratings // 4
    for model in ("mf", "multitask"):
        cfg, notes = fit.resolve(run(model), split_of(rows, 20, nnz_per_row=4))
        assert cfg.optim.batch_size_train == batch, model
        assert "ratings a step" in notes[0]


@pytest.mark.parametrize("rows, batch", [(943, 32), (1682, 64), (480_189, 128), (100, 32)])
def test_deeprec_takes_the_power_of_two_nearest_a_32nd_of_the_rows(rows, batch):
    # 943 / 32 = 29.5 -> 32 (user-based ML-100K); 1682 / 32 = 52.6 -> 64 (item-based); Netflix -> 128 (the paper's).
    cfg, _ = fit.resolve(run("deeprec"), split_of(rows, 20))
    assert cfg.optim.batch_size_train == batch


def test_closed_form_models_say_nothing():
    cfg, notes = fit.resolve(run("ease"), split_of(752, 50))
    assert notes == [] and cfg.optim.batch_size_train == 100


def test_a_run_says_and_records_the_resolved_defaults(mirror, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main("--model", "vae", "--train", "--number_of_epochs", "2", "--config", "none",
                         "--data_mirror", str(mirror), "--data_dir", str(tmp_path / "data"),
                         "--export_dir", str(out)) == 0
    log = capsys.readouterr().out
    line = next(l for l in log.splitlines() if l.startswith("defaults by data size: "))
    # ML-100K heldout: 752 training users -> batch 100, 8 steps an epoch -> 200 x 8 x 200,000 / 46,800.
    assert "batch_size_train 100" in line and "total_anneal_steps 6,838 " in line
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["optim"]["batch_size_train"] == 100
    assert manifest["model"]["config"]["total_anneal_steps"] == 6838
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["optim"]["batch_size_train"] == 100
    # Run on for 3 epochs: the same resolved settings, so it resumes instead of refusing the folder.
    assert run_main("--model", "vae", "--train", "--number_of_epochs", "3", "--config", "none",
                         "--data_mirror", str(mirror), "--data_dir", str(tmp_path / "data"),
                         "--export_dir", str(out)) == 0
    assert "resum" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["train"]["epochs"] == 3
