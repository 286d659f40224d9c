"""bench/readme_tables.py: the README table from seeds.json reports (the runs themselves are main.py --seeds)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_tables", REPO / "bench" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_tables)


def _report(values):
    mean = sum(values) / len(values)
    return {"metrics": {"ndcg@100": {"mean": mean, "low": mean - 0.01, "high": mean + 0.01, "values": values}}}


def test_table_marks_the_best_and_the_models_below_it():
    cells = {"ml-100k": {"popularity": _report([0.26, 0.25, 0.27]), "ease": _report([0.43, 0.42, 0.44]),
                         "vae": _report([0.44, 0.41, 0.45])}}
    text = readme_tables.table("topk", cells, "0,1,2")
    lines = text.splitlines()
    assert lines[2] == "| model | ml-100k |"
    assert "| popularity | 0.2600 (0.2500..0.2700) below |" in lines
    assert "| ease | 0.4300 (0.4200..0.4400) |" in lines  # 0.01 behind vae on average, not consistently
    assert "| vae | 0.4333 (0.4233..0.4433) **best** |" in lines
    assert "| dae |  |" in lines  # not run: an empty cell
    assert "--seeds 0,1,2" in lines[0]


def test_rating_table_rows_and_columns():
    def report(metrics, protocol="fold"):
        return {"protocol": protocol, "metrics": {k: {"mean": v, "low": v - 0.01, "high": v + 0.01, "values": [v]}
                                                  for k, v in metrics.items()}}

    cells = {"DeepRec": report({"rmse": 0.9, "mse": 0.81}), "low-rank MF": report({"rmse": 0.92}),
             "MultiTaskNet": report({"mse": 0.84, "mrr": 0.08, "rmse": 0.917}, "random"),
             "folds": report({"rmse": 0.915}), "popularity": report({"mrr": 0.05})}
    lines = readme_tables.rating_table(cells, "0,1").splitlines()
    assert lines[2] == "| model | protocol | RMSE | MSE | MRR |"
    assert "| DeepRec (`--model deeprec`) | fold | 0.9000 (0.8900..0.9100) |  |  |" in lines  # MSE not shown
    assert "| MultiTaskNet (`--model multitask`) | random |  | 0.8400 (0.8300..0.8500) | 0.0800 (0.0700..0.0900) |" in lines
    # The five-fold MF row follows MF's; popularity's MRR follows MultiTaskNet's.
    assert lines.index(next(l for l in lines if "folds u1..u5" in l)) == lines.index(next(l for l in lines if l.startswith("| low-rank MF (`"))) + 1
    assert lines[-1].startswith("| popularity") and lines[-1].endswith("| 0.0500 (0.0400..0.0600) |")


def test_popularity_mrr_by_hand(monkeypatch):
    # Two users, three items; training counts 2, 1, 0 rank items 0 > 1 > 2. User 0 saw item 0 and holds out item 2:
    # among the unseen items 1, 2 it ranks 2nd (MRR 1/2). User 1 saw items 0 and 1, holds out item 2: rank 1.
    import types

    import scipy.sparse as sp

    from training import runner

    split = types.SimpleNamespace(train=sp.csr_matrix([[5.0, 0, 0], [4.0, 3.0, 0]]),
                                  test=sp.csr_matrix([[0, 0, 2.0], [0, 0, 1.0]]))
    monkeypatch.setattr(runner, "split_of_run", lambda folder, data_dir=None: (split, {}))
    out = readme_tables.popularity_mrr({"runs": [{"export_dir": "a"}, {"export_dir": "b"}]})
    assert out["metrics"]["mrr"]["values"] == [0.75, 0.75]  # (1/2 + 1) / 2 on each run


def test_topk_table_of_another_metric_reads_that_metric():
    cells = {"ml-100k": {"ease": _report([0.43, 0.42, 0.44])}}
    cells["ml-100k"]["ease"]["metrics"]["recall@20"] = {"mean": 0.40, "low": 0.39, "high": 0.41,
                                                         "values": [0.40, 0.39, 0.41]}
    text = readme_tables.table("topk", cells, "0,1,2", "recall@20")
    assert text.startswith("Test recall@20") and "| ease | 0.4000 (0.3900..0.4100) **best** |" in text
