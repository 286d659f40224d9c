"""tfcf: matrix factorization.

* :class:`mf.model.MatrixFactorization` (``--model mf``): low-rank MF of the
  report (seed 004), MSE, by default with user/item biases and the global mean
  (``--nouse_bias --lam 0`` is the report's plain dot product).
* :class:`mf.model.MultiTaskNet` (``--model multitask``): the CS 330 homework
  (seed 003), BPR interaction scores + a rating MLP, shared or separate embeddings.

The grid search and the ``n m k`` completion tool are command lines in
:mod:`experiments.mf_grid` and :mod:`experiments.completion`.

Configs are in :mod:`mf.config`, losses in :mod:`mf.losses`. Nothing here
imports TensorFlow until a model module is imported.
"""
