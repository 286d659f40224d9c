"""Your own files: CSV/TSV/'::'/Parquet with renamed columns equal the built-in loader; implicit data;
timestamps from dates; every protocol; one-line errors with file and line."""

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest

from data import custom, loader, protocols
from data.custom import CustomFormat
from data.errors import ConfigError, DatasetError

FIELDS = ("user", "item", "rating", "timestamp", "user_ids", "item_ids")


def assert_same(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype, f
        np.testing.assert_array_equal(x, y, err_msg=f)


@pytest.fixture(scope="module")
def ml100k(mirror):
    """The built-in loader's ML-100K and u.data as a frame."""
    frame = pd.read_csv(mirror / "ml-100k" / "u.data", sep="\t", header=None,
                        names=["user", "item", "rating", "time"])
    return loader.load("ml-100k", mirror=mirror), frame


def write(path, text):
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- same matrices as built-in

def test_csv_with_other_column_names_and_order_equals_builtin(ml100k, tmp_path):
    builtin, frame = ml100k
    # Detected by alias (customer_id, product, stars, ts), in another column order, with a column to ignore.
    out = pd.DataFrame({"stars": frame["rating"], "note": "x", "product": frame["item"],
                        "customer_id": frame["user"], "ts": frame["time"]})
    path = tmp_path / "ratings.csv"
    out.to_csv(path, index=False)
    assert_same(loader.load(str(path)), builtin)
    assert loader.load(str(path)).name == str(path)


def test_parquet_with_mapped_columns_equals_builtin(ml100k, tmp_path):
    builtin, frame = ml100k
    out = pd.DataFrame({"a": frame["user"].astype("int32"), "b": frame["item"], "c": frame["rating"].astype("int8"),
                        "d": frame["time"], "extra": 0.5})
    path = tmp_path / "log.parquet"
    out.to_parquet(path)
    fmt = CustomFormat(user_col="a", item_col="b", rating_col="c", time_col="d")
    assert_same(loader.load(str(path), fmt=fmt), builtin)


def test_headerless_tsv_semicolon_and_double_colon_files_equal_builtin(ml100k, tmp_path):
    builtin, frame = ml100k
    frame.to_csv(tmp_path / "u.tsv", sep="\t", header=False, index=False)
    assert_same(custom.read(tmp_path / "u.tsv"), builtin)
    frame.to_csv(tmp_path / "u.txt", sep=";", header=False, index=False)
    assert_same(custom.read(tmp_path / "u.txt", CustomFormat(sep="semicolon")), builtin)
    lines = "\n".join("::".join(map(str, row)) for row in frame.itertuples(index=False))
    assert_same(custom.read(write(tmp_path / "u.dat", lines + "\n")), builtin)


def test_latest_small_csv_through_the_custom_reader_equals_builtin(mirror):
    # CRLF line ends and half stars.
    assert_same(custom.read(mirror / "ml-latest-small" / "ratings.csv"), loader.load("ml-latest-small", mirror=mirror))


def test_field_numbers_map_columns_of_a_headerless_file(tmp_path):
    path = write(tmp_path / "x.csv", "5,u1,i1\n3,u2,i1\n4,u1,i2\n")
    got = custom.read(path, CustomFormat(user_col="2", item_col="3", rating_col="1"))
    # Sorted string ids: u1 -> 0, u2 -> 1; i1 -> 0, i2 -> 1.
    np.testing.assert_array_equal(got.user, [0, 1, 0])
    np.testing.assert_array_equal(got.item, [0, 0, 1])
    np.testing.assert_array_equal(got.rating, np.array([5, 3, 4], np.float32))
    assert list(got.user_ids) == ["u1", "u2"] and got.user_ids.dtype == object
    assert (got.timestamp == -1).all()


# ----------------------------------------------------------------------------- values

def test_implicit_file_every_row_is_one_positive(tmp_path, caplog):
    path = write(tmp_path / "clicks.csv", "user,item\n10,7\n10,8\n11,7\n")
    with caplog.at_level(logging.WARNING):
        got = custom.read(path)
    assert "no rating column" in caplog.text
    np.testing.assert_array_equal(got.rating, np.ones(3, np.float32))
    np.testing.assert_array_equal(got.user_ids, [10, 11])
    np.testing.assert_array_equal(got.item_ids, [7, 8])
    split = protocols.heldout_users(got, protocols.HeldoutConfig(threshold=None, min_uc=1, val_users=0,
                                                                 test_users=0))
    assert split.train.nnz == 3


def test_rating_col_none_forces_implicit_and_time_col_none_drops_time(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,5,100\n1,3,2,200\n")
    got = custom.read(path, CustomFormat(rating_col="none", time_col="none"))
    np.testing.assert_array_equal(got.rating, [1.0, 1.0])
    np.testing.assert_array_equal(got.timestamp, [-1, -1])


def test_dates_become_unix_seconds(tmp_path):
    path = write(tmp_path / "d.csv", "user,item,rating,date\n"
                 "a,x,1,2018-03-01\nb,x,2,1970-01-02T00:00:10Z\nc,y,3,2018-03-01 01:00:00\n")
    got = custom.read(path)
    # 2018-03-01 is 17591 days after 1970-01-01: 17591 * 86400 = 1519862400; 1 day + 10 s = 86410.
    np.testing.assert_array_equal(got.timestamp, [1519862400, 86410, 1519862400 + 3600])


def test_string_ids_and_leading_zeros_stay_strings(tmp_path):
    path = write(tmp_path / "s.csv", "user_id,item_id\n007,1\n7,2\n")
    got = custom.read(path)
    assert list(got.user_ids) == ["007", "7"]
    np.testing.assert_array_equal(got.item_ids, [1, 2])


def test_repeated_pairs_keep_the_latest(tmp_path):
    path = write(tmp_path / "dup.csv", "user,item,rating,timestamp\n1,1,2,300\n1,1,5,100\n2,1,4,1\n")
    got = custom.read(path)
    # (1, 1) at t=300 (rating 2) is later than the one at t=100 (rating 5).
    np.testing.assert_array_equal(got.rating, [2.0, 4.0])


def test_quoted_fields_with_separators(tmp_path):
    path = write(tmp_path / "q.csv", 'user,item,rating\n"Doe, J.","A, B",4\nx,"A, B",3\n')
    got = custom.read(path)
    assert list(got.user_ids) == ["Doe, J.", "x"] and list(got.item_ids) == ["A, B"]


# ----------------------------------------------------------------------------- protocols on custom data

def test_every_protocol_runs_on_a_custom_file(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    day = 86400
    frame = pd.DataFrame({"uid": rng.integers(0, 20, n), "song": rng.integers(0, 30, n),
                          "plays": rng.integers(1, 6, n),
                          # The first 300 rows fall in January 2020, the rest in February.
                          "time": np.where(np.arange(n) < 300, 1577836800 + day, 1580515200 + day)})
    path = tmp_path / "plays.tsv"
    frame.to_csv(path, sep="\t", index=False)
    data = custom.read(path)
    held = protocols.heldout_users(data, protocols.HeldoutConfig(threshold=None, min_uc=1), seed=0)
    assert held.train.nnz > 0
    rand = protocols.random_split(data, protocols.RandomSplitConfig(test_fraction=0.1), seed=0)
    assert rand.test.nnz == round(0.1 * len(data))
    window = custom.time_window("2020-01-01..2020-01-31,2020-02-01..2020-02-29", val_fraction=0.0)
    timed = protocols.time_split(data, window, seed=0)
    assert timed.train.nnz + timed.test.nnz <= len(data) and timed.test.nnz > 0


def test_time_window_names_and_errors():
    assert custom.time_window("3m") == protocols.NETFLIX_WINDOWS["3m"]
    with pytest.raises(ConfigError, match="unknown time window 'soon'.*TRAIN_START..TRAIN_END"):
        custom.time_window("soon")


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("text, fmt, message", [
    ("who,mid,stars\n1,2,3\n", CustomFormat(), r"x\.csv: cannot tell which column holds the users; "
                                               r"columns found: who, mid, stars; pass --user_col NAME"),
    ("userId,movieId\n1,2\n", CustomFormat(rating_col="stars"),
     r"x\.csv: no column 'stars' \(--rating_col\); columns found: userId, movieId; pass a name of the header"),
    ("1,2,3\n", CustomFormat(user_col="uid"), r"no column 'uid' \(--user_col\); columns found: 3 unnamed fields; "
                                              r"pass a field number"),
    ("userId,movieId,rating\n1,2,4\n3,4,5,6\n", CustomFormat(),
     r"x\.csv:3: expected 3 fields separated by ',' \(userId, movieId, rating\), found 4: '3,4,5,6'; fix"),
    ("userId,movieId,rating\n1,2,4\n\n3,4\n", CustomFormat(), r"x\.csv:4: expected 3 fields .* found 2: '3,4'"),
    ("userId,movieId,rating\n1,2,4\n3,4,great\n", CustomFormat(),
     r"x\.csv:3: rating 'great' is not a finite number in 'rating': '3,4,great'; fix or delete that line"),
    ("userId,movieId,rating\n1,2,4\n3,,5\n", CustomFormat(), r"x\.csv:3: empty item id in 'movieId': '3,,5'"),
    ("1\t2\t3\t20x1\n", CustomFormat(), r"x\.csv:1: timestamp '20x1' is neither unix seconds nor a date"),
    ("userId,movieId,rating\n", CustomFormat(), r"x\.csv: only a header line .*, no interactions"),
    ("\n\n", CustomFormat(), r"x\.csv: empty file"),
    ("justonefield\n", CustomFormat(), r"x\.csv:1: cannot tell the field separator of 'justonefield'.*pass --sep"),
    ("u,i\n1,2\n", CustomFormat(user_col="u", item_col="u"), r"--user_col, --item_col name the same column"),
    # float32 holds magnitudes up to about 3.4e38: 1e39 would become inf and the loss NaN.
    ("userId,movieId,rating\n1,2,4\n3,4,1e39\n", CustomFormat(),
     r"x\.csv:3: rating '1e\+39' does not fit in float32 \(magnitude above 3.403e\+38\) in 'rating': '3,4,1e39'"),
    ("1\t2\t3\t5\n1\t3\t3\t1e30\n", CustomFormat(),
     r"x\.csv:2: timestamp '1e\+30' does not fit in 64-bit unix seconds in field 4"),
])
def test_malformed_files_get_one_line_errors(tmp_path, text, fmt, message):
    path = write(tmp_path / "x.csv", text)
    with pytest.raises((DatasetError, ConfigError), match=message) as err:
        custom.read(path, fmt)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


@pytest.mark.parametrize("data, line", [
    (b"userId,artist,plays\n1,Bj\xf6rk,3\n2,Bj\xe9rk,4\n", 2),  # Latin-1 names: both would read 'Bj?rk'
    (b"userId,artist,plays\n1,a,3\n2,b,4\n3,Bj\xf6rk,5\n", 4),  # found by the slow pass after the fast one
    (b"user\xff,artist,plays\n1,a,3\n", 1),  # in the header
])
def test_bytes_that_are_not_utf8_are_an_error_with_file_and_line(tmp_path, data, line):
    path = tmp_path / "plays.csv"
    path.write_bytes(data)
    with pytest.raises(DatasetError) as err:
        custom.read(path)
    text = data.split(b"\n")[line - 1].decode("utf-8", "replace")
    byte = next(b for b in data.split(b"\n")[line - 1] if b >= 0x80)
    assert str(err.value) == (f"{path}:{line}: byte 0x{byte:02x} is not valid UTF-8: {text!r}; "
                              f"save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    # The same names in UTF-8 (and with a BOM) are two different artists.
    path.write_bytes(b"\xef\xbb\xbf" + data.decode("latin-1").encode("utf-8"))
    assert len(custom.read(path).item_ids) == data.count(b"\n") - 1


def test_zero_byte_and_missing_files(tmp_path):
    with pytest.raises(DatasetError, match=r"empty\.csv: empty file"):
        custom.read(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DatasetError, match=r"no such file .*nope\.csv: give the path"):
        loader.load(str(tmp_path / "nope.csv"))


def test_parquet_bad_rows_and_columns(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"user": ["a", None], "item": [1, 2]}).to_parquet(path)
    with pytest.raises(DatasetError, match=r"p\.parquet: row 2: empty user id in column 'user'; fix or drop"):
        custom.read(path)
    pd.DataFrame({"who": [1], "what": [2]}).to_parquet(path)
    with pytest.raises(DatasetError, match=r"cannot tell which column holds the users; columns found: who, what"):
        custom.read(path)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"broken\.parquet: not a readable Parquet file"):
        custom.read(tmp_path / "broken.parquet")


def test_bad_separator_and_format_for_builtin(tmp_path):
    with pytest.raises(ConfigError, match=r"--sep '#' is not supported"):
        custom.read(write(tmp_path / "x.csv", "1,2\n"), CustomFormat(sep="#"))
    with pytest.raises(ConfigError, match=r"'ml-100k' is a built-in dataset"):
        loader.load("ml-100k", fmt=CustomFormat(user_col="u"))
    assert dataclasses.replace(CustomFormat(), sep=None).is_default()


def test_parquet_datetimes_and_string_ids(tmp_path):
    path = tmp_path / "events.parquet"
    when = pd.to_datetime(["2018-03-01 00:00:00", "1970-01-01 00:01:00"], utc=True)
    pd.DataFrame({"visitor_id": ["b", "a"], "sku": ["x1", "x2"], "created_at": when}).to_parquet(path)
    got = custom.read(path)
    # Sorted ids: a -> 0, b -> 1. 2018-03-01 is 17591 days x 86400 s; one minute is 60 s.
    np.testing.assert_array_equal(got.user, [1, 0])
    np.testing.assert_array_equal(got.timestamp, [1519862400, 60])
    np.testing.assert_array_equal(got.rating, [1.0, 1.0])
    assert list(got.item_ids) == ["x1", "x2"]
