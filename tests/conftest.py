"""Shared test fixtures: the real-data mirror and the tiny raw-format fixtures."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Downloads, checksum stamps and prepared splits go to a scratch folder, never the user's cache.
os.environ.setdefault("TFCF_DATA_DIR", tempfile.mkdtemp(prefix="tfcf-test-data-"))

REPO = Path(__file__).resolve().parent.parent
RAW = Path(__file__).resolve().parent / "fixtures" / "raw"
_FALLBACK_MIRROR = Path("/work/shared/data")


def mirror_path():
    """The real-data mirror: ``$TFCF_DATA_MIRROR`` (relative to the repo) else /work/shared/data, or None."""
    value = os.environ.get("TFCF_DATA_MIRROR")
    if value:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else REPO / path
    else:
        path = _FALLBACK_MIRROR
    return path.resolve() if path.is_dir() else None


def pytest_configure(config):
    # autograph's gast builds AST nodes with a keyword Python 3.13 deprecates: thousands of lines of its noise.
    config.addinivalue_line("filterwarnings", "ignore:.*got an unexpected keyword argument '___pyct_anno':DeprecationWarning")


@pytest.fixture(scope="session")
def mirror():
    """Path of the folder holding ml-100k/, ml-latest-small/, hetrec2011-lastfm-2k/; skips if absent."""
    path = mirror_path()
    if path is None:
        pytest.skip("no real-data mirror (set TFCF_DATA_MIRROR)")
    return path


@pytest.fixture
def raw():
    """Path of tests/fixtures/raw: tiny files in each dataset's exact raw format, laid out as a mirror."""
    return RAW


def run_main(*args) -> int:
    """main.py in this process (no second TensorFlow start-up): flags parsed, then reset; returns the exit status."""
    import main

    flags = main.FLAGS
    flags.unparse_flags()
    flags(["main.py", *map(str, args)])
    try:
        return main.main(["main.py"])
    finally:
        flags.unparse_flags()


def main_process(*args, check: bool = True, env_extra=None, log_level: str = "2"):
    """main.py in a fresh process, as a user runs it: the CompletedProcess (text stdout/stderr).

    ``check``: raise with both streams when it exits non-zero.
    """
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": log_level, **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"main.py {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc
