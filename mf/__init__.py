"""tfcf: matrix factorization.

* :class:`mf.model.MatrixFactorization` (``--model mf``): low-rank MF of the
  report (seed 004), MSE, by default with user/item biases and the global mean
  (``--nouse_bias --lam 0`` is the report's plain dot product).
* :class:`mf.model.MultiTaskNet` (``--model multitask``): the CS 330 homework
  (seed 003), BPR interaction scores + a rating MLP, shared or separate embeddings.
* :mod:`mf.grid`: resumable hyper-parameter grid search to CSV.
* :mod:`mf.completion`: the report's ``n m k`` file format in, predictions out.

Configs are in :mod:`mf.config`, losses in :mod:`mf.losses`. Nothing here
imports TensorFlow until a model module is imported.
"""
