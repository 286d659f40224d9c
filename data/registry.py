"""The datasets tfcf knows: where they come from, which files matter, how to check them.

A :class:`DatasetSpec` is pure metadata; :mod:`data.download` uses it to find or
fetch the files and :mod:`data.loader` to read the folder with its :mod:`data.formats` parser.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional

from data import formats
from data.errors import DatasetError
from data.types import Interactions

_GROUPLENS = "https://files.grouplens.org/datasets"
_NCF_DATA = "https://raw.githubusercontent.com/hexiangnan/neural_collaborative_filtering/master/Data/"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and how to read it.

    Attributes:
      name: the registry key, e.g. ``"ml-100k"``.
      url: the official download URL (an archive, or for ``archive="files"`` a
        base URL each of ``files`` is appended to); None where no public URL
        exists (Netflix Prize).
      folder: the folder name the official archive unpacks to (``ml-10M100K``
        for ML-10M); for archives that unpack flat (Last.fm 2K) the folder the
        files are put in, which a mirror must use too.
      checksums: relative path inside ``folder`` -> md5 of that file. Empty
        where no trusted checksum is known: then nothing is verified.
      explicit: True for ratings, False for implicit feedback (plays, pins).
      threshold: default binarization threshold (rating >= threshold is a
        click); None for implicit data, where every row is positive.
      description: one line for humans.
      files: relative paths inside ``folder`` that must exist.
      parser: the :mod:`data.formats` function that reads the folder into interactions.
      archive: ``"zip"``, ``"tar.gz"``, ``"files"`` (``url`` is a base URL and
        each of ``files`` is fetched on its own) or ``"none"`` (user supplied).
      flat: True when the archive unpacks its files without a top folder.
      archive_md5: md5 of the downloaded archive, checked before anything is
        extracted; None where no trusted value is known (then only the
        extracted files' ``checksums`` are verified).
      approx_bytes: about how large the download is; a download larger than
        ten times this is refused (see :data:`data.download.MAX_DOWNLOAD_BYTES`
        for the cap where it is None).
    """

    name: str
    url: Optional[str]
    folder: str
    # A dict is unhashable; leaving it out of the hash keeps specs usable as keys.
    checksums: dict[str, str] = dataclasses.field(hash=False)
    explicit: bool
    threshold: Optional[float]
    description: str
    files: tuple[str, ...] = ()
    parser: Optional[Callable[[Path], Interactions]] = None
    archive: str = "zip"
    flat: bool = False
    archive_md5: Optional[str] = None
    approx_bytes: Optional[int] = None


def _movielens(name: str, folder: str, files: tuple[str, ...], parser: Callable, checksums: dict[str, str],
               description: str, approx_mb: float) -> DatasetSpec:
    """A MovieLens release: a GroupLens zip unpacking to ``folder``; ratings >= 4 are positives."""
    return DatasetSpec(name=name, url=f"{_GROUPLENS}/movielens/{name}.zip", folder=folder, checksums=checksums,
                       explicit=True, threshold=4.0, description=description, files=files, parser=parser,
                       approx_bytes=int(approx_mb * 1e6))


def _implicit(name: str, url: str, folder: str, files: tuple[str, ...], parser: Callable, checksums: dict[str, str],
              description: str, **kwargs) -> DatasetSpec:
    """Implicit feedback (plays, pins): every row is a positive, no threshold."""
    return DatasetSpec(name=name, url=url, folder=folder, checksums=checksums, explicit=False, threshold=None,
                       description=description, files=files, parser=parser, **kwargs)


# "No trusted md5" specs have empty checksums: nothing is verified rather than a guessed value. No archive
# md5 is filled in for the same reason: none could be checked against a download here. approx_bytes are
# rounded up from the published sizes; only ten times them is refused.
_SPECS = (
    _movielens("ml-100k", "ml-100k", ("u.data", "u.item"), formats.parse_ml100k, {
        "u.data": "6e47046882bad158b0efbb84cd5cb987",
        "u.item": "c9e7f390115d79079537301d5204f3f7",
        "u.user": "1b53539edc13caad0282c8500608a319",
        # The official folds (data.protocols.official_fold): the same md5s as the mirror's MD5SUMS.
        "u1.base": "4325f44281c9f8c119a3694662d63fc2",
        "u1.test": "62d5d837e7c8e36550cc956b09c2ecc8",
        "u2.base": "79541afecccbd5365bb2c09b123a01c7",
        "u2.test": "1951a71b7e1f4ed254508007fa2f6b70",
        "u3.base": "55c67a63f516fa9e593d68c3be779970",
        "u3.test": "cb3e4d0a9152041772285232ca002d4f",
        "u4.base": "66f64a75eeeffd20ff09533bcd31adcf",
        "u4.test": "328acfca94e85d01b1d7e92c7d73df3b",
        "u5.base": "0becb3392339231c08ba316944c79095",
        "u5.test": "bec898f7091dba3b7bdf793d1998d2d6",
        "ua.base": "346eb46a756be3b382bdef4f7dcf3a01",
        "ua.test": "52e5d0355092dc1596899855b220508f",
        "ub.base": "e4ce94f6e01e45f65b91a70bb9e8da2f",
        "ub.test": "5292d1e388d156aa0c19c384cdf35aca",
    }, "MovieLens 100K: 100,000 ratings 1-5 of 1,682 movies by 943 users (1997-98)", 5),
    _movielens("ml-1m", "ml-1m", ("ratings.dat", "movies.dat"), formats.parse_ml_dat,
               {"ratings.dat": "a89aa3591bc97d6d4e0c89459ff39362"},
               "MovieLens 1M: 1,000,209 ratings 1-5 of 3,706 movies by 6,040 users (2000-03)", 6),
    _movielens("ml-10m", "ml-10M100K", ("ratings.dat", "movies.dat"), formats.parse_ml_dat, {},
               "MovieLens 10M: 10,000,054 half-star ratings of 10,677 movies by 69,878 users (unverified)", 65),
    _movielens("ml-20m", "ml-20m", ("ratings.csv", "movies.csv"), formats.parse_ml_csv, {},
               "MovieLens 20M: 20,000,263 half-star ratings of 26,744 movies by 138,493 users (unverified)", 200),
    _movielens("ml-latest-small", "ml-latest-small", ("ratings.csv", "movies.csv"), formats.parse_ml_csv, {
        "ratings.csv": "325a6f09399d1c45671f187505e1a100",
        "movies.csv": "ed94fab72b62442ef8150d9446e000d6",
        "links.csv": "316913f95cdad64c745ca22f3630e230",
        "tags.csv": "1b2d21a7be1cc23d327b11155a4a6aea",
    }, "MovieLens latest-small (2018): 100,836 half-star ratings of 9,724 movies by 610 users", 1),
    DatasetSpec(
        name="netflix",
        url=None,
        folder="netflix",
        checksums={},  # User supplied in one of two layouts: nothing to verify against.
        explicit=True,
        threshold=4.0,
        description="Netflix Prize training set: ~100M ratings 1-5 (supply it yourself in <dir>/netflix/)",
        parser=formats.parse_netflix,
        archive="none",
    ),
    _implicit("lastfm-360k", "https://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz",
              "lastfm-dataset-360K", ("usersha1-artmbid-artname-plays.tsv",), formats.parse_lastfm360k, {},
              "Last.fm 360K: ~17.5M (user, artist, plays) rows of ~360K users (unverified)", archive="tar.gz",
              approx_bytes=550_000_000),
    _implicit("lastfm-2k", f"{_GROUPLENS}/hetrec2011/hetrec2011-lastfm-2k.zip", "hetrec2011-lastfm-2k",
              ("user_artists.dat", "artists.dat"), formats.parse_lastfm2k, {
                  "user_artists.dat": "85f04141f44f8ff69953bdbd62728bf5",
                  "artists.dat": "83efeb9e14f896d408ddab658052ff52",
                  "tags.dat": "42c3c2e41013d8f8ae7d275029698abe",
                  "user_friends.dat": "0a903667d9ce6d0efd30a422f292c891",
                  "user_taggedartists.dat": "4e05d78541bbb0ee9b1672edf6c07e60",
              }, "HetRec 2011 Last.fm 2K: 92,834 (user, artist, plays) rows, 1,892 users, 17,632 artists", flat=True,
              approx_bytes=2_600_000),
    _implicit("pinterest-20", _NCF_DATA, "pinterest-20", ("pinterest-20.train.rating", "pinterest-20.test.rating"), formats.parse_pinterest, {},
              "Pinterest-20 of the NCF paper (He et al. 2017): pins of 55,187 users on 9,916 images (unverified)",
              archive="files", approx_bytes=30_000_000),
)

_BY_NAME = {spec.name: spec for spec in _SPECS}


def names() -> list[str]:
    """The registered dataset names, in registry order."""
    return list(_BY_NAME)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset.

    Args:
      name: a registry key such as ``"ml-100k"``.

    Returns:
      Its :class:`DatasetSpec`.

    Raises:
      DatasetError: ``name`` is not registered; the message lists the known names.
    """
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise DatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(names())}") from None
