"""The soft-label cache: what it holds, how students read it, what it refuses; and the
student's training loop on it (real shards, real HDF5, a small real network)."""
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.training.params import StudentParams, TrainParams
from pipeline.core.images import draw_augmentation, to_tensor
from pipeline.core.index import FrameIndex
from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.labels import TASKS, n_logits
from pipeline.core.schema import ABAW2020, ABAW2022
from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint
from pipeline.training.softlabels import SoftLabels, dump, write_cache
from pipeline.core.shards import FaceReader
from pipeline.training.train import Outputs, train
from pipeline.training.views import view_geometry

HERE = Path(__file__).parent
TRAIN = dict(backbone="mobilenet_v3_small", epochs=2, steps_per_epoch=3, batch_per_task=6, device="cpu",
             save_every=2, eval_batch=64)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, MultitaskNet("mobilenet_v3_small"), {"train": TrainParams().model_dump()})
    return path


def make_cache(index_dir, teacher, path, views=3, mode="views", batch=16):
    model, _ = load_checkpoint(teacher)
    dump(model, index_dir, path, teacher, views, mode, batch, torch.device("cpu"), progress=False)
    return SoftLabels(path)


@pytest.fixture(scope="module")
def cache(index_dir, teacher, tmp_path_factory):
    return make_cache(index_dir, teacher, tmp_path_factory.mktemp("cache") / "soft_labels.h5")


def indexes(index_dir):
    return {t: FrameIndex.read(Path(index_dir) / f"train_{t}.parquet") for t in TASKS}


def test_cache_holds_the_teachers_logits_on_each_view(cache, index_dir, teacher):
    train = indexes(index_dir)
    expected_uids = sorted(set().union(*(set(ix.uid) for ix in train.values())))
    assert cache.uid.tolist() == expected_uids and cache.views == 3 and cache.mode == "views"
    model, _ = load_checkpoint(teacher)
    model.eval()
    reader = FaceReader()
    where = {u: (ix.shard[i], ix.row[i]) for ix in train.values() for i, u in enumerate(ix.uid)}
    for row in (0, 17, len(cache.uid) - 1):
        uid = cache.uid[row]
        big = F.interpolate(to_tensor(reader.read(*where[uid])[None]), size=(134, 134), mode="bilinear",
                            align_corners=False)
        for v in range(3):
            dy, dx, mirrored = view_geometry(uid, v)  # recomputed from the uid alone
            assert tuple(cache.array("offsets")[row, v]) == (dy, dx) and bool(cache.array("flips")[row, v]) == mirrored
            crop = big[:, :, dy:dy + 112, dx:dx + 112]
            with torch.no_grad():
                out = model(crop.flip(-1) if mirrored else crop)
            logits = torch.cat([out[t] for t in TASKS], dim=1)[0].numpy()
            np.testing.assert_allclose(cache.array("logits")[row, v].astype(np.float32), logits, rtol=2e-3, atol=2e-3)
    with h5py.File(cache.path) as h5:
        assert h5.attrs["teacher_sha256"] and h5["logits"].dtype == np.float16


def test_dump_is_byte_identical_when_rerun(cache, index_dir, teacher, tmp_path):
    again = make_cache(index_dir, teacher, tmp_path / "again.h5")
    assert again.path.read_bytes() == cache.path.read_bytes()


def test_views_a_student_draws_are_views_in_the_cache(cache, index_dir):
    train = indexes(index_dir)
    targets = cache.targets(train)
    g = torch.Generator().manual_seed(3)
    positions = np.arange(0, len(train["AU"]), 3)[:40]
    offsets, flips = draw_augmentation(g, len(positions))
    got_offsets, got_flips, teacher = targets.draw("AU", positions, g, len(positions), slice(0, None, 1),
                                                   offsets, flips)
    rows = cache.rows(train["AU"])[positions]
    seen = set()
    for i, row in enumerate(rows):
        matches = [v for v in range(cache.views)
                   if tuple(cache.array("offsets")[row, v]) == tuple(got_offsets[i].tolist())
                   and bool(cache.array("flips")[row, v]) == bool(got_flips[i])
                   and np.array_equal(cache.array("logits")[row, v].astype(np.float32), teacher[i].numpy())]
        assert matches, i
        seen.update(matches)
    assert seen == set(range(cache.views))  # every view gets drawn
    assert train["AU"].uid[positions[0]] == cache.uid[rows[0]]


def test_cache_from_other_indexes_is_refused_naming_both_hashes(cache, index_dir, tmp_path):
    other = tmp_path / "build"
    shutil.copytree(index_dir, other)
    ix = FrameIndex.read(other / "train_EXPR.parquet")
    import pyarrow.parquet as pq

    table = pq.read_table(other / "train_EXPR.parquet")
    pq.write_table(table.slice(0, len(ix) - 1), other / "train_EXPR.parquet")
    cache.check_index(index_dir)  # its own indexes: fine
    with pytest.raises(CheckpointError, match=r"another train_EXPR index \(sha256 [0-9a-f]{12}\.\.\.\) than .*"
                                              r"train_EXPR.parquet \(sha256 [0-9a-f]{12}\.\.\.\): rerun `dvc repro soft_labels`"):
        cache.check_index(other)


def test_logits_beyond_float16_saturate_instead_of_becoming_infinite(index_dir, teacher, tmp_path):
    # A teacher that trained with too high a learning rate gives logits of 1e5 and more: in
    # float16 they would be infinities, which the students refuse.
    model, _ = load_checkpoint(teacher)
    with torch.no_grad():
        for head in model.heads.values():
            head[-1].bias.fill_(-1e6)
    dump(model, index_dir, tmp_path / "big.h5", teacher, 2, "views", 16, torch.device("cpu"), progress=False)
    big = SoftLabels(tmp_path / "big.h5")  # opening checks every logit is finite
    assert (big.array("logits")[:] == np.float16(-65504)).mean() > 0.99


def test_a_full_disk_while_the_logits_are_computed_names_the_cache_and_leaves_nothing(index_dir, teacher, tmp_path):
    out = tmp_path / "soft_labels.h5"
    part = tmp_path / ".soft_labels.h5.part0"  # where the logits go until the cache is assembled
    part.symlink_to("/dev/full")  # every write: "No space left on device"
    model, _ = load_checkpoint(teacher)
    with pytest.raises(OSError, match="No space left on device") as error:
        dump(model, index_dir, out, teacher, 2, "views", 16, torch.device("cpu"), progress=False)
    assert error.value.filename == str(out) and list(tmp_path.iterdir()) == []


def test_a_changed_byte_or_a_value_that_is_not_finite_is_refused_naming_the_file(cache, tmp_path):
    damaged = tmp_path / "damaged.h5"
    shutil.copy(cache.path, damaged)
    with h5py.File(damaged, "r+") as h5:  # one value changed behind the writer's back
        h5["logits"][5, 1, 9] = h5["logits"][5, 1, 9] + np.float16(0.5)
    with pytest.raises(CheckpointError, match=rf"{damaged}: soft-label cache damaged: dataset 'logits' fails its checksum"):
        SoftLabels(damaged)
    logits = np.array(cache.array("logits"))
    logits[5, 1, 9] = np.inf  # a teacher that gave inf: written and sealed so, refused when read
    write_cache(tmp_path / "inf.h5", cache.uid, cache.array("offsets"), cache.array("flips"), cache.attrs,
                [logits], logits.shape[2])
    with pytest.raises(CheckpointError, match="holds values that are not finite in 'logits'"):
        SoftLabels(tmp_path / "inf.h5")
    SoftLabels(cache.path)  # the original is fine


def test_a_file_that_is_no_cache_is_a_clear_error(tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(CheckpointError, match="not a readable soft-label cache"):
        SoftLabels(tmp_path / "junk.h5")
    with pytest.raises(FileNotFoundError, match="run `dvc repro soft_labels`"):
        SoftLabels(tmp_path / "absent.h5")


def test_a_cache_records_its_teachers_label_schema_and_a_student_of_another_refuses_it(index_dir, index_dir_2022,
                                                                                       tmp_path):
    teacher = tmp_path / "teacher2022.pt"
    save_checkpoint(teacher, MultitaskNet("mobilenet_v3_small", schema=ABAW2022))
    with pytest.raises(DataError, match=re.escape(f"{teacher}: a teacher of label schema {ABAW2022.describe()}, but "
                                                  f"{index_dir / 'train_AU.parquet'} holds {ABAW2020.describe()}")):
        make_cache(index_dir, teacher, tmp_path / "soft_labels.h5", views=2)  # a 2022 teacher, 2020 labels
    assert not list(tmp_path.glob("*.h5*"))
    cache = make_cache(index_dir_2022, teacher, tmp_path / "soft_labels.h5", views=2)
    assert cache.schema == ABAW2022 and cache.array("logits").shape[2] == n_logits(ABAW2022)
    with pytest.raises(DataError, match=re.escape(f"{cache.path}: the soft-label cache was made for schema "
                                                  f"{ABAW2022.describe()}, but this run uses {ABAW2020.describe()}")):
        train(StudentParams(**TRAIN), index_dir, Outputs(*(tmp_path / n for n in ("m.pt", "l.csv", "r.json", "s.pt"))),
              name="student", progress=False, soft_labels=cache)
    assert not (tmp_path / "m.pt").exists()


def test_student_at_lambda_one_without_distillation_trains_as_the_teacher(index_dir, teacher, tmp_path):
    # One loop, no copy: a centre-mode cache leaves the augmentation as the teacher draws it,
    # lam = 1 without the unlabelled heads' distillation leaves the teacher's loss.
    centre = make_cache(index_dir, teacher, tmp_path / "centre.h5", views=1, mode="centre")
    out = {k: Outputs(tmp_path / k / "m.pt", tmp_path / k / "log.csv", tmp_path / k / "r.json", tmp_path / k / "res.pt")
           for k in ("teacher", "student")}
    a = train(TrainParams(**TRAIN), index_dir, out["teacher"], progress=False)
    b = train(StudentParams(**TRAIN, lam=1.0, distill_unlabelled=False), index_dir, out["student"], name="student",
              progress=False, soft_labels=centre)
    assert [r["total"] for r in a["history"]] == [r["total"] for r in b["history"]]
    ta, _ = load_checkpoint(out["teacher"].checkpoint)
    tb, _ = load_checkpoint(out["student"].checkpoint)
    for k, v in ta.state_dict().items():
        assert torch.equal(v, tb.state_dict()[k]), k


def test_student_learns_from_the_cache_and_resumes_to_the_same_weights(cache, index_dir, tmp_path):
    params = StudentParams(**TRAIN)
    full = Outputs(tmp_path / "a" / "m.pt", tmp_path / "a" / "l.csv", tmp_path / "a" / "r.json", tmp_path / "a" / "x.pt")
    report = train(params, index_dir, full, name="s1", progress=False, soft_labels=cache,
                   extra={"soft_labels": {"sha256": "abc"}})
    assert report["soft_labels"] == {"sha256": "abc"} and torch.load(full.checkpoint, weights_only=True)["soft_labels"]
    cut = Outputs(tmp_path / "b" / "m.pt", tmp_path / "b" / "l.csv", tmp_path / "b" / "r.json", tmp_path / "b" / "x.pt")
    assert train(params, index_dir, cut, name="s1", progress=False, soft_labels=cache, stop_after_steps=4)["interrupted"]
    resumed = train(params, index_dir, cut, name="s1", progress=False, soft_labels=cache)
    assert resumed["history"] == report["history"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_dump_under_torchrun_equals_a_one_process_dump(index_dir, teacher, tmp_path):
    script = (
        "import sys, torch; torch.set_num_threads(1); from pipeline.core.device import distributed; "
        "from pipeline.training.models import load_checkpoint; from pipeline.training.softlabels import dump; distributed(); "
        "m, _ = load_checkpoint(sys.argv[2]); "
        "dump(m, sys.argv[1], sys.argv[3], sys.argv[2], 3, 'views', 8, torch.device('cpu'), progress=False)"
    )
    (tmp_path / "dump.py").write_text(script)
    for n, name in ((1, "one.h5"), (2, "two.h5")):
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                        str(tmp_path / "dump.py"), str(index_dir), str(teacher), str(tmp_path / name)],
                       check=True, capture_output=True, text=True, cwd=HERE.parent)
    assert (tmp_path / "two.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()
    assert not list(tmp_path.glob(".*part*"))  # no part file left behind


def test_a_cache_lacking_a_dataset_and_a_shard_shorter_than_its_table_are_one_line_each(cache, index_dir, teacher,
                                                                                          tmp_path):
    lacking = tmp_path / "lacking.h5"
    shutil.copy(cache.path, lacking)
    with h5py.File(lacking, "r+") as h5:
        del h5["offsets"]
    with pytest.raises(CheckpointError, match=r"lacking.h5: lacks its 'offsets' dataset"):
        SoftLabels(lacking)
    # a shard cut short behind its frame table's back: named, and no part file left behind
    copy = tmp_path / "copy"
    shutil.copytree(index_dir.parent, copy)
    shard = sorted((copy / "faces").rglob("*.h5"))[0]
    with h5py.File(shard, "r+") as h5:
        faces = h5["faces"][:1]
        del h5["faces"]
        h5.create_dataset("faces", data=faces)
    (tmp_path / "out").mkdir()
    with pytest.raises(CheckpointError, match=rf"{shard}: holds 1 faces but the index asks for face"):
        make_cache(copy / "build", teacher, tmp_path / "out" / "soft_labels.h5")
    assert not list((tmp_path / "out").iterdir())


def test_a_cnn_cache_given_as_a_temporal_one_or_features_is_named_for_what_it_is(cache):
    from pipeline.temporal.features import Features

    with pytest.raises(CheckpointError, match="the soft labels of the CNN teacher .*not of the temporal one"):
        SoftLabels(cache.path, "rnn_soft_labels")
    with pytest.raises(CheckpointError, match=r"soft_labels.h5: not a features file: it lacks 'video', 'frame', "
                                              r"'split', 'features' \(another stage's file\?"):
        Features(cache.path)


def test_a_damaged_schema_record_is_one_line(cache, tmp_path):
    damaged = tmp_path / "cache.h5"
    shutil.copy(cache.path, damaged)
    with h5py.File(damaged, "r+") as h5:
        h5.attrs["label_schema"] = '{"name": "abaw2022"'
    with pytest.raises(CheckpointError, match=f"{damaged}: a soft-label cache whose label schema record is not JSON"):
        SoftLabels(damaged)


def test_a_missing_cache_names_the_stage_that_writes_it(tmp_path):
    from pipeline.training.softlabels import SoftLabels

    with pytest.raises(FileNotFoundError, match=r"T8.h5: soft-label cache not found \(run `dvc repro soft_labels`\)"):
        SoftLabels(tmp_path / "T8.h5")
    with pytest.raises(FileNotFoundError, match=r"\(run `dvc repro rnn_soft_labels`\)"):
        SoftLabels(tmp_path / "T8.h5", "rnn_soft_labels")


def test_a_shard_of_another_face_size_or_missing_is_one_line_naming_it(index_dir, teacher, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(index_dir.parent, copy)
    shard = sorted((copy / "faces").rglob("*.h5"))[0]
    with h5py.File(shard, "r+") as h5:  # its faces rewritten as 64x64 behind the build's back
        n = len(h5["faces"])
        del h5["faces"]
        h5.create_dataset("faces", data=np.zeros((n, 64, 64, 3), np.uint8))
    (tmp_path / "out").mkdir()
    with pytest.raises(CheckpointError, match=rf"{shard}: holds faces of 64x64x3, this stage reads faces of "
                                              r"112x112x3: extracted with another extract.face_size") as e:
        make_cache(copy / "build", teacher, tmp_path / "out" / "soft_labels.h5")
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "out").iterdir())
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"{shard}: face shard missing"):
        make_cache(copy / "build", teacher, tmp_path / "out" / "soft_labels.h5")
    assert not list((tmp_path / "out").iterdir())
    reader = FaceReader()  # what training reads through, pickled into its workers with the size
    with pytest.raises(CheckpointError, match=rf"{shard}: face shard missing"):
        reader.read(str(shard), 0)
    assert pickle.loads(pickle.dumps(FaceReader(64))).size == 64
