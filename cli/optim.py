"""Optimizer and training (models with a training loop: not ease, popularity)"""

import math

from absl import flags

from cli.model import positive_ints

flags.DEFINE_float("lr", 1e-3, "Learning rate.")
flags.DEFINE_enum("optimizer", "adam", ["adam", "momentum", "sgd", "adagrad", "rmsprop"], "The optimizer "
                  "(momentum: SGD with momentum 0.9).")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay.")
flags.DEFINE_list("lr_milestones", None, "Epochs at which the learning rate is multiplied by --lr_gamma.")
flags.DEFINE_float("lr_gamma", 0.1, "Learning-rate factor at each milestone.")
flags.DEFINE_integer("number_of_epochs", 200, "Epochs to train.", lower_bound=1)
flags.DEFINE_integer("batch_size_train", None, lower_bound=1, help="Rows (users; items for item-based DeepRec) or "
                     "ratings (mf, multitask) per training step, per worker with several GPUs (default: by the "
                     "data's size, said when training starts: Mult-VAE/DAE 1/200 of the training users in 100..500, "
                     "DeepRec ~1/32 of the rows in 32..128, mf/multitask ~1/100 of the ratings in 256..16384).")
flags.DEFINE_integer("batch_size_validation", 2000, "Users per evaluation batch.", lower_bound=1)
flags.DEFINE_integer("validation_step", 5, "Validate every this many epochs (and after the last).", lower_bound=1)
flags.DEFINE_integer("patience", None, "Stop after this many validations without improvement (default: 5 for "
                     "rating models, never for top-k models; 0: never).", lower_bound=0)
flags.DEFINE_integer("steps_per_call", None, "Training steps per compiled call, looping on the device over the data "
                     "(default: 32 for the pair models mf and multitask, whose steps are tiny; 1 for the others, and "
                     "always 1 under tf.distribute); the results do not depend on it.", lower_bound=1)
flags.DEFINE_integer("warm_up_epochs", 1, "--benchmark: epochs left out of the timing.", lower_bound=0)
flags.DEFINE_integer("benchmark_epochs", 3, "--benchmark: epochs timed after the warm-up.", lower_bound=1)

flags.register_validator("lr", lambda v: math.isfinite(v) and v > 0, message="--lr must be a finite number > 0")
flags.register_validator("lr_milestones", positive_ints,
                         message="--lr_milestones takes whole numbers > 0 separated by commas, e.g. 600,200")
