"""Mult-VAE, Mult-DAE and RecVAE (--model vae, dae, recvae)"""

from absl import flags

from cli.model import fraction

flags.DEFINE_integer("total_anneal_steps", None, "Mult-VAE: KL weight = min(--anneal_cap, update / this) (default: "
                     "scaled to the data as in the paper: the cap is reached at 85% of 200 epochs, as Liang et al.'s "
                     "200,000 do for ML-20M's ~46,800 updates).", lower_bound=1)
flags.DEFINE_float("anneal_cap", 0.2, "Mult-VAE: the largest KL weight.")
flags.DEFINE_integer("latent_dim", None, "Latent code width; Mult-DAE's only hidden layer (default: 200).")
flags.DEFINE_float("dropout", None, "Input dropout rate (default: 0.5; RecVAE: while its encoder trains).")
flags.DEFINE_float("kl_gamma", None, "RecVAE: the KL weight of a user is this times the user's number of "
                   "interactions (default: 0.005, the paper's).", lower_bound=0.0)
flags.DEFINE_integer("encoder_epochs", None, "RecVAE: passes over the data training the encoder in each epoch, "
                     "before the decoder's (default: 3).", lower_bound=1)
flags.DEFINE_integer("decoder_epochs", None, "RecVAE: passes training the decoder in each epoch (default: 1).",
                     lower_bound=1)

flags.register_validator("dropout", fraction, message="--dropout must be in [0, 1)")
