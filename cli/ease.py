"""EASE (--model ease)"""

from absl import flags

flags.DEFINE_float("ease_lambda", None, "L2 regularization lambda (default: 500).")
