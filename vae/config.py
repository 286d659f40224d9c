"""Hyper-parameters of Mult-VAE and Mult-DAE (Liang et al. 2018) and RecVAE (Shenbin et al. 2020)."""

from __future__ import annotations

import dataclasses

from data.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """The model's hyper-parameters (the trainer's live in ``TrainConfig``).

    Attributes:
      n_items: input and output width I.
      hidden: encoder hidden widths before the latent layer; the decoder mirrors
        them. Mult-VAE is [I-600-200-600-I]: ``hidden=(600,)``, ``latent=200``.
      latent: width of the latent code (Mult-DAE: its only hidden layer).
      variational: True for Mult-VAE, False for Mult-DAE [I-200-I].
      dropout: dropout rate on the L2-normalised input.
      activation: hidden activation (tanh in the paper).
      lam: L2 weight on the weight matrices (loss term ``lam * sum(w**2)``, as
        ``2 * l2_regularizer(lam)`` in the reference code).
      total_anneal_steps: KL weight = min(anneal_cap, update / total_anneal_steps).
      anneal_cap: the largest KL weight.
      seed: seed of the model's dropout and sampling noise.
    """

    n_items: int
    hidden: tuple[int, ...] = (600,)
    latent: int = 200
    variational: bool = True
    dropout: float = 0.5
    activation: str = "tanh"
    lam: float = 0.0
    total_anneal_steps: int = 200_000
    anneal_cap: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    @classmethod
    def dae(cls, n_items: int, **kwargs) -> "VAEConfig":
        """Mult-DAE [I-200-I].

        ``lam`` defaults to 0.001, chosen on ML-100K's validation users
        (Liang et al. used 0.01 on ML-20M; 0.01 gave 0.429 validation
        NDCG@100 on ML-100K against 0.442 for 0.001: bench/tune_topk.py).
        """
        kwargs.setdefault("hidden", ())
        kwargs.setdefault("lam", 0.001)
        return cls(n_items=n_items, **{**kwargs, "variational": False})


# The tuner's search spaces (training.tune; main.py --tune): run setting -> distribution.
VAE_SPACE = {
    "model_params.hidden": ("choice", [(), (300,), (600,)]),
    "model_params.latent": ("choice", [100, 200, 400]),
    "model_params.lam": ("log", 1e-5, 1e-1),
    "model_params.dropout": ("float", 0.2, 0.7),
    "model_params.anneal_cap": ("float", 0.0, 0.5),
    "optim.lr": ("log", 3e-4, 3e-3),
}
DAE_SPACE = {
    "model_params.latent": ("choice", [100, 200, 400]),
    "model_params.lam": ("log", 1e-5, 1e-1),
    "model_params.dropout": ("float", 0.2, 0.7),
    "optim.lr": ("log", 3e-4, 3e-3),
}


@dataclasses.dataclass(frozen=True)
class RecVAEConfig:
    """RecVAE's hyper-parameters (Shenbin et al. 2020; the trainer's live in ``TrainConfig``).

    The paper's ML-20M settings are the defaults: five densely connected
    600-wide layers, a 200-wide code, γ 0.005, three encoder epochs per
    decoder epoch.

    Attributes:
      n_items: input and output width I.
      hidden: the encoder's layer widths; equal, since each layer adds the
        outputs of all before it (the length is the depth).
      latent: width of the latent code.
      dropout: dropout rate on the L2-normalised input while the encoder trains.
      kl_gamma: γ of the KL weight β(x) = γ·|x| (|x|: the user's interactions).
      encoder_epochs: passes over the data that train the encoder, per epoch.
      decoder_epochs: passes that then train the decoder, per epoch.
      prior_weights: mixture weights of the composite prior's standard normal,
        previous-epoch posterior and wide normal (they sum to 1).
      wide_logvar: log-variance of the prior's wide normal.
      decoder_noise: the decoder phase decodes a sample of the posterior (the
        public code) instead of its mean (the paper's text).
      lam: L2 weight on the weight matrices of the phase being trained (loss
        term ``lam * sum(w**2)``, as Mult-VAE's; not in the paper: 0 there).
      seed: seed of the model's dropout and sampling noise.
    """

    n_items: int
    hidden: tuple[int, ...] = (600,) * 5
    latent: int = 200
    dropout: float = 0.5
    kl_gamma: float = 0.005
    encoder_epochs: int = 3
    decoder_epochs: int = 1
    prior_weights: tuple[float, float, float] = (0.15, 0.75, 0.1)
    wide_logvar: float = 10.0
    decoder_noise: bool = False
    lam: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.lam < 0:
            raise ConfigError(f"lam must be >= 0, got {self.lam}")
        object.__setattr__(self, "prior_weights", tuple(float(w) for w in self.prior_weights))
        if not self.hidden or len(set(self.hidden)) != 1 or self.hidden[0] <= 0:
            raise ConfigError(f"RecVAE's encoder layers are densely connected, so they need one width: "
                              f"--hidden_layers {','.join([str(self.hidden[0] if self.hidden else 600)] * 5)} "
                              f"(five of one width), not {','.join(map(str, self.hidden)) or 'none'}")
        if self.latent <= 0:
            raise ConfigError(f"latent must be positive, got {self.latent}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.kl_gamma < 0:
            raise ConfigError(f"kl_gamma must be >= 0, got {self.kl_gamma}")
        if self.encoder_epochs < 1 or self.decoder_epochs < 1:
            raise ConfigError(f"encoder_epochs and decoder_epochs must be >= 1, got {self.encoder_epochs} and "
                              f"{self.decoder_epochs}")
        if len(self.prior_weights) != 3 or min(self.prior_weights) <= 0 or abs(sum(self.prior_weights) - 1) > 1e-6:
            raise ConfigError(f"prior_weights must be three positive weights summing to 1, got {self.prior_weights}")


RECVAE_SPACE = {
    "model_params.latent": ("choice", [100, 200, 400]),
    "model_params.dropout": ("float", 0.2, 0.7),
    "model_params.kl_gamma": ("log", 5e-4, 5e-2),
    "model_params.encoder_epochs": ("choice", [1, 2, 3]),
    "optim.lr": ("log", 1e-4, 3e-3),
}
