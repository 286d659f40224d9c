"""Model families: the name a user types (``--model vae``) -> the model class and its config.

A :class:`Family` pairs a :class:`training.recommender.Recommender` class
with the factory of its config (Mult-VAE and Mult-DAE share a class and differ
in their config); everything else (the task, the main metric, whether it is
solved in closed form, the parameters it takes) is the class's. Adding a model
to the toolkit is adding one entry here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from baselines.ease import EASE, EASE_SPACE, EASEConfig
from baselines.popularity import Popularity, PopularityConfig
from data.errors import ConfigError
from deeprec.config import DEEPREC_SPACE, DeepRecConfig
from deeprec.model import DeepRec
from mf.config import MF_SPACE, MULTITASK_SPACE, MFConfig, MultiTaskConfig
from mf.model import MatrixFactorization, MultiTaskNet
from training.recommender import Recommender
from vae.config import DAE_SPACE, RECVAE_SPACE, VAE_SPACE, RecVAEConfig, VAEConfig
from vae.model import MultVAE
from vae.recvae import RecVAE


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
      name: the ``--model`` value.
      cls: the model class (a :class:`Recommender`).
      config: (n_items, or n_users and n_items, **params) -> the class's config.
      description: one line for ``--help`` and the README.
      space: the tuner's search space (:mod:`training.tune`), declared next to the config.
    """

    name: str
    cls: type[Recommender]
    config: Callable[..., Any]
    description: str = ""
    space: dict = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def task(self) -> str:
        return self.cls.task

    @property
    def closed_form(self) -> bool:
        return self.cls.closed_form

    def make_config(self, dims: dict[str, int], params: dict[str, Any]):
        """The model's config from the split's dimensions and user hyper-parameters.

        Only the parameters the config knows are used; the others belong to
        other families (main.py has one flag set for all models).
        """
        names = self.cls.param_names()
        return self.config(**dims, **{k: v for k, v in params.items() if k in names and v is not None})

    def build(self, config) -> Recommender:
        """A new model of ``config``, its weights created (and not yet fitted)."""
        return self.cls.create(config)

    def rebuild(self, folder: Path, config: dict) -> Recommender:
        """The model of an export folder (``model/``), its weights read from there."""
        model = self.cls.from_config(config)
        model.read(Path(folder))
        return model


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


register(Family("vae", MultVAE, VAEConfig, "Mult-VAE [I-600-200-600-I] (Liang et al. 2018)", VAE_SPACE))
register(Family("dae", MultVAE, VAEConfig.dae, "Mult-DAE [I-200-I] (Liang et al. 2018)", DAE_SPACE))
register(Family("recvae", RecVAE, RecVAEConfig, "RecVAE: composite prior, alternating updates (Shenbin et al. 2020)",
                RECVAE_SPACE))
register(Family("deeprec", DeepRec, DeepRecConfig.from_dims,
                "deep rating autoencoder with dense re-feeding (Kuchaiev & Ginsburg 2017)", DEEPREC_SPACE))
register(Family("mf", MatrixFactorization, MFConfig.from_dims, "low-rank matrix factorization with biases, MSE",
                MF_SPACE))
register(Family("multitask", MultiTaskNet, MultiTaskConfig.from_dims,
                "multi-task MF: BPR interactions + rating regression MLP", MULTITASK_SPACE))
register(Family("ease", EASE, EASEConfig, "EASE closed-form item-item model (Steck 2019)", EASE_SPACE))
register(Family("popularity", Popularity, PopularityConfig, "most popular items first"))


def get(name: str) -> Family:
    """The family called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(sorted(FAMILIES))}") from None
