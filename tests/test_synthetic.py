"""The synthetic data set, checked from the outside.

The ``tiny`` set is generated once per module through the ``synth`` command. Every format
is then read back by a small parser written here from ``docs/formats.md`` (not
from the generator's code, nor the project's readers) and compared with
``ground_truth.parquet``; the labels' correlations and imbalance, determinism, the
contact sheet and MTCNN's detection rate are checked on the same files.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]

AFFWILD2_HEADERS = {
    "AU_Set": "AU1,AU2,AU4,AU6,AU12,AU15,AU20,AU25",
    "EXPR_Set": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise",
    "VA_Set": "valence,arousal",
}
UNIFIED_AUS = [1, 2, 4, 6, 12, 15, 20, 25]
DISFA_AUS = [1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26]
EXPW_TO_UNIFIED = [1, 2, 3, 4, 5, 6, 0]
AU_COLS = [f"AU{a}" for a in UNIFIED_AUS]
LAB_AU_COLS = [f"lab_AU{a}" for a in UNIFIED_AUS]
LABEL_NOISE = 0.05  # params.yaml's synth.label_noise, which the fixture uses


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny set, made by the stage command exactly as DVC would (plus --size/--out)."""
    from stages.synth import cli

    out = tmp_path_factory.mktemp("synth")
    sheet = out / "sheet.png"
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--seed", "0",
                                   "--out", str(out / "data"), "--contact-sheet", str(sheet), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    gt = pd.read_parquet(out / "data" / "ground_truth.parquet")
    return out / "data", gt, sheet


def sub(gt, source, video=None):
    d = gt[gt.source == source]
    if video is not None:
        d = d[d.video == video]
    return d.sort_values("frame").reset_index(drop=True)


# --- Aff-Wild2 -----------------------------------------------------------------------------


def parse_affwild2_file(path: Path):
    """An annotation file as docs/formats.md describes it: a header, then one row per frame."""
    lines = path.read_text().splitlines()
    task = path.parent.parent.name
    assert lines[0] == AFFWILD2_HEADERS[task], f"{path}: header {lines[0]!r}"
    rows = [[float(v) for v in line.split(",")] for line in lines[1:]]
    width = len(AFFWILD2_HEADERS[task].split(","))
    if task == "EXPR_Set":
        width = 1
    assert all(len(r) == width for r in rows), path
    return task, np.array(rows)


def test_affwild2_annotations_match_ground_truth(tiny):
    root, gt, _ = tiny
    ann = root / "affwild2" / "annotations"
    seen = {}
    for path in sorted(ann.glob("*_Set/*_Set/*.txt")):
        split = {"Training_Set": "train", "Validation_Set": "val"}[path.parent.name]
        task, rows = parse_affwild2_file(path)
        video = path.stem
        d = sub(gt, "affwild2", video)
        assert len(d) == len(rows), f"{path}: {len(rows)} rows, ground truth has {len(d)} frames"
        assert (d.split == split).all()
        assert list(d.frame) == list(range(len(rows)))
        seen.setdefault(video, set()).add(task)
        if task == "AU_Set":
            invalid = (rows == -1).any(axis=1)
            assert ((rows == -1).all(axis=1) == invalid).all(), "an invalid AU row must be -1 throughout"
            assert set(np.unique(rows[~invalid])) <= {0.0, 1.0}
            assert (invalid == ~d.labelled_AU).all(), f"{path}: -1 rows are not the unlabelled frames"
            labels = rows[~invalid].astype(int)
            assert (labels == d.loc[~invalid, LAB_AU_COLS].to_numpy()).all()
            truth = d.loc[~invalid, AU_COLS].to_numpy()
            if split == "val":
                assert (labels == truth).all(), f"{path}: validation labels differ from the truth"
            else:
                assert (labels != truth).mean() < 3 * LABEL_NOISE
        elif task == "EXPR_Set":
            v = rows[:, 0]
            invalid = v == -1
            assert (invalid == ~d.labelled_EXPR).all()
            assert set(np.unique(v[~invalid])) <= set(range(7))
            assert (v[~invalid] == d.lab_expr[~invalid]).all()
            if split == "val":
                assert (v[~invalid] == d.expr[~invalid]).all()
        else:
            invalid = (rows == -5).any(axis=1)
            assert ((rows == -5).all(axis=1) == invalid).all()
            assert (invalid == ~d.labelled_VA).all()
            va = rows[~invalid]
            assert np.abs(va).max() <= 1.0
            np.testing.assert_allclose(va[:, 0], d.lab_valence[~invalid], atol=1e-6)
            np.testing.assert_allclose(va[:, 1], d.lab_arousal[~invalid], atol=1e-6)
            if split == "val":
                np.testing.assert_allclose(va, d.loc[~invalid, ["valence", "arousal"]].to_numpy(), atol=6e-5)
            else:
                assert np.abs(va[:, 0] - d.valence[~invalid]).mean() < 4 * LABEL_NOISE
    # A task without a file leaves the frames unlabelled for it; validation has all three.
    for video, tasks in seen.items():
        d = sub(gt, "affwild2", video)
        for task, col in (("AU", "lab_AU1"), ("EXPR", "lab_expr")):
            if f"{task}_Set" not in tasks:
                assert not d[f"labelled_{task}"].any() and (d[col] == -1).all()
        if "VA_Set" not in tasks:
            assert not d.labelled_VA.any() and d.lab_valence.isna().all()
        if (d.split == "val").all():
            assert tasks == {"AU_Set", "EXPR_Set", "VA_Set"}
    assert set(seen) == set(gt[gt.source == "affwild2"].video)
    # Invalid markers really are mixed in, and some videos carry one or two tasks only.
    assert (~gt[gt.source == "affwild2"].labelled_AU).any()
    assert any(len(t) < 3 for t in seen.values()) and any(len(t) == 3 for t in seen.values())
    assert any(v.endswith("_left") for v in seen) and any(v.endswith("_right") for v in seen)


def test_affwild2_videos_and_crops(tiny):
    root, gt, _ = tiny
    a = gt[gt.source == "affwild2"]
    for video, d in a.groupby("video"):
        d = d.sort_values("frame")
        base = video.removesuffix("_left").removesuffix("_right")
        cap = cv2.VideoCapture(str(root / "affwild2" / "videos" / f"{base}.avi"))
        assert cap.isOpened()
        n = 0
        while cap.grab():
            n += 1
        assert n == len(d), f"{base}.avi has {n} frames, the annotations {len(d)}"
        crops = {int(p.stem) - 1 for p in (root / "affwild2" / "cropped_aligned" / video).glob("*.jpg")}
        assert all(len(p.stem) == 5 for p in (root / "affwild2" / "cropped_aligned" / video).glob("*.jpg"))
        assert crops == set(d.frame[d.face_visible]), f"{video}: crops are not exactly the visible frames"
    # Some frames have no face (no crop), some of those still carry labels.
    hidden = a[~a.face_visible]
    assert 0 < len(hidden) < 0.1 * len(a)
    assert (hidden.labelled_VA | hidden.labelled_EXPR | hidden.labelled_AU).any()
    crop = cv2.imread(str(next((root / "affwild2" / "cropped_aligned").glob("*/*.jpg"))))
    assert crop.shape == (112, 112, 3)


def test_two_person_videos_draw_each_person_in_their_own_place(tiny):
    """In a two-person video each person has their own place, face and crops.

    Guards against drawing every face of a frame with one person's identity and pose (a past
    bug no other test caught): both ground-truth rows then point at the same spot, and the
    _left and _right crops of a frame show the same face."""
    root, gt, _ = tiny
    a = gt[gt.source == "affwild2"]
    videos = sorted(v.removesuffix("_left") for v in a.video.unique() if v.endswith("_left"))
    assert videos, "tiny must hold a two-person video"

    def crop(video, side, frame):
        path = root / "affwild2" / "cropped_aligned" / f"{video}_{side}" / f"{frame + 1:05d}.jpg"
        return cv2.imread(str(path)).astype(np.float32)

    def median_diff(pairs):
        return float(np.median([np.abs(x - y).mean() for x, y in pairs]))

    for video in videos:
        left = a[a.video == f"{video}_left"].set_index("frame").sort_index()
        right = a[a.video == f"{video}_right"].set_index("frame").sort_index()
        assert (left.index == right.index).all()
        both = left.index[left.face_visible.to_numpy() & right.face_visible.to_numpy()]
        assert len(both) > 20
        # Side by side in every frame: the left face's box ends before the right one's starts.
        gap = right.loc[both, "box_x1"] - left.loc[both, "box_x2"]
        assert (gap > 0).all(), f"{video}: the two people's boxes overlap in {(gap <= 0).sum()} frames"
        # The pixels at each person's landmarks show that person: the two crops of a frame
        # differ far more than one person's crops five frames apart (about 5x here; under 1x
        # when both faces are drawn alike, 2.6x when only the identity is shared).
        cross = median_diff((crop(video, "left", f), crop(video, "right", f)) for f in both)
        within = max(median_diff((crop(video, side, f), crop(video, side, g)) for f, g in zip(both[:-5], both[5:]))
                     for side in ("left", "right"))
        assert cross > 3 * within, (
            f"{video}: left and right crops differ by {cross:.1f} grey levels, one person's by {within:.1f}")


# --- DISFA ---------------------------------------------------------------------------------


def test_disfa_labels_match_ground_truth(tiny):
    root, gt, _ = tiny
    folders = sorted((root / "disfa" / "ActionUnit_Labels").iterdir())
    assert folders and all(f.name.startswith("SN") and len(f.name) == 5 for f in folders)
    for folder in folders:
        sn = folder.name
        d = sub(gt, "disfa", sn)
        per_au = {}
        for au in DISFA_AUS:
            values = {}
            for line in (folder / f"{sn}_au{au}.txt").read_text().splitlines():
                frame, intensity = (int(v) for v in line.split(","))
                assert 0 <= intensity <= 5 and frame >= 1
                values[frame - 1] = intensity
            per_au[au] = values
        frames = sorted(per_au[1])
        assert all(sorted(v) == frames for v in per_au.values())
        labelled = d.frame.isin(frames)
        assert (labelled == d.labelled_AU).all()
        for au in DISFA_AUS:
            got = np.array([per_au[au][f] for f in frames])
            true = np.floor(d.set_index("frame").loc[frames, f"AUI{au}"].to_numpy())
            assert np.abs(got - true).max() <= 1, f"{sn} AU{au}: off by more than one step"
            assert (got != true).mean() < 3 * LABEL_NOISE
            if au in UNIFIED_AUS:
                lab = d.set_index("frame").loc[frames, f"lab_AU{au}"].to_numpy()
                assert ((got >= 2).astype(int) == lab).all()
        # The true binary AU is intensity >= 2, with no noise.
        assert (d[AU_COLS].to_numpy() == (d[[f"AUI{a}" for a in UNIFIED_AUS]].to_numpy() >= 2)).all()
        assert not d.labelled_EXPR.any() and not d.labelled_VA.any()
        cap = cv2.VideoCapture(str(root / "disfa" / "Videos_LeftCamera" / f"LeftVideo{sn}_comp.avi"))
        n = 0
        while cap.grab():
            n += 1
        assert n == len(d)


# --- ExpW ----------------------------------------------------------------------------------


def test_expw_labels_match_ground_truth(tiny):
    root, gt, _ = tiny
    e = gt[gt.source == "expw"].set_index("uid")
    lines = (root / "expw" / "label" / "label.lst").read_text().splitlines()
    assert len(lines) == len(e)
    per_image = {}
    for line in lines:
        name, face_id, top, left, right, bottom, conf, label = line.split(" ")
        row = e.loc[f"expw/{Path(name).stem}/{int(face_id)}"]
        assert EXPW_TO_UNIFIED[int(label)] == row.lab_expr
        assert abs(int(left) - row.box_x1) <= 1 and abs(int(top) - row.box_y1) <= 1
        assert abs(int(right) - row.box_x2) <= 1 and abs(int(bottom) - row.box_y2) <= 1
        float(conf)
        per_image.setdefault(name, []).append(int(face_id))
        img_shape = per_image.setdefault(("shape", name), cv2.imread(str(root / "expw" / "image" / "origin" / name)).shape)
        assert 0 <= int(left) < int(right) <= img_shape[1] and 0 <= int(top) < int(bottom) <= img_shape[0]
    faces = [v for k, v in per_image.items() if not isinstance(k, tuple)]
    assert any(len(f) > 1 for f in faces), "some images must hold several faces"
    assert all(f == list(range(len(f))) for f in faces)
    assert (e.lab_expr != e.expr).mean() < 3 * LABEL_NOISE
    assert e.labelled_EXPR.all() and not e.labelled_AU.any()


# --- AFEW-VA -------------------------------------------------------------------------------


def test_afewva_labels_and_landmarks_match_ground_truth(tiny):
    root, gt, _ = tiny
    clips = sorted(p for p in (root / "afewva").glob("*/*") if p.is_dir())
    assert clips
    for clip in clips:
        nn = clip.parent.name
        assert len(nn) == 2 and nn.isdigit() and 1 <= int(nn) <= 12
        meta = json.loads((clip / f"{clip.name}.json").read_text())
        assert {"actor", "video_id", "frames"} <= set(meta)
        pngs = sorted(p.stem for p in clip.glob("*.png"))
        assert sorted(meta["frames"]) == pngs and pngs[0] == "00000"
        d = sub(gt, "afewva", f"{nn}_{clip.name}").set_index("frame")
        assert len(d) == len(pngs)
        assert (d.subject == meta["actor"]).all()
        for key, entry in meta["frames"].items():
            row = d.loc[int(key)]
            v, a = entry["valence"], entry["arousal"]
            assert isinstance(v, int) and isinstance(a, int) and -10 <= v <= 10 and -10 <= a <= 10
            assert abs(v / 10 - row.lab_valence) < 1e-6 and abs(a / 10 - row.lab_arousal) < 1e-6
            assert abs(v / 10 - row.valence) <= 0.05 + 6 * LABEL_NOISE
            lm = np.array(entry["landmarks"])
            assert lm.shape == (68, 2)
            five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
            true = np.array([[row[f"lm{i}_x"], row[f"lm{i}_y"]] for i in range(5)])
            assert np.abs(five - true).max() < 2.0, f"{clip}/{key}: landmarks far from the drawn face"
    af = gt[gt.source == "afewva"]
    assert af.labelled_VA.all() and not af.labelled_AU.any() and not af.labelled_EXPR.any()


# --- the ground truth itself -------------------------------------------------------------


def test_ground_truth_schema_and_uids(tiny):
    _, gt, _ = tiny
    assert gt.uid.is_unique
    assert (gt.uid == gt.source + "/" + gt.video + "/" + gt.frame.astype(str)).all()
    assert set(gt.source) == {"affwild2", "disfa", "expw", "afewva"}
    for c in AU_COLS + ["expr"]:
        assert gt[c].dtype == np.int8
    assert gt.valence.dtype == np.float32 and gt.valence.between(-1, 1).all()
    # Unlabelled means unknown in the lab_ columns, never 0.
    assert (gt.loc[~gt.labelled_AU, LAB_AU_COLS] == -1).all().all()
    assert (gt.loc[~gt.labelled_EXPR, "lab_expr"] == -1).all()
    assert gt.loc[~gt.labelled_VA, "lab_valence"].isna().all()
    assert set(gt.split) == {"train", "val"} and set(gt[gt.split == "val"].source) == {"affwild2"}
    # Every class and every unified AU shows up a few times even in tiny.
    assert gt.expr.value_counts().reindex(range(7)).min() >= 3
    assert gt[AU_COLS].sum().min() >= 3
    val = gt[gt.split == "val"]
    assert val.expr.nunique() == 7, "validation must hold every class"


def test_labels_are_correlated_as_specified(tiny):
    _, gt, _ = tiny

    def p(cond, given):
        return cond[given].mean()

    hap, sad, sur, neu, ang = (gt.expr == k for k in (4, 5, 6, 0, 1))
    assert p(gt.AU12 == 1, hap) > 0.6 and p(gt.valence > 0, hap) > 0.85
    assert p(gt.AU12 == 1, neu) < 0.15
    assert p(gt.AU15 == 1, sad) > 0.5 and gt.valence[sad].mean() < -0.2
    assert p(gt.AUI2 >= 2, sur) > 0.5 and gt.arousal[sur].mean() > 0.3
    assert p(gt.AUI4 >= 2, ang) > 0.5 and gt.valence[ang].mean() < -0.2
    # AUs respond to intensity: the expression's strength tracks its main AU.
    assert np.corrcoef(gt.expr_intensity[hap], gt.AUI12[hap])[0, 1] > 0.7


def test_imbalance_follows_the_configuration():
    """The label model hits the configured frame shares (checked on 180k frames, no pixels)."""
    from synthetic.episodes import expression_shares, person_track, still_labels

    rng = np.random.default_rng(0)
    for source in ("affwild2", "afewva"):
        target = expression_shares(source)
        expr = np.concatenate([person_track(rng, 300, target).expr for _ in range(600)])
        got = np.bincount(expr, minlength=7) / len(expr)
        np.testing.assert_allclose(got, target, atol=0.02)
    target = expression_shares("expw")
    got = np.bincount(still_labels(rng, 20000, target).expr, minlength=7) / 20000
    np.testing.assert_allclose(got, target, atol=0.015)
    # Neutral and happiness dominate, fear and disgust are rare; imbalance 0 evens it out.
    order = np.argsort(expression_shares("affwild2"))
    assert set(order[-2:]) == {0, 4} and set(order[:2]) == {2, 3}
    flat = expression_shares("affwild2", imbalance=0.0)
    np.testing.assert_allclose(flat, 1 / 7)


def test_tiny_set_is_skewed_like_the_real_ones(tiny):
    _, gt, _ = tiny
    counts = gt[gt.source.isin(["affwild2", "expw"])].expr.value_counts()
    # Tiny is mostly the forced coverage episodes, so only the coarse skew shows here (the
    # configured shares are checked at scale above): neutral dominates, fear is rare.
    assert counts.idxmax() == 0
    assert counts[0] > 2 * counts[[1, 2, 3, 5, 6]].max() and counts[4] > counts[3]
    au = gt[AU_COLS].mean()
    assert au["AU20"] < au["AU12"] and au["AU20"] < au["AU25"]


# --- determinism ---------------------------------------------------------------------------


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- the camera model -------------------------------------------------------------------------


def test_tone_lut_is_brightness_gamma_and_contrast():
    from synthetic.camera import Look, tone_lut

    assert np.array_equal(tone_lut(Look(gamma=1.0, contrast=1.0)).ravel(), np.arange(256))
    lut = tone_lut(Look(gamma=2.0, contrast=1.5), brightness=1.2).ravel()
    for x in (0, 40, 100, 200, 255):
        y = min(1.0, x / 255 * 1.2) ** 2.0  # brightness, then gamma
        y = (y - 0.5) * 1.5 + 0.5  # contrast about mid-grey
        assert lut[x] == int(np.clip(y * 255 + 0.5, 0, 255)), x


def test_colour_matrix_is_saturation_gain_and_a_fading_shadow_tint():
    from synthetic.camera import Look, colour_matrix

    pixels = np.array([[[0, 0, 0], [255, 255, 255], [30, 90, 200], [180, 120, 60]]], np.uint8)
    neutral = Look(gain=(1, 1, 1), saturation=1.0, shadow_tint=(0, 0, 0))
    assert np.array_equal(cv2.transform(pixels, colour_matrix(neutral)), pixels)

    look = Look(gain=(0.9, 1.0, 1.1), saturation=0.5, shadow_tint=(20.0, 10.0, -6.0))
    got = cv2.transform(pixels, colour_matrix(look)).astype(float)
    for (b, g, r), out in zip(pixels[0].astype(float), got[0]):
        luma = 0.114 * b + 0.587 * g + 0.299 * r  # BGR order, as cv2's BGR2GRAY
        for c, (x, gain, tint) in enumerate(zip((b, g, r), look.gain, look.shadow_tint)):
            want = gain * (0.5 * x + 0.5 * luma) + tint * (1 - luma / 255)
            assert abs(out[c] - np.clip(want, 0, 255)) <= 1, (b, g, r, c)
    # Full tint on black, none on white.
    assert list(got[0, 0]) == [20, 10, 0] and list(got[0, 1]) == [229, 255, 255]


def test_gaussian_blur_reaches_two_sigmas():
    from synthetic.draw import gaussian_blur

    img = np.random.default_rng(0).uniform(0, 255, (40, 50)).astype(np.float32)
    for sigma in (0.3, 0.45, 1.0, 1.7):
        r = int(np.ceil(2 * sigma))
        w = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
        w /= w.sum()
        rows = sum(w[i] * img[:, i:img.shape[1] - 2 * r + i] for i in range(2 * r + 1))
        want = sum(w[i] * rows[i:img.shape[0] - 2 * r + i] for i in range(2 * r + 1))
        got = gaussian_blur(img, sigma)[r:-r, r:-r]  # the interior: no border rule involved
        assert np.allclose(got, want, atol=1e-3), sigma


def test_grain_bank_depends_only_on_its_key():
    from synthetic.nuisances import grain_bank

    a = grain_bank(0, "disfa", 24, 32, 2.0)
    assert grain_bank(0, "disfa", 24, 32, 2.0) is a  # shared by the jobs of a process
    grain_bank.cache_clear()
    again = grain_bank(0, "disfa", 24, 32, 2.0)  # as another worker process draws it
    assert again is not a and np.array_equal(again.up, a.up) and np.array_equal(again.down, a.down)
    other = grain_bank(1, "disfa", 24, 32, 2.0)
    assert not np.array_equal(other.up, a.up)
    # Zero mean, the configured spread: up - down is the signed noise.
    noise = a.up.astype(int) - a.down.astype(int)
    assert abs(noise.mean()) < 0.05 and abs(noise.std() - 2.0) < 0.1


def test_same_seed_gives_identical_files_with_any_worker_count(tiny, tmp_path):
    from synthetic.params import SynthParams
    from synthetic.generate import generate

    root, _, _ = tiny
    generate(tmp_path, SynthParams(dataset_size="tiny", seed=0, workers=1), progress=False)
    a, b = file_hashes(root), file_hashes(tmp_path)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_synth_refuses_a_folder_holding_files_it_did_not_write_and_replaces_its_own(tiny, tmp_path):
    import shutil

    from stages.synth import cli

    def synth(out):
        return CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--seed", "0",
                                        "--out", str(out), "--no-contact-sheet", "--no-progress"])

    def tree(folder):
        return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    users = tmp_path / "users"
    (users / "affwild2" / "annotations").mkdir(parents=True)
    (users / "affwild2" / "annotations" / "real.txt").write_text("the user's labels\n")
    own = tmp_path / "own"
    shutil.copytree(tiny[0], own)
    shutil.copy(users / "affwild2" / "annotations" / "real.txt", own / "affwild2" / "annotations")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "synth.json").write_text('{"my": "settings"}\n')
    for out, first in [(users, users / "affwild2" / "annotations" / "real.txt"),
                       (own, own / "affwild2" / "annotations" / "real.txt"), (theirs, theirs / "synth.json")]:
        before = tree(out)
        res = synth(out)
        assert res.exit_code == 1 and f"Error: {first}: not written by synth: refusing" in res.output, res.output
        assert tree(out) == before and "Traceback" not in res.output
    # a file of a name synth writes, added since: its version file counts one fewer
    (own / "affwild2" / "annotations" / "real.txt").unlink()
    (own / "affwild2" / "videos" / "mine.avi").write_bytes(b"my video")
    res = synth(own)
    assert res.exit_code == 1 and f"{own / 'affwild2'}: holds" in res.output and "someone added files" in res.output
    (own / "affwild2" / "videos" / "mine.avi").unlink()
    res = synth(own)  # its own earlier output: replaced, the same bytes
    assert res.exit_code == 0, res.output
    assert tree(own).keys() == {own / p.relative_to(tiny[0]) for p in tree(tiny[0])}
    (own / "synth.json").unlink()  # e.g. deleted by hand: DVC still has it
    res = synth(own)
    assert res.exit_code == 1 and "but no synth.json" in res.output and "`dvc checkout synth` brings synth.json " \
        "back" in res.output


def test_each_dataset_has_a_version_file_that_fits_it(tiny):
    # what extract depends on in dvc.yaml: written after the last file of its dataset
    from pipeline.extraction.dataset_version import check_version, version_path
    from pipeline.core.hashing import digest

    root, _, _ = tiny
    for source in ("affwild2", "disfa", "expw", "afewva"):
        check_version(root / source, version_path(root / source), digest(root / source))


def test_another_seed_gives_other_files(tiny, tmp_path):
    from synthetic.params import SynthParams
    from synthetic.planning import plan
    from synthetic.runners import run_job

    root, _, _ = tiny
    cfg = SynthParams(dataset_size="tiny", seed=1, workers=1)
    for job in [j for j in plan(cfg) if j.source in ("disfa", "afewva")][:2]:
        run_job((job, cfg, str(tmp_path)))
    compared = 0
    for p in sorted(tmp_path.rglob("*")):
        twin = root / p.relative_to(tmp_path)
        if p.is_file() and twin.exists():
            assert p.read_bytes() != twin.read_bytes(), p
            compared += 1
    # Those are the two DISFA subjects: a video and a label file per AU each, all also in
    # the seed-0 set (comparing no file at all would pass for nothing).
    assert compared == 2 * (1 + len(DISFA_AUS)), compared


def test_larger_sizes_plan_without_rendering():
    from synthetic.params import SynthParams
    from synthetic.planning import SIZES, plan

    from synthetic.params import SYNTH_SIZES

    assert tuple(SIZES) == SYNTH_SIZES  # one list of names: the params schema's
    jobs = plan(SynthParams(dataset_size="large"))
    frames = sum(j.frames or len(j.images) for j in jobs)
    assert frames > 200_000
    names = [(j.source, j.folder, j.name) for j in jobs]
    assert len(set(names)) == len(names)
    assert {j.folder for j in jobs if j.source == "afewva"} == {f"{i:02d}" for i in range(1, 13)}


def test_ground_truth_streams_in_fixed_row_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from synthetic.params import SynthParams
    from synthetic.generate import generate
    from pipeline.core.tables import PARQUET_OPTIONS

    monkeypatch.setitem(PARQUET_OPTIONS, "row_group_size", 100)
    report = generate(tmp_path, SynthParams(dataset_size="tiny", seed=0, workers=1), progress=False)
    meta = pq.ParquetFile(tmp_path / "ground_truth.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == report["rows"] == 913
    assert sizes == [100] * 9 + [13]


def test_failed_generation_leaves_no_ground_truth(tmp_path, monkeypatch):
    from synthetic.params import SynthParams
    from synthetic import runners
    from synthetic.generate import generate

    def broken(job, cfg, root):
        raise RuntimeError("renderer broke")

    monkeypatch.setitem(runners.RUNNERS, "disfa", broken)  # workers=1: runs in this process
    with pytest.raises(RuntimeError, match="renderer broke"):
        generate(tmp_path, SynthParams(dataset_size="tiny", seed=0, workers=1), progress=False)
    assert not (tmp_path / "ground_truth.parquet").exists()
    assert not list(tmp_path.glob(".ground_truth.parquet*"))


# --- pictures and the detector ---------------------------------------------------------------


def test_contact_sheet_has_the_expected_grid(tiny):
    from synthetic.contact_sheet import CELL, COLUMNS, HEADER, LABEL_WIDTH

    _, _, sheet_path = tiny
    sheet = cv2.imread(str(sheet_path))
    rows = 7 + 14 + 4  # expressions, drawn AUs, sources
    assert sheet.shape == (HEADER + rows * CELL, LABEL_WIDTH + COLUMNS * CELL, 3)
    for i in range(rows):
        for j in range(COLUMNS):
            cell = sheet[HEADER + i * CELL: HEADER + (i + 1) * CELL, LABEL_WIDTH + j * CELL: LABEL_WIDTH + (j + 1) * CELL]
            assert cell.std() > 8, f"cell ({i}, {j}) is blank"
    # The AU rows change with intensity: the last column differs from the first.
    au_row = HEADER + 7 * CELL
    first = sheet[au_row: au_row + CELL, LABEL_WIDTH: LABEL_WIDTH + CELL].astype(int)
    last = sheet[au_row: au_row + CELL, LABEL_WIDTH + 7 * CELL: LABEL_WIDTH + 8 * CELL].astype(int)
    assert np.abs(first - last).mean() > 1


def sample_frames(root: Path, gt: pd.DataFrame, source: str, n: int, seed: int = 0):
    """(image, ground-truth box) for ``n`` visible faces of ``source``, read from the files."""
    rows = gt[(gt.source == source) & gt.face_visible]
    rows = rows.iloc[np.sort(np.random.default_rng(seed).choice(len(rows), min(n, len(rows)), replace=False))]
    out = []
    for (_source, video), d in rows.groupby(["source", "video"], sort=True):
        if source in ("affwild2", "disfa"):
            base = video.removesuffix("_left").removesuffix("_right")
            path = (root / "affwild2" / "videos" / f"{base}.avi" if source == "affwild2"
                    else root / "disfa" / "Videos_LeftCamera" / f"LeftVideo{video}_comp.avi")
            cap = cv2.VideoCapture(str(path))
            wanted, k = set(d.frame), 0
            frames = {}
            while wanted - set(frames):
                ok, f = cap.read()
                assert ok
                if k in wanted:
                    frames[k] = f
                k += 1
            images = [frames[f] for f in d.frame]
        elif source == "expw":
            images = [cv2.imread(str(root / "expw" / "image" / "origin" / f"{video}.jpg"))] * len(d)
        else:
            nn, clip = video.split("_")
            images = [cv2.imread(str(root / "afewva" / nn / clip / f"{f:05d}.png")) for f in d.frame]
        for img, r in zip(images, d.itertuples()):
            out.append((img, np.array([r.box_x1, r.box_y1, r.box_x2, r.box_y2])))
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix)


def test_mtcnn_finds_the_faces(tiny):
    """facenet-pytorch's MTCNN (shipped weights, CPU, min face 40 as in extraction) finds
    the drawn face in at least 98% of 50 sampled frames per source."""
    import torch
    from facenet_pytorch import MTCNN

    root, gt, _ = tiny
    torch.manual_seed(0)
    mtcnn = MTCNN(keep_all=True, min_face_size=40, device="cpu")
    for source in ("affwild2", "disfa", "expw", "afewva"):
        found = 0
        samples = sample_frames(root, gt, source, 50)
        for img, box in samples:
            boxes, _ = mtcnn.detect(np.ascontiguousarray(img[..., ::-1]))
            found += boxes is not None and max(iou(b, box) for b in boxes) > 0.3
        rate = found / len(samples)
        assert rate >= 0.98, f"{source}: MTCNN found {found} of {len(samples)} faces"

    # The organisers' style crops are aligned: MTCNN's eyes and mouth land on the
    # 112x112 five-point template (eyes near (38, 52) and (74, 52), mouth near y 92).
    template = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
    small = MTCNN(keep_all=True, min_face_size=20, device="cpu")
    crops = sorted((root / "affwild2" / "cropped_aligned").glob("*/*.jpg"))[::25][:20]
    errors = []
    for path in crops:
        _, probs, points = small.detect(np.ascontiguousarray(cv2.imread(str(path))[..., ::-1]), landmarks=True)
        assert points is not None, f"{path}: no face in the aligned crop"
        best = np.asarray(points[int(np.argmax(probs))], np.float64)
        errors.append(np.linalg.norm(best - template, axis=1).mean())
    assert np.median(errors) < 8, f"aligned crops are off the template by {np.median(errors):.1f} px"


# --- the 2022+ files (synth.label_schema: abaw2022) ------------------------------------------

AFFWILD2_2022_DIRS = {"AU_Detection_Challenge": "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
                      "EXPR_Classification_Challenge": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
                      "VA_Estimation_Challenge": "valence,arousal"}


@pytest.fixture(scope="module")
def tiny2022(tmp_path_factory):
    from stages.synth import cli

    out = tmp_path_factory.mktemp("synth2022")
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--label-schema", "abaw2022",
                                   "--out", str(out / "data"), "--contact-sheet", str(out / "sheet.png"),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out / "data", pd.read_parquet(out / "data" / "ground_truth.parquet"), out / "sheet.png"


def test_2022_files_use_the_2022_layout_and_headers_and_match_the_ground_truth(tiny2022):
    root, gt, _ = tiny2022
    ann = root / "affwild2" / "annotations"
    assert sorted(p.name for p in ann.iterdir()) == sorted(AFFWILD2_2022_DIRS)
    files = sorted(ann.glob("*/*/*.txt"))
    assert {p.parent.name for p in files} == {"Train_Set", "Validation_Set"}
    aus = AFFWILD2_2022_DIRS["AU_Detection_Challenge"].split(",")
    for path in files:
        lines = path.read_text().splitlines()
        assert lines[0] == AFFWILD2_2022_DIRS[path.parent.parent.name], path
        rows = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
        d = sub(gt, "affwild2", path.stem)
        assert len(d) == len(rows)
        if path.parent.parent.name == "AU_Detection_Challenge":
            labelled = d.labelled_AU.to_numpy()
            assert (rows[labelled] == d.loc[labelled, [f"lab_{a}" for a in aus]].to_numpy()).all()
            assert (rows[~labelled] == -1).all()
            if path.parent.name == "Validation_Set":
                assert (rows[labelled] == d.loc[labelled, aus].to_numpy()).all()
        elif path.parent.parent.name == "EXPR_Classification_Challenge":
            labelled = d.labelled_EXPR.to_numpy()
            assert (rows[labelled, 0] == d.lab_expr[labelled]).all() and (rows[~labelled, 0] == -1).all()
    # Aff-Wild2's files label no AU20 (the 2022 set dropped it): unknown there, known to the truth.
    aff = gt[gt.source == "affwild2"]
    assert (aff.lab_AU20 == -1).all() and set(aff.AU20) <= {0, 1}


def test_2022_faces_show_other_au10_and_au24_and_the_other_sources_label_what_they_always_did(tiny2022):
    root, gt, _ = tiny2022
    aff = gt[gt.source == "affwild2"]
    assert (aff.expr == 7).mean() > 0.03 and (aff.lab_expr == 7).sum() > 0  # Other, in the truth and the files
    assert (gt[gt.source.isin(["disfa", "expw", "afewva"])].expr != 7).all()  # sources of 7 classes show none
    for au in (10, 24):
        assert (gt[f"AUI{au}"] >= 2).mean() > 0.02 and gt[f"AU{au}"].mean() > 0.02
        other = aff.expr == 7
        assert aff.loc[other, f"AUI{au}"].mean() > 2 * aff.loc[~other, f"AUI{au}"].mean()  # Other's prototype
    disfa = gt[gt.source == "disfa"]
    for au in (7, 10, 23, 24):  # DISFA labels none of these: unknown, never 0
        assert (disfa[f"lab_AU{au}"] == -1).all()
    assert (disfa.lab_AU20 >= 0).any()
    lines = (root / "expw" / "label" / "label.lst").read_text().split("\n")
    assert {int(line.split()[-1]) for line in lines if line} <= set(range(7))


def test_2022_contact_sheet_has_a_row_for_other_au10_and_au24(tiny2022):
    from synthetic.contact_sheet import CELL, COLUMNS, HEADER, LABEL_WIDTH

    sheet = cv2.imread(str(tiny2022[2]))
    assert sheet.shape == (HEADER + (8 + 16 + 6) * CELL, LABEL_WIDTH + COLUMNS * CELL, 3)  # 6 sources
    for row in (7, 8 + 14, 8 + 15):  # Other, AU10, AU24: a face that changes along the row
        y = HEADER + row * CELL
        first = sheet[y: y + CELL, LABEL_WIDTH: LABEL_WIDTH + CELL].astype(int)
        last = sheet[y: y + CELL, LABEL_WIDTH + 7 * CELL: LABEL_WIDTH + 8 * CELL].astype(int)
        assert np.abs(first - last).mean() > 1


def test_the_2022_aus_leave_a_face_without_them_exactly_as_before():
    """AU10 and AU24 move points through their own product, added only when shown: a face
    without them has the exact coordinates of the 14-AU product (the 2020 files' bytes)."""
    from synthetic.geometry import _AU_FIELDS_FLAT, Pose, au_fractions, face_geometry
    from synthetic.identity import sample_identity
    from synthetic.landmarks import AU_INDEX, DRAWN_AUS, NEUTRAL

    ident = sample_identity(np.random.default_rng(3))
    aus = np.random.default_rng(4).uniform(0, 5, len(DRAWN_AUS))
    aus[[AU_INDEX[10], AU_INDEX[24]]] = 0
    ident.au_bias[:] = 0
    pose = Pose(100, 100, 40)
    canon = face_geometry(ident, aus, pose).canon
    expected = NEUTRAL[:, :2] + (ident.shape + (au_fractions(ident, aus)[:14] @ _AU_FIELDS_FLAT).reshape(68, 2))
    expected[[67, 66, 65], 1] = np.maximum(expected[[67, 66, 65], 1], expected[[61, 62, 63], 1])
    expected[:, 1] *= ident.face_length
    assert np.array_equal(canon[:, :2], expected)
    aus[AU_INDEX[10]] = 5
    assert face_geometry(ident, aus, pose).canon[51, 1] < canon[51, 1]  # AU10 raises the upper lip


def test_2022_rerun_replaces_its_own_files_and_its_aside_record(tiny2022, tmp_path):
    """A rerun over its own 2022 output (annotations in the *_Challenge folders, and the run's
    record set aside into <out>/provenance when the default one named another --out) replaces
    it with the same bytes, instead of refusing those files as someone else's."""
    import shutil

    from stages.synth import cli

    out = tmp_path / "data"
    shutil.copytree(tiny2022[0], out)
    (out / "provenance").mkdir()
    (out / "provenance" / "synth.json").write_text("{}\n")
    before = {p.relative_to(out): p.read_bytes() for p in sorted((out / "affwild2").rglob("*.txt"))}
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--label-schema",
                                   "abaw2022", "--out", str(out), "--no-contact-sheet", "--no-progress",
                                   "--provenance", str(tmp_path / "record.json")])
    assert res.exit_code == 0, res.output
    assert {p.relative_to(out): p.read_bytes() for p in sorted((out / "affwild2").rglob("*.txt"))} == before


@pytest.mark.parametrize("source", ["saffwild2", "affectnet"])
def test_2022_datasets_read_by_the_projects_readers_put_every_label_on_its_frame(tiny2022, source):
    """s-Aff-Wild2 and AffectNet as synth writes them, read by the extraction's own readers:
    every kept image is a face of the truth and carries what the files say of it (each task
    unknown on its own where the file says so); the images the readers skip are counted."""
    from pipeline.core.tables import uid
    from pipeline.extraction.sources import affectnet, saffwild2
    from pipeline.extraction.sources.base import Problems

    root, gt, _ = tiny2022
    read = {"saffwild2": saffwild2.read, "affectnet": affectnet.read}[source](root / source, Problems())
    truth = gt[gt.source == source].set_index("uid")
    rows = 0
    for job in read.jobs:
        ids = [uid(source, job.video, int(f)) for f in job.frames]
        d = truth.loc[ids]
        assert (d.split == job.split).all() and (d.video == job.video).all()
        np.testing.assert_array_equal(job.expr, d.lab_expr.to_numpy())
        np.testing.assert_allclose(job.va, d[["lab_valence", "lab_arousal"]].to_numpy(), atol=1e-4)
        if job.aus:
            np.testing.assert_array_equal(job.au, d[[f"lab_{a}" for a in job.aus]].to_numpy())
        rows += len(ids)
    assert rows + read.invalid_label_rows == len(truth)  # s-Aff-Wild2: rows of no known label, skipped and counted
    assert (truth.lab_expr == 7).any() or source == "affectnet" and len(truth) < 100  # Other is in the files
    if source == "saffwild2":
        known = truth[["labelled_AU", "labelled_EXPR", "labelled_VA"]]
        assert known.all(axis=1).mean() < 0.7 and known.any(axis=1).mean() > 0.9  # tasks missing on their own


@pytest.mark.parametrize("where", ["the ground truth's close", "a worker's image and then the close"])
def test_a_full_disk_names_the_folder_and_leaves_no_temporary_ground_truth(tmp_path, monkeypatch, where):
    """A full disk (#102): closing the ground truth's Parquet writer writes to the same full
    disk and failed too, so its temporary stayed and the message named no file. Now the
    temporary goes, and one line names the folder, says the disk is full and that the run
    did not complete (synth.json still says so: the next run replaces the folder)."""
    import errno

    import pyarrow.parquet as pq

    from stages.synth import cli
    from synthetic import writers

    real_close = pq.ParquetWriter.close

    def close(self):
        real_close(self)
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    def write_jpeg(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "close", close)
    if where != "the ground truth's close":
        monkeypatch.setattr(writers, "write_jpeg", write_jpeg)
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--out", str(out),
                                   "--workers", "1", "--no-contact-sheet", "--no-progress",
                                   "--provenance", str(tmp_path / "record.json")])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    named = out / "ground_truth.parquet" if where == "the ground truth's close" else out  # the writer names its file
    assert f"Error: {named}: " in res.output and "(the disk is full): synth did not complete" in res.output, res.output
    assert f"the data set in {out} is incomplete" in res.output and "the next run replaces it" in res.output
    assert "Traceback" not in res.output
    assert not list(out.glob(".*.tmp")) and not (out / "ground_truth.parquet").exists()
    assert json.loads((out / "synth.json").read_text())["complete"] is False


def test_an_interrupted_synth_says_the_data_set_is_incomplete(tmp_path, monkeypatch):
    """Ctrl-C (or kill) during a run over a finished set (#104): the set is gone, half
    rewritten; one line names the folder and says to run synth again."""
    from stages.synth import cli
    from synthetic import writers

    def write_jpeg(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "write_jpeg", write_jpeg)
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--out", str(out),
                                   "--workers", "1", "--no-contact-sheet", "--no-progress",
                                   "--provenance", str(tmp_path / "record.json")])
    assert res.exit_code == 1 and res.output == (f"Error: {out}: synth was interrupted: the data set there is "
                                                 "incomplete; run it again (dvc repro --force synth)\n"), res.output
    assert not list(out.glob(".*.tmp")) and json.loads((out / "synth.json").read_text())["complete"] is False


@pytest.mark.parametrize("key, value, bound", [
    ("difficulty", 100, "<= 3.0"), ("domain_shift", 3.5, "<= 3.0"), ("imbalance", 20, "<= 3.0"),
    ("spontaneous_au", 4, "<= 3.0"), ("identity_spread", 2.5, "<= 2.0"), ("label_noise", 0.8, "<= 0.5"),
    ("difficulty", -1, ">= 0.0"),
])
def test_knobs_beyond_their_documented_range_are_refused_before_anything_is_written(tmp_path, key, value, bound):
    """synth.difficulty: 100 made 100 times the pose range without a word (#20)."""
    import yaml

    from stages.check_params import cli as check_params
    from stages.synth import cli

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(check_params, ["--params", str(path)])
    assert res.exit_code == 1 and res.output == f"Error: {path}: synth.{key}: must be {bound}, got {value}\n", res.output
    out = tmp_path / "data"
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--out", str(out),
                                   f"--{key.replace('_', '-')}", str(value), "--no-contact-sheet", "--no-progress"])
    assert res.exit_code == 1 and f"option --{key.replace('_', '-')}: must be {bound}, got {value}" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_synth_into_its_own_out_puts_its_contact_sheet_beside_it(tmp_path, monkeypatch):
    # the pipeline's reports/synth_contact_sheet.png is DVC's output: a hand run leaves it alone
    from stages.synth import cli

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--size", "tiny", "--out",
                                   str(tmp_path / "mine"), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mine.contact-sheet.png").is_file() and not (tmp_path / "reports").exists()


def test_an_option_out_of_range_is_named_as_typed(tmp_path):
    from stages.synth import cli

    res = CliRunner().invoke(cli, ["--params", str(ROOT / "params.yaml"), "--label-noise", "2", "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code != 0 and "option --label-noise: must be <= 0.5, got 2.0" in res.output, res.output
