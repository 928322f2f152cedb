"""The build stage on fabricated frame tables (the build reads tables, never faces)."""
import json
import os

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.build.indexes import build
from pipeline.core.index import index_columns, index_schema
from pipeline.build.params import BuildParams
from pipeline.core.labels import AU_NAMES, EXPR_NAMES, va_to_bin
from pipeline.core.errors import DataError
from pipeline.core.index import FrameIndex
from pipeline.core.schema import ABAW2020, ABAW2022, OTHER
from pipeline.core.tables import (LANDMARK_COLUMNS, PARQUET_OPTIONS, FrameTableWriter, frame_schema, frame_table,
                                  uid, write_parquet)


def fake_source(faces_dir, source, n, rng, split="train", videos=4, au=False, expr=False, va=False,
                expr_p=None, video_prefix="v", first_frame=0, face_size=112):
    cols = {
        "source": [source] * n,
        "video": [f"{video_prefix}{i % videos}" for i in range(n)],
        "frame": np.arange(n) + first_frame,
        "split": [split] * n,
        "row": np.arange(n) % 50,
        "det_score": np.ones(n),
        "timestamp": np.full(n, np.nan),
    }
    cols["subject"] = cols["video"]
    cols["uid"] = [uid(source, v, f) for v, f in zip(cols["video"], cols["frame"])]
    cols["shard"] = [f"shard-{i // 50:05d}.h5" for i in range(n)]  # relative to the table, as extraction writes
    freq = np.array([0.3, 0.2, 0.25, 0.3, 0.35, 0.08, 0.05, 0.5])
    a = (rng.random((n, 8)) < freq).astype(np.int8) if au else np.full((n, 8), -1, np.int8)
    for j, name in enumerate(AU_NAMES):
        cols[name] = a[:, j]
    p = expr_p if expr_p is not None else [0.4, 0.05, 0.03, 0.03, 0.3, 0.12, 0.07]
    cols["expr"] = rng.choice(7, size=n, p=p).astype(np.int8) if expr else np.full(n, -1, np.int8)
    v = np.clip(rng.normal(0.2, 0.3, size=(n, 2)), -1, 1) if va else np.full((n, 2), np.nan)
    cols["valence"], cols["arousal"] = v[:, 0], v[:, 1]
    for c in LANDMARK_COLUMNS:
        cols[c] = np.zeros(n)
    table = frame_table(cols)
    old = faces_dir / source / "frames.parquet"
    if split == "val" and old.exists():  # append validation rows to the source's table
        table = pa.concat_tables([pq.read_table(old), table])
    write_parquet(table, faces_dir / source / "frames.parquet")
    for shard in set(cols["shard"]):  # the build reads their metadata, never a face: none is written
        fake_shard(faces_dir / source / shard, 50, face_size)


def fake_shard(path, faces, size=112, recorded=None):
    """A face shard's metadata as ShardWriter writes it (``faces`` rows of ``size``), no face
    stored; ``recorded`` the size its attributes say (default ``size``)."""
    with h5py.File(path, "w") as h5:
        d = h5.create_dataset("faces", shape=(faces, size, size, 3), dtype=np.uint8, chunks=(1, size, size, 3))
        d.attrs["size"] = size if recorded is None else recorded


@pytest.fixture
def faces_dir(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "faces"
    fake_source(d, "affwild2", 3000, rng, au=True, expr=True, va=True, videos=10)
    fake_source(d, "affwild2", 400, rng, split="val", au=True, expr=True, va=True, videos=3, video_prefix="val")
    fake_source(d, "disfa", 800, rng, au=True, videos=4, video_prefix="SN")
    fake_source(d, "expw", 600, rng, expr=True, videos=600, video_prefix="img",
                expr_p=[0.1, 0.1, 0.05, 0.1, 0.35, 0.2, 0.1])
    fake_source(d, "afewva", 500, rng, va=True, videos=5, video_prefix="01_")
    return d


def frames_of(faces_dir):
    return pd.concat([pd.read_parquet(faces_dir / s / "frames.parquet") for s in ("affwild2", "disfa", "expw",
                                                                                   "afewva")], ignore_index=True)


def test_build_writes_indexes_and_recomputable_report(faces_dir, tmp_path):
    p = BuildParams()
    report = build(faces_dir, tmp_path / "build", p)
    idx = {t: pd.read_parquet(tmp_path / "build" / f"train_{t}.parquet") for t in ("AU", "EXPR", "VA")}
    val = pd.read_parquet(tmp_path / "build" / "val.parquet")

    # AU: Aff-Wild2 train + DISFA; IRLbl/MeanIR before and after recomputed from the index
    au = idx["AU"]
    assert set(au["source"]) == {"affwild2", "disfa"}
    assert report["AU"]["sizes"]["affwild2"]["frames"] == 3000 and report["AU"]["sizes"]["disfa"]["frames"] == 800
    y = au[list(AU_NAMES)].to_numpy()
    pos = (y == 1).sum(axis=0)
    np.testing.assert_allclose(list(report["AU"]["irlbl_before"].values()), pos.max() / pos)
    wpos = ((y == 1) * au["weight"].to_numpy()[:, None]).sum(axis=0)
    np.testing.assert_allclose(list(report["AU"]["irlbl_after"].values()), wpos.max() / wpos)
    assert report["AU"]["meanir_after"] < report["AU"]["meanir_before"]
    assert report["AU"]["clones"] <= 0.5 * len(au)
    assert np.all(au["weight"] >= 1) and np.all(au["weight"] == np.round(au["weight"]))

    # EXPR: Aff-Wild2 downsampled per class + all ExpW; classes equally likely after
    ex = idx["EXPR"]
    frames = frames_of(faces_dir)
    aw = frames[(frames.source == "affwild2") & (frames.split == "train")]
    neutral_aw = (aw.expr == 0).sum()
    assert ((ex.source == "affwild2") & (ex.expr == 0)).sum() == -(-neutral_aw // 10)
    assert ((ex.source == "expw")).sum() == 600
    after = np.array(list(report["EXPR"]["class_counts_after"].values()))
    np.testing.assert_allclose(after, after.mean(), rtol=1e-9)
    counts = np.bincount(ex["expr"], weights=ex["weight"], minlength=7)
    np.testing.assert_allclose(counts, after)

    # VA: Aff-Wild2 every 5th + AFEW-VA; bin counts after recomputed from the index
    va = idx["VA"]
    assert (va.source == "affwild2").sum() == 600 and (va.source == "afewva").sum() == 500
    bins = va_to_bin(va["valence"].to_numpy())
    np.testing.assert_allclose(np.bincount(bins, weights=va["weight"], minlength=20),
                               report["VA"]["bin_counts_after"][0], atol=1e-5)
    before = np.array(report["VA"]["bin_counts_before"][0], float)
    after_v = np.array(report["VA"]["bin_counts_after"][0])
    occupied = before > 0
    assert after_v[occupied].std() / after_v[occupied].mean() < before[occupied].std() / before[occupied].mean()

    # per source: frames and expected draws per epoch (the sum of the weights)
    for task, index in idx.items():
        for source, size in report[task]["sizes"].items():
            mine = index[index.source == source]
            assert size["frames"] == len(mine)
            assert size["expected_draws"] == pytest.approx(mine["weight"].sum(), rel=1e-9)

    # validation: only Aff-Wild2 val videos, no video on both sides
    assert set(val.source) == {"affwild2"} and len(val) == 400
    assert set(val.video).isdisjoint(set(au.video) | set(ex.video) | set(va.video))
    assert report["splits"]["overlap_frames_dropped"] == 0
    json.dumps(report)  # serialisable


def test_build_is_byte_identical(faces_dir, tmp_path):
    build(faces_dir, tmp_path / "a", BuildParams())
    build(faces_dir, tmp_path / "b", BuildParams())
    for name in ("train_AU", "train_EXPR", "train_VA", "val"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (tmp_path / "b" / f"{name}.parquet").read_bytes()


def test_balancing_off_gives_unit_weights(faces_dir, tmp_path):
    p = BuildParams(au_balance=False, expr_balance=False, va_balance=False)
    report = build(faces_dir, tmp_path / "b", p)
    for t in ("AU", "EXPR", "VA"):
        assert (pd.read_parquet(tmp_path / "b" / f"train_{t}.parquet")["weight"] == 1.0).all()
    assert report["AU"]["meanir_after"] == pytest.approx(report["AU"]["meanir_before"])


def test_missing_source_is_named(faces_dir, tmp_path):
    (faces_dir / "expw" / "frames.parquet").unlink()
    with pytest.raises(DataError, match=r"expw/frames.parquet: missing: source 'expw'"):
        build(faces_dir, tmp_path / "b", BuildParams())


def test_class_without_example(faces_dir, tmp_path):
    rng = np.random.default_rng(1)
    no_fear = [0.4, 0.1, 0.1, 0.0, 0.2, 0.1, 0.1]
    fake_source(faces_dir, "affwild2", 1000, rng, au=True, expr=True, va=True, expr_p=no_fear)
    fake_source(faces_dir, "affwild2", 100, rng, split="val", au=True, expr=True, va=True, video_prefix="val")
    fake_source(faces_dir, "expw", 100, rng, expr=True, videos=100, expr_p=no_fear)
    with pytest.raises(DataError, match="no example of Fear"):
        build(faces_dir, tmp_path / "b", BuildParams())
    report = build(faces_dir, tmp_path / "b", BuildParams(missing_class="warn"))
    assert any("Fear" in w for w in report["warnings"])


def test_label_out_of_range_names_the_file(faces_dir, tmp_path):
    path = faces_dir / "expw" / "frames.parquet"
    table = pq.read_table(path)
    expr = table["expr"].to_numpy().copy()
    expr[5] = 9
    write_parquet(table.set_column(table.schema.get_field_index("expr"), "expr", pa.array(expr, pa.int8())), path)
    with pytest.raises(DataError, match=r"expw/frames.parquet: expression classes must be -1..6, got -?\d+..9"):
        build(faces_dir, tmp_path / "b", BuildParams())
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_task_without_labels(faces_dir, tmp_path):
    with pytest.raises(DataError, match=r"VA: no labelled training frame in sources \['expw'\]"):
        build(faces_dir, tmp_path / "b", BuildParams(va_sources=["expw"]))


def test_video_on_both_sides_is_dropped_from_training(faces_dir, tmp_path):
    rng = np.random.default_rng(2)
    # a validation video named like a training one ("v0")
    fake_source(faces_dir, "affwild2", 50, rng, split="val", au=True, expr=True, va=True, videos=1, first_frame=10_000)
    report = build(faces_dir, tmp_path / "b", BuildParams())
    assert report["splits"]["overlap_frames_dropped"] == 300
    assert "affwild2/v0" in report["splits"]["overlap_videos"]
    assert "v0" not in set(pd.read_parquet(tmp_path / "b" / "train_AU.parquet").video)


def whole_table_indexes(faces_dir, p, out):
    """The rows of each index computed the plain way: every frame table whole in pandas,
    shard paths made relative to the index folder ``out``."""
    sources = sorted(set(p.au_sources) | set(p.expr_sources) | set(p.va_sources) | {"affwild2"})
    f = pd.concat([pd.read_parquet(faces_dir / s / "frames.parquet") for s in sources], ignore_index=True)
    f["shard"] = [os.path.relpath(faces_dir / s / shard, out) for s, shard in zip(f.source, f.shard)]
    val = f.split == "val"
    video, subject = f.source + "/" + f.video, f.source + "/" + f.subject
    train = (f.split == "train") & ~video.isin(video[val]) & ~subject.isin(subject[val])
    au = f[train & f.source.isin(p.au_sources) & (f[list(AU_NAMES)] >= 0).any(axis=1)]
    # EXPR: Aff-Wild2 keeps every k-th frame of the downsampled classes (counted per class)
    ex = f[train & f.source.isin(p.expr_sources) & (f.expr >= 0)]
    is_aw = ex.source == "affwild2"
    step = ex.expr.map({EXPR_NAMES.index(k): v for k, v in p.expr_downsample.items()}).fillna(1).where(is_aw, 1)
    ex = ex[ex.groupby([is_aw, ex.expr]).cumcount() % step == 0]
    # VA: Aff-Wild2 keeps every k-th labelled frame
    va = f[train & f.source.isin(p.va_sources) & f.valence.notna() & f.arousal.notna()]
    is_aw = va.source == "affwild2"
    va = va[~is_aw | ((is_aw.cumsum() - 1) % p.va_downsample == 0)]
    return {"train_AU": au, "train_EXPR": ex, "train_VA": va, "val": f[val & (f.source == "affwild2")]}


OTHER_SELECTIONS = [
    {},
    # no Aff-Wild2 in the EXPR and VA sets; other downsampling steps
    {"expr_sources": ["expw"], "va_sources": ["afewva"], "au_sources": ["disfa", "affwild2"]},
    {"expr_downsample": {"Happiness": 3, "Surprise": 4}, "va_downsample": 2},
]


@pytest.mark.parametrize("selection", OTHER_SELECTIONS)
def test_streamed_indexes_equal_whole_table_computation(faces_dir, tmp_path, monkeypatch, selection):
    """Read batch by batch and written row group by row group, the indexes have the bytes
    of the whole-table computation written at once, even when batches and row groups cut
    across sources, selected runs and the dropped (overlapping) video."""
    fake_source(faces_dir, "affwild2", 50, np.random.default_rng(2), split="val", au=True, expr=True, va=True,
                videos=1, first_frame=10_000)  # validation video "v0" is also a training video: dropped from training
    monkeypatch.setattr("pipeline.build.selection.READ_BATCH", 7)  # pieces of one row occur
    monkeypatch.setitem(PARQUET_OPTIONS, "row_group_size", 500)
    p = BuildParams(au_balance=False, expr_balance=False, va_balance=False, **selection)
    build(faces_dir, tmp_path / "streamed", p)
    expected = whole_table_indexes(faces_dir, p, tmp_path / "streamed")
    assert "v0" in set(expected["val"].video) and "v0" not in set(expected["train_AU"].video)
    for name, rows in expected.items():
        schema = index_schema(ABAW2020, name)
        table = pa.Table.from_pandas(rows[index_columns(ABAW2020)].assign(weight=1.0), schema=schema,
                                     preserve_index=False)
        whole = FrameTableWriter(tmp_path / "whole" / f"{name}.parquet", schema=schema)
        whole.add(dict(zip(table.column_names, table.columns)))
        whole.close()
        streamed = (tmp_path / "streamed" / f"{name}.parquet").read_bytes()
        assert streamed == (tmp_path / "whole" / f"{name}.parquet").read_bytes(), name
    assert pq.ParquetFile(tmp_path / "streamed" / "train_AU.parquet").metadata.num_row_groups > 1

    # Balancing changes the weights only: the same rows, in the same order.
    build(faces_dir, tmp_path / "balanced", BuildParams(**selection))
    for name, rows in expected.items():
        got = pd.read_parquet(tmp_path / "balanced" / f"{name}.parquet")
        pd.testing.assert_frame_equal(got.drop(columns="weight"), rows[index_columns(ABAW2020)].reset_index(drop=True))


def test_a_2022_build_keeps_12_aus_and_other_and_its_indexes_record_the_schema(faces_dir, tmp_path):
    # Aff-Wild2 as the 2022 releases label it: 12 AUs, some frames Other; DISFA keeps its 8 columns
    aw = faces_dir / "affwild2" / "frames.parquet"
    table = pd.read_parquet(aw)
    rng = np.random.default_rng(3)
    for au in ("AU7", "AU10", "AU23", "AU24", "AU26"):
        table[au] = (rng.random(len(table)) < 0.3).astype(np.int8)
    table = table.drop(columns="AU20")  # the 2022 releases do not label AU20
    other = (rng.random(len(table)) < 0.1) & (table["expr"] >= 0)
    table.loc[other, "expr"] = OTHER
    write_parquet(frame_table(table.to_dict("list"), frame_schema(sorted((c for c in table if c.startswith("AU")),
                                                                         key=lambda a: int(a[2:])))), aw)
    report = build(faces_dir, tmp_path / "b2022", BuildParams(label_schema="abaw2022", missing_class="warn"))
    assert report["label_schema"]["name"] == "abaw2022"
    assert list(report["AU"]["positives_before"]) == list(ABAW2022.aus)
    assert list(report["EXPR"]["class_counts_before"]) == list(ABAW2022.expressions)
    idx = pd.read_parquet(tmp_path / "b2022" / "train_AU.parquet")
    assert [c for c in idx if c.startswith("AU")] == list(ABAW2022.aus)
    disfa = idx[idx.source == "disfa"]
    assert (disfa[["AU7", "AU10", "AU23", "AU24", "AU26"]] == -1).all().all()  # not labelled by DISFA: unknown
    assert (disfa[["AU1", "AU2"]] >= 0).all().all()
    mine = pd.read_parquet(aw).set_index("uid")
    aw_rows = idx[idx.source == "affwild2"].set_index("uid")
    assert (aw_rows["AU26"] == mine.loc[aw_rows.index, "AU26"]).all()  # every label on its own frame
    expr = FrameIndex.read(tmp_path / "b2022" / "train_EXPR.parquet")
    assert expr.schema == ABAW2022 and expr.au.shape[1] == 12 and (expr.expr == OTHER).sum() > 0
    # the same tables under abaw2020: Other unknown (counted), AU20 unknown for Aff-Wild2
    report = build(faces_dir, tmp_path / "b2020", BuildParams(missing_class="warn"))
    assert report["label_schema"]["sources"]["affwild2"]["other_made_unknown"] == int(other.sum())
    expr = FrameIndex.read(tmp_path / "b2020" / "train_EXPR.parquet")
    assert expr.schema == ABAW2020 and (expr.expr != OTHER).all() and expr.au.shape[1] == 8
    # another AU set of the 2022 schema: its heads, in the order named
    few = build(faces_dir, tmp_path / "few", BuildParams(label_schema="abaw2022", aus=["AU26", "AU1"], missing_class="warn"))
    assert list(few["AU"]["positives_before"]) == ["AU26", "AU1"]
    assert FrameIndex.read(tmp_path / "few" / "val.parquet").schema.name == "abaw2022[AU26,AU1]"
    # a rebuild under another schema into the same folder replaces the earlier build's indexes
    build(faces_dir, tmp_path / "few", BuildParams(missing_class="warn"))
    assert FrameIndex.read(tmp_path / "few" / "val.parquet").schema == ABAW2020


def test_an_index_whose_recorded_schema_is_not_its_columns_is_refused(faces_dir, tmp_path):
    import json

    build(faces_dir, tmp_path / "b", BuildParams())
    path = tmp_path / "b" / "train_AU.parquet"
    table = pq.read_table(path)
    claimed = {**table.schema.metadata, b"label_schema": json.dumps(ABAW2022.as_dict()).encode()}
    pq.write_table(table.replace_schema_metadata(claimed), path)
    with pytest.raises(DataError, match=rf"{path}: records label schema abaw2022 \(AUs AU1, AU2, AU4, AU6, AU7, .*"
                                        r"but holds the AU columns AU1, AU2, AU4, AU6, AU12, AU15, AU20, AU25"):
        FrameIndex.read(path)
    # no record (an index older than it): abaw2020's columns read as abaw2020, others are refused
    pq.write_table(table.replace_schema_metadata({}), path)
    assert FrameIndex.read(path).schema == ABAW2020
    pq.write_table(table.drop(["AU25"]).replace_schema_metadata({}), path)
    with pytest.raises(DataError, match=rf"{path}: an index that records no label schema, with AU columns AU1, .*AU20 "
                                        r"\(not abaw2020's"):
        FrameIndex.read(path)


def test_an_index_copied_over_another_is_refused(faces_dir, tmp_path):
    import shutil

    build(faces_dir, tmp_path / "b", BuildParams())
    for name in ("train_AU", "train_EXPR", "train_VA", "val"):
        assert len(FrameIndex.read(tmp_path / "b" / f"{name}.parquet")) > 0
    for source, target in (("val", "train_AU"), ("train_EXPR", "train_AU")):  # validation frames trained on, ...
        shutil.copy(tmp_path / "b" / f"{source}.parquet", tmp_path / "b" / f"{target}.parquet")
        with pytest.raises(DataError, match=rf"{target}.parquet: holds the build's {source} index, not {target}"):
            FrameIndex.read(tmp_path / "b" / f"{target}.parquet")


def test_stages_refuse_an_index_of_another_schema_than_params_ask_for(faces_dir, tmp_path):
    from pipeline.core.index import check_built_for

    build(faces_dir, tmp_path / "b", BuildParams())
    check_built_for(tmp_path / "b", ABAW2020)
    with pytest.raises(DataError, match=rf"{tmp_path / 'b'}: the build's index was made for schema abaw2020 \(8 AUs"
                                        r".*but this run uses abaw2022 \(12 AUs"):
        check_built_for(tmp_path / "b", ABAW2022)


def test_a_schema_with_aus_no_au_source_labels_is_refused_naming_them(faces_dir, tmp_path):
    with pytest.raises(DataError, match=r"AU: no source of build.au_sources \(affwild2, disfa\) labels AU7, AU10, AU23, "
                                        r"AU24, AU26, which abaw2022 learns: add a source"):
        build(faces_dir, tmp_path / "b", BuildParams(label_schema="abaw2022"))
    assert not (tmp_path / "b").exists()
    from pipeline.build.inputs import check_aus_labelled

    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="junk.parquet: not a readable frame table"):
        check_aus_labelled({"disfa": tmp_path / "junk.parquet"}, ABAW2022)


def test_build_schema_params_are_checked():
    with pytest.raises(ValueError, match="'AU1x' is not an action unit name"):
        BuildParams(aus=["AU1x"])
    with pytest.raises(ValueError, match="AU1 is named twice"):
        BuildParams(aus=["AU1", "AU01"])
    with pytest.raises(ValueError, match="AU99 is no facial action unit"):
        BuildParams(aus=["AU99"])
    with pytest.raises(ValueError, match="name at least one AU"):
        BuildParams(aus=[])
    with pytest.raises(ValueError, match="label_schema"):
        BuildParams(label_schema="abaw2021")
    assert BuildParams().notes() == [] and BuildParams(aus=["AU12", "AU1"]).notes() == []
    assert BuildParams(aus=["AU1", "AU7", "AU10"]).notes() == [
        "build.aus names AU7, AU10, which abaw2020 does not label: they are learnt and scored with abaw2020's classes "
        "and metrics; label_schema: abaw2022 has them"]
    assert "AU9, which abaw2022 does not label" in BuildParams(label_schema="abaw2022", aus=["AU9"]).notes()[0]
    with pytest.raises(DataError, match="class 'Other' is not one of schema abaw2020"):
        from pipeline.build.selection import class_index
        class_index("Other", BuildParams().schema())


def test_frame_tables_are_read_projected_on_the_schema():
    from pipeline.build.selection import project_batch
    from pipeline.core.schema import ABAW2020, ABAW2022
    # a table holding AU1 and an AU no schema wants (AU9), and an Other frame
    batch = pa.RecordBatch.from_pydict({"AU1": pa.array([1, 0], pa.int8()), "AU9": pa.array([1, 1], pa.int8()),
                                        "expr": pa.array([7, 3], pa.int8()), "video": ["a", "b"]})
    got = project_batch(batch, ["video", "AU1", "AU2", "expr"], ABAW2020).to_pydict()
    assert got == {"video": ["a", "b"], "AU1": [1, 0], "AU2": [-1, -1], "expr": [-1, 3]}  # AU2 unknown, not 0
    got = project_batch(batch, ["AU7", "expr"], ABAW2022).to_pydict()
    assert got == {"AU7": [-1, -1], "expr": [7, 3]}  # Other is a class of the 2022 schema


def test_the_build_reports_what_the_schema_leaves_out(tmp_path, caplog):
    from pipeline.build.selection import schema_report
    from pipeline.core.schema import ABAW2022
    from pipeline.core.tables import frame_schema
    n = 5
    cols = {"uid": [uid("aw", "v", f) for f in range(n)], "source": ["aw"] * n, "video": ["v"] * n,
            "subject": ["v"] * n, "frame": np.arange(n), "timestamp": np.full(n, np.nan), "split": ["train"] * n,
            "AU1": np.ones(n, np.int8), "AU9": np.zeros(n, np.int8), "AU26": np.zeros(n, np.int8),
            "expr": np.array([7, 0, 7, -1, 3], np.int8), "valence": np.full(n, np.nan), "arousal": np.full(n, np.nan),
            "shard": ["s.h5"] * n, "row": np.arange(n), "det_score": np.ones(n),
            **{c: np.zeros(n) for c in LANDMARK_COLUMNS}}
    path = tmp_path / "aw" / "frames.parquet"
    write_parquet(frame_table(cols, frame_schema(["AU1", "AU9", "AU26"])), path)
    with caplog.at_level("INFO", logger="mtaffect.build"):
        report = schema_report([path], ["aw"])
    assert report == {"name": "abaw2020", "sources": {"aw": {"aus_not_in_schema": ["AU9", "AU26"],
                                                              "other_made_unknown": 2}}}
    assert "AU9, AU26" in caplog.text and "2 frames of Other" in caplog.text
    assert schema_report([path], ["aw"], ABAW2022)["sources"]["aw"] == {"aus_not_in_schema": ["AU9"],
                                                                         "other_made_unknown": 0}


def test_damaged_frame_tables_are_one_line_each_and_pandas_strings_are_fine(faces_dir, tmp_path):
    path = faces_dir / "afewva" / "frames.parquet"
    original = pq.read_table(path)
    baseline = build(faces_dir, tmp_path / "a", BuildParams())
    # the same table re-saved by pandas (strings as large_string): the same build
    pd.read_parquet(path).to_parquet(path)
    assert build(faces_dir, tmp_path / "b", BuildParams()) == baseline
    for damage, message in [
            (lambda t: t.drop_columns(["valence"]), r"afewva/frames.parquet: no column valence"),
            (lambda t: t.set_column(t.schema.get_field_index("split"), "split",
                                    pa.array(["test"] + ["train"] * (t.num_rows - 1))),
             r"afewva/frames.parquet: split 'test' is neither 'train' nor 'val'"),
            (lambda t: pa.concat_tables([t, t.slice(0, 3)]), r"afewva/frames.parquet: frame afewva/01_0/0 is listed twice"),
            (lambda t: t.set_column(t.schema.get_field_index("shard"), "shard",
                                    pa.array(["shard-00099.h5"] + t["shard"].to_pylist()[1:])),
             r"afewva/frames.parquet: names the face shard shard-00099.h5, which is missing from")]:
        write_parquet(damage(original), path)
        with pytest.raises(DataError, match=message):
            build(faces_dir, tmp_path / "c", BuildParams())
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_a_build_interrupted_while_writing_leaves_the_earlier_indexes_whole(faces_dir, tmp_path, monkeypatch):
    from pipeline.core.tables import FrameTableWriter

    out = tmp_path / "build"
    build(faces_dir, out, BuildParams())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    closed = []

    def close_then_stop(self, close=FrameTableWriter.close):
        close(self)
        closed.append(self)
        if len(closed) == 2:  # Ctrl-C with two of the four new indexes written
            raise KeyboardInterrupt

    monkeypatch.setattr(FrameTableWriter, "close", close_then_stop)
    with pytest.raises(KeyboardInterrupt):
        build(faces_dir, out, BuildParams(au_balance=False))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".build*"))  # nothing aside left


def test_the_build_never_replaces_a_file_it_did_not_write(faces_dir, tmp_path):
    out = tmp_path / "build"
    build(faces_dir, out, BuildParams())
    build(faces_dir, out, BuildParams())  # its own earlier output: replaced
    (out / "val.parquet").write_text("the user's own val.parquet")
    with pytest.raises(DataError, match=r"val.parquet: exists and is not a table this stage wrote"):
        build(faces_dir, out, BuildParams())
    assert (out / "val.parquet").read_text() == "the user's own val.parquet"
    (out / "val.parquet").unlink()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"notes.txt: not written by this stage"):
        build(faces_dir, out, BuildParams())


def set_value(path, split, column, value, at=7):
    """The ``at``-th row of ``split`` in the frame table ``path`` given ``value`` in ``column``; its uid."""
    table = pd.read_parquet(path)
    row = table.index[table.split == split][at]
    table[column] = table[column].astype(type(value)) if isinstance(value, float) else table[column]
    table.loc[row, column] = value
    write_parquet(pa.Table.from_pandas(table, schema=pq.read_schema(path), preserve_index=False), path)
    return table.loc[row, "uid"]


@pytest.mark.parametrize("source, split, column, value, message", [
    ("affwild2", "val", "AU1", 5, r"AU values must be 1, 0 or -1 \(unknown\), got 5 for AU1"),
    ("affwild2", "val", "arousal", np.inf, r"valence/arousal must lie in \[-1, 1\] or be unknown \(NaN\), got inf "
                                           r"for arousal"),
    ("affwild2", "val", "valence", 3.0, r"got 3.0 for valence"),
    ("affwild2", "train", "valence", np.inf, r"got inf for valence"),
    ("affwild2", "train", "valence", -np.inf, r"got -inf for valence"),
    ("disfa", "train", "expr", 9, r"expression classes must be -1..6, got -1..9: frame .* has 9"),  # DISFA: no EXPR
    ("expw", "train", "AU2", -3, r"got -3 for AU2"),  # ExpW: no AU task selects it
])
def test_every_row_s_labels_are_checked_selected_or_not(faces_dir, tmp_path, source, split, column, value, message):
    uid_ = set_value(faces_dir / source / "frames.parquet", split, column, value)
    with pytest.raises(DataError, match=rf"{source}/frames.parquet: .*{message}") as e:
        build(faces_dir, tmp_path / "b", BuildParams())
    assert f"frame {uid_}" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "b").exists()


def test_face_shards_of_another_size_or_too_short_are_refused_naming_them(faces_dir, tmp_path):
    """Read from the shards' metadata: a source extracted at another face_size, a shard
    whose faces were rewritten, or one shorter than its table, is one line before any write."""
    expw = sorted((faces_dir / "expw").glob("shard-*.h5"))
    for shard in expw:  # one source extracted with face_size 64
        fake_shard(shard, 50, 64)
    with pytest.raises(DataError, match=r"expw/shard-00000.h5: faces of 64x64x3, but \S*afewva/shard-00000.h5 holds "
                                        r"faces of 112x112x3: every source must be extracted with the same "
                                        r"extract.face_size") as e:
        build(faces_dir, tmp_path / "b", BuildParams())
    assert "\n" not in str(e.value)
    for shard in expw:
        fake_shard(shard, 50)
    build(faces_dir, tmp_path / "ok", BuildParams())  # the fixture's shards pass
    shard = faces_dir / "disfa" / "shard-00003.h5"
    for damage, message in [
            (lambda: fake_shard(shard, 50, 64, recorded=112),  # faces rewritten at 64, the attributes left
             r"disfa/shard-00003.h5: faces of 64x64 but the shard records size 112"),
            (lambda: fake_shard(shard, 20),
             r"disfa/frames.parquet: names face 49 of the face shard \S*disfa/shard-00003.h5, which holds 20 faces"),
            (lambda: shard.write_text("no HDF5"), r"disfa/shard-00003.h5: not a readable face shard"),
            (lambda: h5py.File(shard, "w").close(), r"disfa/shard-00003.h5: no 'faces' dataset")]:
        damage()
        with pytest.raises(DataError, match=message):
            build(faces_dir, tmp_path / "b", BuildParams())
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_a_full_disk_while_writing_the_indexes_names_the_file_and_leaves_nothing(faces_dir, tmp_path):
    """Arrow's "Error writing bytes to file ... No space left on device" names no file (#102)."""
    import resource
    import signal
    import subprocess
    import sys
    from pathlib import Path

    def full_disk_at_40_kb():  # writes beyond 40 kB fail (EFBIG), as on a full disk; train_AU is 63 kB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    root, out = Path(__file__).resolve().parents[1], tmp_path / "out"
    proc = subprocess.run([str(Path(sys.executable).parent / "mtaffect"), "build", "--params", str(root / "params.yaml"),
                           "--faces", str(faces_dir), "--out", str(out), "--report", str(tmp_path / "r.json"),
                           "--plots", str(tmp_path / "plots"), "--provenance", str(tmp_path / "p.json")],
                          preexec_fn=full_disk_at_40_kb, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr == (f"Error: {tmp_path / '.out.tmp/train_AU.parquet'}: Error writing bytes to file. "
                           "Detail: [errno 27] File too large\n"), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces"]  # no index, no temporary folder
