import datetime
import logging
import re
import shutil

import numpy as np
import pytest

from data import formats
from data.errors import DatasetError
from data.loader import load, load_titles


def rows(x):
    """(original user, original item, rating, timestamp) tuples in order."""
    return [(x.user_ids[u], x.item_ids[i], float(r), int(t))
            for u, i, r, t in zip(x.user, x.item, x.rating, x.timestamp)]


def check_dtypes(x):
    assert x.user.dtype == np.int64 and x.item.dtype == np.int64
    assert x.rating.dtype == np.float32 and x.timestamp.dtype == np.int64
    # Dense indices follow the sorted original ids.
    assert list(x.user_ids) == sorted(x.user_ids) and list(x.item_ids) == sorted(x.item_ids)
    assert set(x.user) == set(range(x.n_users)) and set(x.item) == set(range(x.n_items))


# ----------------------------------------------------------------------------- each raw format


def test_ml100k(raw):
    x = formats.parse_ml100k(raw / "ml-100k")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (5, 3, 3)
    assert list(x.user_ids) == [1, 2, 3] and list(x.item_ids) == [10, 20, 30]
    # First line "3 \t 10 \t 4 \t 881250949": user 3 -> index 2, item 10 -> index 0.
    assert (x.user[0], x.item[0], x.rating[0], x.timestamp[0]) == (2, 0, 4.0, 881250949)
    assert rows(x)[3] == (2, 30, 1.0, 878542960)


def test_ml1m_dat(raw):
    x = formats.parse_ml_dat(raw / "ml-1m")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (5, 3, 3)
    assert list(x.user_ids) == [1, 2, 6040] and list(x.item_ids) == [661, 1193, 3408]
    assert rows(x)[0] == (1, 1193, 5.0, 978300760)
    assert rows(x)[4] == (6040, 661, 1.0, 956703932)


def test_ml10m_dat_half_stars(raw):
    x = formats.parse_ml_dat(raw / "ml-10M100K")
    assert (len(x), x.n_users, x.n_items) == (4, 2, 3)
    assert list(x.rating) == [5.0, 4.5, 0.5, 3.5]
    assert rows(x)[2] == (2, 122, 0.5, 868245777)


def test_ml20m_csv_with_crlf(raw):
    assert b"\r\n" in (raw / "ml-20m" / "ratings.csv").read_bytes()
    x = formats.parse_ml_csv(raw / "ml-20m")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (5, 3, 2)
    assert rows(x)[0] == (1, 2, 3.5, 1112486027)
    assert rows(x)[3] == (2, 29, 0.5, 974820691)


def test_lastfm2k(raw):
    x = formats.parse_lastfm2k(raw / "hetrec2011-lastfm-2k")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (3, 2, 2)
    assert rows(x) == [(2, 51, 1200.0, -1), (2, 52, 345.0, -1), (3, 51, 228.0, -1)]


def test_lastfm360k_keys_artists_without_mbid_by_name(raw):
    x = formats.parse_lastfm360k(raw / "lastfm-dataset-360K")
    assert (len(x), x.n_users, x.n_items) == (4, 2, 3)
    # Sorted keys: the mbid "3bd7..." < "die Ärzte" < 'the "quoted" band'.
    assert list(x.item_ids) == ["3bd73256-3905-4f3a-97e2-8b341527f805", "die Ärzte", 'the "quoted" band']
    assert list(x.item) == [0, 1, 0, 2]
    assert list(x.user) == [0, 0, 1, 1]
    assert list(x.rating) == [2137.0, 1099.0, 25.0, 7.0]
    assert list(x.timestamp) == [-1] * 4


def test_pinterest_concatenates_train_and_test(raw):
    x = formats.parse_pinterest(raw / "pinterest-20")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (7, 3, 4)
    # Rows 0-3 from the train file, 4-6 from the test file.
    assert [(int(u), int(i)) for u, i in zip(x.user, x.item)] == [(0, 0), (0, 1), (1, 1), (2, 0), (0, 2),
                                                                  (1, 3), (2, 3)]


# ----------------------------------------------------------------------------- Netflix

# Days from 1970-01-01 to 2005-01-01: 35 * 365 + 9 leap days (1972..2004) = 12784.
# 2005-09-06 is day 31+28+31+30+31+30+31+31 + 5 = 248 of 2005 (0-based), so
# unix time = (12784 + 248) * 86400 = 1,125,964,800.
SEP_06_2005 = 1_125_964_800
# 2005-05-13: 31+28+31+30 + 12 = 132 -> (12784 + 132) * 86400.
MAY_13_2005 = (12784 + 132) * 86400


def netflix_reference(files):
    """A slow line-by-line reading of the Netflix layout."""
    out = []
    for path in files:
        movie = None
        for line in path.read_text().splitlines():
            if line.endswith(":"):
                movie = int(line[:-1])
            elif line:
                customer, rating, date = line.split(",")
                day = datetime.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
                out.append((int(customer), movie, float(rating), int(day.timestamp())))
    return out


def test_netflix_training_set_layout(raw):
    x = formats.parse_netflix(raw / "netflix")
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items) == (5, 4, 2)
    assert rows(x)[0] == (1488844, 1, 3.0, SEP_06_2005)
    assert rows(x)[1] == (822109, 1, 5.0, MAY_13_2005)
    assert rows(x) == netflix_reference(formats.netflix_files(raw / "netflix"))


def test_netflix_both_layouts_agree(raw):
    a = formats.parse_netflix(raw / "netflix")
    b = formats.parse_netflix(raw / "netflix-combined" / "netflix")
    assert rows(a) == rows(b)
    assert [p.name for p in formats.netflix_files(raw / "netflix-combined" / "netflix")] == [
        "combined_data_1.txt", "combined_data_2.txt"]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 30, 64])
def test_netflix_streaming_does_not_depend_on_chunk_size(tmp_path, chunk_bytes):
    # Random movies split over two files (the second lacking its final newline)
    # so blocks end mid-movie and mid-line; repeated pairs exercise dedupe too.
    rng = np.random.default_rng(0)
    files = []
    for movies in ([1, 2, 3], [4, 5]):
        lines = []
        for movie in movies:
            lines.append(f"{movie}:")
            for _ in range(rng.integers(1, 15)):
                lines.append(f"{rng.integers(1, 40)},{rng.integers(1, 6)},"
                             f"200{rng.integers(0, 6)}-0{rng.integers(1, 10)}-1{rng.integers(0, 10)}")
        files.append("\n".join(lines))
    folder = tmp_path / "netflix"
    folder.mkdir()
    (folder / "combined_data_1.txt").write_text(files[0] + "\n")
    (folder / "combined_data_2.txt").write_text(files[1])
    big = formats.parse_netflix(folder)
    small = formats.parse_netflix(folder, chunk_bytes=chunk_bytes)
    for name in ("user", "item", "rating", "timestamp", "user_ids", "item_ids"):
        np.testing.assert_array_equal(getattr(small, name), getattr(big, name))
    expected = {}
    for user, item, rating, time in netflix_reference(formats.netflix_files(folder)):
        if (user, item) not in expected or time >= expected[(user, item)][1]:
            expected[(user, item)] = (rating, time)
    assert {(u, i): (r, t) for u, i, r, t in rows(big)} == expected


def test_netflix_missing_files(tmp_path):
    with pytest.raises(DatasetError, match=r"no Netflix files in .*training_set/mv_\*\.txt.*combined_data"):
        formats.parse_netflix(tmp_path)


@pytest.mark.parametrize("bad, line, reason", [
    ("885013,6,2005-10-19", 3, r"rating 6 outside \[1, 5\]"),
    ("885013,4,2005-13-19", 3, "expected a date YYYY-MM-DD"),
    ("885013,4", 3, "found 2 fields"),
    ("885013,x,2005-10-19", 3, "expected an integer"),
    ("885013,3.5,2005-10-19", 3, "expected an integer"),
])
def test_netflix_bad_line_names_file_and_line(raw, tmp_path, bad, line, reason):
    folder = tmp_path / "netflix"
    shutil.copytree(raw / "netflix", folder)
    path = folder / "training_set" / "mv_0000002.txt"
    path.write_text(f"2:\n2059652,4,2005-09-05\n{bad}\n1488844,4,2005-04-29\n")
    for chunk in (3, 1 << 20):
        with pytest.raises(DatasetError) as info:
            formats.parse_netflix(folder, chunk_bytes=chunk)
        message = str(info.value)
        assert f"mv_0000002.txt:{line}:" in message and bad in message and "\n" not in message
        assert re.search(reason, message), message


def test_netflix_file_must_start_with_a_movie(tmp_path):
    folder = tmp_path / "netflix"
    (folder / "training_set").mkdir(parents=True)
    (folder / "training_set" / "mv_0000001.txt").write_text("1488844,3,2005-09-06\n")
    with pytest.raises(DatasetError, match=r"mv_0000001.txt:1: a Netflix file must start with a line 'MovieID:'"):
        formats.parse_netflix(folder)


# ----------------------------------------------------------------------------- errors


def write(folder, name, text, newline="\n"):
    """Writes ``text`` as UTF-8; a lone surrogate U+DC80..U+DCFF in it becomes that one raw byte."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(text.replace("\n", newline).encode("utf-8", "surrogateescape"))
    return folder


@pytest.mark.parametrize("parser, file, text, where, reason", [
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t2\t3\n", 2, "expected 4 fields separated by '\\\\t', found 3"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n\n1\t2\tfive\t4\n", 3, "expected a number, got 'five'"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t2\t3\t4\t5\n", 2, "found 5"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\t5\n1\t2\t3\t4\n", 1, "found 5"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\nx\t2\t3\t4\n", 2, "expected an integer, got 'x'"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t2\t\t4\n", 2, "expected a number, got ''"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t2\t6\t4\n", 2, r"rating 6 outside \[0.5, 5\]"),
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t2\tnan\t4\n", 2, "expected a finite number"),
    (formats.parse_ml_dat, "ratings.dat", "1::2::3::4\n1::2::0::4\n", 2, r"rating 0 outside \[0.5, 5\]"),
    (formats.parse_ml_dat, "ratings.dat", "1::2::3::4\n1:2:3:4\n", 2, "expected 4 fields separated by '::', found 1"),
    (formats.parse_ml_dat, "ratings.dat", "1::2::3::4\n1::2::3::4::5\n", 2, "found 5"),
    (formats.parse_ml_dat, "ratings.dat", "1::2::3::4\n1::2::3\n", 2, "found 3"),
    (formats.parse_ml_csv, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,4\n1,2,5.5,4\n", 3,
     r"rating 5.5 outside \[0.5, 5\]"),
    (formats.parse_ml_csv, "ratings.csv", "userId,movie,rating,timestamp\n1,2,3.5,4\n", 1,
     "expected the header 'userId,movieId,rating,timestamp'"),
    (formats.parse_lastfm2k, "user_artists.dat", "userID\tartistID\tweight\n1\t2\t-3\n", 2,
     r"rating -3 outside \[0, inf\]"),
    (formats.parse_pinterest, "pinterest-20.train.rating", "0\t1\t1\t0\n0\t1\t1\n", 2, "found 3"),
    (formats.parse_lastfm360k, "usersha1-artmbid-artname-plays.tsv", "u1\tm1\ta1\t3\nu1\t\t\t4\n", 2,
     "fields 2, 3 are all empty"),
    (formats.parse_lastfm360k, "usersha1-artmbid-artname-plays.tsv", "u1\tm1\ta1\t3\n\tm1\ta1\t4\n", 2,
     "expected a non-empty field"),
    # Play counts have no upper bound, but float32 would turn 1e39 into inf.
    (formats.parse_lastfm2k, "user_artists.dat", "userID\tartistID\tweight\n1\t2\t3\n1\t3\t1e39\n", 3,
     r"number '1e39' does not fit in float32 \(magnitude above 3.403e\+38\): '1\\t3\\t1e39'"),
    (formats.parse_pinterest, "pinterest-20.train.rating", "0\t1\t-1e39\t0\n", 1, "does not fit in float32"),
    # pandas raises OverflowError for an int64 column that overflows.
    (formats.parse_ml100k, "u.data", "1\t2\t3\t4\n1\t99999999999999999999\t3\t4\n", 2,
     "integer '99999999999999999999' does not fit in 64 bits"),
    # A Latin-1 byte in a UTF-8 file; the line is quoted with U+FFFD in its place.
    (formats.parse_lastfm360k, "usersha1-artmbid-artname-plays.tsv", "u1\tm1\ta1\t3\nu1\tm2\tBj\udcf6rk\t4\n",
     2, r"byte 0xf6 at column 9 is not valid UTF-8: 'u1\\tm2\\tBj\ufffdrk\\t4'"),
    (formats.parse_ml_csv, "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,4\n1,2\udce9,3.5,4\n", 3,
     "byte 0xe9 at column 4 is not valid UTF-8"),
])
def test_bad_line_gives_file_and_line(tmp_path, parser, file, text, where, reason):
    folder = write(tmp_path / "data", file, text, newline="\r\n" if file.endswith(".csv") else "\n")
    if parser is formats.parse_pinterest:
        write(folder, "pinterest-20.test.rating", "0\t2\t1\t0\n")
    with pytest.raises(DatasetError) as info:
        parser(folder)
    message = str(info.value)
    assert f"{folder / file}:{where}: " in message, message
    assert re.search(reason, message), message
    assert "\n" not in message


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DatasetError, match=f"missing file {re.escape(str(tmp_path / 'u.data'))}"):
        formats.parse_ml100k(tmp_path)
    write(tmp_path, "u.data", "")
    with pytest.raises(DatasetError, match="no ratings could be read"):
        formats.parse_ml100k(tmp_path)


def test_duplicates_keep_the_latest_and_are_counted(tmp_path, caplog):
    # (1, 10) three times: times 5, 9, 7 -> the rating of time 9 (2.0) stays.
    # (2, 10) twice with the same time: the later line (rating 5) stays.
    text = "1\t10\t1\t5\n2\t10\t4\t3\n1\t10\t2\t9\n1\t20\t3\t1\n1\t10\t3\t7\n2\t10\t5\t3\n"
    with caplog.at_level(logging.WARNING, logger="data.formats"):
        x = formats.parse_ml100k(write(tmp_path / "d", "u.data", text))
    assert rows(x) == [(1, 10, 2.0, 9), (1, 20, 3.0, 1), (2, 10, 5.0, 3)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropped 3 duplicate (user, item) rows" in warnings[0]


def test_no_warning_without_duplicates(raw, caplog):
    with caplog.at_level(logging.WARNING, logger="data.formats"):
        formats.parse_ml100k(raw / "ml-100k")
    assert not caplog.records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_finalize_matches_a_slow_reference(seed):
    rng = np.random.default_rng(seed)
    n = 200
    user = rng.choice(np.array([7, 3, 100, 42, 5]), n)
    item = rng.choice(np.array(["b", "a", "zz", "c"], dtype=object), n)
    rating = rng.integers(1, 6, n).astype(np.float32)
    time = rng.integers(0, 20, n)
    x = formats._finalize(user, item, rating, time, "t")
    # Reference: walk the rows, remember the latest (ties: later row) per pair.
    best = {}
    for k in range(n):
        key = (user[k], item[k])
        if key not in best or time[k] >= time[best[key]]:
            best[key] = k
    kept = sorted(best.values())
    assert rows(x) == [(user[k], item[k], float(rating[k]), int(time[k])) for k in kept]
    assert list(x.user_ids) == sorted(set(user)) and list(x.item_ids) == sorted(set(item))


# ----------------------------------------------------------------------------- titles


def test_titles_of_each_format(raw):
    assert formats.read_titles("ml-100k", raw / "ml-100k") == {
        10: "Café Society (1995)", 20: "Angels and Insects (1995)", 30: "Belle de jour (1967)"}
    ml1m = formats.read_titles("ml-1m", raw / "ml-1m")
    assert ml1m[73] == "Misérables, Les (1995)" and ml1m[260] == "Star Wars: Episode IV - A New Hope (1977)"
    assert ml1m[661] == "James and the Giant Peach (1996)" and len(ml1m) == 5
    assert formats.read_titles("ml-10m", raw / "ml-10M100K")[185] == "Net, The (1995)"
    assert formats.read_titles("ml-20m", raw / "ml-20m") == {
        2: "Jumanji (1995)", 29: "City of Lost Children, The (Cité des enfants perdus, La) (1995)"}
    assert formats.read_titles("lastfm-2k", raw / "hetrec2011-lastfm-2k") == {51: "Duran Duran", 52: "Morcheeba"}
    assert formats.read_titles("pinterest-20", raw / "pinterest-20") == {}
    assert formats.read_titles("netflix", raw / "netflix") == {}


def test_titles_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=f"missing file {re.escape(str(tmp_path / 'movies.csv'))}"):
        formats.read_titles("ml-20m", tmp_path)


# ----------------------------------------------------------------------------- real data


def test_real_ml100k(mirror, tmp_path):
    x = load("ml-100k", mirror=mirror, data_dir=tmp_path)
    check_dtypes(x)
    assert (len(x), x.n_users, x.n_items, x.name) == (100_000, 943, 1_682, "ml-100k")
    # The first line of u.data is "196 \t 242 \t 3 \t 881250949".
    assert rows(x)[0] == (196, 242, 3.0, 881250949)
    assert load_titles("ml-100k", mirror=mirror, data_dir=tmp_path)[1] == "Toy Story (1995)"


def test_real_ml_latest_small(mirror, tmp_path):
    x = load("ml-latest-small", mirror=mirror, data_dir=tmp_path)
    assert (len(x), x.n_users, x.n_items) == (100_836, 610, 9_724)
    assert set(np.unique(x.rating)) == set(np.arange(1, 11) / 2)
    assert rows(x)[0] == (1, 1, 4.0, 964982703)
    assert load_titles("ml-latest-small", mirror=mirror, data_dir=tmp_path)[1] == "Toy Story (1995)"


def test_real_lastfm2k(mirror, tmp_path):
    x = load("lastfm-2k", mirror=mirror, data_dir=tmp_path)
    assert (len(x), x.n_users, x.n_items) == (92_834, 1_892, 17_632)
    assert rows(x)[0] == (2, 51, 13883.0, -1)
    assert (x.timestamp == -1).all()
    assert load_titles("lastfm-2k", mirror=mirror, data_dir=tmp_path)[1] == "MALICE MIZER"
