"""Data: dataset, protocol and split"""

import math

from absl import flags

flags.DEFINE_string("dataset", "ml-100k", "A dataset name (ml-100k, ml-1m, ml-20m, ml-latest-small, netflix, "
                    "lastfm-2k, lastfm-360k, pinterest-20, ml-10m) or the path of your own "
                    "CSV/TSV/.dat/Parquet file (see the own-file flags).")
flags.DEFINE_string("data_dir", None, "Download and cache folder (default: $TFCF_DATA_DIR or ~/.cache/tfcf).")
flags.DEFINE_string("data_mirror", None, "Folder of already-extracted datasets (default: $TFCF_DATA_MIRROR).")
flags.DEFINE_string("protocol", None, "Split protocol: heldout (top-k models), fold, random, time (rating models), "
                    "or prepared: --dataset is a folder of a split made elsewhere (Liang et al.'s train.csv, "
                    "validation_tr/te.csv, test_tr/te.csv; for rating models train.csv, test.csv, validation.csv) "
                    "(default: prepared for such a folder, heldout for top-k models; for rating models fold on "
                    "ml-100k, time on netflix, else random).")
flags.DEFINE_float("threshold", None, "--protocol heldout: binarize ratings >= threshold (default: the dataset's, 4 for MovieLens).")
flags.DEFINE_float("heldout_users", 0.1, "--protocol heldout: validation and test users each: a fraction (<1) or "
                   "a count.")
flags.DEFINE_integer("min_uc", 5, "--protocol heldout: keep users with at least this many positives.")
flags.DEFINE_string("fold", "u1", "--protocol fold: ML-100K's official fold u1..u5, ua or ub.")
flags.DEFINE_float("test_fraction", 0.05, "--protocol random: fraction of the ratings held out for testing.")
flags.DEFINE_float("val_fraction", None, "--protocol random/fold: fraction of the training ratings moved to a "
                   "validation slice (best checkpoint, early stopping; default 0.05; 0: none).")
flags.DEFINE_string("time_window", "3m", "--protocol time: full, 3m, 6m, 1y (DeepRec's Netflix windows) or dates "
                    "TRAIN_START..TRAIN_END,TEST_START..TEST_END for your own data.")

flags.DEFINE_float("val_users", None, "--protocol heldout: validation users, a fraction (<1) or a count (default: "
                   "--heldout_users).")
flags.DEFINE_float("test_users", None, "--protocol heldout: test users, a fraction (<1) or a count (default: "
                   "--heldout_users).")
for _name in ("heldout_users", "val_users", "test_users"):
    flags.register_validator(_name, lambda v: v is None or (math.isfinite(v) and v > 0),
                             message=f"--{_name} must be a fraction in (0, 1) or a count >= 1")
