"""DeepRec (--model deeprec)"""

from absl import flags

from cli.model import fraction

flags.DEFINE_string("activation", None, "selu, elu, relu, relu6, lrelu, sigmoid, tanh or swish (default: selu).")
flags.DEFINE_float("drop_prob", None, "Dropout rate on the code layer (default: 0.8).")
flags.DEFINE_float("noise_prob", None, "Dropout rate on the input (default: 0).")
flags.DEFINE_bool("constrained", None, "Tied decoder (transposed encoder weights) (default: off).")
flags.DEFINE_bool("last_layer_activations", None, "Apply the activation on the output layer too (default: on unless "
                  "the activation is bounded, e.g. sigmoid, tanh).")
flags.DEFINE_integer("aug_step", None, "Dense re-feeding steps per batch (0: off; default: 1).")
flags.DEFINE_enum("major", "users", ["users", "items"], "Rows are users (user-based) or items.")

for _name in ("drop_prob", "noise_prob"):
    flags.register_validator(_name, fraction, message=f"--{_name} must be in [0, 1)")
