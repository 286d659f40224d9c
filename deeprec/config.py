"""Hyper-parameters of DeepRec, the deep rating autoencoder (Kuchaiev & Ginsburg 2017).

The defaults are the paper's best model on Netflix Full (Sec. 3.5-3.6, Table 4):
``n, 512, 512, 1024, dp(0.8), 512, 512, n`` with SELU everywhere, an
unconstrained decoder and one dense re-feeding step per batch. The optimizer
(momentum 0.9, lr 0.005 with re-feeding), batch size 128 and weight decay are
the trainer's (``training.config.OptimConfig``), not the model's.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from data.errors import ConfigError

ACTIVATIONS = ("selu", "elu", "relu", "relu6", "lrelu", "sigmoid", "tanh", "swish")
# Bounded activations whose range is smaller than the ratings' (1..5): the paper
# keeps the decoder's last layer linear for these (Sec. 3.2).
BOUNDED = ("sigmoid", "tanh")


@dataclasses.dataclass(frozen=True)
class DeepRecConfig:
    """The model's hyper-parameters.

    Attributes:
      n_users: rows of the rating matrix the model is trained on (users for the
        user-based model, items for ``--major items``); informative only.
      n_items: input and output width = columns of the rows (items for the
        user-based model, users for the item-based one).
      hidden: encoder widths, the last is the code layer; the decoder mirrors
        the others (``(512, 512, 1024)`` is ``n-512-512-1024-512-512-n``).
      activation: one of :data:`ACTIVATIONS` for every hidden layer.
      drop_prob: dropout rate on the code layer only (the paper: applying it
        after every layer stifled training).
      noise_prob: dropout rate on the input (denoising; 0 = off).
      constrained: tied decoder: decoder layer l uses the transpose of encoder
        layer l's kernel (the same variable), with its own bias.
      last_layer_activations: apply the activation on the output layer too;
        None picks the paper's rule: yes, except for sigmoid and tanh.
      aug_step: dense re-feeding updates after each ordinary update (0 = off).
      lam: L2 weight on the kernels, ``lam * sum(W**2)`` added to every update's
        loss (``--lam``). This is the reference's ``torch.optim.Adam(weight_decay=2 * lam)``
        (PyTorch adds the decay to the gradients); ``--weight_decay`` is the
        decoupled (AdamW) kind, which differs for adaptive optimizers.
      seed: seed of the initial weights and of the dropout noise.
      major: ``users`` (rows are users: the user-based model) or ``items``
        (``--major items``: the runner trains on the transposed split, rows
        are items); the model itself only sees rows.
    """

    n_items: int
    n_users: int = 0
    hidden: tuple[int, ...] = (512, 512, 1024)
    activation: str = "selu"
    drop_prob: float = 0.8
    noise_prob: float = 0.0
    constrained: bool = False
    last_layer_activations: Optional[bool] = None
    aug_step: int = 1
    lam: float = 0.0
    seed: int = 0
    major: str = "users"

    def __post_init__(self) -> None:
        if self.major not in ("users", "items"):
            raise ConfigError(f"major must be users or items, got {self.major!r}")
        try:
            hidden = tuple(int(h) for h in self.hidden)
        except (TypeError, ValueError):
            raise ConfigError(f"hidden must be a list of layer widths like 512,512,1024, got {self.hidden!r}") from None
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"hidden must hold at least one positive width (e.g. --hidden_layers 512,512,1024), "
                              f"got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)
        if int(self.n_items) < 1:
            raise ConfigError(f"n_items must be positive, got {self.n_items}: the rating matrix has no columns")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation '{self.activation}'; use one of {', '.join(ACTIVATIONS)}")
        for name in ("drop_prob", "noise_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if float(self.lam) < 0:
            raise ConfigError(f"lam (the L2 weight) must be >= 0, got {self.lam}")
        if int(self.aug_step) < 0:
            raise ConfigError(f"aug_step must be >= 0 (0 turns dense re-feeding off), got {self.aug_step}")
        if self.last_layer_activations is None:
            object.__setattr__(self, "last_layer_activations", self.activation not in BOUNDED)

    @classmethod
    def from_dims(cls, n_users: int, n_items: int, **params) -> "DeepRecConfig":
        """The config for a rating matrix [n_users, n_items] (rows x columns).

        Args:
          n_users: rows (users, or items for the item-based model).
          n_items: columns = the model's input and output width.
          **params: any field of this class (the runner passes only those).
        """
        return cls(n_items=int(n_items), n_users=int(n_users), **params)


# The tuner's search space (training.tune; main.py --tune): run setting -> distribution.
DEEPREC_SPACE = {
    "model_params.major": ("choice", ["users", "items"]),
    "model_params.hidden": ("choice", [(256,), (500,), (128, 128), (512, 512, 1024)]),
    "model_params.activation": ("choice", ["selu", "elu", "sigmoid", "tanh"]),
    "model_params.drop_prob": ("float", 0.0, 0.8),
    "model_params.aug_step": ("choice", [0, 1]),
    "optim.lr": ("log", 1e-4, 1e-2),
    "optim.weight_decay": ("log", 1e-3, 10.0),
    "optim.batch_size_train": ("choice", [32, 64, 128]),
}
