"""Times data preparation at the ML-20M shape: generate, heldout_users, cache write.

Synthetic power-law interactions of the ML-20M shape (136,677 users, 20,108
items, 10M clicks; :data:`data.synthetic.SHAPES`) go through
:func:`data.protocols.heldout_users` with 10,000 validation and 10,000 test
users as in Liang et al., then :func:`data.cache.load_or_build` writes them.
Targets: prepare < 60 s, peak RSS < 3 GB.

    python bench/bench_prepare.py                 # every row is a click
    python bench/bench_prepare.py --threshold=4   # ratings >= 4 (about 56%)
    python bench/bench_prepare.py --shape=netflix

Not run by the tests.
"""

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.cache import cache_path, load_or_build  # noqa: E402
from data.protocols import HeldoutConfig, heldout_users  # noqa: E402
from data.synthetic import SHAPES, power_law_interactions  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("shape", "ml-20m", sorted(SHAPES), "Dataset shape to generate.")
flags.DEFINE_float("threshold", None, "Binarization threshold; unset: every row is a click.")
flags.DEFINE_integer("heldout_users", 10000, "Validation users and test users (each).")
flags.DEFINE_integer("seed", 98765, "Seed of the data and the split.")
flags.DEFINE_string("cache_dir", None, "Where the cache is written; default: a temporary folder.")


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
    del argv
    n_users, n_items, n = SHAPES[FLAGS.shape]
    rows = []

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        rows.append((name, time.perf_counter() - start, peak_rss_mb()))
        return out

    x = timed("generate", lambda: power_law_interactions(n_users, n_items, n, seed=FLAGS.seed))
    config = HeldoutConfig(threshold=FLAGS.threshold, val_users=FLAGS.heldout_users, test_users=FLAGS.heldout_users)
    split = timed("prepare", lambda: heldout_users(x, config, FLAGS.seed))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(FLAGS.cache_dir or tmp)
        key = {"protocol": "heldout_users", "config": config, "seed": FLAGS.seed, "dataset": f"synthetic-{FLAGS.shape}"}
        timed("cache write", lambda: load_or_build(folder, key, lambda: split))
        timed("cache read", lambda: load_or_build(folder, key, lambda: split))
        size_mb = os.path.getsize(cache_path(folder, key)) / 2 ** 20

    print(f"{FLAGS.shape}: {n_users:,} users x {n_items:,} items, {len(x):,} interactions, "
          f"threshold={FLAGS.threshold}, {FLAGS.heldout_users:,} val + test users")
    print(f"split: train {split.train.shape[0]:,} users / {split.train.nnz:,} clicks, {split.n_items:,} items; "
          f"val {split.val_input.shape[0]:,} users / {split.val_input.nnz + split.val_target.nnz:,} clicks; "
          f"test {split.test_input.shape[0]:,} users / {split.test_input.nnz + split.test_target.nnz:,} clicks; "
          f"cache file {size_mb:,.0f} MB")
    print(f"{'step':<12} {'seconds':>8} {'peak RSS MB':>12}")
    for name, seconds, rss in rows:
        print(f"{name:<12} {seconds:>8.2f} {rss:>12,.0f}")


if __name__ == "__main__":
    app.run(main)
