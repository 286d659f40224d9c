"""The notebooks run top to bottom, and the Docker helper scripts build the right commands.

Each notebook executes in a temporary copy with a Jupyter kernel (nbclient) on ml-100k for
``TFCF_NOTEBOOK_EPOCHS=2`` epochs; a failing cell fails the test with that cell's error.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"VAE.ipynb": ["vae"], "DeepRec.ipynb": ["deeprec"], "MF.ipynb": ["mf", "multitask"]}
EPOCHS = 2


def _mirror() -> Path:
    mirror = Path(os.environ.get("TFCF_DATA_MIRROR") or "/work/shared/data")
    if not (mirror / "ml-100k" / "u.data").is_file():
        pytest.skip(f"no ml-100k in the data mirror {mirror} (set TFCF_DATA_MIRROR)")
    return mirror.resolve()


def execute(path: Path, env: dict[str, str], timeout: int = 600) -> nbformat.NotebookNode:
    """Runs every cell of the notebook at ``path`` in a python3 kernel started in its folder.

    The kernel's environment is this process's plus ``env``. Raises ``CellExecutionError``
    (the failing cell's source and traceback) when a cell fails.
    """
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env={**os.environ, **env})  # passed on to the kernel manager's start_kernel
    return nb


def _outputs(nb, output_type: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == output_type]


def _text(nb) -> str:
    parts = [o.get("text", "") for o in _outputs(nb, "stream")]
    parts += [o.data.get("text/plain", "") for kind in ("execute_result", "display_data") for o in _outputs(nb, kind)]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory) -> dict[str, str]:
    mirror = _mirror()
    return {
        "TFCF_NOTEBOOK_EPOCHS": str(EPOCHS),
        "TFCF_DATA_MIRROR": str(mirror),
        # Prepared splits shared by the three notebooks, never the user's cache.
        "TFCF_DATA_DIR": os.environ.get("TFCF_DATA_DIR") or str(tmp_path_factory.mktemp("cache")),
        # The copy has no library beside it: the kernel imports this checkout's.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code), \
        f"{name} holds outputs: clear them (Jupyter: Edit > Clear Outputs of All Cells) before committing"
    assert nb.metadata.kernelspec.name == "python3"
    # Parameters first, and the epoch count comes from the environment so that CI stays short.
    assert "parameters" in code[0].metadata.get("tags", []) and "TFCF_NOTEBOOK_EPOCHS" in code[0].source
    # The notebooks show the library; models live in the packages.
    source = "\n".join(c.source for c in code)
    assert "runner.run(" in source
    for model_code in ("class ", "keras.layers", "tf.GradientTape", "compute_loss"):
        assert model_code not in source, f"{name} defines model code ({model_code!r}); call the library instead"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_top_to_bottom(name, kernel_env, tmp_path):
    copy = tmp_path / "notebooks" / name
    copy.parent.mkdir()
    shutil.copy(REPO / "notebooks" / name, copy)
    runs = tmp_path / "runs"
    nb = execute(copy, {**kernel_env, "TFCF_NOTEBOOK_RUNS": str(runs)})

    for model in NOTEBOOKS[name]:
        results = json.loads((runs / f"ml-100k-{model}" / "results.json").read_text())
        assert results["train"]["epochs"] == EPOCHS and len(results["train"]["history"]) == EPOCHS
        assert results["modes"] == ["train", "test"] and results["test"]
    # Learning curves and the metrics chart are pictures in the notebook, not only in files.
    assert len([o for o in _outputs(nb, "display_data") if "image/png" in o.data]) >= 2
    # Recommendations carry titles: ml-100k titles end with the year, e.g. "Toy Story (1995)".
    text = _text(nb)
    assert "(199" in text or "(198" in text, text[-2000:]
    assert not _outputs(nb, "error")


def test_a_failing_cell_fails_the_run(kernel_env, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("raise ValueError('cell two broke')"),
                                         nbformat.v4.new_code_cell("open('never', 'w')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError, match="cell two broke"):
        execute(path, kernel_env, timeout=120)
    assert not (tmp_path / "never").exists()  # execution stops at the failing cell


# --- scripts/docker -------------------------------------------------------------------------------------------------
@pytest.fixture()
def fake_docker(tmp_path) -> Path:
    """A `docker` on PATH that records its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$DOCKER_ARGS"\n')
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _script(path: str, args: list[str], bin_dir: Path, tmp_path: Path, **env) -> tuple[subprocess.CompletedProcess,
                                                                                        list[str]]:
    record = tmp_path / "docker-args"
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DOCKER_ARGS": str(record),
                "HOME": str(tmp_path / "home"), **env}
    done = subprocess.run(["bash", str(REPO / path), *args], env=full_env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    return done, record.read_text().splitlines() if record.exists() else []


def _after(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_interactive_passes_gpus_mounts_and_port(fake_docker, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    done, args = _script("scripts/docker/interactive.sh", ["8890", "python", "main.py", "--train"], fake_docker,
                         tmp_path, TFCF_DATA_MIRROR=str(data), TFCF_DATA_DIR=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert args[0] == "run" and _after(args, "--gpus") == ["all"]
    assert _after(args, "--publish") == ["8890:8890"] and "JUPYTER_PORT=8890" in _after(args, "--env")
    volumes = _after(args, "--volume")
    assert f"{REPO}:/workspace/tfcf" in volumes and f"{data}:/data:ro" in volumes
    assert f"{tmp_path / 'cache'}:/cache" in volumes
    assert {"TFCF_DATA_MIRROR=/data", "TFCF_DATA_DIR=/cache"} <= set(_after(args, "--env"))
    assert args[-4:] == ["tfcf", "python", "main.py", "--train"]
    assert "--tty" not in args  # stdin is not a terminal here


def test_interactive_without_port_opens_a_shell_and_no_port(fake_docker, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    done, args = _script("scripts/docker/interactive.sh", [], fake_docker, tmp_path, TFCF_DATA_MIRROR=str(data),
                         TFCF_GPUS="none", TFCF_IMAGE="other")
    assert done.returncode == 0, done.stderr
    assert "--publish" not in args and "--gpus" not in args and args[-2:] == ["other", "bash"]


@pytest.mark.parametrize("args, env, message", [
    (["70000"], {}, "interactive.sh: port 70000 is out of range; give a port in 1..65535 (e.g. 8888)"),
    ([], {"TFCF_DATA_MIRROR": "/nonexistent/tfcf-data"},
     "interactive.sh: no data folder at /nonexistent/tfcf-data; "
     "set TFCF_DATA_MIRROR to a folder holding ml-100k/ etc."),
])
def test_interactive_bad_input_is_one_clear_line(fake_docker, tmp_path, args, env, message):
    env = {"TFCF_DATA_MIRROR": str(tmp_path), **env}
    done, docker_args = _script("scripts/docker/interactive.sh", args, fake_docker, tmp_path, **env)
    assert done.returncode == 2 and done.stderr.strip() == message and docker_args == []


def test_build_tags_the_image_at_the_repository_root(fake_docker, tmp_path):
    done, args = _script("scripts/docker/build.sh", ["--build-arg", "CUDA_APT=12-5"], fake_docker, tmp_path)
    assert done.returncode == 0, done.stderr
    assert args == ["build", "-t", "tfcf", "--build-arg", "CUDA_APT=12-5", str(REPO)]


def test_dockerfile_installs_what_the_project_pins():
    text = (REPO / "Dockerfile").read_text()
    # The image is the Horovod lane: TensorFlow at that lane's exact version (Horovod builds against 2.18 only).
    constraints = (REPO / "constraints" / "tf2.18-py3.11.txt").read_text().splitlines()
    version = next(line.split("==")[1] for line in constraints if line.startswith("tensorflow=="))
    assert version.startswith("2.18.")
    assert '"tensorflow==2.18.1"' in (REPO / "setup.py").read_text()  # the horovod extra says so too
    assert f"FROM tensorflow/tensorflow:{version}-gpu" in text
    assert f'"tensorflow[and-cuda]=={version}"' in text
    assert "bash scripts/install_horovod.sh" in text and "HOROVOD_GPU_OPERATIONS=NCCL" in text
    assert "jupyterlab==" in text and "pip install -e . -c constraints/tf2.18-py3.11.txt" in text
