"""Your own interaction files: CSV, TSV, ``::``-separated text and Parquet.

``--dataset path/to/file`` reads any table with one interaction a row. The
columns are found by name in a header (``userId``, ``user_id``, ``user``...;
``itemId``, ``movieId``, ``artist``...; ``rating``, ``weight``, ``plays``...;
``timestamp``, ``time``, ``date``...), or by position in a file without one
(``user, item[, rating[, timestamp]]``), or as told by a :class:`CustomFormat`
(``--user_col --item_col --rating_col --time_col --sep``).

* Without a rating column the data is implicit: every row is one positive
  interaction with rating 1.
* Timestamps are unix seconds or dates (ISO 8601, e.g. ``2018-03-01`` or
  ``2018-03-01T12:00:00Z``); without a time column they are -1 and the time
  protocol refuses the data.
* Ids that are whole numbers (without leading zeros) become int64, any other
  id is kept as a string.
* Repeated (user, item) rows keep the latest one, as for built-in datasets
  (:func:`data.formats._finalize`).

Text is read by pandas' C parser with inferred dtypes (the fast path); only
when a check fails does a slow pass over the lines find the first bad one, so
every error names ``file:line`` (``file: row N`` for Parquet). A text file of
:data:`CHUNKED_BYTES` or more is read in chunks when the caller asks for
progress (``progress(bytes_read, file_size)`` after each chunk).

* Text files must be UTF-8 (a BOM is fine): bytes that are not are an error
  naming ``file:line``, not replaced, since replacing them could merge two
  different ids into one (Latin-1 ``Björk`` and ``Bjérk`` would both read
  ``Bj?rk``). Convert a Latin-1 file with ``iconv -f latin1 -t utf-8``.
* A rating must fit in float32 (magnitude up to about 3.4e38) and a numeric
  timestamp in int64; larger values are refused with ``file:line``.
* A file too small for the protocol (a one-line file, or so few ratings that
  the test part would be empty) is refused by :mod:`data.protocols` with one
  line naming the setting to change.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import pandas as pd

from data.errors import ConfigError, DatasetError
from data.formats import _finalize
from data.types import Interactions

logger = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
# Text files this large are read in chunks of CHUNK_ROWS lines when progress is asked for.
CHUNKED_BYTES = 64 * 2 ** 20
CHUNK_ROWS = 1_000_000
Progress = Callable[[int, int], None]  # (bytes read, file size)
ROLES = ("user", "item", "rating", "time")
# Header names recognised for each role, compared after lower-casing and dropping
# everything but letters and digits ("User ID" == "user_id" == "userid").
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user", "users", "uid", "customerid", "customer", "visitorid", "visitor", "memberid",
             "member", "readerid", "reader", "accountid", "account", "usersha1", "clientid", "client",
             "personid", "viewerid", "listenerid", "playerid"),
    "item": ("itemid", "item", "items", "iid", "movieid", "movie", "artistid", "artist", "trackid", "track",
             "songid", "song", "productid", "product", "bookid", "book", "isbn", "asin", "videoid", "video",
             "articleid", "article", "animeid", "gameid", "businessid", "recipeid", "courseid", "jokeid",
             "sku", "artmbid", "mbid"),
    "rating": ("rating", "ratings", "rate", "score", "stars", "star", "weight", "plays", "playcount", "count",
               "counts", "value", "preference", "clicks", "views", "listens", "quantity"),
    "time": ("timestamp", "time", "date", "datetime", "ts", "unixtime", "unixtimestamp", "created", "createdat",
             "eventtime", "ratedat"),
}
# Detection order of separators in the first line: '::' before ':'-free ones, space last.
SEPARATORS = ("::", "\t", ",", ";", "|", " ")
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "tsv": "\t", "comma": ",", "csv": ",", "semicolon": ";", "pipe": "|",
              "space": " ", "colons": "::"}
_NONE = ("", "none")
_FIX = "fix or delete that line"
_INT_ID = r"-?(?:0|[1-9][0-9]{0,17})"
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Bytes that are not UTF-8 read as lone surrogates U+DC80..U+DCFF with errors="surrogateescape".
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_ENCODING_FIX = "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


@dataclasses.dataclass(frozen=True)
class CustomFormat:
    """How to read your own file; every field None means "detect".

    Attributes:
      user_col, item_col: a header name, or a field number counted from 1
        (for files without a header).
      rating_col: like ``user_col``; ``"none"`` (or ``""``) forces implicit
        data (every row a positive with rating 1); None detects a rating
        column and falls back to implicit when there is none.
      time_col: like ``rating_col``; ``"none"`` ignores any time column.
      sep: the field separator of a text file (``,`` ``\\t`` ``::`` ``;``
        ``|`` a space, or a name: ``tab``, ``comma``, ``semicolon``, ``pipe``,
        ``space``); None detects it from the first line. Ignored for Parquet.
    """

    user_col: Optional[str] = None
    item_col: Optional[str] = None
    rating_col: Optional[str] = None
    time_col: Optional[str] = None
    sep: Optional[str] = None

    def is_default(self) -> bool:
        return self == CustomFormat()

    def given(self, role: str) -> Optional[str]:
        """The column asked for ``role``, None when it is to be detected."""
        return getattr(self, f"{role}_col")


@dataclasses.dataclass
class Table:
    """The columns of a custom file, before ids become dense indices.

    Attributes:
      path: the file.
      user, item: [n] original ids (int64 where all are whole numbers, else str objects).
      rating: float32 [n], or None where the file has no rating column.
      timestamp: int64 [n] unix seconds, or None where it has no time column.
      columns: role -> the column used (header name or ``"field N"``).
    """

    path: Path
    user: np.ndarray
    item: np.ndarray
    rating: Optional[np.ndarray]
    timestamp: Optional[np.ndarray]
    columns: dict[str, str]


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A text file's shape: separator, header line, field names."""

    sep: str
    fields: tuple[str, ...]
    header: bool
    skip: int  # physical lines before the first record

    def label(self, position: int) -> str:
        return f"'{self.fields[position]}'" if self.header else f"field {position + 1}"


class _BadRow(Exception):
    """A bad value in record ``row`` (0-based, header excluded); located later."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


def is_path(name: str) -> bool:
    """Whether ``--dataset name`` names a file rather than a registered dataset.

    True for an existing file or anything written like a path (a folder
    separator or a file suffix such as ``.csv``).
    """
    p = Path(str(name)).expanduser()
    return p.is_file() or "/" in str(name) or "\\" in str(name) or bool(p.suffix)


def is_parquet(path: Path) -> bool:
    """A ``.parquet``/``.pq`` suffix, or Parquet's magic bytes at the start."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def read(path: Union[str, Path], fmt: CustomFormat = CustomFormat(), progress: Optional[Progress] = None
         ) -> Interactions:
    """Reads your own interactions file.

    Args:
      path: a CSV, TSV, ``::``-separated or Parquet file, one interaction a row.
      fmt: column mapping and separator (None fields are detected).
      progress: called as ``progress(bytes_read, file_size)`` while a large
        text file is read (see :data:`CHUNKED_BYTES`).

    Returns:
      Interactions with [n] dense user/item indices (sorted original ids),
      float32 ratings (1.0 for implicit data), int64 timestamps (-1 without a
      time column); ``name`` is the path as given.

    Raises:
      DatasetError: missing or empty file, a missing column (the message lists
        the columns found), a malformed line (``file:line``).
      ConfigError: a bad separator or an impossible column mapping.
    """
    table = read_table(path, fmt, progress=progress)
    rating = table.rating if table.rating is not None else np.ones(len(table.user), np.float32)
    return _finalize(table.user, table.item, rating, table.timestamp, str(path))


def read_table(path: Union[str, Path], fmt: CustomFormat = CustomFormat(), what: str = "interactions",
               progress: Optional[Progress] = None) -> Table:
    """The user, item and optional rating/time columns of a file, validated.

    Used by :func:`read` and to read (user, item) pairs to predict.

    Args:
      path: the file.
      fmt: column mapping and separator.
      what: what the rows are, for messages (``interactions``, ``pairs``).
      progress: see :func:`read`.

    Returns:
      A :class:`Table` of [n] arrays in file order.
    """
    path = Path(str(path)).expanduser()
    if not path.exists():
        raise DatasetError(f"no such file {path}: give the path of your CSV, TSV or Parquet file "
                           f"(or a registered dataset name)")
    if not path.is_file():
        raise DatasetError(f"{path} is a folder, not a file: give the path of your CSV, TSV or Parquet file")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path}: empty file: expected one of your {what} a line, e.g. 'user,item,rating'")
    if is_parquet(path):
        return _read_parquet(path, fmt, what)
    return _read_text(path, fmt, what, progress)


# ----------------------------------------------------------------------------- columns

def column_key(name: str) -> str:
    """A header name as compared with :data:`ALIASES`: lower case, letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _field_number(value: str) -> Optional[int]:
    """0-based position of a ``--*_col`` given as a 1-based field number, else None."""
    value = value.strip()
    return int(value) - 1 if value.isdigit() and int(value) > 0 else None


def _resolve(fields: tuple[str, ...], header: bool, fmt: CustomFormat, path: Path,
             what: str = "interactions") -> dict[str, Optional[int]]:
    """role -> 0-based column position (None: the file has no such column).

    Raises:
      DatasetError: a named column is not in the file, or the user/item
        column cannot be found; the message lists the columns found.
    """
    found = ", ".join(fields) if header else f"{len(fields)} unnamed fields"
    positions: dict[str, Optional[int]] = {}
    for role in ROLES:
        given = fmt.given(role)
        if given is None or (role in ("rating", "time") and given.strip().lower() in _NONE):
            continue
        if header and given in fields:
            positions[role] = fields.index(given)
            continue
        folded = [f for f in fields if f.lower() == given.lower()] if header else []
        number = _field_number(given)
        if len(folded) == 1:
            positions[role] = fields.index(folded[0])
        elif number is not None and number < len(fields):
            positions[role] = number
        else:
            hint = "a name of the header" if header else "a field number (1 = first), the file has no header"
            raise DatasetError(f"{path}: no column {given!r} (--{role}_col); columns found: {found}; "
                               f"pass {hint}")
    taken = set(positions.values())
    for role in ROLES:
        if role in positions or fmt.given(role) is not None:
            continue
        if header:
            names = [column_key(f) for f in fields]
            match = next((i for alias in ALIASES[role] for i, n in enumerate(names)
                          if n == alias and i not in taken), None)
        else:
            # Without a header the columns are user, item[, rating[, timestamp]].
            match = ROLES.index(role)
            match = match if match < len(fields) and match not in taken else None
        if match is not None:
            positions[role] = match
            taken.add(match)
    for role in ("user", "item"):
        if role not in positions:
            raise DatasetError(f"{path}: cannot tell which column holds the {role}s; columns found: {found}; "
                               f"pass --{role}_col NAME")
    used = [positions[r] for r in ROLES if r in positions]
    if len(set(used)) != len(used):
        clash = ", ".join(f"--{r}_col" for r in ROLES if r in positions and used.count(positions[r]) > 1)
        raise ConfigError(f"{path}: {clash} name the same column; give each role its own column")
    if "rating" not in positions and fmt.rating_col is None and what == "interactions":
        logger.warning("%s: no rating column among (%s): every row is one positive interaction (rating 1); "
                       "pass --rating_col NAME to use one", path, found)
    return {role: positions.get(role) for role in ROLES}


def _as_ids(values: pd.Series, role: str, label: str) -> np.ndarray:
    """[n] int64 ids where all are whole numbers, else str objects; empty ids are bad rows."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise _BadRow(int(np.argmax(missing)), f"empty {role} id in {label}")
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(np.int64)
    if pd.api.types.is_float_dtype(values.dtype):
        whole = np.floor(values.to_numpy()) == values.to_numpy()
        if whole.all():
            return values.to_numpy().astype(np.int64)
    # Few distinct ids: check and convert those, then expand.
    codes, uniques = pd.factorize(values.astype(str))
    uniques = pd.Series(uniques, dtype=str)
    if uniques.str.fullmatch(_INT_ID).all():
        return uniques.astype(np.int64).to_numpy()[codes]
    return uniques.to_numpy(dtype=object)[codes]


def _first_bad(bad: np.ndarray, values: pd.Series, what: str, problem: str, label: str) -> None:
    """Raises :class:`_BadRow` at the first True of ``bad`` [n]: an empty ``what``, or ``what 'value' problem``."""
    if bad.any():
        row = int(np.argmax(bad))
        value = values.iloc[row]
        reason = f"empty {what}" if pd.isna(value) else f"{what} {str(value)!r} {problem}"
        raise _BadRow(row, f"{reason} in {label}")


def _as_ratings(values: pd.Series, label: str) -> np.ndarray:
    """float32 [n] finite ratings; empty or non-numeric ones are bad rows."""
    number = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    _first_bad(~np.isfinite(number), values, "rating", "is not a finite number", label)
    # float32 would turn it into inf, and the loss into NaN.
    _first_bad(np.abs(number) > _FLOAT32_MAX, values, "rating", f"does not fit in float32 (magnitude above "
               f"{_FLOAT32_MAX:.4g})", label)
    return number.astype(np.float32)


def _as_unix(values: pd.Series, label: str) -> np.ndarray:
    """int64 [n] unix seconds from numbers (seconds) or dates; unparsable ones are bad rows."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        when = values
    else:
        number = pd.to_numeric(values, errors="coerce")
        if number.notna().all():
            seconds = np.floor(number.to_numpy(np.float64))
            # 2**63 itself is out of range; the cast would wrap around silently.
            _first_bad(~(np.abs(seconds) < 2.0 ** 63), values, "timestamp", "does not fit in 64-bit unix seconds",
                       label)
            return seconds.astype(np.int64)
        when = pd.to_datetime(values.astype(str), format="ISO8601", utc=True, errors="coerce")
    _first_bad(when.isna().to_numpy(), values, "timestamp", "is neither unix seconds nor a date like 2018-03-01",
               label)
    if when.dt.tz is not None:
        when = when.dt.tz_convert(None)
    return ((when - pd.Timestamp(0)) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _table(path: Path, frame: pd.DataFrame, positions: dict[str, Optional[int]], labels: dict[str, str]) -> Table:
    """Typed, validated columns of the frame (columns named by role); raises _BadRow."""
    user = _as_ids(frame["user"], "user", labels["user"])
    item = _as_ids(frame["item"], "item", labels["item"])
    rating = _as_ratings(frame["rating"], labels["rating"]) if positions["rating"] is not None else None
    timestamp = _as_unix(frame["time"], labels["time"]) if positions["time"] is not None else None
    columns = {role: labels[role] for role in ROLES if positions[role] is not None}
    return Table(path=path, user=user, item=item, rating=rating, timestamp=timestamp, columns=columns)


# ----------------------------------------------------------------------------- Parquet

def _read_parquet(path: Path, fmt: CustomFormat, what: str) -> Table:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable Parquet file ({' '.join(str(err).split())}); "
                           f"re-export it") from None
    fields = tuple(schema.names)
    positions = _resolve(fields, True, fmt, path, what)
    used = {role: fields[p] for role, p in positions.items() if p is not None}
    try:
        frame = pd.read_parquet(path, columns=list(dict.fromkeys(used.values())))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read the Parquet columns {', '.join(used.values())} "
                           f"({' '.join(str(err).split())}); re-export it") from None
    if not len(frame):
        raise DatasetError(f"{path}: no rows: expected one of your {what} a row")
    frame = pd.DataFrame({role: frame[name].reset_index(drop=True) for role, name in used.items()})
    try:
        return _table(path, frame, positions, {role: f"column '{name}'" for role, name in used.items()})
    except _BadRow as bad:
        raise DatasetError(f"{path}: row {bad.row + 1}: {bad.reason}; fix or drop that row") from None


# ----------------------------------------------------------------------------- text

def parse_sep(sep: Optional[str]) -> Optional[str]:
    """The separator for a ``--sep`` value (a character, ``::`` or a name); None stays None.

    Raises:
      ConfigError: an empty or unsupported separator.
    """
    if sep is None:
        return None
    value = _SEP_NAMES.get(sep.strip().lower(), sep)
    if value not in SEPARATORS:
        raise ConfigError(f"--sep {sep!r} is not supported: use one of ',', tab, '::', ';', '|', space")
    return value


def _split(line: str, sep: str) -> list[str]:
    """The fields of one line: csv quoting for one-character separators, none for '::'."""
    if sep == "::":
        return line.split("::")
    return next(csv.reader([line], delimiter=sep), [])


def _not_utf8(path: Path, lineno: int, line: str) -> Optional[DatasetError]:
    """The error for a line (read with errors="surrogateescape") holding bytes that are not UTF-8, else None."""
    match = _UNDECODABLE.search(line)
    if match is None:
        return None
    text = _UNDECODABLE.sub("\ufffd", line.rstrip("\r\n"))
    text = text if len(text) <= 120 else text[:117] + "..."
    return DatasetError(f"{path}:{lineno}: byte 0x{ord(match.group()) - 0xDC00:02x} is not valid UTF-8: "
                        f"{text!r}; {_ENCODING_FIX}")


def _first_lines(path: Path, count: int) -> list[tuple[int, str]]:
    """(0-based physical line, text) of the first ``count`` non-blank lines.

    Raises:
      DatasetError: one of them holds bytes that are not UTF-8.
    """
    out = []
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None) as f:
        for i, raw in enumerate(f):
            line = raw.rstrip("\n")
            error = _not_utf8(path, i + 1, line)
            if error is not None:
                raise error
            if line.strip():
                out.append((i, line))
                if len(out) == count:
                    break
    return out


def _layout(path: Path, fmt: CustomFormat, what: str) -> _Layout:
    lines = _first_lines(path, 2)
    if not lines:
        raise DatasetError(f"{path}: empty file: expected one of your {what} a line, e.g. 'user,item,rating'")
    first_index, first = lines[0]
    sep = parse_sep(fmt.sep)
    if sep is None:
        sep = next((s for s in SEPARATORS if s in first), None)
        if sep is None:
            raise DatasetError(f"{path}:{first_index + 1}: cannot tell the field separator of {first[:80]!r}: "
                               f"expected at least user and item separated by ',', tab, '::', ';', '|' or space; "
                               f"pass --sep")
    fields = tuple(f.strip() for f in _split(first, sep))
    if len(fields) < 2:
        raise DatasetError(f"{path}:{first_index + 1}: one field only with separator {sep!r}: {first[:80]!r}; "
                           f"expected at least user and item (pass --sep if the separator is another one)")
    named = {fmt.given(r) for r in ROLES} - {None}
    known = {a for aliases in ALIASES.values() for a in aliases}
    second = _split(lines[1][1], sep) if len(lines) > 1 else []
    header = (any(column_key(f) in known or f in named for f in fields)
              or (not any(_is_number(f) for f in fields) and any(_is_number(f) for f in second)))
    if header and len(lines) < 2:
        raise DatasetError(f"{path}: only a header line ({first[:80]!r}), no {what}")
    return _Layout(sep=sep, fields=fields, header=header, skip=first_index + 1 if header else 0)


def _read_csv(path: Path, progress: Optional[Progress], **kwargs) -> pd.DataFrame:
    """``pd.read_csv(path, **kwargs)``; a large file in chunks, calling ``progress`` after each."""
    size = path.stat().st_size
    if progress is None or size < CHUNKED_BYTES:
        return pd.read_csv(path, **kwargs)
    with open(path, "rb") as handle:
        chunks = []
        for chunk in pd.read_csv(handle, chunksize=CHUNK_ROWS, **kwargs):
            chunks.append(chunk)
            progress(min(handle.tell(), size), size)
    # Per-chunk dtypes are reconciled (int and float -> float, numbers and text -> object), as one read infers.
    return pd.concat(chunks, ignore_index=True) if chunks else pd.read_csv(path, **kwargs)


def _read_frame(path: Path, layout: _Layout, positions: dict[str, Optional[int]],
                progress: Optional[Progress] = None) -> Optional[pd.DataFrame]:
    """The used columns (named by role) plus ``extra`` (non-NaN where a line has too many fields).

    Returns None when pandas cannot parse the file (the slow pass says why).
    """
    n = len(layout.fields)
    used = {role: p for role, p in positions.items() if p is not None}
    # The C parser splits on one character: '::' becomes ':' with an empty gap
    # field between real ones, which must stay empty (else a field holds ':').
    step = 2 if layout.sep == "::" else 1
    width = n * step - (step - 1)
    # Every column is read (pandas refuses usecols naming a column no line
    # has): the spare last one is non-empty only on lines with too many fields.
    # Ids are read as text so that "007" stays "007"; the rest is inferred.
    ids = [positions[r] for r in ("user", "item") if positions[r] is not None]
    common = dict(header=None, names=[f"f{i}" for i in range(width)] + ["extra"], skiprows=layout.skip,
                  dtype={f"f{p * step}": str for p in ids}, keep_default_na=False, na_values=[""],
                  encoding="utf-8-sig", encoding_errors="strict", index_col=False)
    try:
        frame = _read_csv(path, progress, sep=layout.sep[0], engine="c", low_memory=False,
                          quoting=csv.QUOTE_NONE if step == 2 else csv.QUOTE_MINIMAL, **common)
        if step == 2 and not all(frame[f"f{i}"].isna().all() for i in range(1, width, 2)):
            step = 1
            common.update(names=[f"f{i}" for i in range(n)] + ["extra"], dtype={f"f{p}": str for p in ids})
            frame = pd.read_csv(path, sep="::", engine="python", quoting=csv.QUOTE_NONE, **common)
    except (ValueError, pd.errors.ParserError):
        return None
    out = pd.DataFrame({role: frame[f"f{p * step}"] for role, p in used.items()})
    out["extra"] = frame["extra"]
    return out


def _records(path: Path, layout: _Layout):
    """(1-based line number, fields) of each non-blank record after the header (the slow pass)."""
    # surrogateescape keeps bytes that are not UTF-8 visible to _bad_line.
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for _ in range(layout.skip):
            f.readline()
        if layout.sep == "::":
            for i, raw in enumerate(f, layout.skip + 1):
                line = raw.rstrip("\r\n")
                if line:
                    yield i, line.split("::")
            return
        reader = csv.reader(f, delimiter=layout.sep)
        for fields in reader:
            if fields:
                yield reader.line_num + layout.skip, fields


def _bad_line(path: Path, layout: _Layout, row: Optional[int], reason: Optional[str]) -> DatasetError:
    """The error for record ``row`` (or the first line with a wrong field count before it)."""
    n = len(layout.fields)
    shape = f"{n} fields separated by {layout.sep!r}" + (f" ({', '.join(layout.fields)})" if layout.header else "")
    for index, (lineno, fields) in enumerate(_records(path, layout)):
        text = layout.sep.join(fields)
        error = _not_utf8(path, lineno, text)
        if error is not None:
            return error
        text = text if len(text) <= 120 else text[:117] + "..."
        if len(fields) != n:
            return DatasetError(f"{path}:{lineno}: expected {shape}, found {len(fields)}: {text!r}; {_FIX}")
        if index == row:
            return DatasetError(f"{path}:{lineno}: {reason}: {text!r}; {_FIX}")
    return DatasetError(f"{path}: cannot parse the file as {shape}; check --sep and the column flags")


def _read_text(path: Path, fmt: CustomFormat, what: str, progress: Optional[Progress] = None) -> Table:
    layout = _layout(path, fmt, what)
    positions = _resolve(layout.fields, layout.header, fmt, path, what)
    frame = _read_frame(path, layout, positions, progress)
    if frame is None:
        raise _bad_line(path, layout, None, None)
    if not len(frame):
        raise DatasetError(f"{path}: no {what} after the header line")
    extra = frame["extra"].notna().to_numpy()
    try:
        if extra.any():
            raise _BadRow(int(np.argmax(extra)), "too many fields")
        labels = {role: layout.label(p) for role, p in positions.items() if p is not None}
        return _table(path, frame, positions, labels)
    except _BadRow as bad:
        raise _bad_line(path, layout, bad.row, bad.reason) from None


# ----------------------------------------------------------------------------- time windows

def time_window(value: str, val_fraction: float = 0.5):
    """The time-split windows of a ``--time_window`` value.

    Args:
      value: a window of DeepRec's Netflix table (``full``, ``3m``, ``6m``,
        ``1y``), or explicit inclusive ISO dates for your own data:
        ``TRAIN_START..TRAIN_END,TEST_START..TEST_END``.
      val_fraction: share of test-window ratings moved to ``val`` (explicit dates only).

    Returns:
      A :class:`data.protocols.TimeSplitConfig`.

    Raises:
      ConfigError: neither a known name nor two date ranges.
    """
    from data.protocols import NETFLIX_WINDOWS, TimeSplitConfig

    if value in NETFLIX_WINDOWS:
        return NETFLIX_WINDOWS[value]
    match = re.fullmatch(r"\s*([^.,\s]+)\.\.([^.,\s]+)\s*,\s*([^.,\s]+)\.\.([^.,\s]+)\s*", str(value))
    if match is None:
        raise ConfigError(f"unknown time window {value!r}: use one of {', '.join(NETFLIX_WINDOWS)} or dates "
                          f"TRAIN_START..TRAIN_END,TEST_START..TEST_END like 2017-01-01..2017-12-31,"
                          f"2018-01-01..2018-03-31")
    return TimeSplitConfig(*match.groups(), val_fraction=val_fraction)
