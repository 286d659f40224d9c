"""What the experiment CLIs share: absl flag parsing with main.py's error rules, and the two entry points.

Each CLI defines its own flags in a ``define_flags(fv)`` function of its
module (main.py's names where the meaning is the same) and a
``body(fv, args) -> int`` that runs the command. Nothing is defined at import
time, so the modules import side by side with main.py (whose flags live on
absl's global ``FLAGS``):

* :func:`main` (tests, other code): a fresh ``FlagValues`` per call.
* :func:`cli` (``python -m experiments.X``): the global ``FLAGS`` through
  ``absl.app.run``, so ``--help`` and ``--helpfull`` work.

Every user mistake is one line ``error: ...`` on stderr and exit status 2: a
bad flag value (parsed like main.py's ``_parse_flags``) or a
:class:`data.errors.TfcfError` raised by the command.

Both entry points also take main.py's ``--tf_logs``: TensorFlow's C++
start-up noise (CUDA plugin registration, cuInit on a machine without a GPU)
stays off the console unless it is given or ``TFCF_TF_LOGS=1`` (main.py's
:mod:`cli.tf_logs`).
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Optional, Sequence

from absl import app, flags

from cli import tf_logs

Define = Callable[[flags.FlagValues], None]
Body = Callable[[flags.FlagValues, list], int]

flags.disclaim_key_flags()  # --tf_logs, defined here, belongs to the program's module: --help lists it


def define_tf_logs(fv: flags.FlagValues) -> None:
    """main.py's ``--tf_logs`` on ``fv``."""
    flags.DEFINE_bool("tf_logs", False, "Show TensorFlow's C++ start-up log lines (CUDA plugin registration, cuInit "
                      "on CPU machines), hidden by default; also TFCF_TF_LOGS=1.", flag_values=fv)


def parse(fv: flags.FlagValues, argv: Sequence[str]) -> list[str]:
    """``fv(argv)`` with a bad or unknown flag as one line and exit status 2 (absl prints usage and exits 1)."""
    try:
        return fv(list(argv))
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def guarded(body: Body, fv: flags.FlagValues, args: list) -> int:
    """Runs ``body``; a :class:`data.errors.TfcfError` is one ``error:`` line and status 2."""
    from data.errors import TfcfError

    try:
        return body(fv, args)
    except TfcfError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(define: Define, body: Body, argv: Sequence[str], prog: str) -> int:
    """Parses ``argv`` (without the program name) into fresh flags and runs ``body``; returns the exit status."""
    fv = flags.FlagValues()
    define(fv)
    define_tf_logs(fv)
    try:
        args = fv([prog, *map(str, argv)])
    except flags.Error as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tf_logs.import_tensorflow(show=fv.tf_logs)  # nothing more where TensorFlow is already imported
    return guarded(body, fv, args[1:])


def cli(define: Define, body: Body) -> None:
    """The ``__main__`` entry point: flags on absl's ``FLAGS`` (listed by ``--help``), then ``app.run``."""
    tf_logs.default_level()  # before TensorFlow is first imported
    from absl import logging

    fv = flags.FLAGS
    define(fv)  # defined from the program's module: --help lists them
    define_tf_logs(fv)

    def run(argv: list) -> int:
        tf_logs.import_tensorflow(show=fv.tf_logs)
        # TensorFlow's savers log every checkpoint at INFO through absl: keep the console to our own lines.
        logging.set_verbosity(logging.WARNING)
        return guarded(body, fv, argv[1:])

    app.run(run, flags_parser=lambda argv: parse(fv, argv))


# --- validators and parsing helpers shared by the CLIs ---------------------------------------
def positive_ints(values: Optional[Sequence[str]]) -> bool:
    return values is None or all(str(v).strip().isdigit() and int(v) > 0 for v in values)


def finite_positive(value: Optional[float]) -> bool:
    return value is None or (math.isfinite(value) and value > 0)


def numbers(kind: type) -> Callable[[Optional[Sequence[str]]], bool]:
    """A validator: every item of a list flag parses as ``kind`` (and there is at least one)."""
    def check(values: Optional[Sequence[str]]) -> bool:
        if values is None:
            return True
        try:
            parsed = [kind(v) for v in values]
        except ValueError:
            return False
        return bool(parsed) and all(math.isfinite(v) for v in parsed)
    return check


def validate(fv: flags.FlagValues, name: str, check: Callable, message: str) -> None:
    """Registers ``check`` for ``--name`` on ``fv``; a failure is ``error: <message>`` at parse time."""
    flags.register_validator(name, check, message=message, flag_values=fv)


def validate_like_main(fv: flags.FlagValues) -> None:
    """main.py's rules for the single-valued --lr and for --lr_milestones / --hidden_layers, where ``fv`` has them."""
    if "lr" in fv and fv["lr"].flag_type() == "float":
        validate(fv, "lr", finite_positive, "--lr must be a finite number > 0")
    for name in ("lr_milestones", "hidden_layers"):
        if name in fv:
            validate(fv, name, positive_ints, f"--{name} takes whole numbers > 0 separated by commas, e.g. 600,200")


def refuse(fv: flags.FlagValues, names: Sequence[str], why: str) -> None:
    """Refuses the flags of ``names`` given on the command line (they would be silently ignored)."""
    from data.errors import ConfigError

    for name in names:
        if fv[name].present:
            raise ConfigError(f"--{name} {why}; drop it")
