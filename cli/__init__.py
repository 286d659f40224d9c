"""main.py's command line: its flags, one module per group, in the order ``--help`` lists them.

:mod:`cli.groups` imports the group modules, each of which defines its flags
on absl's global ``FLAGS`` when imported; a group module's docstring's first
line is its heading in ``--help`` (and absl's ``--helpfull`` lists the flags by
module too). :mod:`cli.help` prints the grouped help; :mod:`cli.tf_logs` keeps
TensorFlow's start-up noise off the console; :mod:`cli.config_file` reads
``--config`` files and presets. Importing the package defines no flag (the
experiments' command lines use :mod:`cli.tf_logs` beside their own flags), and
nothing here imports TensorFlow; models and data code never read flags.
"""
