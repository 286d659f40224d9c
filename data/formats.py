"""Parsers of the raw files of each dataset, all ending in :class:`Interactions`.

Every parser reads with pandas' C parser and explicit dtypes (the fast path).
Only when that fails, or a post-check finds a bad value, a slow line-by-line
pass locates the first bad line so the error can say ``file:line``. Every
parser ends in :func:`_finalize`, the one place that drops duplicate (user,
item) rows and maps original ids to dense indices.

The Netflix Prize parser streams: it reads blocks of whole lines of bounded
size, parses each block vectorized, and keeps only compact numpy arrays.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import logging
import math
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from data.errors import DatasetError
from data.types import Interactions

logger = logging.getLogger(__name__)

MOVIELENS_RANGE = (0.5, 5.0)
NETFLIX_RANGE = (1.0, 5.0)
# Play counts: any non-negative number.
PLAYS_RANGE = (0.0, math.inf)
ANY_RANGE = (-math.inf, math.inf)

_FIX = "fix or delete that line, or re-download the dataset"
# Ratings are held as float32: a larger magnitude would silently become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64 = np.iinfo(np.int64)
# With errors="surrogateescape" each byte that is not valid UTF-8 reads as one
# lone surrogate U+DC80..U+DCFF, which no valid UTF-8 text contains.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass(frozen=True)
class _Format:
    """A delimited ratings file: one event per line.

    Attributes:
      sep: the field separator as written in the file (``"::"`` for .dat).
      kinds: one of ``"int"``, ``"float"``, ``"str"`` (non-empty) or ``"str?"``
        (may be empty) per field, in file order.
      rating: index of the field checked against ``rating_range``.
      rating_range: inclusive bounds of a valid rating.
      header: the exact first line, or None when the file has no header.
      encoding: the file's text encoding.
      either: indices of optional fields of which at least one must be non-empty.
    """

    sep: str
    kinds: tuple[str, ...]
    rating: int
    rating_range: tuple[float, float]
    header: Optional[str] = None
    encoding: str = "utf-8"
    either: tuple[int, ...] = ()


_U_DATA = _Format("\t", ("int", "int", "float", "int"), 2, MOVIELENS_RANGE)
_ML_DAT = _Format("::", ("int", "int", "float", "int"), 2, MOVIELENS_RANGE)
_ML_CSV = _Format(",", ("int", "int", "float", "int"), 2, MOVIELENS_RANGE,
                  header="userId,movieId,rating,timestamp")
_LASTFM_2K = _Format("\t", ("int", "int", "float"), 2, PLAYS_RANGE, header="userID\tartistID\tweight")
# An artist needs a MusicBrainz id or a name to be keyed by.
_LASTFM_360K = _Format("\t", ("str", "str?", "str?", "float"), 3, PLAYS_RANGE, either=(1, 2))
_PINTEREST = _Format("\t", ("int", "int", "float", "int"), 2, ANY_RANGE)
# The official ML-100K folds (u1.base, u1.test, ... ua/ub): like u.data, and
# every rating is a whole star 1..5.
_ML100K_FOLD = _Format("\t", ("int", "int", "int", "int"), 2, (1.0, 5.0))

_PANDAS_DTYPE = {"int": "int64", "float": "float32", "str": str, "str?": str}


def _bad_line(path: Path, lineno: int, reason: str, text: str) -> DatasetError:
    text = _UNDECODABLE.sub("\ufffd", text.rstrip("\r\n"))
    if len(text) > 120:
        text = text[:117] + "..."
    return DatasetError(f"{path}:{lineno}: {reason}: {text!r}; {_FIX}")


def _check_field(kind: str, value: str) -> Optional[str]:
    """Why ``value`` is not a valid ``kind`` field, or None if it is."""
    if kind == "str?":
        return None
    if kind == "str":
        return None if value else "expected a non-empty field"
    try:
        number = int(value) if kind == "int" else float(value)
    except ValueError:
        return f"expected {'an integer' if kind == 'int' else 'a number'}, got {value!r}"
    if kind == "int" and not _INT64.min <= number <= _INT64.max:
        return f"integer {value!r} does not fit in 64 bits"
    if kind == "float" and not math.isfinite(number):
        return f"expected a finite number, got {value!r}"
    if kind == "float" and abs(number) > FLOAT32_MAX:
        return f"number {value!r} does not fit in float32 (magnitude above {FLOAT32_MAX:.4g})"
    return None


def _undecodable(line: str, encoding: str) -> Optional[str]:
    """Why ``line`` (read with errors="surrogateescape") is not valid ``encoding``, or None."""
    match = _UNDECODABLE.search(line)
    if match is None:
        return None
    byte = ord(match.group()) - 0xDC00
    return f"byte 0x{byte:02x} at column {match.start() + 1} is not valid {encoding.upper()}"


def _line_problem(fmt: _Format, line: str) -> Optional[str]:
    """Why one data line of ``fmt`` is bad, or None (the slow, obvious check)."""
    fields = line.split(fmt.sep)
    if len(fields) != len(fmt.kinds):
        return f"expected {len(fmt.kinds)} fields separated by {fmt.sep!r}, found {len(fields)}"
    for kind, value in zip(fmt.kinds, fields):
        problem = _check_field(kind, value)
        if problem:
            return problem
    if fmt.either and not any(fields[i] for i in fmt.either):
        return f"fields {', '.join(str(i + 1) for i in fmt.either)} are all empty"
    low, high = fmt.rating_range
    if not low <= float(fields[fmt.rating]) <= high:
        return f"rating {fields[fmt.rating]} outside [{low:g}, {high:g}]"
    return None


def _find_bad_line(path: Path, fmt: _Format) -> Optional[DatasetError]:
    """The error for the first bad line of ``path``, or None if all look fine."""
    with open(path, encoding=fmt.encoding, errors="surrogateescape", newline=None) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            problem = _undecodable(line, fmt.encoding)
            if problem:
                return _bad_line(path, lineno, problem, line)
            if lineno == 1 and fmt.header is not None:
                if line != fmt.header:
                    return _bad_line(path, 1, f"expected the header {fmt.header!r}", line)
                continue
            if not line:
                continue  # pandas skips blank lines too
            problem = _line_problem(fmt, line)
            if problem:
                return _bad_line(path, lineno, problem, line)
    return None


def _fast_read(path: Path, fmt: _Format) -> Optional[list[np.ndarray]]:
    """The pandas fast path of :func:`_read_table`; None when anything is off."""
    # The C parser only splits on one character: '::' becomes ':' with an empty
    # "gap" field between real ones, which must stay empty.
    step = len(fmt.sep)
    gaps = ("gap",) * (step - 1)
    kinds = [fmt.kinds[0]] + [k for kind in fmt.kinds[1:] for k in (*gaps, kind)]
    dtype = {i: ("float32" if kind == "gap" else _PANDAS_DTYPE[kind]) for i, kind in enumerate(kinds)}
    try:
        # A number too large for float32 becomes inf (refused below) with a numpy warning users need not see.
        with np.errstate(over="ignore"):
            frame = pd.read_csv(
                path, sep=fmt.sep[0], header=None, skiprows=1 if fmt.header is not None else 0,
                dtype=dtype, quoting=csv.QUOTE_NONE, na_values=[""], keep_default_na=False,
                encoding=fmt.encoding, engine="c")
    except (ValueError, OverflowError, pd.errors.ParserError):
        # pandas names the problem (bad number, int64 overflow, bytes that are
        # not UTF-8) but not reliably the file line: the slow pass does.
        return None
    if frame.shape[1] != len(kinds) or not len(frame):
        return None
    fields = [frame[i * step] for i in range(len(fmt.kinds))]
    rating = fields[fmt.rating].to_numpy()
    low, high = fmt.rating_range
    if not np.all((rating >= low) & (rating <= high)):
        return None
    # float32 parsing turns a too large number into inf, which an open range would accept.
    if any(not np.isfinite(field.to_numpy()).all() for field, kind in zip(fields, fmt.kinds) if kind == "float"):
        return None
    # Only '' is a missing value here, so NaN marks an empty field.
    if any(frame[i].notna().any() for i, kind in enumerate(kinds) if kind == "gap"):
        return None
    if any(field.isna().any() for field, kind in zip(fields, fmt.kinds) if kind == "str"):
        return None
    if fmt.either and not np.logical_or.reduce([fields[i].notna().to_numpy() for i in fmt.either]).all():
        return None
    if fmt.header is not None:
        with open(path, encoding=fmt.encoding, errors="replace", newline=None) as f:
            if f.readline().rstrip("\n") != fmt.header:
                return None
    return [field.to_numpy() for field in fields]


def _read_table(path: Path, fmt: _Format) -> list[np.ndarray]:
    """Reads all fields of a delimited ratings file, validated.

    Args:
      path: the file.
      fmt: its layout.

    Returns:
      One [n] array per field of ``fmt.kinds``: int64, float32 or object strings
      (NaN where an optional string field is empty).

    Raises:
      DatasetError: the file is missing, empty or has a bad line (file:line).
    """
    if not path.is_file():
        raise DatasetError(f"missing file {path}; re-download the dataset or fix the mirror folder")
    columns = _fast_read(path, fmt)
    if columns is not None:
        return columns
    error = _find_bad_line(path, fmt)
    if error is not None:
        raise error
    raise DatasetError(f"{path}: no ratings could be read (empty file or bad encoding); re-download the dataset")


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense int64 codes in order of the sorted unique values, and those values."""
    codes, uniques = pd.factorize(values, sort=True)
    uniques = np.asarray(uniques)
    if uniques.dtype.kind in "iu":
        uniques = uniques.astype(np.int64)
    elif uniques.dtype.kind != "O":
        uniques = uniques.astype(object)
    return codes.astype(np.int64, copy=False), uniques


def _finalize(user: np.ndarray, item: np.ndarray, rating: np.ndarray, timestamp: Optional[np.ndarray],
              name: str) -> Interactions:
    """The shared end of every parser: dedupe, dense ids, dtypes.

    Of several rows with the same (user, item) the one with the latest
    timestamp is kept; ties keep the one written last. The number dropped is
    logged as one warning.

    Args:
      user: [n] original user ids (ints or strings), in file order.
      item: [n] original item ids.
      rating: [n] ratings or play counts.
      timestamp: [n] unix seconds, or None where the source has no time.
      name: dataset name for messages and ``Interactions.name``.

    Returns:
      Interactions in file order (less dropped duplicates), with user/item
      ids mapped to dense indices by sorted original id.
    """
    n = len(user)
    if timestamp is None:
        timestamp = np.full(n, -1, dtype=np.int64)
    user_code, user_ids = _factorize(user)
    item_code, item_ids = _factorize(item)
    rating = np.asarray(rating, dtype=np.float32)
    timestamp = np.asarray(timestamp, dtype=np.int64)
    key = user_code * np.int64(len(item_ids)) + item_code
    sorted_key = np.sort(key)
    repeated = np.unique(sorted_key[1:][sorted_key[1:] == sorted_key[:-1]])
    del sorted_key
    if repeated.size:
        # Only rows of repeated pairs need the (slower) sort by pair then time;
        # lexsort is stable, so equal times keep file order and the last row wins.
        rows = np.flatnonzero(np.isin(key, repeated))
        order = rows[np.lexsort((timestamp[rows], key[rows]))]
        group = key[order]
        superseded = order[:-1][group[1:] == group[:-1]]
        keep = np.ones(n, dtype=bool)
        keep[superseded] = False
        user_code, item_code = user_code[keep], item_code[keep]
        rating, timestamp = rating[keep], timestamp[keep]
        logger.warning("%s: dropped %d duplicate (user, item) rows, keeping the latest by timestamp",
                       name, len(superseded))
    return Interactions(user=user_code, item=item_code, rating=rating, timestamp=timestamp,
                        user_ids=user_ids, item_ids=item_ids, name=name)


def _parse_table(folder: Path, files: Sequence[str], fmt: _Format) -> Interactions:
    folder = Path(folder)
    parts = [_read_table(folder / file, fmt) for file in files]
    columns = [np.concatenate(column) for column in zip(*parts)]
    timestamp = columns[3] if len(columns) > 3 and fmt.kinds[3] == "int" else None
    return _finalize(columns[0], columns[1], columns[2], timestamp, folder.name)


def parse_ml100k(folder: Path) -> Interactions:
    """MovieLens 100K ``u.data``: ``user \\t item \\t rating \\t unix time``.

    Args:
      folder: the ``ml-100k`` folder.

    Returns:
      Interactions with [n] arrays; ratings 1-5.
    """
    return _parse_table(folder, ["u.data"], _U_DATA)


def read_ml100k_ratings(path: Path) -> list[np.ndarray]:
    """One official ML-100K fold file (``u1.base``, ``u1.test``, ... ``ub.test``), validated.

    Each line is ``user \\t item \\t rating \\t unix time`` with a whole-star
    rating 1..5. A line cut short (a truncated file), a rating such as 0, 6
    or 3.5, or bytes that are not UTF-8 are refused with ``file:line``.

    Args:
      path: the file.

    Returns:
      [user, item, rating, timestamp]: four int64 [n] arrays in file order.

    Raises:
      DatasetError: missing or empty file, or a bad line (``file:line: reason``).
    """
    return _read_table(Path(path), _ML100K_FOLD)


def parse_ml_dat(folder: Path) -> Interactions:
    """MovieLens 1M / 10M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``.

    Args:
      folder: the ``ml-1m`` or ``ml-10M100K`` folder.

    Returns:
      Interactions with [n] arrays; ratings 0.5-5.
    """
    return _parse_table(folder, ["ratings.dat"], _ML_DAT)


def parse_ml_csv(folder: Path) -> Interactions:
    """MovieLens 20M / latest ``ratings.csv``: header ``userId,movieId,rating,timestamp``.

    CRLF line ends and half stars are fine.

    Args:
      folder: the ``ml-20m`` or ``ml-latest-small`` folder.

    Returns:
      Interactions with [n] arrays; ratings 0.5-5.
    """
    return _parse_table(folder, ["ratings.csv"], _ML_CSV)


def parse_lastfm2k(folder: Path) -> Interactions:
    """HetRec 2011 Last.fm ``user_artists.dat``: header ``userID artistID weight``.

    Args:
      folder: the ``hetrec2011-lastfm-2k`` folder.

    Returns:
      Interactions with rating = play count (weight) and timestamp -1.
    """
    return _parse_table(folder, ["user_artists.dat"], _LASTFM_2K)


def parse_pinterest(folder: Path) -> Interactions:
    """Pinterest-20 of the NCF paper: train and test ``.rating`` files concatenated.

    Each line is ``user \\t item \\t rating \\t timestamp``.

    Args:
      folder: the ``pinterest-20`` folder.

    Returns:
      Interactions with [n] arrays, train rows first.
    """
    return _parse_table(folder, ["pinterest-20.train.rating", "pinterest-20.test.rating"], _PINTEREST)


def parse_lastfm360k(folder: Path) -> Interactions:
    """Last.fm 360K ``usersha1-artmbid-artname-plays.tsv``.

    An artist is keyed by its MusicBrainz id, or by its name where the id is
    empty.

    Args:
      folder: the ``lastfm-dataset-360K`` folder.

    Returns:
      Interactions with string user/item ids, rating = plays, timestamp -1.
    """
    folder = Path(folder)
    user, mbid, artist, plays = _read_table(folder / "usersha1-artmbid-artname-plays.tsv", _LASTFM_360K)
    mbid = pd.Series(mbid, dtype=object)
    item = mbid.where(mbid.notna(), pd.Series(artist, dtype=object).fillna("")).to_numpy(dtype=object)
    return _finalize(np.asarray(user, dtype=object), item, plays, None, folder.name)


# ----------------------------------------------------------------------------- Netflix

_NETFLIX_MOVIE = re.compile(rb"\d+:\r?$")


def netflix_files(folder: Path) -> list[Path]:
    """The Netflix rating files in ``folder``: ``training_set/mv_*.txt`` or ``combined_data_*.txt``.

    Args:
      folder: the user-supplied ``netflix`` folder.

    Returns:
      The files in a stable order (sorted by name); empty if neither layout is there.
    """
    folder = Path(folder)
    files = sorted((folder / "training_set").glob("mv_*.txt"))
    return files or sorted(folder.glob("combined_data_*.txt"))


def _line_blocks(paths: Sequence[Path], chunk_bytes: int) -> Iterator[tuple[bytes, list[Path]]]:
    """Blocks of whole lines of about ``chunk_bytes`` across files, with the files they came from.

    Files are concatenated in order (each ends with a newline in its block);
    memory is bounded by ``chunk_bytes`` plus the longest line.
    """
    pending: list[bytes] = []
    sources: list[Path] = []
    size = 0
    for path in paths:
        checked = False
        tail = b""
        with open(path, "rb") as f:
            while True:
                data = f.read(chunk_bytes)
                eof = not data
                data = tail + data
                cut = len(data) if eof else data.rfind(b"\n") + 1
                head = data[:cut].lstrip(b"\r\n") if not checked else b""
                if head:
                    # A file's lines before its first movie would silently join the previous movie.
                    first = head.split(b"\n", 1)[0]
                    if not _NETFLIX_MOVIE.match(first):
                        raise _bad_line(path, 1, "a Netflix file must start with a line 'MovieID:'",
                                        first.decode("utf-8", "replace"))
                    checked = True
                if cut:
                    block = data[:cut]
                    if eof and not block.endswith(b"\n"):
                        block += b"\n"
                    if pending and size + len(block) > chunk_bytes:
                        yield b"".join(pending), sources
                        pending, sources, size = [], [], 0
                    pending.append(block)
                    size += len(block)
                    if not sources or sources[-1] != path:
                        sources.append(path)
                tail = data[cut:]
                if eof:
                    break
    if pending:
        yield b"".join(pending), sources


def _netflix_line_problem(line: str) -> Optional[str]:
    fields = line.split(",")
    if len(fields) == 1:
        if re.fullmatch(r"\d+:", line):
            return None
        return "expected 'MovieID:' or 'CustomerID,Rating,YYYY-MM-DD'"
    if len(fields) != 3:
        return f"expected 'CustomerID,Rating,YYYY-MM-DD', found {len(fields)} fields"
    problem = _check_field("int", fields[0]) or _check_field("int", fields[1])
    if problem:
        return problem
    low, high = NETFLIX_RANGE
    if not low <= float(fields[1]) <= high:
        return f"rating {fields[1]} outside [{low:g}, {high:g}]"
    try:
        datetime.datetime.strptime(fields[2].strip(), "%Y-%m-%d")
    except ValueError:
        return f"expected a date YYYY-MM-DD, got {fields[2]!r}"
    return None


def _find_netflix_error(paths: Iterable[Path]) -> Optional[DatasetError]:
    for path in paths:
        with open(path, encoding="utf-8", errors="replace", newline=None) as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.rstrip("\n")
                if line.strip():
                    problem = _netflix_line_problem(line)
                    if problem:
                        return _bad_line(path, lineno, problem, line)
    return None


def _dates_to_unix(dates: pd.Series) -> np.ndarray:
    """int64 [n] unix seconds of midnight UTC of ``YYYY-MM-DD`` strings.

    Only the few distinct dates are parsed (about 2,200 in the whole Netflix set).
    """
    codes, uniques = pd.factorize(dates)
    days = pd.to_datetime(pd.Series(uniques, dtype=object), format="%Y-%m-%d")
    seconds = days.to_numpy().astype("datetime64[s]").astype(np.int64)
    return seconds[codes]


def _parse_netflix_block(block: bytes, movie: Optional[int]) -> Optional[tuple[np.ndarray, ...]]:
    """Parses one block of whole lines vectorized.

    Args:
      block: whole lines of the Netflix layout.
      movie: the movie of the previous block's last line (None at the start).

    Returns:
      (item [m], customer [m], rating [m], unix time [m], last movie) for the
      m rating lines, or None if anything is malformed (then the slow pass
      finds the line).
    """
    # "123:" becomes "123,," so every line parses as three fields with an
    # integer first column; a colon anywhere else is left to fail the parse.
    movies_expected = block.count(b":")
    block = block.replace(b":\n", b",,\n").replace(b":\r\n", b",,\r\n")
    try:
        frame = pd.read_csv(io.BytesIO(block), sep=",", header=None, names=["a", "r", "d"],
                            dtype={"a": "int64", "r": "float32", "d": str}, quoting=csv.QUOTE_NONE,
                            na_values=[""], keep_default_na=False, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    ratings = frame["r"].to_numpy()
    dates = frame["d"]
    is_movie = np.isnan(ratings) & dates.isna().to_numpy()
    rows = ~is_movie
    # A rating line with empty fields would pass for a movie line: the count of colons tells.
    if int(is_movie.sum()) != movies_expected or dates[rows].isna().any():
        return None
    rating = ratings[rows]
    low, high = NETFLIX_RANGE
    if not np.all((rating >= low) & (rating <= high) & (rating == np.floor(rating))):
        return None
    first = frame["a"].to_numpy()
    try:
        timestamp = _dates_to_unix(dates[rows])
    except (ValueError, TypeError):
        return None
    # Each rating line belongs to the nearest movie line above it, maybe in an earlier block.
    positions = np.where(is_movie, np.arange(len(frame)), -1)
    owner = np.maximum.accumulate(positions)[rows]
    if len(owner) and owner[0] < 0 and movie is None:
        return None
    item = np.where(owner >= 0, first[np.maximum(owner, 0)], -1 if movie is None else movie)
    movie_ids = first[is_movie]
    last_movie = int(movie_ids[-1]) if len(movie_ids) else movie
    return item, first[rows], rating, timestamp, last_movie


def _compact(values: np.ndarray) -> np.ndarray:
    """int32 when every value fits (ids, seconds before 2038), else unchanged int64."""
    info = np.iinfo(np.int32)
    if not len(values) or (values.min() >= info.min and values.max() <= info.max):
        return values.astype(np.int32)
    return values


def parse_netflix(folder: Path, chunk_bytes: int = 64 << 20) -> Interactions:
    """The Netflix Prize training set, streamed in bounded memory.

    Reads either layout: ``training_set/mv_0000001.txt``... (one movie per
    file) or ``combined_data_1..4.txt``; both are a line ``MovieID:`` followed
    by lines ``CustomerID,Rating,YYYY-MM-DD``. Text is read in blocks of about
    ``chunk_bytes`` (whole lines, many small files batched together) and each
    block is parsed vectorized into compact arrays; the full text is never in
    memory. Dates become unix seconds of midnight UTC.

    Args:
      folder: the folder holding ``training_set/`` or ``combined_data_*.txt``.
      chunk_bytes: target block size; results do not depend on it.

    Returns:
      Interactions with users = customers, items = movies, ratings 1-5.

    Raises:
      DatasetError: no rating files in ``folder``, or a bad line (file:line).
    """
    folder = Path(folder)
    files = netflix_files(folder)
    if not files:
        raise DatasetError(
            f"no Netflix files in {folder}: put the Netflix Prize training_set/mv_*.txt files "
            f"or the Kaggle combined_data_*.txt files there")
    movie: Optional[int] = None
    items, users, ratings, times = [], [], [], []
    for block, sources in _line_blocks(files, max(1, int(chunk_bytes))):
        parsed = _parse_netflix_block(block, movie)
        if parsed is None:
            error = _find_netflix_error(sources)
            raise error or DatasetError(f"{sources[0]}: could not parse the Netflix ratings; re-download it")
        item, user, rating, timestamp, movie = parsed
        # Compact per-block dtypes keep the held arrays small until the end.
        items.append(_compact(item))
        users.append(_compact(user))
        ratings.append(rating.astype(np.int8))
        times.append(_compact(timestamp))
    if not items:
        raise DatasetError(f"no ratings in the Netflix files of {folder}")
    return _finalize(np.concatenate(users), np.concatenate(items), np.concatenate(ratings),
                     np.concatenate(times), folder.name)


# ----------------------------------------------------------------------------- titles

# The datasets with a titles file, read by read_titles.
_TITLED = ("ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-latest-small", "lastfm-2k")


def has_titles(name: str) -> bool:
    """Whether the registered dataset ``name`` comes with item titles."""
    return name in _TITLED


def _read_title_table(path: Path, reader: Callable[[Path], pd.DataFrame]) -> dict:
    if not path.is_file():
        raise DatasetError(f"missing file {path}; re-download the dataset or fix the mirror folder")
    try:
        frame = reader(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read titles ({' '.join(str(err).split())}); "
                           f"re-download the dataset") from None
    ids, titles = frame.iloc[:, 0], frame.iloc[:, 1].fillna("")
    return dict(zip(ids.astype(np.int64).tolist(), titles.astype(str).tolist()))


def read_titles(name: str, folder: Path) -> dict:
    """Item titles of a dataset, keyed by original item id.

    Args:
      name: the registry key (``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
        ``ml-latest-small``, ``lastfm-2k``; any other gives ``{}``).
      folder: the dataset folder.

    Returns:
      dict original item id (int) -> title (str).

    Raises:
      DatasetError: the titles file is missing or cannot be parsed.
    """
    folder = Path(folder)
    plain = dict(header=None, quoting=csv.QUOTE_NONE, keep_default_na=False)
    if name == "ml-100k":
        return _read_title_table(folder / "u.item", lambda p: pd.read_csv(
            p, sep="|", usecols=[0, 1], encoding="latin-1", dtype={0: "int64", 1: str}, **plain))
    if name in ("ml-1m", "ml-10m"):
        # Titles contain ':' so the two-character separator needs the python engine (few lines).
        encoding = "latin-1" if name == "ml-1m" else "utf-8"
        return _read_title_table(folder / "movies.dat", lambda p: pd.read_csv(
            p, sep="::", engine="python", usecols=[0, 1], encoding=encoding, dtype={0: "int64", 1: str}, **plain))
    if name in ("ml-20m", "ml-latest-small"):
        return _read_title_table(folder / "movies.csv", lambda p: pd.read_csv(
            p, usecols=["movieId", "title"], dtype={"movieId": "int64", "title": str}, keep_default_na=False))
    if name == "lastfm-2k":
        return _read_title_table(folder / "artists.dat", lambda p: pd.read_csv(
            p, sep="\t", usecols=["id", "name"], dtype={"id": "int64", "name": str},
            quoting=csv.QUOTE_NONE, keep_default_na=False))
    return {}
