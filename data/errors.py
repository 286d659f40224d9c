"""The one exception type every user mistake is reported with.

`main.py` catches :class:`TfcfError`, prints its message on one line and exits
with status 2, so a user never sees a TensorFlow traceback for a mistake of
theirs (a wrong path, a bad flag value, a malformed file).
"""


class TfcfError(Exception):
    """A user-facing error whose message is one clear line."""


class DatasetError(TfcfError):
    """Unknown dataset, missing or corrupt files, malformed lines."""


class ConfigError(TfcfError):
    """A configuration value that cannot work (bad flag combination, range)."""


class TrainingError(TfcfError):
    """Training cannot go on (non-finite loss, missing export to test)."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (TensorFlow's run over several), kept short."""
    text = getattr(err, "message", None) or str(err) or type(err).__name__
    line = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."
