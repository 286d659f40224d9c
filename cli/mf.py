"""Matrix factorization and MultiTaskNet (--model mf, multitask)"""

from absl import flags

from cli.model import positive_ints

flags.DEFINE_integer("rank", None, "mf: rank of the factorization (default: 25).")
flags.DEFINE_bool("use_bias", None, "mf: user/item biases and a global mean (default: on).")
flags.DEFINE_integer("embedding_dim", None, "multitask: embedding size (default: 32).")
flags.DEFINE_list("layer_sizes", None, "multitask: rating MLP widths (default: 64).")
flags.DEFINE_float("factorization_weight", None, "multitask: weight of the BPR loss (default: 0.99).")
flags.DEFINE_float("regression_weight", None, "multitask: weight of the rating MSE (default: 0.01).")
flags.DEFINE_bool("no_shared_embeddings", False, "multitask: separate embeddings for the two tasks.")
flags.DEFINE_enum("bpr_form", None, ["homework", "log"], "multitask: mean(1 - sigmoid(d)) or -log sigmoid(d) "
                  "(default: homework).")

flags.register_validator("layer_sizes", positive_ints,
                         message="--layer_sizes takes whole numbers > 0 separated by commas, e.g. 600,200")
