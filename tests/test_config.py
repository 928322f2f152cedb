from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.core.config import PROFILES, load_params, resolve, with_overrides
from pipeline.core.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def use_abaw2020(raw: dict) -> dict:
    """The paper's profile, with the two more students its ensemble names."""
    raw["profile"] = "abaw2020"
    raw["students"].update(s4={"seed": 4}, s5={"seed": 5})
    return raw


def test_committed_params_are_valid_for_every_profile(raw):
    for profile in ("demo", "tiny"):
        raw["profile"] = profile
        assert resolve(raw).profile == profile
    # abaw2020's ensemble has the paper's five students: the error says what to add
    raw["profile"] = "abaw2020"
    with pytest.raises(ParamsError, match="ensemble.members: 's4' is not a student .* add it under `students`"):
        resolve(raw)
    assert list(resolve(use_abaw2020(raw)).students) == ["s1", "s2", "s3", "s4", "s5"]
    assert set(PROFILES) == {"demo", "tiny", "abaw2020"}


def test_dataclass_defaults_are_the_params_yaml_base_sections(raw):
    # One set of defaults: a stage run by hand with no params file in sight behaves as the
    # base section says (profiles then override it).
    from pipeline.core.config import SECTIONS

    for name, cls in SECTIONS.items():
        assert cls().model_dump() == raw[name], name


def test_profile_overrides_apply(raw):
    raw["profile"] = "tiny"
    raw["profiles"]["tiny"]["teacher"] = {"epochs": 1}
    raw["teacher"]["epochs"] = 8
    assert resolve(raw).teacher.epochs == 1
    use_abaw2020(raw)
    raw["profiles"]["abaw2020"]["teacher"] = {}
    assert resolve(raw).teacher.epochs == 8


def test_unknown_profile_names_the_key(raw):
    raw["profile"] = "fast"
    with pytest.raises(ParamsError, match="profile: unknown profile 'fast'"):
        resolve(raw)


def test_missing_section_names_it(raw):
    del raw["build"]
    with pytest.raises(ParamsError, match="missing section 'build'"):
        resolve(raw)


def test_missing_key_names_it(raw):
    del raw["teacher"]["lr"]
    with pytest.raises(ParamsError, match="missing key 'teacher.lr'"):
        resolve(raw)


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("teacher", "epochs", "eight", r"teacher.epochs: expected an integer, got 'eight'"),
        ("teacher", "epochs", 2.5, r"teacher.epochs: expected an integer"),
        ("teacher", "lr", "fast", r"teacher.lr: expected a number"),
        ("extract", "track", "yes", r"extract.track: expected true or false"),
        ("extract", "on_error", "ignore", r"extract.on_error: expected one of 'skip', 'fail'"),
        ("build", "au_sources", "affwild2", r"build.au_sources: expected a list"),
        ("build", "expr_downsample", {"Neutral": "ten"}, r"build.expr_downsample.Neutral: expected an integer"),
    ],
)
def test_wrong_type_names_the_key(raw, section, key, value, message):
    raw[section][key] = value
    with pytest.raises(ParamsError, match=message):
        resolve(raw)


def test_wrong_type_in_inactive_profile_is_found(raw):
    raw["profile"] = "demo"
    raw["profiles"]["abaw2020"]["teacher"] = {"epochs": "8"}
    with pytest.raises(ParamsError, match=r"profiles.abaw2020.teacher.epochs: expected an integer"):
        resolve(raw)


def test_unknown_key_suggests_the_right_one(raw):
    raw["teacher"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"unknown key 'teacher.epoch'; did you mean 'teacher.epochs'"):
        resolve(raw)
    del raw["teacher"]["epoch"]
    raw["profiles"]["tiny"]["teacher"]["bakbone"] = "x"
    with pytest.raises(ParamsError, match=r"profiles.tiny.teacher.bakbone"):
        resolve(raw)


def _keys(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield f"{path}{k}", k
            yield from _keys(v, f"{path}{k}.")


def test_no_parameter_is_named_size_or_nfiles_which_dvcs_run_cache_would_ignore(raw):
    # DVC drops keys named size and nfiles, at any depth, from the hash its run cache finds
    # earlier runs by (treeverse/dvc#10296): changing such a parameter would check out the
    # outputs of its old value. (`synth.size` did: a demo run came back for size medium.)
    bad = [path for path, key in _keys(raw) if key in ("size", "nfiles")]
    assert not bad
    from dvc.utils import dict_sha256  # the run cache's hash, with the keys it leaves out

    changed = {**raw, "synth": {**raw["synth"], "dataset_size": "medium"}}
    assert dict_sha256(changed, exclude=["size", "nfiles"]) != dict_sha256(raw, exclude=["size", "nfiles"])


def test_old_size_keys_say_what_they_are_now(raw):
    raw["synth"]["size"] = raw["synth"].pop("dataset_size")
    with pytest.raises(ParamsError, match=r"unknown key 'synth.size'; it is now 'synth.dataset_size'"):
        resolve(raw)
    raw["synth"]["dataset_size"] = raw["synth"].pop("size")
    raw["profiles"]["demo"]["extract"]["size"] = 128
    with pytest.raises(ParamsError, match=r"'profiles.demo.extract.size'; it is now 'profiles.demo.extract.face_size'"):
        resolve(raw)


def test_optional_and_int_as_float(raw):
    raw["build"]["au_mean_ir"] = 2
    assert resolve(raw).build.au_mean_ir == 2.0
    raw["build"]["au_mean_ir"] = None
    assert resolve(raw).build.au_mean_ir is None


def test_load_params_reports_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


def test_with_overrides_checks_types(raw):
    section = resolve(raw).teacher
    assert with_overrides(section, epochs=None) is section
    assert with_overrides(section, epochs=2).epochs == 2
    with pytest.raises(ParamsError, match="--epochs"):
        with_overrides(section, epochs="two")


def test_cli_reports_bad_params_in_one_line(tmp_path, raw):
    from stages.cli import main

    raw["teacher"]["epochs"] = "eight"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["check-params", "--params", str(bad)])
    assert result.exit_code != 0
    assert "teacher.epochs: expected an integer" in result.output
    assert "Traceback" not in result.output


def test_abaw2020_without_pretrained_weights_warns_loudly(tmp_path, raw):
    from stages.cli import main

    use_abaw2020(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["check-params", "--params", str(path), "--section", "teacher"])
    assert result.exit_code == 0
    assert "WARNING: profile abaw2020 trains ResNet-50 from random weights" in result.output
    raw["teacher"]["pretrained"] = "weights/resnet50_face.pth"
    path.write_text(yaml.safe_dump(raw))
    assert "WARNING" not in CliRunner().invoke(main, ["check-params", "--params", str(path)]).output


def test_cli_help_lists_every_command():
    from stages.cli import COMMANDS, main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_the_backbone_names_are_torchvisions():
    import torchvision

    from pipeline.core.config import BACKBONES

    assert sorted(BACKBONES) == sorted(torchvision.models.list_models(module=torchvision.models))


def test_sources_name_root_and_version_and_the_old_form_says_how(raw):
    assert resolve(raw).sources["disfa"].version == "data/synth/disfa.version.json"
    raw["sources"]["disfa"] = "/data/DISFA"
    with pytest.raises(ParamsError, match=r"sources.disfa: expected \{root: <folder>, version: <file or folder>\}, "
                                          r"got a path; write \{root: /data/DISFA, version: /data/DISFA\}"):
        resolve(raw)
    raw["sources"]["disfa"] = {"root": "/data/DISFA"}
    with pytest.raises(ParamsError, match=r"missing key 'sources.disfa.version'"):
        resolve(raw)
    raw["sources"]["disfa"] = {"root": "/data/DISFA", "versoin": "x"}
    with pytest.raises(ParamsError, match=r"unknown key 'sources.disfa.versoin'; did you mean 'sources.disfa.version'"):
        resolve(raw)
