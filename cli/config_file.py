"""Config files and presets: flag values from a TOML file, the command line winning.

A config file holds flag names and values under ``[flags]`` and, for the
presets shipped in ``configs/<model>/<name>.toml``, how they were chosen under
``[provenance]``::

    [provenance]
    chosen_by = "python -m experiments.deeprec_paper tune --dataset ml-100k"
    validation = "RMSE 0.894 on a 5% slice of u1.base"
    date = "2026-11-20"

    [flags]
    major = "items"
    hidden_layers = [500]
    lr = 0.001

``--config FILE`` reads one; without it a training run reads the preset
``configs/<model>/<dataset>.toml`` when there is one, else the model's
``configs/<model>/default.toml`` (settings that held on every data set it
was tuned on) when there is one (``--config none``: no preset). Values from ``--config`` count as given on the command line (a
flag that does not apply to the model is refused); a preset's do not, so a
later ``--test`` of the run is not held to them.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from data.errors import ConfigError

PRESETS = Path(__file__).resolve().parents[1] / "configs"
# Flags a file may not set: what to do is the command line's, and which file to read.
NOT_IN_FILES = frozenset({"config", "train", "test", "benchmark", "compare", "recommend", "recommend_users",
                          "recommend_users_file", "predict", "output", "format", "helpfull", "help", "helpshort"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """A config file's content.

    Attributes:
      path: the file.
      flags: flag name -> value (TOML types: str, int, float, bool, lists).
      provenance: how a preset was chosen (empty for a user's own file).
      preset: True for a shipped preset picked by model and dataset.
    """

    path: Path
    flags: dict[str, Any]
    provenance: dict[str, Any]
    preset: bool = False

    def record(self) -> dict:
        """What a run's manifest records of it."""
        return {"file": str(self.path), "preset": self.preset, "provenance": self.provenance}

    def describe(self) -> str:
        """One line saying where a run's settings come from."""
        how = self.provenance.get("chosen_by")
        where = _short(self.path)
        if self.preset and self.path.stem == DEFAULT:
            return (f"settings: {where}, the {self.path.parent.name} defaults for a data set without a preset"
                    + (f" ({how})" if how else ""))
        if self.preset:
            return f"settings: preset {where}" + (f" (chosen by {how})" if how else "")
        return f"settings: {where}, then the command line's flags"


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read(path: str | Path, preset: bool = False) -> Settings:
    """Reads a config file.

    Raises:
      ConfigError: the file is missing or not valid TOML, has tables other
        than ``[flags]`` and ``[provenance]``, or sets a flag no file may set.
    """
    path = Path(path).expanduser()
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"--config {path} is a folder: give a .toml file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--config {path}: cannot read it ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"--config {path}: not valid TOML ({err})") from None
    unknown = sorted(set(content) - {"flags", "provenance"})
    if unknown or not isinstance(content.get("flags", {}), dict):
        raise ConfigError(f"--config {path}: put flag values under [flags] (and how they were chosen under "
                          f"[provenance]); found {', '.join(unknown) or 'flags that is not a table'}")
    values = content.get("flags", {})
    refused = sorted(set(values) & NOT_IN_FILES)
    if refused:
        raise ConfigError(f"--config {path}: {', '.join(refused)} belong on the command line, not in a config file")
    return Settings(path, dict(values), dict(content.get("provenance", {})), preset)


def write(path: str | Path, values: dict[str, Any], provenance: dict[str, Any]) -> Path:
    """Writes a config file :func:`read` reads back: ``[provenance]``, then ``[flags]`` (atomically)."""
    import tomli_w

    from data import files

    text = tomli_w.dumps({"provenance": provenance, "flags": {k: v for k, v in values.items() if v is not None}})
    return files.write_text(Path(path), text)


# The preset of a model on a data set it has none for: settings chosen to hold across the data sets it was tuned on.
DEFAULT = "default"


def preset_for(model: str, dataset: str, root: Path = PRESETS) -> Optional[Settings]:
    """The shipped preset of ``model`` on ``dataset``, else its ``default.toml``, or None."""
    for name in (Path(dataset).name, DEFAULT):
        path = root / model / f"{name}.toml"
        if name and path.is_file():
            return read(path, preset=True)
    return None


def shipped_name(path: Path) -> str:
    """A shipped preset as ``configs/<model>/<name>.toml``; any other file as its path."""
    path = Path(path)
    return str(path.relative_to(PRESETS.parent)) if path.is_relative_to(PRESETS.parent) else str(path)


def _as_argument(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_as_argument(v) for v in value)
    return str(value)


def apply(settings: Settings, flag_values) -> list[str]:
    """Sets the flags of ``settings`` that the command line did not give.

    Args:
      settings: what :func:`read` or :func:`preset_for` returned.
      flag_values: absl's ``FLAGS``.

    Returns:
      The names of the flags it set.

    Raises:
      ConfigError: an unknown flag, or a value the flag refuses.
    """
    set_here = []
    for name, value in settings.flags.items():
        if name not in flag_values:
            raise ConfigError(f"{_short(settings.path)}: unknown flag '{name}' (python main.py --help lists them)")
        flag = flag_values[name]
        if flag.present:
            continue  # the command line wins
        present = flag.present
        try:
            flag.parse(_as_argument(value))
        except Exception as err:  # absl raises several types for a bad value
            raise ConfigError(f"{_short(settings.path)}: {name} = {value!r}: {err}") from None
        if settings.preset:
            flag.present = present  # a preset's values are defaults, not the user's choices
        set_here.append(name)
    try:
        flag_values.validate_all_flags()
    except Exception as err:
        raise ConfigError(f"{_short(settings.path)}: {err}") from None
    return set_here
