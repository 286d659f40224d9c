"""Plain containers passed between the data stages.

Data flows raw files -> :class:`Interactions` -> a protocol -> a split
(:class:`HeldoutSplit` or :class:`RatingSplit`) -> tf.data pipelines.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import scipy.sparse as sp


@dataclasses.dataclass
class Interactions:
    """A log of (user, item, rating, timestamp) events with id maps.

    Attributes:
      user: int64 [n] dense user index in ``[0, len(user_ids))``.
      item: int64 [n] dense item index in ``[0, len(item_ids))``.
      rating: float32 [n] explicit rating, or play count / 1.0 for implicit data.
      timestamp: int64 [n] unix seconds, or -1 where the source has no time.
      user_ids: [n_users] original user id of each dense index (int64 or str).
      item_ids: [n_items] original item id of each dense index (int64 or str).
      name: the dataset name (registry key or file path), for messages.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str = ""

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))


@dataclasses.dataclass
class HeldoutSplit:
    """The heldout-users protocol's output (Mult-VAE; Liang et al. 2018).

    All matrices are binary float32 CSR with one column per kept item.

    Attributes:
      train: [n_train_users, n_items] clicks of the training users.
      val_input, val_target: [n_val_users, n_items] fold-in 80% / held-out 20%.
      test_input, test_target: [n_test_users, n_items] likewise for test users.
      item_ids: [n_items] original item id of each column.
      train_user_ids, val_user_ids, test_user_ids: original ids of the rows.
    """

    train: sp.csr_matrix
    val_input: sp.csr_matrix
    val_target: sp.csr_matrix
    test_input: sp.csr_matrix
    test_target: sp.csr_matrix
    item_ids: np.ndarray
    train_user_ids: np.ndarray
    val_user_ids: np.ndarray
    test_user_ids: np.ndarray

    @property
    def task(self) -> str:
        """The models it is for (:attr:`training.recommender.Recommender.task`)."""
        return "topk"

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])


@dataclasses.dataclass
class RatingSplit:
    """A rating split (time split for DeepRec, random split for MF).

    ``train``, ``val`` and ``test`` share one shape [n_users, n_items]; a
    user's row in ``val``/``test`` holds the ratings to predict from that
    user's ``train`` row. ``val`` may have no entries.

    Attributes:
      train, val, test: float32 CSR [n_users, n_items] of ratings.
      user_ids: [n_users] original user ids of the rows.
      item_ids: [n_items] original item ids of the columns.
    """

    train: sp.csr_matrix
    val: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    train_time: Optional[sp.csr_matrix] = None

    @property
    def task(self) -> str:
        """The models it is for (:attr:`training.recommender.Recommender.task`)."""
        return "rating"

    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def transpose(self) -> "RatingSplit":
        """The item-based view: rows are items, columns are users."""
        return RatingSplit(
            train=self.train.T.tocsr(), val=self.val.T.tocsr(), test=self.test.T.tocsr(),
            user_ids=self.item_ids, item_ids=self.user_ids)
