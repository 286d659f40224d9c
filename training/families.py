"""Model families: the name a user types (``--model vae``) -> how to build it.

A :class:`Family` says which task a model solves (``topk`` on a heldout-users
split, ``rating`` on a rating split), how to build its config from a split and
the user's hyper-parameters, and how to load it back from an export. Adding a
model to the toolkit is adding one entry here.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Optional

from data.errors import ConfigError


def _resolve(path: str) -> Any:
    """``package.module:Attr.attr`` -> the object (imported lazily: TF models load only when used)."""
    module, attr = path.split(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
      name: the ``--model`` value.
      task: ``topk`` or ``rating``.
      model_class: ``module:Class`` of a :class:`training.model.Model`, or of a
        closed-form baseline (``fit``/``score``/``save``/``load``, no training loop).
      config_factory: ``module:function`` (n_items or shape kwargs, **params) -> config.
      trainable: False for closed-form baselines (fit once, no epochs).
      description: one line for ``--help`` and the README.
      baseline_params: for closed-form baselines, run parameter -> constructor
        argument (``ease_lambda`` -> ``lam``).
    """

    name: str
    task: str
    model_class: str
    config_factory: Optional[str] = None
    trainable: bool = True
    description: str = ""
    baseline_params: tuple[tuple[str, str], ...] = ()

    def cls(self) -> type:
        return _resolve(self.model_class)

    def make_config(self, dims: dict[str, int], params: dict[str, Any]):
        """The model's config from the split's dimensions and user hyper-parameters.

        Only the parameters the config knows are used; the others belong to
        other families (main.py has one flag set for all models).
        """
        factory: Callable = _resolve(self.config_factory)
        config_cls = self.cls().config_class
        fields = {f.name for f in dataclasses.fields(config_cls)}
        known = {k: v for k, v in params.items() if k in fields and v is not None}
        return factory(**dims, **known)

    def fit_baseline(self, train, params: dict[str, Any], verbose: bool = True):
        """Fits a closed-form baseline on a CSR training matrix [n_users, n_items] (``verbose``: progress of
        a long fit)."""
        kwargs = {arg: params[key] for key, arg in self.baseline_params if params.get(key) is not None}
        return self.cls()(**kwargs).fit(train, verbose=verbose)

    def resolved_baseline_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """A closed-form baseline's parameters with their defaults filled in (run parameter names)."""
        import inspect

        signature = inspect.signature(self.cls().__init__).parameters
        return {key: params[key] if params.get(key) is not None else signature[arg].default
                for key, arg in self.baseline_params}

    def build(self, config):
        model = self.cls()(config)
        model.ensure_built()
        return model

    def rebuild(self, folder: Path, config: dict):
        """The model of an export folder: a closed-form baseline loaded from its file, a trainable model
        built from its config (:func:`serving.loader.load` restores its weights)."""
        cls = self.cls()
        if not self.trainable:
            return cls.load(Path(folder) / "baseline.npz")
        return cls.from_config(config)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


register(Family("vae", "topk", "vae.model:MultVAE", "vae.config:VAEConfig",
                description="Mult-VAE [I-600-200-600-I] (Liang et al. 2018)"))
register(Family("dae", "topk", "vae.model:MultVAE", "vae.config:VAEConfig.dae",
                description="Mult-DAE [I-200-I] (Liang et al. 2018)"))
register(Family("deeprec", "rating", "deeprec.model:DeepRec", "deeprec.config:DeepRecConfig.from_dims",
                description="deep rating autoencoder with dense re-feeding (Kuchaiev & Ginsburg 2017)"))
register(Family("mf", "rating", "mf.model:MatrixFactorization", "mf.config:MFConfig.from_dims",
                description="low-rank matrix factorization with biases, MSE"))
register(Family("multitask", "rating", "mf.model:MultiTaskNet", "mf.config:MultiTaskConfig.from_dims",
                description="multi-task MF: BPR interactions + rating regression MLP"))
register(Family("ease", "topk", "baselines.ease:EASE", trainable=False, baseline_params=(("ease_lambda", "lam"),),
                description="EASE closed-form item-item model (Steck 2019)"))
register(Family("popularity", "topk", "baselines.popularity:Popularity", trainable=False,
                description="most popular items first"))


def get(name: str) -> Family:
    """The family called ``name``; a :class:`ConfigError` lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(sorted(FAMILIES))}") from None
