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
