"""Model"""

from absl import flags


def fraction(value) -> bool:
    return value is None or 0.0 <= value < 1.0


def positive_ints(values) -> bool:
    return values is None or all(v.strip().isdigit() and int(v) > 0 for v in values)


flags.DEFINE_string("model", "vae", "The model: vae, dae, recvae, ease, popularity (top-k); deeprec, mf, multitask "
                    "(ratings). Each family's own flags follow.")
flags.DEFINE_list("hidden_layers", None, "vae, dae, recvae, deeprec: hidden layer widths, e.g. 600 for Mult-VAE "
                  "[I-600-200-600-I] (default: vae 600, dae none, recvae 600,600,600,600,600 (one width: its "
                  "layers are densely connected), deeprec 512,512,1024).")
flags.DEFINE_float("lam", None, "vae, dae, recvae, deeprec, mf: L2 regularization weight on the weight matrices "
                   "(default: vae 0, dae 0.001, recvae 0, deeprec 0, mf 0.1).")

flags.register_validator("hidden_layers", positive_ints,
                         message="--hidden_layers takes whole numbers > 0 separated by commas, e.g. 600,200")
