"""main.py's command line: its flags, one module per group, in the order ``--help`` lists them.

Each group module defines its flags on absl's global ``FLAGS`` when imported;
its docstring's first line is the group's heading in ``--help`` (and absl's
``--helpfull`` lists the flags by module too). :mod:`cli.help` prints the
grouped help; :mod:`cli.tf_logs` keeps TensorFlow's start-up noise off the
console. Nothing here imports TensorFlow; models and data code never read flags.
"""

from cli import run, output, data, own_file, optim, model, vae, ease, deeprec, mf, devices  # noqa: F401 (defines)

# The groups, in the order --help shows them.
GROUPS = (run, output, data, own_file, optim, model, vae, ease, deeprec, mf, devices)
