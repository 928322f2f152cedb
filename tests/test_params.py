"""params.yaml: the values that run, one source per default, students inheriting the
teacher's knobs, presets written into the file, each stage reading (and validating) the
sections it asks for, the whole file checked by check-params, and every problem one line
naming the key and the fix."""
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pipeline.build.params import BuildParams
from pipeline.core.catalogue import check_pretrained, FAMILY_DEFAULTS, SCHEMAS, apply_preset, check_all, defaults, preset
from pipeline.core.errors import ParamsError
from pipeline.core.params import TOP_LEVEL, load, resolve, with_overrides
from pipeline.extraction.params import ExtractParams, SourceParams
from pipeline.training.params import StudentParams, TrainParams
from synthetic.params import SynthParams

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def every(raw: dict, where: str = "params.yaml"):
    return resolve(raw, where, SCHEMAS)


def test_the_committed_file_is_the_demo_preset_and_every_preset_is_valid(tmp_path):
    copy = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", copy)
    assert apply_preset(copy, "demo") == ([], None) and copy.read_bytes() == (ROOT / "params.yaml").read_bytes()
    for name in ("tiny", "abaw2020", "tiny2022", "demo2022", "demo"):
        apply_preset(copy, name)
        p, _ = check_all(copy)
        assert p.teacher.model_dump() == TrainParams(**preset(name)["teacher"]).model_dump(), name
        assert p.synth.label_schema == p.build.label_schema == ("abaw2022" if "2022" in name else "abaw2020"), name
    assert copy.read_text().count("# ") == (ROOT / "params.yaml").read_text().count("# ")  # comments kept


def test_a_preset_makes_synthetic_sources_those_its_data_holds_and_never_touches_a_users(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    changed, _ = apply_preset(path, "demo2022")
    assert {"sources.saffwild2: added", "sources.affectnet: added"} <= set(changed)
    p, _ = check_all(path)
    assert list(p.sources) == ["affwild2", "disfa", "expw", "afewva", "saffwild2", "affectnet"]
    assert p.sources["affectnet"].root == "data/synth/affectnet" and "affectnet" in p.build.va_sources
    changed, backup = apply_preset(path, "demo")
    assert "sources.affectnet: removed" in changed and backup is not None
    assert path.read_bytes() == (ROOT / "params.yaml").read_bytes()  # back where it was
    mine = yaml.safe_load(path.read_text())
    mine["sources"]["affwild2"]["root"] = str(tmp_path / "my-affwild2")  # one data set of the user's own
    path.write_text(yaml.safe_dump(mine, sort_keys=False))
    changed, _ = apply_preset(path, "demo2022")
    assert not any(c.startswith("sources.") for c in changed)
    assert yaml.safe_load(path.read_text())["sources"] == mine["sources"]


def test_a_preset_extends_another_with_only_what_differs():
    demo, demo2022 = preset("demo"), preset("demo2022")
    assert {s for s in demo if demo[s] != demo2022[s]} == {"synth", "build"}
    assert demo2022["build"]["va_sources"] == ["affwild2", "afewva", "saffwild2", "affectnet"]
    assert demo2022["synth"] == {**demo["synth"], "label_schema": "abaw2022"}
    assert preset("tiny2022")["teacher"] == preset("tiny")["teacher"] != demo["teacher"]


def test_one_source_per_default_the_schemas(raw):
    # the abaw2020 preset sets no training knob: the schemas' defaults are the paper's values
    paper = preset("abaw2020")
    assert paper["teacher"] == TrainParams().model_dump(mode="json") and paper["teacher"]["lr"] == 1e-4
    assert paper["student"] == {"epochs": 3, "lam": 0.6, "temperature": 1.5, "distill_unlabelled": True}
    assert defaults()["synth"] == SynthParams().model_dump(mode="json")
    from pipeline.training import losses  # lambda and T live in the params, nowhere else

    assert not hasattr(losses, "DEFAULT_LAMBDA") and not hasattr(losses, "DEFAULT_TEMPERATURE")


def test_students_inherit_the_teachers_knobs_and_override_only_what_differs(raw):
    raw["teacher"]["lr"] = 0.002
    p = every(raw)
    assert [s.lr for s in p.students.values()] == [0.002] * 3  # the teacher's, as edited
    assert [s.epochs for s in p.students.values()] == [5] * 3 and p.teacher.epochs == 10  # student's own
    raw["students"]["s2"]["lr"] = 0.01
    assert every(raw).students["s2"].lr == 0.01 and every(raw).students["s1"].lr == 0.002
    raw["student"]["lrr"] = 1
    with pytest.raises(ParamsError, match=r"unknown key 'student.lrr'; did you mean 'student.lr'"):
        every(raw)
    del raw["student"]["lrr"]
    del raw["student"]["lam"]  # a student's own knob is required
    with pytest.raises(ParamsError, match=r"missing key 'student.lam'"):
        every(raw)


def test_the_forms_before_presets_name_the_key_to_set_now(raw):
    raw["profile"] = "demo"
    with pytest.raises(ParamsError, match=r"profile: params.yaml now holds the values that run: `mtaffect preset NAME`"):
        every(raw)
    del raw["profile"]
    raw["profiles"] = {"demo": {"teacher": {"backbone": "resnet18"}}}  # what `dvc exp run -S profiles...` adds
    with pytest.raises(ParamsError, match=r"profiles.demo.teacher.backbone: presets replaced the profiles; set the "
                                          r"section's key itself \(teacher.backbone\)"):
        every(raw)


def test_a_stage_reads_only_the_sections_it_asks_for(tmp_path, raw):
    raw["evaluate"]["bootstrap"] = "many"  # a section train_teacher does not read
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    p = load(path, TrainParams, BuildParams)
    assert p.teacher.epochs == 10 and p.build.out == "data/build" and p.threads == 1
    with pytest.raises(AttributeError, match="'evaluate' was not loaded"):
        p.evaluate  # noqa: B018
    with pytest.raises(ParamsError, match="evaluate.bootstrap: expected an integer"):
        check_all(path)  # the whole file: what `dvc repro` runs before any stage
    raw["teachr"] = {}  # a misspelt section is found by every stage
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"unknown key 'teachr'; did you mean 'teacher'"):
        load(path, SynthParams)


def test_the_top_level_names_are_the_schemas(raw):
    assert set(TOP_LEVEL) == {"threads"} | {s.section for s in SCHEMAS} | set(FAMILY_DEFAULTS) == set(raw)


def test_ensemble_members_must_be_students(tmp_path, raw):
    raw["ensemble"]["members"] = ["s1", "s9"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"ensemble.members: 's9' is not a student .*add it under `students`"):
        check_all(path)


def test_missing_section_and_key_are_named(raw):
    del raw["build"]
    with pytest.raises(ParamsError, match="missing section 'build'"):
        every(raw)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["teacher"]["lr"]
    with pytest.raises(ParamsError, match="missing key 'teacher.lr'"):
        every(raw)


@pytest.mark.parametrize("section, key, value, message", [
    ("teacher", "epochs", "eight", r"teacher.epochs: expected an integer, got 'eight'"),
    ("teacher", "epochs", 2.5, r"teacher.epochs: expected an integer"),
    ("teacher", "lr", "fast", r"teacher.lr: expected a number"),
    ("extract", "track", "yes", r"extract.track: expected true or false"),
    ("extract", "on_error", "ignore", r"extract.on_error: expected one of 'skip', 'fail'"),
    ("build", "au_sources", "affwild2", r"build.au_sources: expected a list"),
    ("build", "expr_downsample", {"Neutral": "ten"}, r"build.expr_downsample.Neutral: expected an integer"),
    ("teacher", "task_weights", {"AU": 1.0, "EXPR": 1.0}, r"teacher.task_weights: give a weight for every task"),
    ("ensemble", "members", ["s1", "s1"], r"ensemble.members: 's1' listed twice"),
    ("build", "expr_sources", ["expw", "expw"], r"build.expr_sources: 'expw' listed twice"),
    ("teacher", "seed", 2**64 + 1, r"teacher.seed: must be < 4294967296, got 18446744073709551617"),  # torch's seed would overflow
])
def test_wrong_type_names_the_key(raw, section, key, value, message):
    raw[section][key] = value
    with pytest.raises(ParamsError, match=message):
        every(raw)


def test_unknown_key_suggests_the_right_one(raw):
    raw["teacher"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"unknown key 'teacher.epoch'; did you mean 'teacher.epochs'"):
        every(raw)


def _keys(d, path=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield f"{path}{k}", k
            yield from _keys(v, f"{path}{k}.")


def test_no_parameter_is_named_size_or_nfiles_which_dvcs_run_cache_would_ignore(raw):
    # DVC drops keys named size and nfiles, at any depth, from the hash its run cache finds
    # earlier runs by (treeverse/dvc#10296): changing such a parameter would check out the
    # outputs of its old value. (`synth.size` did: a demo run came back for size medium.)
    assert not [path for path, key in _keys(raw) if key in ("size", "nfiles")]
    from dvc.utils import dict_sha256  # the run cache's hash, with the keys it leaves out

    changed = {**raw, "synth": {**raw["synth"], "dataset_size": "medium"}}
    assert dict_sha256(changed, exclude=["size", "nfiles"]) != dict_sha256(raw, exclude=["size", "nfiles"])


def test_old_size_keys_say_what_they_are_now(raw):
    raw["synth"]["size"] = raw["synth"].pop("dataset_size")
    with pytest.raises(ParamsError, match=r"unknown key 'synth.size'; it is now 'synth.dataset_size'"):
        every(raw)


def test_optional_and_int_as_float(raw):
    raw["build"]["au_mean_ir"] = 2
    assert every(raw).build.au_mean_ir == 2.0
    raw["build"]["au_mean_ir"] = None
    assert every(raw).build.au_mean_ir is None


def test_a_missing_or_undecodable_file_is_one_line(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load(tmp_path / "params.yaml")
    (tmp_path / "latin1.yaml").write_bytes("# mtaff\xe9ct\nthreads: 1\n".encode("latin-1"))
    with pytest.raises(ParamsError, match=r"not UTF-8 text \(byte 0xe9 at offset 7\)"):
        load(tmp_path / "latin1.yaml")
    for encoding in ("utf-16", "utf-16-le", "utf-16-be"):  # with and without its byte-order mark
        (tmp_path / "wide.yaml").write_bytes("threads: 1\n".encode(encoding))
        with pytest.raises(ParamsError, match=r"wide.yaml: not UTF-8 text \(UTF-16, by its byte-order mark or NUL "
                                              r"bytes\): save it as UTF-8$"):
            load(tmp_path / "wide.yaml")
    (tmp_path / "video.yaml").write_bytes(b"RIFF\x10\x00\x00\x00AVI LIST" + bytes(range(256)) * 8)  # a video's bytes
    with pytest.raises(ParamsError, match=r"video.yaml: not a text file \(it holds NUL bytes\): give the params file"):
        load(tmp_path / "video.yaml")
    (tmp_path / "empty.yaml").write_text("\n")  # outside any git work tree: no `git checkout` to advise
    with pytest.raises(ParamsError, match=r"empty.yaml: the file is empty$"):
        load(tmp_path / "empty.yaml")
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "params.yaml").write_text("")
    with pytest.raises(ParamsError, match=r"the file is empty \(restore it from git: `git checkout "):
        load(tmp_path / "repo" / "params.yaml")


def test_yaml_is_read_as_dvc_reads_it(tmp_path, raw):
    text = (ROOT / "params.yaml").read_text().replace("threads: 1", "threads: 010")
    (tmp_path / "params.yaml").write_text(text)
    assert load(tmp_path / "params.yaml").threads == 10  # YAML 1.2, as DVC: not octal 8


def test_with_overrides_checks_types(raw):
    section = every(raw).teacher
    assert with_overrides(section, epochs=None) is section
    assert with_overrides(section, epochs=2).epochs == 2
    with pytest.raises(ParamsError, match="--epochs"):
        with_overrides(section, epochs="two")


def test_cli_reports_bad_params_in_one_line_and_the_preset_command_lists_changes(tmp_path, raw):
    from stages.cli import main

    raw["teacher"]["epochs"] = "eight"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["check-params", "--params", str(bad)])
    assert result.exit_code != 0 and "teacher.epochs: expected an integer" in result.output
    assert "Traceback" not in result.output
    shutil.copy(ROOT / "params.yaml", bad)
    result = CliRunner().invoke(main, ["preset", "abaw2020", "--params", str(bad)])
    assert result.exit_code == 0 and "teacher.backbone: 'mobilenet_v3_small' -> 'resnet50'" in result.output
    assert "WARNING: teacher.backbone is resnet50 with no teacher.pretrained weights" in result.output
    assert list(check_all(bad)[0].students) == ["s1", "s2", "s3", "s4", "s5"]
    before = bad.read_text()
    back = CliRunner().invoke(main, ["preset", "demo", "--params", str(bad)])  # removes s4, s5
    assert "students.s5: removed" in back.output and f"the file as it was: {tmp_path / 'params.before-preset.yaml'}" \
        in back.output and (tmp_path / "params.before-preset.yaml").read_text() == before
    # a second removal keeps the first backup and writes the file as it was beside it
    assert CliRunner().invoke(main, ["preset", "abaw2020", "--params", str(bad)]).exit_code == 0
    bad.write_text(bad.read_text() + "# my notes\n")
    again = CliRunner().invoke(main, ["preset", "demo", "--params", str(bad)])
    assert f"the file as it was: {tmp_path / 'params.before-preset.2.yaml'}" in again.output
    assert (tmp_path / "params.before-preset.yaml").read_text() == before
    assert (tmp_path / "params.before-preset.2.yaml").read_text().endswith("# my notes\n")
    # a params file that is a link to a shared one: the shared file changes, the link stays
    (tmp_path / "shared").mkdir()
    shutil.copy(ROOT / "params.yaml", tmp_path / "shared" / "params.yaml")
    (tmp_path / "link.yaml").symlink_to(tmp_path / "shared" / "params.yaml")
    assert CliRunner().invoke(main, ["preset", "tiny", "--params", str(tmp_path / "link.yaml")]).exit_code == 0
    assert (tmp_path / "link.yaml").is_symlink()
    assert (tmp_path / "shared" / "params.yaml").read_text() != (ROOT / "params.yaml").read_text()
    # the file keeps its permissions; a read-only one is not replaced (even by root)
    (tmp_path / "shared" / "params.yaml").chmod(0o640)
    assert CliRunner().invoke(main, ["preset", "demo", "--params", str(tmp_path / "link.yaml")]).exit_code == 0
    assert (tmp_path / "shared" / "params.yaml").stat().st_mode & 0o777 == 0o640
    (tmp_path / "shared" / "params.yaml").chmod(0o444)
    kept = (tmp_path / "shared" / "params.yaml").read_text()
    locked = CliRunner().invoke(main, ["preset", "tiny", "--params", str(tmp_path / "link.yaml")])
    assert locked.exit_code != 0 and f"{tmp_path / 'shared' / 'params.yaml'}: read-only: refusing" in locked.output
    assert (tmp_path / "shared" / "params.yaml").read_text() == kept
    (tmp_path / "empty.yaml").write_text("\n")
    empty = CliRunner().invoke(main, ["check-params", "--params", str(tmp_path / "empty.yaml")])
    assert empty.exit_code != 0 and f"{tmp_path / 'empty.yaml'}: the file is empty" in empty.output
    absent = CliRunner().invoke(main, ["preset", "tiny", "--params", str(tmp_path / "absent.yaml")])
    assert absent.exit_code != 0 and f"{tmp_path / 'absent.yaml'}: not found (run from the project root" in absent.output
    unknown = CliRunner().invoke(main, ["preset", "fast", "--params", str(bad)])
    assert unknown.exit_code != 0 and "no preset 'fast': use one of abaw2020, demo, demo2022, tiny, tiny2022" in unknown.output
    # a file that is no valid YAML: the one line check-params gives, and the file as it was
    broken = bad.read_text() + "evaluate_more: [1, 2\n"
    bad.write_text(broken)
    result = CliRunner().invoke(main, ["preset", "demo", "--params", str(bad)])
    assert result.exit_code != 0 and "Traceback" not in result.output and result.exception is not None
    assert [line for line in result.output.splitlines() if line.startswith("Error: ")][0].startswith(
        f"Error: {bad}: not valid YAML (line")
    assert bad.read_text() == broken


def test_a_preset_on_a_file_without_sources_adds_every_section_and_names_the_missing_one(tmp_path):
    from stages.cli import main

    bare = tmp_path / "params.yaml"
    bare.write_text("threads: 2\n")
    result = CliRunner().invoke(main, ["preset", "tiny", "--params", str(bare)])
    assert "Traceback" not in result.output and result.exit_code != 0
    assert f"Error: {bare}: missing section 'sources' (the datasets to read" in result.output
    assert yaml.safe_load(bare.read_text())["teacher"]["epochs"] == preset("tiny")["teacher"]["epochs"]


def test_pretrained_weights_that_are_not_there_are_refused_before_any_stage(tmp_path, raw):
    raw["teacher"]["pretrained"] = str(tmp_path / "absent.pth")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"teacher.pretrained: .*absent.pth: no such file"):
        check_all(path)
    raw["teacher"]["pretrained"] = str(tmp_path)
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=rf"teacher.pretrained: {tmp_path}: a folder, not a file"):
        check_all(path)
    raw["teacher"]["pretrained"] = str(tmp_path / "absent.pth")
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "absent.pth").write_bytes(b"")  # there, but no weights: refused too, before hours of extraction
    p, _ = check_all(path)
    with pytest.raises(ParamsError, match=r"teacher.pretrained: .*absent.pth: not a readable weights file"):
        check_pretrained(p, path)
    import torch
    import torchvision

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "absent.pth")  # weights of another backbone
    with pytest.raises(ParamsError, match=r"teacher.pretrained: .*absent.pth: matches 0 of the .* weights of "
                                          "backbone mobilenet_v3_small"):
        check_pretrained(p, path)
    from stages.cli import main  # check-params (the first stage) runs it

    result = CliRunner().invoke(main, ["check-params", "--params", str(path)])
    assert result.exit_code != 0 and "teacher.pretrained" in result.output and "matches 0 of the" in result.output
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "absent.pth")
    check_pretrained(p, path)


def test_cli_help_lists_every_command():
    from stages.cli import COMMANDS, main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


#: torchvision's classification models that cannot be backbones here, and why
UNFIT = {"googlenet": "auxiliary outputs", "inception_v3": "needs 299-pixel images", "maxvit_t": "needs 224 pixels",
         **{n: "no fc or classifier (a head)" for n in ("swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s",
                                                        "swin_v2_t", "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16",
                                                        "vit_l_32")}}


def test_the_backbone_names_are_torchvisions_that_fit_and_one_of_each_family_builds():
    import re

    import torch
    import torchvision

    from pipeline.training.models import build_backbone
    from pipeline.training.params import BACKBONES

    assert sorted(BACKBONES) == sorted(set(torchvision.models.list_models(module=torchvision.models)) - set(UNFIT))
    families = {}
    for name in sorted(BACKBONES, key=len):  # the shortest name of a family: usually its smallest model
        families.setdefault(re.match(r"[a-z]+", name).group(), name)
    for name in families.values():
        net, dim = build_backbone(name)
        assert net(torch.zeros(2, 3, 112, 112)).flatten(1).shape == (2, dim), name  # training mode: one output


def test_sources_name_root_and_version_and_the_old_form_says_how(raw):
    where = "params.yaml"
    assert resolve(raw, where, [SourceParams]).sources["disfa"].version == "data/synth/disfa.version.json"
    raw["sources"]["disfa"] = "/data/DISFA"
    with pytest.raises(ParamsError, match=r"sources.disfa: expected \{root: <folder>, version: <file or folder>\}, "
                                          r"got a path; write \{root: /data/DISFA, version: /data/DISFA\}"):
        resolve(raw, where, [SourceParams])
    raw["sources"]["disfa"] = {"root": "/data/DISFA"}
    with pytest.raises(ParamsError, match=r"missing key 'sources.disfa.version'"):
        resolve(raw, where, [SourceParams])
    assert resolve(raw, where, [ExtractParams]).extract.workers == 2  # sources not asked for: not checked
    del raw["sources"]
    with pytest.raises(ParamsError, match=r"missing section 'sources'"):
        resolve(raw, where, [SourceParams])


def test_students_are_the_families_schema():
    assert StudentParams.inherits is TrainParams and StudentParams.family == "students"


@pytest.mark.parametrize("command, option", [("train-teacher", "--report"), ("train-teacher", "--log"),
                                             ("train-student", "--report"), ("rnn-teacher", "--report"),
                                             ("rnn-teacher", "--log")])
def test_an_output_option_naming_the_wrong_kind_of_path_stops_before_any_work(tmp_path, command, option):
    from stages.cli import main

    wrong = tmp_path / "report.json"
    wrong.mkdir()
    if option == "--log" and command.startswith("rnn"):  # a folder of logs: a file is the wrong kind
        wrong = tmp_path / "logs"
        wrong.write_text("")
    result = CliRunner().invoke(main, [command, option, str(wrong)])
    assert result.exit_code == 2 and f"Invalid value for '{option}'" in result.output, result.output


def test_check_params_names_a_build_source_without_an_entry_and_a_missing_features_checkpoint(tmp_path, raw):
    path = tmp_path / "params.yaml"
    bad = dict(raw, build={**raw["build"], "au_sources": ["affwild2", "saffwild2"]})
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ParamsError, match=r"build.au_sources names saffwild2, which has no entry under sources"):
        check_all(path)
    path.write_text(yaml.safe_dump(dict(raw, features={**raw["features"], "checkpoint": "models/nope.pt"})))
    with pytest.raises(ParamsError, match=rf"{path}: features.checkpoint: 'models/nope.pt' is not a checkpoint file"):
        check_all(path)
    path.write_text(yaml.safe_dump(dict(raw, features={**raw["features"], "checkpoint": str(path)})))
    with pytest.raises(ParamsError, match=rf"features.checkpoint: '{path}' is not a torch checkpoint \(no zip"):
        check_all(path)
    # a source that labels no such task, and a warm-up as long as the training
    path.write_text(yaml.safe_dump(dict(raw, build={**raw["build"], "au_sources": ["expw"]})))
    with pytest.raises(ParamsError, match=rf"{path}: build.au_sources names expw, which has no AU labels \(it labels "
                                          r"EXPR\)"):
        check_all(path)
    path.write_text(yaml.safe_dump(dict(raw, teacher={**raw["teacher"], "warmup_epochs": raw["teacher"]["epochs"]})))
    with pytest.raises(ParamsError, match=r"teacher.warmup_epochs: 10 warm-up epochs of 10: the learning rate would "
                                          "never reach lr"):
        check_all(path)


def test_the_papers_setting_on_the_synthetic_sources_is_said(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_preset(path, "abaw2020")
    notes = check_all(path)[1]
    assert any(n.startswith("sources affwild2, disfa, expw, afewva read the synthetic data") for n in notes), notes
    apply_preset(path, "demo")
    assert check_all(path)[1] == []


def test_two_students_of_the_same_settings_are_refused(raw, tmp_path):
    path = tmp_path / "params.yaml"
    raw["students"] = {"s1": {"seed": 1}, "s2": {"seed": 2}, "s3": {"seed": 1}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"students.s3: the same settings as students.s1 \(seed 1\): it would train "
                                          "the same network again"):
        check_all(path)
    raw["students"]["s3"] = {"seed": 1, "lam": 0.5}  # another setting: another network
    path.write_text(yaml.safe_dump(raw))
    check_all(path)


def test_values_no_run_could_use_are_refused_in_one_short_line(raw, tmp_path):
    raw["teacher"]["batch_per_task"] = 1  # BatchNorm cannot learn from one sample: a traceback at the first step
    with pytest.raises(ParamsError, match=r"teacher.batch_per_task: must be >= 2, got 1"):
        every(raw)
    raw["teacher"]["batch_per_task"] = 2
    every(raw)
    for section, key in (("build", "out"), ("synth", "out"), ("extract", "out")):
        bad = yaml.safe_load(yaml.safe_dump(raw))
        bad[section][key] = " "  # the current folder: outputs over the project
        with pytest.raises(ParamsError, match=rf"{section}.{key}: must name a file or folder, got ' '"):
            every(bad)
    raw["sources"]["affwild2"]["root"] = ""
    with pytest.raises(ParamsError, match=r"sources.affwild2.root: must name a file or folder, got ''"):
        every(raw)


def test_a_huge_value_is_shown_in_a_few_words(tmp_path):
    """An alias nesting a list in itself over and over (400 bytes of YAML, 10^8 items) is
    named in one short line, at once, not printed whole."""
    levels = ["&a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    text = (ROOT / "params.yaml").read_text().replace("  betas: [0.9, 0.999]", f"  betas: [{', '.join(levels)}]", 1)
    assert text != (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"teacher.betas: ") as error:
        check_all(tmp_path / "params.yaml")
    assert len(str(error.value)) < 400 and str(error.value).endswith("... (list)"), str(error.value)


def test_a_params_file_that_is_a_broken_link_says_so(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    with pytest.raises(ParamsError, match=r"a.yaml: a symbolic link to .*b.yaml, which does not exist \(or a loop"):
        check_all(tmp_path / "a.yaml")


def test_set_values_override_the_file_as_dvc_exp_run_s_does():
    from pipeline.core.params import set_values

    raw = {"teacher": {"seed": 0, "epochs": 10}, "students": {"s1": {"seed": 1}}, "ensemble": {"members": ["s1"]}}
    out = set_values(raw, ("teacher.seed=3", "students.s1.lam=1", "students.s9.distill_unlabelled=false",
                           "ensemble.members=[seed0, seed3]", "teacher.lr=1e-3"))
    assert out["teacher"] == {"seed": 3, "epochs": 10, "lr": 0.001}  # YAML 1.2: 1e-3 is a number
    assert out["students"] == {"s1": {"seed": 1, "lam": 1}, "s9": {"distill_unlabelled": False}}
    assert out["ensemble"]["members"] == ["seed0", "seed3"]
    for bad, message in (("teacher.seed", "expected KEY=VALUE"), ("teacher..seed=1", "expected KEY=VALUE"),
                         ("teacher.seed.x=1", "teacher.seed is not a mapping"), ("teacher.seed=[1", "not valid YAML"),
                         ("teacher.lr=", "no value after '=' \\(write null for none\\)")):
        with pytest.raises(ParamsError, match=message):
            set_values({"teacher": {"seed": 0}}, (bad,))


def test_check_params_stamp_never_replaces_a_file_that_is_not_a_stamp(tmp_path):
    from stages.cli import main

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    assert CliRunner().invoke(main, ["preset", "tiny", "--params", str(params)]).exit_code == 0
    backup = tmp_path / "params.before-preset.yaml"  # preset's copy of the user's earlier file
    kept = backup.read_bytes()
    result = CliRunner().invoke(main, ["check-params", "--params", str(params), "--stamp", str(backup)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.splitlines() == [f"Error: --stamp {backup}: exists and is not an earlier stamp of "
                                          "check-params: refusing to replace it (choose another path)"]
    assert backup.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == [backup.name, params.name]
    stamp = tmp_path / "params.json"
    for _ in range(2):  # a stamp replaces an earlier one
        result = CliRunner().invoke(main, ["check-params", "--params", str(params), "--stamp", str(stamp)])
        assert result.exit_code == 0 and stamp.read_text() == '{\n  "params": "valid"\n}\n', result.output


def test_check_params_shows_every_section_asked_for(tmp_path):
    from stages.cli import main

    params = str(shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml"))
    result = CliRunner().invoke(main, ["check-params", "--params", params, "--section", "teacher", "--section", "student"])
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load(result.output)) == ["teacher", "student"]
    result = CliRunner().invoke(main, ["check-params", "--params", params, "--section", "teacher", "--section", "nope"])
    assert result.exit_code == 2 and "--section nope: no such section" in result.output


def test_a_second_preset_while_one_writes_the_file_is_refused_and_changes_nothing(tmp_path):
    from pipeline.core.fileio import hold_lock, release_lock
    from stages.cli import main

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_bytes()
    lock_path = tmp_path / ".params.yaml.preset-lock"
    lock = hold_lock(lock_path, "held by this test")  # what a first preset holds while it writes
    try:
        result = CliRunner().invoke(main, ["preset", "abaw2020", "--params", str(params)])
    finally:
        release_lock(lock_path, lock)
    assert result.exit_code == 1 and result.output.strip() == \
        f"Error: another `mtaffect preset` is writing {params}: wait for it to end"
    assert params.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
    assert CliRunner().invoke(main, ["preset", "abaw2020", "--params", str(params)]).exit_code == 0  # once it let go
    assert not lock_path.exists()


def test_a_params_file_from_before_the_study_still_runs_the_pipeline(tmp_path):
    from stages.cli import main

    text = (ROOT / "params.yaml").read_text()
    old = tmp_path / "params.yaml"
    old.write_text(text[:text.index("# The controlled study")])  # no `study` section
    p, _ = check_all(old)  # what `dvc repro` checks first
    assert p.teacher.epochs == 10
    shown = CliRunner().invoke(main, ["check-params", "--params", str(old)])
    assert shown.exit_code == 0 and "study:" not in shown.output
    study = CliRunner().invoke(main, ["study", "plan", "--params", str(old)])
    assert study.exit_code == 1 and study.output.strip() == f"Error: {old}: missing section 'study'"


@pytest.mark.parametrize("setting, message", [
    ("teacher.lr=.inf", r"^params.yaml with --set teacher.lr=.inf: teacher.lr: "),
    ("soft_labels.views=3", r"^--set 'soft_labels.views=3': this command does not read 'soft_labels' \(it reads "
                            r"build, student, students, teacher, threads\)$"),
    ("techer.seed=3", r"^--set 'techer.seed=3': this command does not read 'techer'"),
])
def test_a_bad_set_is_named_as_the_setting_never_blamed_on_the_file(tmp_path, monkeypatch, setting, message):
    from pipeline.build.params import BuildParams
    from pipeline.training.params import StudentParams, TrainParams

    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "params.yaml", "params.yaml")
    schemas = (BuildParams, TrainParams, StudentParams)
    assert load("params.yaml", *schemas, overrides=("teacher.seed=3",)).teacher.seed == 3
    with pytest.raises(ParamsError, match=message):
        load("params.yaml", *schemas, overrides=(setting,))
    raw = Path("params.yaml").read_text()  # a wrong file is still the file's fault, with or without --set
    Path("params.yaml").write_text(raw.replace("  lr: 0.004", "  lr: -1"))
    with pytest.raises(ParamsError, match=r"^params.yaml: teacher.lr: "):
        load("params.yaml", *schemas, overrides=("teacher.seed=3",))


def test_a_preset_in_a_folder_it_cannot_write_names_the_params_file_and_its_folder(tmp_path, monkeypatch):
    import os

    from stages.cli import main

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    kept = params.read_bytes()
    real = os.open  # as root every folder is writable: the lock file's creation is refused here

    def refusing(path, *args, **kwargs):
        if str(path).endswith(".preset-lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", refusing)
    result = CliRunner().invoke(main, ["preset", "tiny", "--params", str(params)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{params}: its folder {tmp_path} cannot be written (Permission denied)" in result.output, result.output
    assert params.read_bytes() == kept


def test_a_preset_keeps_a_files_windows_line_ends(tmp_path):
    from pipeline.core.catalogue import apply_preset

    params = tmp_path / "params.yaml"
    params.write_bytes((ROOT / "params.yaml").read_bytes().replace(b"\n", b"\r\n"))
    apply_preset(params, "tiny")
    data = params.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 100  # every line end CRLF, none mixed


@pytest.mark.parametrize("out", ["data/synth", "data/synth/expw/.."])
def test_an_extraction_output_over_a_data_set_is_refused_before_dvc_removes_it(tmp_path, raw, out):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(dict(raw, extract={**raw["extract"], "out": out})))
    with pytest.raises(ParamsError, match=r"extract.out: .* overlaps sources\.\w+\.root .*the data set would go"):
        check_all(path)
