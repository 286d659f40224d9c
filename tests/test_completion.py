"""experiments/completion: the report's 'n m k' file format, its errors, training and the predictions file."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.errors import DatasetError
from experiments import completion

REPO = Path(__file__).resolve().parent.parent
# TensorFlow's CUDA start-up lines on a CPU machine (see cli/tf_logs.py and tests/test_cli.py).
TF_NOISE = re.compile(r"cuFFT|cuDNN|cuBLAS|cuInit|absl::InitializeLog|oneDNN custom operations|Could not find cuda drivers")

GOOD = """3 4 3
0 1 5
1 2 3.5

2 3 1
0 0
1 3
"""


def _write(tmp_path, text, name="input.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_ratings_and_test_pairs(tmp_path):
    problem = completion.read_problem(_write(tmp_path, GOOD))
    assert (problem.n_users, problem.n_items) == (3, 4)
    np.testing.assert_array_equal(problem.user, [0, 1, 2])
    np.testing.assert_array_equal(problem.item, [1, 2, 3])
    np.testing.assert_array_equal(problem.rating, np.array([5, 3.5, 1], np.float32))
    np.testing.assert_array_equal(problem.test_user, [0, 1])
    np.testing.assert_array_equal(problem.test_item, [0, 3])


def test_one_based_ids_are_shifted(tmp_path):
    problem = completion.read_problem(_write(tmp_path, "2 2 2\n1 1 4\n2 2 3\n2 1\n"), one_based=True)
    np.testing.assert_array_equal(problem.user, [0, 1])
    np.testing.assert_array_equal(problem.item, [0, 1])
    np.testing.assert_array_equal(problem.test_user, [1])
    np.testing.assert_array_equal(problem.test_item, [0])


def test_crlf_tabs_and_no_test_pairs(tmp_path):
    problem = completion.read_problem(_write(tmp_path, "2 2 1\r\n0\t1\t2.5\r\n"))
    assert problem.rating.tolist() == [2.5] and problem.test_user.size == 0


@pytest.mark.parametrize("text, message", [
    ("3 4\n0 1 5\n", r":1: the first line must be 'n m k' .*: '3 4'"),
    ("x 4 1\n0 1 5\n", r":1: the first line must be 'n m k' .*: 'x 4 1'"),
    ("0 4 0\n", r":1: the first line must be 'n m k' \(users >= 1"),
    ("3 4 2\n0 1 5 7\n1 2 3\n", r":2: too many fields \(at most 'user item rating'\): '0 1 5 7'"),
    ("3 4 2\n0 1 5\n1 2 abc\n", r":3: the rating is not a finite number: '1 2 abc'"),
    ("3 4 2\n0 1 5\n1 2 nan\n", r":3: the rating is not a finite number: '1 2 nan'"),
    ("3 4 2\n0 1 5\n1.5 2 3\n", r":3: expected a rating line 'user item rating' .*: '1.5 2 3'"),
    ("3 4 2\n0 1 5\n1 2\n", r":3: expected a rating line 'user item rating'"),
    ("3 4 2\n0 1 5\n3 2 4\n", r":3: user 3 is outside 0..2 \(n=3 on line 1; ids start at 1: pass --one_based"),
    ("3 4 2\n0 1 5\n\n1 4 4\n", r":4: item 4 is outside 0..3 \(m=4 on line 1"),
    ("3 4 3\n0 1 5\n1 2 3\n", r"the header \(line 1\) announces k=3 ratings but only 2 lines follow"),
    ("3 4 2\n0 1 5\n0 1 2\n", r":3: the rating of \(user 0, item 1\) is given twice \(first on line 2\)"),
    ("3 4 1\n0 1 0\n", r":2: a rating of 0: .*shift the scale"),
    ("3 4 1\n0 1 5\n1\n", r":3: expected a test pair 'user item' \(two integer ids\): '1'"),
    ("3 4 1\n0 1 5\n1 2 3\n", r":3: expected a test pair 'user item'"),
    ("3 4 1\n0 1 5\n2 -1\n", r":3: item -1 is outside 0..3"),
    ("", r"has no data; the first line must be 'n m k'"),
])
def test_malformed_files_name_the_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(DatasetError, match=message) as err:
        completion.read_problem(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_one_based_file_read_as_zero_based_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"user 2 is outside 0..1 \(n=2 on line 1; ids start at 1: pass"):
        completion.read_problem(_write(tmp_path, "2 2 2\n1 1 4\n2 2 3\n"))
    with pytest.raises(DatasetError, match="ids start at 0: drop --one_based"):
        completion.read_problem(_write(tmp_path, "2 2 1\n0 1 4\n"), one_based=True)
    with pytest.raises(DatasetError, match="no such input file: .*missing.txt"):
        completion.read_problem(tmp_path / "missing.txt")


def _low_rank_file(tmp_path, seed=0):
    """A 60 x 40 rank-2 rating matrix, 50% known; the test pairs are 100 of the others, with their truth."""
    rng = np.random.default_rng(seed)
    truth = np.clip(3 + rng.normal(size=(60, 2)) @ rng.normal(size=(2, 40)), 1, 5)
    cells = rng.permutation(60 * 40)
    known, test = cells[:1200], cells[1200:1300]
    u, i = np.divmod(known, 40)
    tu, ti = np.divmod(test, 40)
    lines = ["60 40 1200"] + [f"{a} {b} {truth[a, b]:.3f}" for a, b in zip(u, i)] + [f"{a} {b}" for a, b in zip(tu, ti)]
    return _write(tmp_path, "\n".join(lines) + "\n"), truth[tu, ti]


def test_complete_predicts_the_test_pairs_better_than_the_mean(tmp_path):
    path, want = _low_rank_file(tmp_path)
    problem = completion.read_problem(path)
    pred, fit = completion.complete(problem, rank=4, lr=3e-2, batch_size=100, epochs=8, patience=3)
    assert pred.shape == (100,) and pred.dtype == np.float32
    assert pred.min() >= problem.rating.min() and pred.max() <= problem.rating.max()  # clipped
    rmse = np.sqrt(np.mean((pred - want) ** 2))
    mean_rmse = np.sqrt(np.mean((problem.rating.mean() - want) ** 2))
    assert rmse < 0.7 * mean_rmse, f"RMSE {rmse:.3f} vs the mean's {mean_rmse:.3f}"
    assert 1 <= fit.best_epoch <= len(fit.history.epochs) and np.isfinite(fit.val_rmse)


def test_write_predictions_one_per_line_or_with_pairs(tmp_path):
    problem = completion.read_problem(_write(tmp_path, GOOD))
    completion.write_predictions(tmp_path / "plain.txt", np.array([4.25, 1.0], np.float32))
    assert (tmp_path / "plain.txt").read_text() == "4.2500\n1.0000\n"
    completion.write_predictions(tmp_path / "pairs.txt", np.array([4.25, 1.0]), problem, one_based=True)
    assert (tmp_path / "pairs.txt").read_text() == "1 1 4.2500\n2 4 1.0000\n"


def test_cli_writes_predictions_and_reports_errors(tmp_path, capsys):
    path, _ = _low_rank_file(tmp_path)
    out = tmp_path / "answers.txt"
    code = completion.main([str(path), str(out), "--rank", "4", "--lr", "3e-2", "--batch_size_train",
                            "100", "--number_of_epochs", "2", "--with_pairs"])
    assert code == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 100 and all(1 <= float(line.split()[2]) <= 5 for line in lines)
    assert "wrote 100 predictions" in capsys.readouterr().out
    bad = _write(tmp_path, "3 4 2\n0 1 5\n1 2 abc\n", "bad.txt")
    assert completion.main([str(bad), str(out)]) == 2
    assert capsys.readouterr().err == f"error: {bad}:3: the rating is not a finite number: '1 2 abc'\n"


def test_cli_mistakes_are_one_error_line(tmp_path, capsys):
    path = _write(tmp_path, GOOD)
    cases = [([str(path)], "error: expected INPUT OUTPUT (the 'n m k' file and the predictions file), got 1 "
                            "argument"),
             ([str(path), "out.txt", "--epochs", "2"], "error: Unknown command line flag 'epochs'"),
             ([str(path), "out.txt", "--no_bias"], "error: Unknown command line flag 'no_bias'"),
             ([str(path), "out.txt", "--rank", "0"], "error: flag --rank=0: 0 is not a positive integer"),
             ([str(path), "out.txt", "--lr", "nan"], "error: flag --lr=nan: --lr must be a finite number > 0"),
             ([str(path), "out.txt", "--val_fraction", "1"], "error: flag --val_fraction=1.0: --val_fraction must")]
    for argv, message in cases:
        assert completion.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1, (argv, err)


def test_command_line_prints_no_tensorflow_cuda_lines(tmp_path):
    """``python -m experiments.completion`` keeps TensorFlow's start-up noise off stderr, as main.py does."""
    path, _ = _low_rank_file(tmp_path)
    out = tmp_path / "answers.txt"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFCF_TF_LOGS")}
    proc = subprocess.run([sys.executable, "-m", "experiments.completion", str(path), str(out), "--rank", "4",
                           "--batch_size_train", "100", "--number_of_epochs", "1", "--quiet"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 100
    assert not TF_NOISE.search(proc.stderr), proc.stderr
    # The in-process entry point takes main.py's --tf_logs too (TensorFlow is already started here: nothing to show).
    assert completion.main([str(path), str(out), "--rank", "4", "--number_of_epochs", "1", "--quiet",
                            "--tf_logs"]) == 0
