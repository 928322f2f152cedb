"""Model, checkpoints and the training loop on small real shards (fake faces)."""
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from pipeline.training.params import TrainParams
from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.schema import ABAW2020, ABAW2022, label_schema
from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint
from pipeline.training.train import Outputs, train

PARAMS = TrainParams(backbone="mobilenet_v3_small", epochs=2, steps_per_epoch=3, batch_per_task=6, device="cpu",
                     save_every=2, eval_batch=64)


def outputs(folder: Path) -> Outputs:
    return Outputs(folder / "model.pt", folder / "log.csv", folder / "report.json", folder / "resume.pt")


def test_heads_and_shapes():
    model = MultitaskNet("resnet18").eval()
    out = model(torch.zeros(2, 3, 112, 112))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"AU": (2, 8), "EXPR": (2, 7), "VA": (2, 40)}
    head = model.heads["AU"]
    assert [type(m).__name__ for m in head] == ["BatchNorm1d", "Linear", "ReLU", "BatchNorm1d", "Linear"]
    assert head[1].in_features == 512 and head[1].out_features == 128
    assert {k: tuple(v.shape) for k, v in model.task_features(torch.zeros(2, 3, 112, 112)).items()} == \
        {"AU": (2, 128), "EXPR": (2, 128), "VA": (2, 128)}


def test_a_checkpoint_carries_its_label_schema_and_another_is_refused_naming_both(tmp_path):
    save_checkpoint(tmp_path / "2022.pt", MultitaskNet("mobilenet_v3_small", schema=ABAW2022))
    save_checkpoint(tmp_path / "2020.pt", MultitaskNet("mobilenet_v3_small"))
    model, ckpt = load_checkpoint(tmp_path / "2022.pt", schema=ABAW2022)
    assert model.schema == ABAW2022 and ckpt["config"]["schema"]["AU"] == list(ABAW2022.aus)
    assert {t: v.shape[1] for t, v in model(torch.zeros(2, 3, 112, 112)).items()} == {"AU": 12, "EXPR": 8, "VA": 40}
    few = label_schema("abaw2022", ["AU1", "AU12"])  # another AU set: its name records it
    save_checkpoint(tmp_path / "few.pt", MultitaskNet("mobilenet_v3_small", schema=few))
    assert load_checkpoint(tmp_path / "few.pt")[0].schema == few and few.name == "abaw2022[AU1,AU12]"
    for path, wanted, made in (("2022.pt", ABAW2020, ABAW2022), ("2020.pt", ABAW2022, ABAW2020),
                               ("few.pt", ABAW2022, few)):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / path}: the checkpoint was made for schema "
                                                      f"{made.describe()}, but this run uses {wanted.describe()}")):
            load_checkpoint(tmp_path / path, schema=wanted)


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'"):
        MultitaskNet("resnet51")


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = MultitaskNet("mobilenet_v3_small")
    save_checkpoint(tmp_path / "m.pt", model, {"epoch": 3})
    loaded, ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["epoch"] == 3
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # a label schema this code does not know
    for change, why in (({"VA_bins": 10}, "10 VA bins and 112-pixel faces, this code uses 20 and 112"),
                        ({"EXPR": ["Neutral", "Happiness"]}, "neither the 7 basic expressions"),
                        ({"AU": ["AU1", "AU1"]}, "AUs must be distinct")):
        bad = torch.load(tmp_path / "m.pt", weights_only=True)
        bad["config"]["schema"] = {**bad["config"]["schema"], **change}
        torch.save(bad, tmp_path / "schema.pt")
        with pytest.raises(CheckpointError, match=f"schema.pt: a checkpoint of no label schema .*{why}"):
            load_checkpoint(tmp_path / "schema.pt")
    # weights of another architecture under this config
    other = torch.load(tmp_path / "m.pt", weights_only=True)
    other["state_dict"] = MultitaskNet("resnet18").state_dict()
    torch.save(other, tmp_path / "arch.pt")
    with pytest.raises(CheckpointError, match="does not fit backbone mobilenet_v3_small"):
        load_checkpoint(tmp_path / "arch.pt")


def test_train_writes_best_checkpoint_log_and_is_deterministic(index_dir, tmp_path):
    a = train(PARAMS, index_dir, outputs(tmp_path / "a"), progress=False)
    train(PARAMS, index_dir, outputs(tmp_path / "b"), progress=False)
    assert a["best_epoch"] in (1, 2) and len(a["history"]) == 2
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert (tmp_path / "a" / "log.csv").read_text() == (tmp_path / "b" / "log.csv").read_text()
    header = (tmp_path / "a" / "log.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,lr,loss,loss_AU,loss_EXPR,loss_VA,AU_score")
    best = max(a["history"], key=lambda r: r["total"])
    assert best["epoch"] == a["best_epoch"]


def test_interrupted_run_resumes_to_the_same_weights(index_dir, tmp_path):
    full = train(PARAMS, index_dir, outputs(tmp_path / "full"), progress=False)
    out = outputs(tmp_path / "cut")
    first = train(PARAMS, index_dir, out, progress=False, stop_after_steps=4)  # mid second epoch
    assert first == {"interrupted": True, "epoch": 1, "step": 1} and out.resume.exists()
    resumed = train(PARAMS, index_dir, out, progress=False)
    assert resumed["history"] == full["history"]
    a, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    b, _ = load_checkpoint(out.checkpoint)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_resumed_after_the_best_epoch_still_writes_the_best_checkpoint(index_dir, tmp_path):
    # DVC deletes a stage's outputs before rerunning it: the best epoch's weights must come
    # from the scratch folder, whatever epoch the run was interrupted in.
    full = train(PARAMS, index_dir, outputs(tmp_path / "full"), progress=False)
    out = outputs(tmp_path / "cut")
    train(PARAMS, index_dir, out, progress=False, stop_after_steps=5)  # in the last epoch
    out.checkpoint.unlink(missing_ok=True)
    out.log_csv.unlink(missing_ok=True)
    resumed = train(PARAMS, index_dir, out, progress=False)
    assert resumed["history"] == full["history"]
    assert out.checkpoint.read_bytes() == (tmp_path / "full" / "model.pt").read_bytes()
    assert out.log_csv.read_text() == (tmp_path / "full" / "log.csv").read_text()


@pytest.mark.parametrize("content", [b"", b"garbage"])  # a run killed while writing it
def test_an_unreadable_resume_file_is_moved_aside_and_the_run_starts_afresh(index_dir, tmp_path, content, caplog):
    out = outputs(tmp_path / "run")
    out.resume.parent.mkdir(parents=True)
    out.resume.write_bytes(content)
    out.resume.with_name("resume.pt.unreadable").write_bytes(b"an earlier one")
    report = train(PARAMS, index_dir, out, progress=False)
    assert len(report["history"]) == PARAMS.epochs and out.checkpoint.exists()
    assert out.resume.with_name("resume.pt.unreadable").read_bytes() == b"an earlier one"  # kept
    assert out.resume.with_name("resume.pt.unreadable.1").read_bytes() == content
    why = "empty file (0 bytes)" if not content else "not a torch file"
    assert f"resume.pt: not a readable resume file: {why}" in caplog.text
    assert "moved to" in caplog.text and "resume.pt.unreadable.1, starting afresh" in caplog.text


def test_a_readable_file_that_is_no_resume_file_is_refused_and_left_as_it_is(index_dir, tmp_path):
    from pipeline.core.errors import CheckpointError

    out = outputs(tmp_path / "run")
    out.resume.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "config": {}}, out.resume)  # a checkpoint given as --resume
    before = out.resume.read_bytes()
    with pytest.raises(CheckpointError, match="not a resume file \\(a checkpoint\\?\\): it is left as it is"):
        train(PARAMS, index_dir, out, progress=False)
    assert out.resume.read_bytes() == before and not out.resume.with_name("resume.pt.unreadable").exists()
    assert not out.checkpoint.exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_process_resumes_to_the_same_weights(index_dir, tmp_path):
    """The real thing: SIGKILL a training process mid-epoch, rerun, same final weights."""
    script = (
        "import sys; from pathlib import Path; from pipeline.training.params import TrainParams; "
        "from pipeline.training.train import Outputs, train; o = Path(sys.argv[1]); "
        "p = TrainParams(backbone='mobilenet_v3_small', epochs=2, steps_per_epoch=40, batch_per_task=6, "
        "device='cpu', save_every=3, eval_batch=64); "
        "train(p, sys.argv[2], Outputs(o/'model.pt', o/'log.csv', o/'r.json', o/'resume.pt'), progress=False)"
    )
    run = lambda name: subprocess.Popen([sys.executable, "-c", script, str(tmp_path / name), str(index_dir)])  # noqa
    assert run("full").wait() == 0
    proc = run("killed")
    resume = tmp_path / "killed" / "resume.pt"
    deadline = time.time() + 300
    while not resume.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    saved = torch.load(resume, weights_only=True)["state"]
    assert (saved["epoch"], saved["step"]) != (2, 0), "the run finished before it could be killed"
    assert run("killed").wait() == 0
    a, _ = load_checkpoint(tmp_path / "full" / "model.pt")
    b, _ = load_checkpoint(tmp_path / "killed" / "model.pt")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_pretrained_backbone_from_a_local_file(tmp_path):
    import torchvision

    from pipeline.training.models import load_pretrained_backbone

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)  # what a user's ImageNet file would hold
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = MultitaskNet("resnet18")
    expected = sum(not k.endswith("num_batches_tracked") for k in model.backbone.state_dict())
    assert load_pretrained_backbone(model, str(tmp_path / "resnet18.pth")) == expected
    assert torch.equal(model.backbone.conv1.weight, source.conv1.weight)
    # a file that shares only a few key names with the backbone is refused, with the count
    torch.save({"conv1.weight": source.conv1.weight, "bn1.weight": source.bn1.weight}, tmp_path / "few.pth")
    with pytest.raises(CheckpointError, match=f"matches 2 of the {expected} weights of backbone resnet18"):
        load_pretrained_backbone(MultitaskNet("resnet18"), str(tmp_path / "few.pth"))
    with pytest.raises(FileNotFoundError, match="no download is attempted"):
        load_pretrained_backbone(model, str(tmp_path / "absent.pth"))
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(CheckpointError, match="does not fit backbone resnet18"):
        load_pretrained_backbone(model, str(tmp_path / "resnet50.pth"))


def test_a_resume_file_of_other_training_data_is_not_resumed(index_dir, tmp_path, caplog):
    # Same parameters, other indexes (the build changed between the interrupted run and its
    # rerun): continuing the old state would mix two data sets in one model.
    other = index_dir.with_name(f"build_{tmp_path.name}")  # beside it: shard paths are relative
    shutil.copytree(index_dir, other)
    table = pq.read_table(other / "train_AU.parquet")
    pq.write_table(table.take(list(range(0, table.num_rows, 2))), other / "train_AU.parquet")
    out = outputs(tmp_path / "cut")
    train(PARAMS, index_dir, out, progress=False, stop_after_steps=4)
    fresh = train(PARAMS, other, outputs(tmp_path / "fresh"), progress=False)
    resumed = train(PARAMS, other, out, progress=False)
    assert "training data changed since it was written; starting afresh" in caplog.text
    assert resumed["history"] == fresh["history"]


def test_va_centres_come_from_the_training_record_or_default_to_the_bin_centres(tmp_path):
    from pipeline.training.models import MultitaskNet, load_checkpoint, save_checkpoint, va_centres_of

    save_checkpoint(tmp_path / "bare.pt", MultitaskNet("mobilenet_v3_small"))  # made by hand: no training record
    save_checkpoint(tmp_path / "trained.pt", MultitaskNet("mobilenet_v3_small"), {"train": {"va_centres": "reference"}})
    assert va_centres_of(load_checkpoint(tmp_path / "bare.pt")[1]) == "centres"
    assert va_centres_of(load_checkpoint(tmp_path / "trained.pt")[1]) == "reference"
    assert va_centres_of({"train": "damaged"}) == "centres"


def test_a_selection_of_more_videos_than_validation_has_is_said(index_dir, caplog):
    from pipeline.core.index import FrameIndex
    from pipeline.training.data import ImageData

    videos = len(set(FrameIndex.read(index_dir / "val.parquet").video))
    with caplog.at_level("WARNING", logger="mtaffect"):
        ImageData(PARAMS.model_copy(update={"selection_videos": videos - 1}), index_dir)
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="mtaffect"):
        data = ImageData(PARAMS.model_copy(update={"selection_videos": 100_000}), index_dir)
    assert f"selection_videos 100000: {index_dir / 'val.parquet'} has {videos} validation videos: the best epoch " \
           "is chosen on all of them" in caplog.text
    assert len(set(data.val.video)) == videos


def test_a_teacher_with_a_task_weight_of_0_learns_and_is_chosen_on_the_other_tasks_only(index_dir, tmp_path):
    """The study's single-task networks: batches of the other tasks are never read, the
    task's own batches are the multitask run's (same images, same views), the best epoch is
    chosen on the task's score alone, and the log has no loss for what is not learned."""
    import math

    from pipeline.evaluation.metrics import era_total
    from pipeline.training.data import ImageData
    from pipeline.training.sampling import TaskBatchSampler

    va_only = PARAMS.model_copy(update={"task_weights": {"AU": 0.0, "EXPR": 0.0, "VA": 1.0}})
    batches = {}
    for name, params in (("all", PARAMS), ("VA", va_only)):
        data = ImageData(params, index_dir)
        sampler = TaskBatchSampler(data.weights, params.batch_per_task, epoch_length=3, seed=params.seed)
        batches[name] = data.steps(sampler, 0, 0, params)[1]
    assert set(batches["all"]) == {"AU", "EXPR", "VA"} and set(batches["VA"]) == {"VA"}
    assert torch.equal(batches["VA"]["VA"][0], batches["all"]["VA"][0])  # drawn after AU's and EXPR's views

    report = train(va_only, index_dir, outputs(tmp_path), progress=False)
    for row in report["history"]:
        assert row["total"] == pytest.approx(row["ccc_valence"] + row["ccc_arousal"])
        assert math.isnan(row["loss_AU"]) and math.isnan(row["loss_EXPR"]) and not math.isnan(row["loss_VA"])
    assert report["best_total"] == max(r["total"] for r in report["history"])
    whole = era_total(report["validation"], "2020")  # what a multitask selection would have summed
    assert whole != pytest.approx(report["best_total"])
