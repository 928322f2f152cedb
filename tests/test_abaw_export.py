"""ABAW submission files from predict tables: layout, headers, and the fill rule for
frames without a face, worked out by hand."""
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.core.labels import AU_NAMES, EXPR_NAMES
from stages.export_abaw import cli


def table(path, frames, faces, extra=None):
    """``extra``: "face", a second face of the last frame (--all-faces); "copy", its row again."""
    rows = []
    for f, has in zip(frames, faces):
        row = {"frame": f, "file": None, "face": has, "track": 0 if has else -1,
               "expression": EXPR_NAMES[f % 7] if has else None,
               "valence": f / 10 if has else None, "arousal": -f / 10 if has else None}
        row.update({a: (f + i) % 2 if has else None for i, a in enumerate(AU_NAMES)})
        rows.append(row)
    if extra:
        rows.append(dict(rows[-1]) | ({"track": 1} if extra == "face" else {}))
    columns = ["frame", "file", "face", "track", "expression", "valence", "arousal", *AU_NAMES]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)  # no rows: the header only
    return path


def test_files_headers_and_frames_without_a_face_take_the_nearest_earlier_prediction(tmp_path):
    # frames 0 and 1 without a face (take frame 2's), 5-7 without (take 4's), 8 has one
    path = table(tmp_path / "video_a.csv", [0, 1, 2, 3, 4, 5, 6, 7, 8],
                 [False, False, True, True, True, False, False, False, True])
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub")])
    assert result.exit_code == 0, result.output
    source = [2, 2, 2, 3, 4, 4, 4, 4, 8]  # the frame each of frames 0..8 takes its prediction from
    expr = (tmp_path / "sub/EXPR_Set/video_a.txt").read_text().splitlines()
    assert expr[0] == "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"
    assert expr[1:] == [str(f % 7) for f in source]
    au = (tmp_path / "sub/AU_Set/video_a.txt").read_text().splitlines()
    assert au[0] == "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25"
    assert au[1:] == [",".join(str((f + i) % 2) for i in range(8)) for f in source]
    va = (tmp_path / "sub/VA_Set/video_a.txt").read_text().splitlines()
    assert va[0] == "valence,arousal" and va[1:] == [f"{f / 10:.6f},{-f / 10:.6f}" for f in source]


@pytest.mark.parametrize("frames, faces, extra, message", [
    ([0, 1], [False, False], None, "no face in any frame"),
    ([], [], None, "v.csv: the table has no rows (its header only): nothing to export"),
    ([0, 1], [True, True], "face", "v.csv: row 4: frame 1 again (first at row 3): ABAW wants one row per frame; "
                                   "a table of every face (--all-faces): predict without it"),
    ([0, 1], [True, True], "copy", "v.csv: row 4: frame 1 again (first at row 3): ABAW wants one row per frame; "
                                   "the table was edited or joined?"),
    ([0, 3, 6, 9], [True, False, True, True], None, "v.csv: no row for frame 1 (between frames 0 and 3): ABAW wants "
                                                    "a row for every frame: predict without --every"),
    ([10, 11], [True, True], None, "v.csv: no row for frames 0..9 (its first row is frame 10): ABAW wants a row for "
                                   "every frame from 0"),
])
def test_tables_it_cannot_export_are_refused_in_one_line(tmp_path, frames, faces, extra, message):
    path = table(tmp_path / "v.csv", frames, faces, extra)
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub")])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sub").exists()
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(cli, [str(other), "--out", str(tmp_path / "sub")])
    assert result.exit_code != 0 and "not a table written by `mtaffect predict`" in result.output


def test_a_file_where_a_task_folder_goes_is_named_before_anything_is_written(tmp_path):
    path = table(tmp_path / "video_a.csv", [0, 1], [True, True])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "EXPR_Set").write_text("mine")
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert f"{tmp_path / 'sub' / 'EXPR_Set'}: a file is where the folder EXPR_Set/ goes" in result.output
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["EXPR_Set"]  # nothing written
    assert (tmp_path / "sub" / "EXPR_Set").read_text() == "mine"


def test_a_table_with_its_au_columns_in_another_order_exports_the_same_files(tmp_path):
    path = table(tmp_path / "v.csv", [0, 1, 2], [True, False, True])
    assert CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "a")]).exit_code == 0
    rows = pd.read_csv(path)
    rows[[*rows.columns[:7], *reversed(AU_NAMES)]].to_csv(path, index=False)  # AU25, AU20, ..., AU1
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    for task in ("AU", "EXPR", "VA"):
        assert (tmp_path / f"b/{task}_Set/v.txt").read_text() == (tmp_path / f"a/{task}_Set/v.txt").read_text()


def test_a_table_of_another_au_set_exports_its_other_tasks_only(tmp_path):
    path = tmp_path / "v.csv"
    rows = pd.read_csv(table(path, [0, 1], [True, True])).drop(columns=["AU25"])
    rows.to_csv(path, index=False)
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert (f"{path}: predicts the AUs AU1, AU2, AU4, AU6, AU12, AU15, AU20 (a model of another AU set), not the 8 "
            "of the abaw2020 ABAW files") in result.output, result.output
    assert not (tmp_path / "sub").exists()
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub"), "--task", "EXPR", "--task", "VA"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "sub").iterdir() if not p.name.startswith(".")) == ["EXPR_Set", "VA_Set"]
    # probability columns of 6 classes: neither era's
    rows.assign(**{f"p_{e}": 0.1 for e in EXPR_NAMES[:6]}).to_csv(path, index=False)
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub2"), "--task", "VA"])
    assert result.exit_code != 0 and "neither the 7 basic expressions nor those and Other" in result.output


def test_a_disk_that_fills_midway_leaves_only_recorded_files_and_the_next_run_replaces_them(tmp_path, monkeypatch):
    import errno

    import pipeline.predict.export as export
    import pipeline.predict.outputs as outputs

    a, b = table(tmp_path / "a.csv", [0, 1], [True, True]), table(tmp_path / "b.csv", [0, 1], [True, True])
    files, real_header = [], export.header

    def header(task, aus, classes):  # files are written a: AU, EXPR, VA, then b: AU, EXPR, VA
        files.append(task)
        if len(files) == 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_header(task, aus, classes)

    monkeypatch.setattr(export, "header", header)
    out = tmp_path / "sub"
    result = CliRunner().invoke(cli, [str(a), str(b), "--out", str(out)])
    assert result.exit_code != 0 and "No space left on device" in result.output
    assert (out / "EXPR_Set/b.txt").exists() and not (out / "VA_Set/b.txt").exists()
    result = CliRunner().invoke(cli, [str(a), str(b), "--out", str(out)])  # every file there is ours: replaced
    assert result.exit_code == 0, result.output
    # the record itself cannot be written: the file it would name goes with it
    monkeypatch.setattr(outputs, "write_json", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    folder = outputs.OutputFolder(out, "export-abaw")
    (out / "extra.txt").write_text("written by this run")
    with pytest.raises(OSError):
        folder.record(out / "extra.txt")
    assert not (out / "extra.txt").exists() and "extra.txt" not in folder.entries


@pytest.mark.parametrize("change, message", [
    ("duplicate", "column AU4 twice in its header: which one is meant cannot be told"),
    ("semicolons", "its columns are separated by ';', not commas (saved by a spreadsheet?)"),
])
def test_a_table_with_a_column_twice_or_another_separator_is_named(tmp_path, change, message):
    path = table(tmp_path / "v.csv", [0, 1], [True, True])
    lines = path.read_text().splitlines()
    if change == "duplicate":  # pandas alone would read the first AU4 and call the second AU4.1
        lines = [line + "," + line.split(",")[lines[0].split(",").index("AU4")] for line in lines]
    else:
        lines = [line.replace(",", ";") for line in lines]
    path.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, [str(path), "--out", str(tmp_path / "sub")])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "sub").exists()


@pytest.mark.parametrize("name, content", [("latin.csv", "frame,caf\xe9\n0,1\n".encode("latin-1")),
                                           ("fake.parquet", b"frame,face\n0,true\n"),
                                           ("cut.parquet", b"PAR1\x15\x04")])
def test_a_table_that_is_no_readable_predict_table_is_one_line(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    result = CliRunner().invoke(cli, [str(tmp_path / name), "--out", str(tmp_path / "sub")])
    assert result.exit_code != 0 and "Traceback" not in result.output and result.exception is not None
    assert f"{tmp_path / name}: not a table written by `mtaffect predict`" in result.output, result.output
    assert not (tmp_path / "sub").exists()
