"""main.py end to end on real ML-100K: train, resume, test alone, benchmark, recommend, serving, errors."""

import json

import pytest

from conftest import main_process



def _main(*args, env_extra=None, check=True):
    return main_process(*args, env_extra=env_extra, check=check)


@pytest.fixture(scope="module")
def trained(mirror, tmp_path_factory):
    """Mult-VAE on ml-100k: 20 epochs, then the same command again with 30 (it resumes)."""
    run = tmp_path_factory.mktemp("vae")
    data_dir = tmp_path_factory.mktemp("data")
    common = ["--train", "--test", "--dataset", "ml-100k", "--export_dir", str(run), "--data_dir", str(data_dir),
              "--data_mirror", str(mirror), "--batch_size_train", "100", "--validation_step", "5", "--lr", "3e-3"]
    first = _main(*common, "--number_of_epochs", "20")
    second = _main(*common, "--number_of_epochs", "30")
    return run, data_dir, first, second


def test_train_test_prints_progress_and_writes_results(trained):
    run, _, first, _ = trained
    assert "epoch 20/20" in first.stdout and "test:" in first.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["data"]["dataset"] == "ml-100k" and results["data"]["counts"]["train_rows"] > 0
    assert set(results["test"]) >= {"recall@20", "recall@50", "ndcg@100"}
    assert results["config"]["model"] == "vae" and results["train"]["epochs"] == 30


def test_second_run_resumes_instead_of_restarting(trained):
    _, _, _, second = trained
    assert "resuming from epoch 20" in second.stdout
    assert "epoch 1/30" not in second.stdout and "epoch 21/30" in second.stdout


def test_end_to_end_beats_popularity(trained, mirror):
    run, data_dir, _, _ = trained
    vae = json.loads((run / "results.json").read_text())["test"]["ndcg@100"]
    pop_dir = run.parent / "popularity"
    _main("--model", "popularity", "--train", "--test", "--export_dir", str(pop_dir), "--data_dir", str(data_dir),
          "--data_mirror", str(mirror))
    pop = json.loads((pop_dir / "results.json").read_text())["test"]["ndcg@100"]
    assert vae > pop, f"Mult-VAE NDCG@100 {vae:.4f} vs popularity {pop:.4f}"


def test_test_alone_reloads_export_and_gives_same_metrics(trained, mirror):
    run, data_dir, _, _ = trained
    before = json.loads((run / "results.json").read_text())["test"]
    _main("--test", "--export_dir", str(run), "--data_dir", str(data_dir), "--data_mirror", str(mirror))
    after = json.loads((run / "results.json").read_text())["test"]
    for k in ("recall@20", "recall@50", "ndcg@100"):
        assert after[k] == pytest.approx(before[k], rel=1e-6)


def test_benchmark_prints_and_writes_figures(trained, mirror):
    run, data_dir, _, _ = trained
    bench = run.parent / "bench"
    proc = _main("--benchmark", "--use_tf_amp", "--export_dir", str(bench), "--data_dir", str(data_dir),
                 "--data_mirror", str(mirror), "--warm_up_epochs", "1", "--benchmark_epochs", "2")
    assert "benchmark:" in proc.stdout
    figures = json.loads((bench / "benchmark.json").read_text())
    assert figures["timed_epochs"] == 2 and figures["rows_per_second"] > 0
    assert figures["precision"] == "mixed_bfloat16"


def test_recommend_prints_titles_and_never_the_given_items(trained):
    run, _, _, _ = trained
    proc = _main("--recommend", "1,50,181", "--top_k", "5", "--export_dir", str(run))
    lines = [l for l in proc.stdout.splitlines() if l.strip()[:2].rstrip(".").isdigit()]
    assert len(lines) == 5
    assert "Toy Story (1995)" in proc.stdout  # the given items are echoed with their titles
    from serving import recommend

    recs = recommend.recommend(run, [1, 50, 181], k=20)
    assert len(recs) == 20 and not {1, 50, 181} & {r["item"] for r in recs}
    assert all(r["title"] for r in recs)


def test_saved_model_serving_signature(trained):
    import tensorflow as tf

    run, _, _, _ = trained
    served = tf.saved_model.load(str(run / "saved_model" / "1")).signatures["serving_default"]
    out = served(items=tf.constant([[1, 50, 181], [1, -1, -1]], tf.int64), k=tf.constant(10))
    ids = out["item_ids"].numpy()
    assert ids.shape == (2, 10) and not {1, 50, 181} & set(ids[0].tolist()) and 1 not in ids[1]
    from serving import recommend

    assert [r["item"] for r in recommend.recommend(run, [1, 50, 181], k=10)] == ids[0].tolist()


@pytest.mark.parametrize("args, message", [
    (["--train", "--dataset", "ml-5k"], "unknown dataset 'ml-5k'"),
    ([], "nothing to do"),
    (["--train", "--model", "transformer"], "unknown model 'transformer'"),
    (["--test", "--export_dir", "/nonexistent/run"], "holds no run (no run.json)"),
    (["--train", "--optimizer", "adamax"], "--optimizer=adamax: value should be one of"),
])
def test_user_mistakes_get_one_line_and_exit_2(args, message, mirror, tmp_path):
    proc = _main("--export_dir", str(tmp_path / "run"), *args, "--data_mirror", str(mirror), "--data_dir",
                 str(tmp_path), "--number_of_epochs", "1", check=False)
    assert proc.returncode == 2, proc.stderr
    err = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1 and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    # Validated when parsed (absl), before TensorFlow is imported.
    (["--train", "--number_of_epochs", "-3"], "flag --number_of_epochs=-3: -3 is not a positive integer"),
    (["--train", "--number_of_epochs", "0"], "flag --number_of_epochs=0: 0 is not a positive integer"),
    (["--train", "--lr", "0"], "--lr must be a finite number > 0"),
    (["--train", "--lr", "nan"], "--lr must be a finite number > 0"),
    (["--recommend", "1", "--top_k", "-1"], "flag --top_k=-1: -1 is not a positive integer"),
    (["--recommend", "1", "--top_k", "0"], "flag --top_k=0: 0 is not a positive integer"),
    (["--train", "--validation_step", "0"], "flag --validation_step=0: 0 is not a positive integer"),
    (["--train", "--dropout", "1.0"], "--dropout must be in [0, 1)"),
    (["--train", "--model", "deeprec", "--drop_prob", "1.5"], "--drop_prob must be in [0, 1)"),
    (["--train", "--hidden_layers", "600,abc"], "--hidden_layers takes whole numbers > 0"),
    (["--train", "--heldout_users", "0"], "--heldout_users must be a fraction in (0, 1) or a count >= 1"),
    # Flags the chosen model does not use.
    (["--train", "--model", "vae", "--rank", "5"], "--rank does not apply to vae"),
    (["--train", "--model", "mf", "--dropout", "0.2"], "--dropout does not apply to mf"),
    (["--train", "--model", "ease", "--lr", "0.1"], "--lr does not apply to ease: a closed-form model"),
    (["--train", "--model", "vae", "--fold", "u2"], "--fold applies to --protocol fold, not to this run's "
                                                    "protocol heldout"),
    (["--compare", "popularity,ease", "--number_of_epochs", "5"], "--number_of_epochs does not apply to "
                                                                   "popularity, ease"),
])
def test_bad_flags_get_one_line_and_exit_2(args, message, mirror, tmp_path):
    proc = _main(*args, "--data_mirror", str(mirror), "--data_dir", str(tmp_path), "--export_dir",
                 str(tmp_path / "run"), check=False)
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "run.json").exists()


def test_validation_and_test_users_are_set_apart(mirror, tmp_path):
    run = tmp_path / "run"
    _main("--model", "popularity", "--train", "--test", "--val_users", "5", "--test_users", "0.3", "--export_dir", run,
          "--data_mirror", str(mirror), "--data_dir", str(tmp_path / "d"))
    results = json.loads((run / "results.json").read_text())
    manifest = json.loads((run / "run.json").read_text())
    assert results["validation"]["ndcg@100/count"] == 5
    assert manifest["data"]["val_users"] == 5 and manifest["data"]["test_users"] == 0.3
    assert results["test"]["ndcg@100/count"] > 250  # 30% of ML-100K's 943 users with 5+ clicks
    bad = _main("--model", "popularity", "--train", "--val_users", "0", "--export_dir", run, check=False)
    assert bad.returncode == 2 and "--val_users must be a fraction in (0, 1) or a count >= 1" in bad.stderr


def test_metrics_flag_picks_the_ranking_metrics(mirror, tmp_path):
    run = tmp_path / "run"
    _main("--model", "ease", "--train", "--test", "--metrics", "precision@10,hit@10,recall@5", "--export_dir", run,
          "--data_mirror", str(mirror), "--data_dir", str(tmp_path / "d"))
    results = json.loads((run / "results.json").read_text())
    shown = {k for k in results["test"] if not k.endswith("/count")}
    assert shown == {"precision@10", "hit@10", "recall@5", "ndcg@100"}  # the main metric is always there
    assert 0 < results["test"]["precision@10"] <= results["test"]["hit@10"] <= 1
    assert set(results["test_interval"]) >= shown
    bad = _main("--model", "mf", "--train", "--metrics", "ndcg@10", "--export_dir", run, check=False)
    assert bad.returncode == 2 and "--metrics names ranking metrics of top-k models; mf report RMSE" in bad.stderr
    bad = _main("--model", "ease", "--train", "--metrics", "map@10", "--export_dir", run, check=False)
    assert bad.returncode == 2 and "'map@10' is not a ranking metric" in bad.stderr
