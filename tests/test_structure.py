"""The structure the design promises: no import cycle, one model protocol, no switches on model kinds."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("baselines", "cli", "data", "deeprec", "experiments", "mf", "serving", "training", "vae")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).glob("*.py"):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _imports(path: pathlib.Path, modules) -> set[str]:
    """Project modules ``path`` imports anywhere (function-local imports too: they make cycles as well)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules}


def _cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_project_modules():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert sum(map(len, graph.values())) > 100  # the parser sees the imports
    assert _cycle(graph) is None


def test_serving_reads_models_only_through_the_loader():
    modules = _modules()
    for name in ("serving.predict", "serving.recommend"):
        project = {m for m in _imports(modules[name], modules) if m.split(".")[0] in ("training", "baselines")}
        assert project <= {"training.metrics"}, f"{name} imports {sorted(project)}"


# A model's kind is asked of the protocol (task, input_kind, closed_form, scores_pairs), never by probing it.
PROBE = re.compile(r"\b(hasattr|getattr|isinstance)\((model|self\.model|exp\.model|baseline|family)\b|\.trainable\b(?!_)")


@pytest.mark.parametrize("package", ["training", "serving", "experiments", "bench", "cli"])
def test_no_switch_on_model_kinds_outside_the_protocol(package):
    offenders = []
    for path in sorted((ROOT / package).glob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PROBE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_probe_pattern_catches_what_it_should():
    assert PROBE.search('if hasattr(model, "predict_rows"):')
    assert PROBE.search("if family.trainable:")
    assert not PROBE.search("model.trainable_variables")


def test_every_family_implements_the_whole_protocol():
    from training import families
    from training.recommender import Recommender

    def owner(cls, method):  # the class that defines ``method`` for ``cls``
        return next(k for k in cls.__mro__ if method in vars(k))

    required = ["create", "predict_rows", "evaluate_step", "write", "read"]
    for name, family in families.FAMILIES.items():
        assert issubclass(family.cls, Recommender), name
        wanted = required + ["solve"] * family.closed_form + ["predict_pairs"] * (family.cls.input_kind != "rows")
        missing = [m for m in wanted if owner(family.cls, m) is Recommender]
        assert not missing, f"{name} does not implement {missing}"
        assert family.task in ("topk", "rating") and family.cls.param_names(), name
