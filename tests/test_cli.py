"""The command line: grouped --help with defaults, TensorFlow's start-up noise off, progress on long steps."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
# TensorFlow's CUDA start-up lines on a CPU machine (see cli/tf_logs.py).
TF_NOISE = re.compile(r"cuFFT|cuDNN|cuBLAS|cuInit|absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers")
# XLA's INFO lines at the first compile of a process (see cli/tf_logs.py).
XLA_INFO = re.compile(r"XLA service|StreamExecutor device|Compiled cluster using XLA")


def _main(*args, env_extra=None, drop=("TF_CPP_MIN_LOG_LEVEL", "TFCF_TF_LOGS")):
    """main.py in a subprocess with the environment a user has (no TF_CPP_MIN_LOG_LEVEL of the tests)."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _sections(text: str) -> dict[str, str]:
    """Heading (a line ending in ':' at column 0) -> the lines under it."""
    sections, current = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def _flag_entry(section: str, name: str) -> str:
    """The lines of one flag in a section: from its name up to the next flag."""
    match = re.search(rf"^  --(\[no\])?{name}\b.*?(?=^  --|\Z)", section, re.M | re.S)
    assert match, f"--{name} not in:\n{section}"
    return " ".join(match.group(0).split())


@pytest.fixture(scope="module")
def help_text():
    proc = _main("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


@pytest.mark.parametrize("heading, flag, default", [
    ("Modes and run", "train", "false"),
    ("Modes and run", "export_dir", "runs/<dataset>-<model>"),
    ("Modes and run", "seed", "0"),
    ("Modes and run", "compare", "none"),
    ("Data: dataset, protocol and split", "dataset", "ml-100k"),
    ("Data: dataset, protocol and split", "heldout_users", "0.1"),
    ("Your own file", "sep", "detected"),
    ("Optimizer and training", "lr", "0.001"),
    ("Optimizer and training", "number_of_epochs", "200"),
    ("Mult-VAE, Mult-DAE and RecVAE", "anneal_cap", "0.2"),
        ("Mult-VAE, Mult-DAE and RecVAE", "encoder_epochs", "3"),
    ("EASE", "ease_lambda", "500"),
    ("DeepRec", "major", "users"),
    ("DeepRec", "drop_prob", "0.8"),
    ("Matrix factorization and MultiTaskNet", "rank", "25"),
    ("Precision, devices and distribution", "use_tf_amp", "false"),
    ("Precision, devices and distribution", "number_of_gpus", "1"),
    ("Precision, devices and distribution", "gpu_number", "all visible"),
])
def test_help_lists_flags_under_their_group_with_defaults(help_text, heading, flag, default):
    sections = {title.split(" (")[0]: body for title, body in _sections(help_text).items()}
    assert heading in sections, list(sections)
    assert _flag_entry(sections[heading], flag).endswith(f"[default: {default}]")


def test_help_shows_every_flag_once_with_a_default(help_text):
    from cli import groups
    from absl import flags

    by_module = flags.FLAGS.flags_by_module_dict()
    names = [f.name for group in groups.GROUPS for f in by_module[group.__name__]]
    assert len(names) == len(set(names)) > 70
    for name in names:
        assert len(re.findall(rf"^  --(\[no\])?{name}\b", help_text, re.M)) == 1, name
    entries = re.findall(r"^  --.*?(?=^  --|^\S|\Z)", help_text, re.M | re.S)
    assert len(entries) == len(names)
    assert all("[default: " in " ".join(e.split()) for e in entries)
    assert "path of your own" in _flag_entry(help_text, "dataset")


def test_helpshort_is_the_grouped_help_and_helpfull_still_works(help_text):
    short = _main("--helpshort")
    assert short.returncode == 0 and short.stdout == help_text
    full = _main("--helpfull")  # absl's: every module's flags, absl's too (absl exits 1)
    assert "cli.data:" in full.stdout and "--dataset" in full.stdout and "absl.logging:" in full.stdout


def test_unexpected_arguments_are_one_error_line():
    proc = _main("--train", "false")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(proc.stderr.splitlines()) == 1 and "unexpected arguments: false" in proc.stderr


# --- TensorFlow's start-up noise ------------------------------------------------------------------------

def test_cpu_run_prints_no_tensorflow_cuda_lines(mirror, tmp_path):
    proc = _main("--train", "--test", "--model", "popularity", "--export_dir", tmp_path / "run",
                 "--data_dir", tmp_path / "data", "--data_mirror", mirror)
    assert proc.returncode == 0, proc.stderr
    assert "test:" in proc.stdout
    assert not TF_NOISE.search(proc.stderr), proc.stderr


def test_error_run_prints_one_error_line_and_no_tensorflow_lines(mirror, tmp_path):
    proc = _main("--train", "--dataset", "ml-5k", "--export_dir", tmp_path / "run", "--data_dir", tmp_path,
                 "--data_mirror", mirror)
    assert proc.returncode == 2
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "unknown dataset 'ml-5k'" in errors[0], proc.stderr
    assert not TF_NOISE.search(proc.stderr) and "Traceback" not in proc.stderr, proc.stderr


def test_tf_logs_turns_them_back_on(tmp_path):
    plain = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                           env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
                           capture_output=True, text=True, timeout=300)
    if not TF_NOISE.search(plain.stderr):
        pytest.skip("this TensorFlow prints no CUDA start-up lines here")
    for args, env in ((["--tf_logs"], None), ([], {"TFCF_TF_LOGS": "1"})):
        proc = _main(*args, "--train", "--dataset", "ml-5k", "--data_dir", tmp_path, env_extra=env)
        assert proc.returncode == 2 and TF_NOISE.search(proc.stderr), proc.stderr
        assert len([l for l in proc.stderr.splitlines() if l.startswith("error:")]) == 1


def _import_quietly(fake_root, source: str, call: str) -> subprocess.CompletedProcess:
    """``call`` of cli.tf_logs in a fresh Python whose ``tensorflow`` is a stand-in package of ``source``."""
    (fake_root / "tensorflow").mkdir(exist_ok=True)
    (fake_root / "tensorflow" / "__init__.py").write_text(source)
    code = (f"import sys; sys.path.insert(0, {str(fake_root)!r}); sys.path.insert(1, {str(REPO)!r})\n"
            f"from cli import tf_logs\n{call}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("TFCF_TF_LOGS", "HOROVOD_RANK")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)


def test_quiet_import_keeps_every_other_line_and_tracebacks(tmp_path):
    """A stand-in ``tensorflow`` that logs noise, a real line, then fails: only the noise is dropped."""
    proc = _import_quietly(tmp_path,
        "import os, sys\n"
        "os.write(2, b'2026-01-01 E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:477] Unable to "
        "register cuFFT factory: Attempting to register factory\\n')\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'E0000 00:00:1.2 28062 cuda_dnn.cc:8310] Unable to register cuDNN factory: x\\n')\n"
        "os.write(2, b'a real C++ line\\n')\n"
        "print('a Python warning', file=sys.stderr)\n"
        "raise RuntimeError('broken install')\n", "tf_logs.import_tensorflow()")
    assert proc.returncode == 1
    assert "a real C++ line" in proc.stderr and "a Python warning" in proc.stderr
    assert "Traceback" in proc.stderr and "RuntimeError: broken install" in proc.stderr
    assert not TF_NOISE.search(proc.stderr), proc.stderr


def test_xla_run_prints_no_xla_info_lines(mirror, tmp_path):
    """absl's INFO lines of the first XLA compile (service, device, "Compiled cluster") stay off stderr."""
    proc = _main("--train", "--xla", "--model", "dae", "--hidden_layers", "32", "--latent_dim", "16",
                 "--number_of_epochs", "1", "--export_dir", tmp_path / "run", "--data_dir", tmp_path / "data",
                 "--data_mirror", mirror)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stdout
    assert json.loads((tmp_path / "run" / "run.json").read_text())["train"]["xla"] is True
    assert not XLA_INFO.search(proc.stderr) and not TF_NOISE.search(proc.stderr), proc.stderr


def test_quiet_xla_compile_keeps_every_other_line(tmp_path):
    """A stand-in ``tensorflow`` whose XLA compile logs its INFO lines and a real error: only the INFO lines go."""
    proc = _import_quietly(tmp_path,
        "import os, types\n"
        "config = types.SimpleNamespace(list_physical_devices=lambda: [])\n"
        "constant = float\n"
        "def function(f, jit_compile=None):\n"
        "    def compiled(x):\n"
        "        os.write(2, b'I0000 00:00:1.2 4448 service.cc:148] XLA service 0x5646d91b4d30 initialized for '\n"
        "                    b'platform Host (this does not guarantee that XLA will be used). Devices:\\n')\n"
        "        os.write(2, b'I0000 00:00:1.2 4448 service.cc:156]   StreamExecutor device (0): Host, Default '\n"
        "                    b'Version\\n')\n"
        "        os.write(2, b'E0000 00:00:1.3 4448 xla_compiler.cc:99] a real XLA error\\n')\n"
        "        os.write(2, b'I0000 00:00:1.4 4448 device_compiler.h:188] Compiled cluster using XLA!  This line '\n"
        "                    b'is logged at most once for the lifetime of the process.\\n')\n"
        "        return f(x)\n"
        "    return compiled\n", "tf_logs.import_tensorflow(xla=True)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "E0000 00:00:1.3 4448 xla_compiler.cc:99] a real XLA error\n"
    # The stand-in package is in place from the call above.
    shown = _import_quietly(tmp_path, (tmp_path / "tensorflow" / "__init__.py").read_text(),
                            "tf_logs.import_tensorflow(xla=True, show=True)")
    # --tf_logs: no capture and no stand-in compile (TensorFlow, imported later, logs by itself).
    assert shown.returncode == 0 and shown.stderr == ""


# --- progress -------------------------------------------------------------------------------------------

def _eval(verbose=True, progress_seconds=0.0):
    import tensorflow as tf

    from training import trainer

    dataset = tf.data.Dataset.range(4)
    return trainer.evaluate(lambda b: {"recall@20": (tf.constant(1.0), tf.constant(2.0))}, dataset,
                            verbose=verbose, progress_seconds=progress_seconds, label="test")


def test_long_evaluation_prints_progress_with_eta(capsys):
    assert _eval()["recall@20"] == pytest.approx(0.5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [l for l in lines[:3] if re.fullmatch(r"test: batch [123]/4 ETA \d+:\d\d:\d\d", l)]
    assert len(lines) == 4 and lines[-1].startswith("test: done in ")


def test_short_or_quiet_evaluation_prints_nothing(capsys):
    _eval(progress_seconds=10.0)
    _eval(verbose=False)
    assert capsys.readouterr().out == ""


def test_ease_says_when_it_solves_a_large_system(capsys, monkeypatch):
    import scipy.sparse as sp

    from baselines import ease

    train = sp.random(40, 30, density=0.2, format="csr", random_state=0)
    train.data[:] = 1
    ease.EASE(ease_lambda=5.0).solve(train)
    assert capsys.readouterr().out == ""  # 30 items: instant, quiet
    monkeypatch.setattr(ease, "PROGRESS_ITEMS", 10)
    ease.EASE(ease_lambda=5.0).solve(train, verbose=False)
    assert capsys.readouterr().out == ""
    ease.EASE(ease_lambda=5.0).solve(train)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ease: solving a 30 x 30 system (about 0.0 GiB)..." and re.fullmatch(r"ease: solved in [\d.]+ s",
                                                                                           out[1])


def test_preparing_a_large_own_file_prints_progress(capsys, monkeypatch, tmp_path):
    from data import custom
    from data.prepare import DataConfig, prepare

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.csv"
    rows = [f"{u},{i},{r}" for u, i, r in zip(rng.integers(0, 60, 3000), rng.integers(0, 80, 3000),
                                               rng.integers(1, 6, 3000))]
    path.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    whole = custom.read(path)
    monkeypatch.setattr(custom, "CHUNKED_BYTES", 1)
    monkeypatch.setattr(custom, "CHUNK_ROWS", 500)
    seen = []
    chunked = custom.read(path, progress=lambda done, size: seen.append((done, size)))
    assert len(seen) == 6 and seen[-1] == (path.stat().st_size,) * 2
    for field in ("user", "item", "rating"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
    capsys.readouterr()
    cfg = DataConfig(dataset=str(path), data_dir=str(tmp_path / "cache"), protocol="random")
    prepare(cfg, "rating", 0)
    out = capsys.readouterr().out
    assert f"data: preparing {path} (random)..." in out and f"data: reading {path} (0 MiB) in chunks" in out
    assert re.search(rf"data: preparing {re.escape(str(path))} \(random\): done in [\d.]+ s", out), out
    prepare(cfg, "rating", 0)  # from the cache: only the counts line
    assert capsys.readouterr().out.splitlines() == [l for l in out.splitlines() if l.startswith(f"data: {path} ")]


@pytest.mark.parametrize("line, noise", [
    # TensorFlow 2.21 on a CPU machine, through absl's INFO (TF_CPP_MIN_LOG_LEVEL does not hide them).
    ("I0000 00:00:1796283816.787507   28743 port.cc:153] oneDNN custom operations are on. You may see slightly "
     "different numerical results due to floating-point round-off errors from different computation orders.", True),
    ("I0000 00:00:1796283816.788051   28743 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
     "not be used.", True),
    ("W0000 00:00:1796283816.788051   28743 some_op.cc:31] a real warning", False),
])
def test_start_up_lines_of_newer_tensorflow_are_noise_and_others_are_not(line, noise):
    from cli import tf_logs

    assert tf_logs.is_noise(line, no_gpu=True) is noise
    assert not tf_logs.is_noise(line, no_gpu=False) or "oneDNN" in line  # a GPU machine keeps the driver line
