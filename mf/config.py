"""Hyper-parameters of the matrix-factorization models.

Field names match ``main.py``'s flags (``--rank``, ``--use_bias``, ``--lam``,
``--embedding_dim``, ``--layer_sizes``, ``--factorization_weight``,
``--regression_weight``, ``--no_shared_embeddings``, ``--bpr_form``): the
runner passes every flag whose name is a field here.
"""

from __future__ import annotations

import dataclasses
import math

from data.errors import ConfigError

BPR_FORMS = ("homework", "log")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_dims(n_users: int, n_items: int) -> None:
    _require(n_users >= 1 and n_items >= 1,
             f"matrix factorization needs at least one user and one item, got {n_users} users x {n_items} items")


@dataclasses.dataclass(frozen=True)
class _RatingMatrix:
    """The shape every config here starts with, and the factory the model families call."""

    n_users: int
    n_items: int

    @classmethod
    def from_dims(cls, n_users: int, n_items: int, **params):
        """The config for a [n_users, n_items] rating split and the user's parameters."""
        return cls(n_users=int(n_users), n_items=int(n_items), **params)


@dataclasses.dataclass(frozen=True)
class MFConfig(_RatingMatrix):
    """Low-rank matrix factorization (seed 004) with optional biases.

    Prediction ``r_ui = p_u . q_i`` (report) and, with ``use_bias`` (the
    default), ``mu + b_u + b_i + p_u . q_i`` where ``mu`` is the running mean of the
    training ratings the model has seen (not trained: see
    :class:`mf.model.MatrixFactorization`).

    Attributes:
      n_users, n_items: rows and columns of the rating matrix.
      rank: width of the user and item factors (the report's 25).
      use_bias: add the global mean and user/item biases.
      lam: L2 weight on the factors and biases of each rating in the batch,
        ``lam * mean_b(|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` (Funk/Surprise
        style: a user's factors are penalised once per rating of theirs).
        The runner's ``--weight_decay`` (decoupled AdamW, the report's "Adam
        with weight decay") is separate and, at 1e-5 x lr per step, far too
        weak on its own: on ML-100K u1.base's 90/10 split (rank 25) the
        validation RMSE was 0.959 with ``lam=0`` (lr 1e-3, init 0.1) and
        0.917 with the defaults (lr 3e-3).
      init_std: standard deviation of the normal init of the factors (biases
        start at 0). The report's N(0, 1) makes initial dot products of
        magnitude sqrt(rank) = 5 on a 1..5 scale; 0.01 starts at the biases'
        prediction and generalised better than 0.1 (0.917 vs 0.922, lr 3e-3).
      seed: seed of the initializers.

    The report's plain model is ``use_bias=False, lam=0`` (``--nouse_bias --lam 0``).
    """

    rank: int = 25
    use_bias: bool = True
    lam: float = 0.1
    init_std: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        _check_dims(self.n_users, self.n_items)
        _require(int(self.rank) >= 1, f"--rank must be >= 1, got {self.rank}")
        _require(self.lam >= 0 and math.isfinite(self.lam), f"--lam must be a finite number >= 0, got {self.lam}")
        _require(self.init_std > 0, f"init_std must be > 0, got {self.init_std}")


@dataclasses.dataclass(frozen=True)
class MultiTaskConfig(_RatingMatrix):
    """MultiTaskNet of the CS 330 homework (seed 003).

    Attributes:
      n_users, n_items: rows and columns of the rating matrix.
      embedding_dim: width d of the user and item embeddings (32).
      layer_sizes: input widths of the rating MLP's layers, as the homework
        defines them: the first is the width of ``[u, q, u*q]`` (3 d) and each
        further size adds a ReLU layer of that width; a final linear layer
        maps to one rating. (96, 64) = Linear(96, 64), ReLU, Linear(64, 1).
        The leading 3 d may be left out: with d = 32, (64,) is (96, 64), and
        with d = 8, (16,) is (24, 16). The default is the homework's (3 d, 64).
      factorization_weight: weight of the BPR loss (lambda_F).
      regression_weight: weight of the rating MSE (lambda_R).
      shared_embeddings: one set of embeddings for both tasks (True) or one
        set per task (False, ``--no_shared_embeddings``).
      bpr_form: ``homework``: mean(1 - sigmoid(p+ - p-)) (eq. 3), or ``log``:
        mean(-log sigmoid(p+ - p-)) (Rendle et al.).
      seed: seed of the initializers.
    """

    embedding_dim: int = 32
    # Completed to (3 d, 64) = (96, 64) by __post_init__.
    layer_sizes: tuple[int, ...] = (64,)
    factorization_weight: float = 0.99
    regression_weight: float = 0.01
    shared_embeddings: bool = True
    bpr_form: str = "homework"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_sizes", tuple(int(s) for s in self.layer_sizes))
        _check_dims(self.n_users, self.n_items)
        d = int(self.embedding_dim)
        _require(d >= 1, f"--embedding_dim must be >= 1, got {self.embedding_dim}")
        _require(len(self.layer_sizes) >= 1 and all(s >= 1 for s in self.layer_sizes),
                 f"--layer_sizes must be positive widths, got {','.join(map(str, self.layer_sizes)) or 'nothing'}")
        if self.layer_sizes[0] != 3 * d:
            object.__setattr__(self, "layer_sizes", (3 * d,) + self.layer_sizes)
        for name in ("factorization_weight", "regression_weight"):
            value = getattr(self, name)
            _require(value >= 0 and math.isfinite(value), f"--{name} must be a finite number >= 0, got {value}")
        _require(self.factorization_weight + self.regression_weight > 0,
                 "--factorization_weight and --regression_weight are both 0: nothing to train")
        _require(self.bpr_form in BPR_FORMS,
                 f"unknown --bpr_form '{self.bpr_form}'; use {' or '.join(BPR_FORMS)}")


# The tuner's search spaces (training.tune; main.py --tune): run setting -> distribution.
MF_SPACE = {
    "model_params.rank": ("int", 5, 100),
    "model_params.lam": ("log", 1e-3, 1.0),
    "optim.lr": ("log", 1e-3, 1e-2),
}
MULTITASK_SPACE = {
    "model_params.embedding_dim": ("choice", [16, 32, 64]),
    "model_params.shared_embeddings": ("choice", [True, False]),
    "model_params.factorization_weight": ("float", 0.0, 1.0),
    "optim.weight_decay": ("log", 1e-3, 1.0),
    "optim.lr": ("log", 3e-4, 3e-3),
}
