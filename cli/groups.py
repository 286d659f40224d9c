"""main.py's flags: importing this module defines them, one module per ``--help`` group, in the order listed."""

from cli import run, output, data, own_file, optim, model, vae, ease, deeprec, mf, devices  # noqa: F401 (defines)

# The groups, in the order --help shows them.
GROUPS = (run, output, data, own_file, optim, model, vae, ease, deeprec, mf, devices)
