"""Hyper-parameters of Mult-VAE and Mult-DAE (Liang et al. 2018)."""

from __future__ import annotations

import dataclasses


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
