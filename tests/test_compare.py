"""compare: one split for every model, table/JSON/PNG, resume without retraining, refused mixes; the runner on
your own file gives the built-in dataset's numbers; main.py --compare."""

import dataclasses
import json

import pandas as pd
import pytest

import main
from data.errors import ConfigError
from training import compare
from training.config import DataConfig, RunConfig
from data.prepare import prepare
from training.trainer import TrainConfig


def base_config(mirror, data_dir, dataset="ml-100k", **data):
    return RunConfig(
        data=DataConfig(dataset=str(dataset), mirror=str(mirror), data_dir=str(data_dir), **data),
        train=TrainConfig(epochs=1, validation_step=1, verbose=False))


@pytest.fixture(scope="module")
def compared(mirror, tmp_path_factory):
    """popularity and ease compared on ML-100K, then the same call again."""
    out = tmp_path_factory.mktemp("cmp")
    cfg = base_config(mirror, tmp_path_factory.mktemp("data"))
    first = compare.compare("popularity,ease", cfg, out, verbose=False)
    stamps = {m: (out / m / "results.json").stat().st_mtime_ns for m in ("popularity", "ease")}
    return out, cfg, first, stamps


def test_every_model_has_test_metrics_on_the_same_split(compared):
    out, _, report, _ = compared
    assert [row["model"] for row in report["models"]] == ["popularity", "ease"]
    assert report["task"] == "topk" and report["protocol"] == "heldout"
    assert report["metrics"] == ["ndcg@100", "recall@20", "recall@50"]
    counts = [json.loads((out / m / "results.json").read_text())["data"]["counts"] for m in ("popularity", "ease")]
    assert counts[0] == counts[1]
    pop, ease = (row["test"]["ndcg@100"] for row in report["models"])
    assert ease > pop  # EASE beats popularity on ML-100K by a wide margin (0.46 vs 0.29)
    assert json.loads((out / "compare.json").read_text()) == json.loads(json.dumps(report))
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_call_trains_nothing(compared, capsys):
    out, cfg, first, stamps = compared
    again = compare.compare(["popularity", "ease"], cfg, out)
    log = capsys.readouterr().out
    assert log.count("not retrained") == 2 and "training in" not in log
    assert [row["reused"] for row in again["models"]] == [True, True]
    assert {m: (out / m / "results.json").stat().st_mtime_ns for m in stamps} == stamps
    assert [row["test"] for row in again["models"]] == [row["test"] for row in first["models"]]


def test_an_interrupted_comparison_trains_only_what_is_missing(compared, tmp_path):
    out, cfg, _, _ = compared
    import shutil

    shutil.copytree(out, tmp_path / "cmp")
    results = tmp_path / "cmp" / "ease" / "results.json"
    partial = json.loads(results.read_text())
    del partial["test"]  # as if killed between training and testing
    results.write_text(json.dumps(partial))
    again = compare.compare("popularity,ease", cfg, tmp_path / "cmp", verbose=False)
    assert [row["reused"] for row in again["models"]] == [True, False]
    assert "test" in json.loads(results.read_text())


def test_results_of_another_setup_are_retrained_not_reused(compared, tmp_path, capsys):
    out, cfg, _, _ = compared
    import shutil

    shutil.copytree(out, tmp_path / "cmp")
    other = dataclasses.replace(cfg, seed=1)
    report = compare.compare("popularity", other, tmp_path / "cmp", verbose=False)
    assert report["models"][0]["reused"] is False
    said = capsys.readouterr().out
    assert "popularity: retraining" in said and "seed: 0 -> 1" in said, said
    assert json.loads((tmp_path / "cmp" / "popularity" / "run.json").read_text())["seed"] == 1
    assert list(tmp_path.glob("cmp/popularity.replaced-*/results.json"))  # the old run was moved aside


def test_markdown_table_by_hand():
    report = {"dataset": "d", "protocol": "random", "seed": 3, "metrics": ["rmse", "mrr"],
              "models": [{"model": "mf", "test": {"rmse": 0.9, "mrr": float("nan")}, "train_seconds": 1.25,
                          "epochs": 2},
                         {"model": "multitask", "test": {"rmse": 0.95, "mrr": 0.1}, "train_seconds": None,
                          "epochs": None}]}
    # Lower RMSE is better, higher MRR; NaN and None cells stay empty.
    assert compare.markdown(report) == (
        "d, protocol random, seed 3 (test metrics)\n\n"
        "| model | rmse | mrr | train time (s) | epochs |\n"
        "|---|---:|---:|---:|---:|\n"
        "| mf | **0.9000** |  | 1.2 | 2 |\n"
        "| multitask | 0.9500 | **0.1000** |  |  |\n")


def test_table_metrics_keep_rmse_not_mse():
    rows = [{"test": {"mse": 0.81, "rmse": 0.9}}, {"test": {"mrr": 0.1, "mse": 1.0, "rmse": 1.0, "val/mse": 1.0}}]
    assert compare.table_metrics(rows) == ["rmse", "mrr", "val/mse"]


@pytest.mark.parametrize("models, message", [
    ("popularity,mf", r"popularity rank items .* but mf predict ratings \(RMSE\): they cannot share a table"),
    ("vae,transformer", r"unknown model 'transformer'"),
    (" , ", r"--compare needs model names"),
])
def test_bad_model_lists(models, message):
    with pytest.raises(ConfigError, match=message):
        compare.parse_models(models)


def test_parse_models_drops_repeats():
    assert compare.parse_models("ease, vae,ease") == ["ease", "vae"]


# ----------------------------------------------------------------------------- your own file through the runner

def test_custom_csv_gives_the_builtin_numbers(compared, mirror, tmp_path):
    out, cfg, first, _ = compared
    frame = pd.read_csv(mirror / "ml-100k" / "u.data", sep="\t", names=["who", "what", "stars", "when"])
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    mine = base_config(mirror, tmp_path / "data", path, threshold=4.0, user_col="who", item_col="what",
                       rating_col="stars", time_col="when")
    report = compare.compare("popularity", mine, tmp_path / "cmp", verbose=False)
    assert report["models"][0]["test"] == first["models"][0]["test"]
    # Another column mapping of the same file is another split (the cache key holds the columns): with the
    # timestamps read as ratings every row passes the threshold.
    _, before = prepare(mine.data, "topk", 0, verbose=False)
    remapped = dataclasses.replace(mine.data, rating_col="when", time_col="none")
    _, after = prepare(remapped, "topk", 0, verbose=False)
    total = lambda info: sum(v for k, v in info["counts"].items() if k.endswith("_nnz"))
    # Heldout users lose the few clicks on items no training user has: 99,990 of the 100,000 rows stay.
    assert total(before) < 60000 < len(frame) - 100 < total(after) <= len(frame)


def test_main_compare_flag(compared, capsys):
    out, _, _, _ = compared
    flags = main.FLAGS
    flags.unparse_flags()
    flags(["main.py", "--compare", "popularity,ease", "--export_dir", str(out), "--data_mirror",
           str(compared[1].data.mirror), "--data_dir", str(compared[1].data.data_dir), "--config", "none"])
    try:
        assert main.main(["main.py"]) == 0
    finally:
        flags.unparse_flags()
    printed = capsys.readouterr().out
    assert printed.count("not retrained") == 2 and "| popularity |" in printed and "| ease |" in printed


def test_main_compare_gives_each_model_its_preset(compared, tmp_path, capsys):
    from conftest import run_main

    _, cfg, _, _ = compared
    out = tmp_path / "cmp"
    assert run_main("--compare", "popularity,ease", "--export_dir", out, "--data_mirror", cfg.data.mirror,
                    "--data_dir", cfg.data.data_dir) == 0
    assert "compare: ease: preset configs/ease/ml-100k.toml" in capsys.readouterr().out
    ease = json.loads((out / "ease" / "run.json").read_text())
    assert ease["model"]["config"]["ease_lambda"] == 200  # the preset's, not the built-in 500
    assert ease["settings"]["file"].endswith("configs/ease/ml-100k.toml")
    pop = json.loads((out / "popularity" / "run.json").read_text())
    assert pop["data"]["split_fingerprint"] == ease["data"]["split_fingerprint"]


def test_compare_presets_leave_their_data_settings_out():
    # configs/deeprec/ml-100k.toml trains on all of u1.base (val_fraction 0.0), configs/mf/ml-100k.toml on a 10%
    # slice: in a comparison both take the command line's split, and the flags are as parsed afterwards.
    flags = main.FLAGS
    flags.unparse_flags()
    flags(["main.py", "--compare", "mf,deeprec,multitask", "--dataset", "ml-100k"])
    try:
        per_model = main._preset_configs(["mf", "deeprec", "multitask"])
        base = main.configs()
        assert flags.major == "users" and flags.batch_size_train is None and not flags["major"].present
    finally:
        flags.unparse_flags()
    assert per_model["deeprec"].model_params["major"] == "items" and per_model["deeprec"].optim.batch_size_train == 64
    assert per_model["mf"].model_params["rank"] == 25 and per_model["mf"].optim.lr == 0.003
    assert per_model["deeprec"].data == per_model["mf"].data == base.data and base.data.val_fraction is None


def test_default_folders_differ_by_task():
    assert str(compare.default_dir("ml-100k", "vae,ease")) == "runs/ml-100k-compare-topk"
    assert str(compare.default_dir("/data/my.csv", ["mf"])) == "runs/my.csv-compare-rating"


def test_versus_best_by_hand():
    from scipy import stats

    rows = [{"model": "a", "test": {"ndcg@100": 0.40}, "values": {"ndcg@100": [0.41, 0.39, 0.40]}},
            {"model": "b", "test": {"ndcg@100": 0.30}, "values": {"ndcg@100": [0.32, 0.28, 0.30]}},
            {"model": "c", "test": {"ndcg@100": 0.399}, "values": {"ndcg@100": [0.42, 0.37, 0.407]}}]
    out = compare.versus_best(rows, "ndcg@100")
    assert out == {"metric": "ndcg@100", "best": "a", "alpha": 0.05} and rows[0]["versus_best"] == {"best": True}
    # b is 0.09, 0.11, 0.10 below a: the one-sided paired t-test, as SciPy computes it.
    p_b = stats.ttest_rel([0.41, 0.39, 0.40], [0.32, 0.28, 0.30], alternative="greater").pvalue
    assert rows[1]["versus_best"] == {"p": pytest.approx(p_b), "below": True} and p_b < 0.01
    assert rows[2]["versus_best"]["below"] is False  # -0.01, +0.02, -0.007: no consistent gap
    # Lower is better for RMSE; the same gap on every seed has no spread and is below.
    rmse = [{"model": "x", "test": {"rmse": 0.90}, "values": {"rmse": [0.9, 0.91]}},
            {"model": "y", "test": {"rmse": 0.95}, "values": {"rmse": [0.95, 0.96]}}]
    assert compare.versus_best(rmse, "rmse")["best"] == "x" and rmse[1]["versus_best"] == {"p": 0.0, "below": True}


def test_compare_over_seeds_marks_the_weak_model(mirror, tmp_path):
    cfg = base_config(mirror, tmp_path / "data")
    report = compare.compare("popularity,ease", cfg, tmp_path / "cmp", verbose=False, seeds=[0, 1, 2])
    pop, ease = report["models"]
    assert report["versus"]["best"] == "ease" and ease["versus_best"] == {"best": True}
    assert pop["versus_best"]["below"] and len(pop["values"]["ndcg@100"]) == 3
    low, high = pop["interval"]["ndcg@100"]
    assert low < pop["test"]["ndcg@100"] < high
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "seeds 0,1,2" in table and "| popularity |" in table and "below (p=" in table
    assert (tmp_path / "cmp" / "ease" / "seed-2" / "results.json").is_file()
