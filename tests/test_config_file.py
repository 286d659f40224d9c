"""Tests of cli/config_file.py: config files and presets under the command line's flags."""

import pathlib

import pytest
from absl import flags

from cli import config_file
from data.errors import ConfigError
from training import families

REPO = pathlib.Path(__file__).resolve().parents[1]


def _flags(argv=()):
    fv = flags.FlagValues()
    flags.DEFINE_float("lr", 1e-3, "", flag_values=fv)
    flags.DEFINE_list("hidden_layers", None, "", flag_values=fv)
    flags.DEFINE_bool("use_bias", None, "", flag_values=fv)
    flags.DEFINE_integer("number_of_epochs", 200, "", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("major", "users", "", flag_values=fv)
    fv(["prog", *argv])
    return fv


def _write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_file_values_apply_and_the_command_line_wins(tmp_path):
    path = _write(tmp_path, '[flags]\nlr = 0.01\nhidden_layers = [500, 20]\nuse_bias = false\nmajor = "items"\n')
    fv = _flags(["--lr", "0.5"])
    assert config_file.apply(config_file.read(path), fv) == ["hidden_layers", "use_bias", "major"]
    assert fv.lr == 0.5  # given on the command line: kept
    assert fv.hidden_layers == ["500", "20"] and fv.use_bias is False and fv.major == "items"
    # A user's file counts as given (so a flag that does not apply to the model is refused).
    assert fv["hidden_layers"].present and fv["major"].present


def test_an_empty_list_clears_a_list_flag(tmp_path):
    fv = _flags(["--hidden_layers", "600"])
    config_file.apply(config_file.read(_write(tmp_path, "[flags]\nhidden_layers = []\n")), _flags())
    fv2 = _flags()
    config_file.apply(config_file.read(_write(tmp_path, "[flags]\nhidden_layers = []\n")), fv2)
    assert fv2.hidden_layers == [] and fv.hidden_layers == ["600"]


def test_a_presets_values_are_defaults_not_the_users_choices(tmp_path):
    (tmp_path / "mf").mkdir()
    _write(tmp_path / "mf", '[provenance]\nchosen_by = "the grid"\n[flags]\nnumber_of_epochs = 7\n', "ml-100k.toml")
    preset = config_file.preset_for("mf", "ml-100k", root=tmp_path)
    assert preset.preset and preset.provenance == {"chosen_by": "the grid"}
    fv = _flags()
    config_file.apply(preset, fv)
    assert fv.number_of_epochs == 7 and not fv["number_of_epochs"].present
    assert config_file.preset_for("mf", "lastfm-2k", root=tmp_path) is None
    # A model's default.toml stands in for a data set without a preset, and says so.
    (tmp_path / "mf" / "default.toml").write_text('[provenance]\nchosen_by = "held on both"\n[flags]\nrank = 7\n')
    fallback = config_file.preset_for("mf", "lastfm-2k", root=tmp_path)
    assert fallback.flags == {"rank": 7} and fallback.preset
    assert "the mf defaults for a data set without a preset (held on both)" in fallback.describe()
    assert config_file.preset_for("mf", "ml-100k", root=tmp_path).flags != {"rank": 7}
    assert preset.describe().startswith("settings: preset ") and preset.describe().endswith("(chosen by the grid)")
    assert preset.record()["provenance"] == {"chosen_by": "the grid"}


@pytest.mark.parametrize("text,message", [
    ("lr = 0.1\n", r"put flag values under \[flags\]"),
    ("[flags]\nlr = \n", "not valid TOML"),
    ("[flags]\ntrain = true\n", "train belong on the command line"),
    ("[flags]\nlrr = 0.1\n", "unknown flag 'lrr'"),
    ("[flags]\nnumber_of_epochs = 0\n", r"number_of_epochs = 0: .*not a positive integer"),
    ("[flags]\nlr = \"fast\"\n", r"lr = 'fast'"),
])
def test_bad_files_are_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        config_file.apply(config_file.read(_write(tmp_path, text)), _flags())


def test_a_missing_file_or_a_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        config_file.read(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        config_file.read(tmp_path)


def test_every_shipped_preset_reads_and_names_real_flags():
    import main  # noqa: F401 (defines every flag on absl's FLAGS)

    presets = sorted((REPO / "configs").glob("*/*.toml"))
    assert len(presets) >= 8
    for path in presets:
        settings = config_file.read(path)
        assert settings.provenance.get("chosen_by"), f"{path} does not say how it was chosen"
        assert "VALIDATION" not in str(settings.provenance), path
        unknown = [name for name in settings.flags if name not in flags.FLAGS]
        assert not unknown, f"{path}: {unknown}"
        assert path.parent.name in families.FAMILIES, f"{path}: no model of that name"
