"""Modes and run

Modes run in the order train, test, benchmark (any subset); --compare, --recommend* and --predict run alone.
"""

from absl import flags

flags.DEFINE_bool("train", False, "Train the model (resumes from the latest checkpoint in --export_dir).")
flags.DEFINE_bool("test", False, "Report test metrics; without --train, of the model exported in --export_dir.")
flags.DEFINE_bool("benchmark", False, "Time training and validation epochs after --warm_up_epochs; writes "
                  "benchmark.json.")
flags.DEFINE_list("compare", None, "Train and test these models on one dataset, protocol and seed, e.g. "
                  "popularity,ease,vae,dae or mf,deeprec,multitask; writes compare.md/.json/.png into --export_dir "
                  "(runs/<dataset>-compare-topk or -rating if not given); models with test results there are not "
                  "retrained.")
flags.DEFINE_string("recommend", None, "Comma-separated item ids (original ids): print the top --top_k items "
                    "recommended for a user who has them, from the model in --export_dir.")
flags.DEFINE_list("recommend_users", None, "Comma-separated user ids (original ids): the top --top_k items for each, "
                  "without the items they already have, from the model in --export_dir.")
flags.DEFINE_string("recommend_users_file", None, "Like --recommend_users, from a file of user ids (one a line, or "
                    "the user column of a CSV).")
flags.DEFINE_string("predict", None, "A file of (user, item) pairs in original ids (CSV/TSV/Parquet, header "
                    "optional; read with --user_col/--item_col/--sep): write user,item,prediction from the rating "
                    "model in --export_dir.")
flags.DEFINE_string("export_dir", None, "Run folder: checkpoints, best model, logs, results.json "
                    "(default: runs/<dataset>-<model>).")
flags.DEFINE_bool("fresh", False, "Start over instead of resuming: the run in --export_dir is moved aside to "
                  "<export_dir>.replaced-<time>, never deleted.")
flags.DEFINE_string("warm_start", None, "A finished run folder of the same model and split whose exported weights "
                    "start this run (e.g. to continue a diverged run at a lower --lr in a new --export_dir).")
flags.DEFINE_string("config", None, "A TOML file of flag values under [flags] (see configs/); flags on the command "
                    "line win. Without it, --train uses the preset configs/<model>/<dataset>.toml when there is one; "
                    "'none' uses no preset.")
flags.DEFINE_list("seeds", None, "Train and test once per seed (e.g. 0,1,2,3,4), each in <export_dir>/seed-<s>; "
                  "writes seeds.md/.json there: the mean and a 95% t-interval of every test metric (default folder: "
                  "runs/<dataset>-<model>-seeds).")
flags.DEFINE_bool("tune", False, "Search the model's hyper-parameters on validation data (Optuna TPE with pruning, "
                  "--trials trials; resumable): writes trials.md/.csv, tune.png and the best settings as preset.toml "
                  "into --export_dir (default: runs/<dataset>-<model>-tune).")
flags.DEFINE_integer("trials", 20, "--tune: trials the study should hold (a second call adds the missing ones).",
                     lower_bound=1)
flags.DEFINE_list("metrics", None, "Top-k models: the ranking metrics to report, NAME@K with NAME recall, ndcg, "
                  "precision or hit (default: recall@20,recall@50,ndcg@100; ndcg@100 is always added: the best "
                  "checkpoint is chosen on it).")
flags.DEFINE_integer("seed", 0, "Seed of the data split, data order, weights and noise.")
flags.DEFINE_string("logdir", None, "TensorBoard folder (default: <export_dir>/logs).")
