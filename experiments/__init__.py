"""tfcf: the experiments, thin absl command lines over the one fit wiring (:func:`training.fit.fit`).

* :mod:`experiments.deeprec_paper`: the DeepRec paper's figures and tables
  (``activation|dropout|depth|refeeding|tune``) and ``predict``; PNG, markdown, JSON.
* :mod:`experiments.mf_grid`: resumable hyper-parameter grid search for low-rank MF, one CSV row per configuration.
* :mod:`experiments.completion`: the report's ``n m k`` file format in, predictions out.
* :mod:`experiments.flags`: what they share: flag parsing with main.py's error rules (one ``error:`` line, exit 2).

Run them as ``python -m experiments.<name> --help``; their flags are main.py's names where the meaning is the same.
"""
