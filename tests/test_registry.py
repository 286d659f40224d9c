import dataclasses
import re

import pytest

from data import formats, registry
from data.errors import DatasetError

ALL = ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-latest-small", "netflix", "lastfm-360k", "lastfm-2k",
       "pinterest-20"]


def test_names_are_the_documented_ones():
    assert registry.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_spec_is_consistent(name):
    spec = registry.get_spec(name)
    assert spec.name == name
    assert callable(spec.parser) and spec.parser.__module__ == formats.__name__
    assert spec.archive in ("zip", "tar.gz", "files", "none")
    assert (spec.url is None) == (name == "netflix")
    if spec.url is not None:
        # Every host serves https: a plain-http download could be altered on the way.
        assert spec.url.startswith("https://"), spec.url
        # Known sizes put a cap of ten times them on a download (data.download._fetch).
        assert isinstance(spec.approx_bytes, int) and spec.approx_bytes > 0
    assert spec.archive_md5 is None or re.fullmatch(r"[0-9a-f]{32}", spec.archive_md5)
    assert spec.description and "\n" not in spec.description
    # Every checksum is a 32-hex md5 of a file inside the folder.
    for file, md5 in spec.checksums.items():
        assert re.fullmatch(r"[0-9a-f]{32}", md5), (file, md5)
        assert not file.startswith("/") and ".." not in file


def test_thresholds_and_feedback_kind():
    for name in ALL:
        spec = registry.get_spec(name)
        if name.startswith("ml-") or name == "netflix":
            assert spec.explicit and spec.threshold == 4.0
        else:
            assert not spec.explicit and spec.threshold is None


def test_folders_follow_the_official_archives():
    folders = {name: registry.get_spec(name).folder for name in ALL}
    assert folders["ml-100k"] == "ml-100k"
    assert folders["ml-10m"] == "ml-10M100K"
    assert folders["lastfm-2k"] == "hetrec2011-lastfm-2k"
    assert registry.get_spec("lastfm-2k").flat
    assert folders["netflix"] == "netflix"


def test_known_checksums():
    assert registry.get_spec("ml-100k").checksums["u.data"] == "6e47046882bad158b0efbb84cd5cb987"
    assert registry.get_spec("ml-latest-small").checksums["ratings.csv"] == "325a6f09399d1c45671f187505e1a100"
    assert registry.get_spec("lastfm-2k").checksums["user_artists.dat"] == "85f04141f44f8ff69953bdbd62728bf5"
    assert registry.get_spec("ml-1m").checksums == {"ratings.dat": "a89aa3591bc97d6d4e0c89459ff39362"}
    # The official folds are verified like the key files.
    folds = {f"{fold}.{part}" for fold in ("u1", "u2", "u3", "u4", "u5", "ua", "ub") for part in ("base", "test")}
    assert folds <= set(registry.get_spec("ml-100k").checksums)
    assert registry.get_spec("ml-100k").checksums["ub.test"] == "5292d1e388d156aa0c19c384cdf35aca"
    # No trusted md5 known: nothing is verified rather than an invented value.
    for name in ("ml-10m", "ml-20m", "netflix", "lastfm-360k", "pinterest-20"):
        assert registry.get_spec(name).checksums == {}


def test_checksums_match_the_mirror_md5sums(mirror):
    listed = {}
    for line in (mirror / "MD5SUMS").read_text().splitlines():
        md5, path = line.split()
        folder, file = path.split("/", 1)
        listed.setdefault(folder, {})[file] = md5
    by_folder = {registry.get_spec(name).folder: registry.get_spec(name) for name in ALL}
    assert listed, "MD5SUMS is empty"
    for folder, sums in listed.items():
        assert by_folder[folder].checksums == sums


def test_unknown_name_lists_known_names():
    with pytest.raises(DatasetError) as info:
        registry.get_spec("ml-2m")
    message = str(info.value)
    assert "'ml-2m'" in message and "\n" not in message
    for name in ALL:
        assert name in message


def test_spec_is_frozen_and_hashable():
    spec = registry.get_spec("ml-100k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.url = "http://example.com"
    assert {spec: 1}[registry.get_spec("ml-100k")] == 1
