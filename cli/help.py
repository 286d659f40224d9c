"""``--help``: the flags by group (see :data:`cli.GROUPS`), each with its default; exits 0.

absl's own ``--help`` lists the main module's flags alphabetically and exits 1;
:func:`install` replaces it (and ``--helpshort``, ``-?``) with :class:`GroupedHelp`.
absl's ``--helpfull`` (every flag, absl's included, by module) is left as it is.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from types import ModuleType
from typing import Sequence

from absl import flags

_NAME_WIDTH = 30  # the flag column, "  --name=<values>" padded
# A help text's own account of an unset flag's default, at its end: "... (default: the dataset's)."
_SAID_DEFAULT = re.compile(r"\s*\(default: ((?:[^()]|\([^()]*\))*)\)\.?$")


def _default(flag: flags.Flag) -> str:
    value = flag.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e16 else f"{value:g}"
    return str(value)


def _name(flag: flags.Flag) -> str:
    if isinstance(flag, flags.BooleanFlag):
        return f"--[no]{flag.name}"
    if isinstance(flag, flags.EnumFlag):
        return f"--{flag.name}={'|'.join(flag.parser.enum_values)}"
    return f"--{flag.name}"


def _text(flag: flags.Flag) -> str:
    """The flag's help with its default at the end: ``[default: X]``."""
    text = flag.help
    if isinstance(flag, flags.EnumFlag):  # absl prefixes "<a|b>: "; the name column shows the values
        text = text.removeprefix(f"<{'|'.join(flag.parser.enum_values)}>: ")
    said = _SAID_DEFAULT.search(text)
    if said and flag.default is None:
        text = text[:said.start()].rstrip(".") + "."
        return f"{text} [default:\xa0{said.group(1)}]"  # no line break after "default:"
    return f"{text} [default:\xa0{_default(flag)}]"


def format_help(doc: str, groups: Sequence[ModuleType], fv: flags.FlagValues = flags.FLAGS,
                width: int | None = None) -> str:
    """``doc``, then every group's heading and flags with their defaults."""
    width = width or max(80, min(120, shutil.get_terminal_size((100, 24)).columns))
    by_module = fv.flags_by_module_dict()
    out = [doc.strip(), "",
           "The flags by group, each with its default; a boolean flag is --flag or --noflag.", ""]
    wrapper = textwrap.TextWrapper(width=width, subsequent_indent=" " * _NAME_WIDTH, break_on_hyphens=False)
    for module in groups:
        title, _, note = (module.__doc__ or module.__name__).strip().partition("\n")
        out.append(f"{title.strip()}:")
        if note.strip():
            out.extend(textwrap.wrap(note.strip(), width=width, initial_indent="  ", subsequent_indent="  "))
        for flag in by_module.get(module.__name__, []):
            name = _name(flag)
            text = _text(flag)
            if len(name) + 4 <= _NAME_WIDTH:
                out.append(wrapper.fill(f"  {name:<{_NAME_WIDTH - 2}}{text}").replace("\xa0", " "))
            else:
                out.append(f"  {name}")
                out.append(wrapper.fill(" " * _NAME_WIDTH + text).replace("\xa0", " "))
        out.append("")
    out.append("--helpfull lists absl's own flags too.")
    return "\n".join(out) + "\n"


class GroupedHelp(flags.BooleanFlag):
    """A ``--help`` that prints :func:`format_help` on stdout and exits 0."""

    def __init__(self, name: str, short_name: str | None, doc: str, groups: Sequence[ModuleType]) -> None:
        super().__init__(name, False, "show the flags by group, with their defaults", short_name=short_name,
                         allow_hide_cpp=True)
        self._doc, self._groups = doc, groups

    def parse(self, argument) -> None:
        if self._parse(argument):
            sys.stdout.write(format_help(self._doc, self._groups))
            sys.stdout.flush()
            sys.exit(0)


def install(doc: str, groups: Sequence[ModuleType], fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines absl's help flags, then replaces ``--help``/``-?`` and ``--helpshort`` with :class:`GroupedHelp`."""
    from absl import app

    app.define_help_flags()  # idempotent: app.run will not define them again
    for name, short in (("help", "?"), ("helpshort", None)):
        if name in fv and isinstance(fv[name], GroupedHelp):
            continue
        for old in (name, short):
            if old is not None and old in fv:
                delattr(fv, old)
        flags.DEFINE_flag(GroupedHelp(name, short, doc, groups), fv, module_name="absl.app")
