"""DataReader: CLOTH3D reading, the crop, consistent augmentation, pipelines.

References are independent of the package: float64 NumPy written here from
SPEC "Data" (camera, crop, targets), scipy's Rotation for Rodrigues, the real
CLOTH3D++ samples' alpha masks, and hand-worked cases.
"""
import logging
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

import DataReader
from DataReader import augment, cloth3d, occlusion

SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "SPEC.md"

# --- SPEC "Data" camera and crop, written out independently of DataReader.camera ---
F_PX = 50.0 / 36.0 * 640.0
K = np.array([[F_PX, 0.0, 320.0], [0.0, F_PX, 240.0], [0.0, 0.0, 1.0]])
R_W2BC = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
R_W2CV = np.diag([1.0, -1.0, -1.0]) @ R_W2BC


def z_rot(angle):
    return Rotation.from_euler("z", angle).as_matrix()


def reference_frame(root, line):
    """Targets and crop geometry of one frame from the .mat files, float64."""
    sequence, frame = line.split("/")
    frame = int(frame[:-4])
    info = scipy.io.loadmat(str(root / sequence / "info.mat"))
    body = scipy.io.loadmat(str(root / sequence / "info_body.mat"))
    rz = z_rot(info["zrot"].item())
    nodes = np.concatenate([body["joints"][frame], body["lmarks"][frame]]).astype(np.float64)
    points = (nodes[1:] - nodes[0]) @ rz.T
    rotations = Rotation.from_rotvec(info["poses"][:, frame].reshape(24, 3)).as_matrix()
    rotations[0] = rz @ rotations[0]
    shape = np.r_[info["shape"].ravel(), 2.0 * (info["gender"].item() - 0.5)]
    cam_loc = info["camLoc"].ravel()
    root_world = rz @ info["trans"][:, frame]
    root_cam = R_W2CV @ (root_world - cam_loc)
    homogeneous = K @ root_cam
    root_px = homogeneous[:2] / homogeneous[2]
    scale = 256.0 / (F_PX * 2.5 / root_cam[2])
    return dict(points=points, rotations=rotations, shape=shape, root_cam=root_cam,
                root_px=root_px, scale=scale)


def to_crop_px(ref, points_world_rel):
    """Projects root-relative world points into the un-augmented crop (pixels)."""
    cam = (points_world_rel @ R_W2CV.T) + ref["root_cam"]
    homogeneous = cam @ K.T
    px = homogeneous[:, :2] / homogeneous[:, 2:]
    return (px - ref["root_px"]) * ref["scale"] + 127.5


def fraction_on_mask(points2d, mask):
    ij = np.round(points2d).astype(int)
    inside = (ij >= 0).all(1) & (ij < mask.shape[0]).all(1)
    hits = np.zeros(len(ij), bool)
    hits[inside] = mask[ij[inside, 1], ij[inside, 0], 0] > 0.5
    return hits.mean()


def all_lines(root):
    return cloth3d.read_list(root / "train.txt") + cloth3d.read_list(root / "val.txt")


@pytest.fixture(scope="module")
def reader(cloth3d_root):
    return DataReader.CLOTH3DReader(cloth3d_root)


# ----------------------------------------------------------------------------
# Reading and the crop
# ----------------------------------------------------------------------------

def test_load_matches_spec_reference(cloth3d_root, reader):
    for line in ("00449/0003.png", "00742/0150.png", "05325/0198.png"):
        sample = reader.load(line)
        ref = reference_frame(cloth3d_root, line)
        assert sample["image"].shape == (256, 256, 3) and sample["image"].dtype == np.float32
        assert sample["mask"].shape == (256, 256, 1) and 0.0 <= sample["mask"].min() <= sample["mask"].max() <= 1.0
        assert 0 < sample["image"].max() <= 255.0
        np.testing.assert_allclose(sample["points"], ref["points"], atol=1e-5)
        # rotations: Rodrigues of info.mat poses (scipy), R[0] pre-multiplied by zRot
        np.testing.assert_allclose(sample["rotations"], ref["rotations"], atol=1e-5)
        np.testing.assert_allclose(sample["shape"], ref["shape"], atol=1e-6)
        np.testing.assert_allclose(sample["points2d"], to_crop_px(ref, ref["points"]), atol=1e-3)
        assert sample["path"] == str(cloth3d_root / line)


def test_crop_is_centred_on_root_with_side_f_2_5_over_z(cloth3d_root, reader):
    """The person's mask lands in the crop where a crop centred on the root's
    projection with side f * 2.5 / z_root puts it (centroid within 2 px, area within 3%)."""
    for line in ("00449/0000.png", "00449/0150.png", "00742/0198.png", "05325/0099.png"):
        ref = reference_frame(cloth3d_root, line)
        alpha = cv2.imread(str(cloth3d_root / line), cv2.IMREAD_UNCHANGED)[:, :, 3] / 255.0
        v, u = np.mgrid[:alpha.shape[0], :alpha.shape[1]]
        centroid_full = np.array([(u * alpha).sum(), (v * alpha).sum()]) / alpha.sum()
        expected = (centroid_full - ref["root_px"]) * ref["scale"] + 127.5
        mask = reader.load(line)["mask"][:, :, 0]
        yy, xx = np.mgrid[:256, :256]
        centroid_crop = np.array([(xx * mask).sum(), (yy * mask).sum()]) / mask.sum()
        assert np.linalg.norm(centroid_crop - expected) < 2.0, line
        assert mask.sum() == pytest.approx(alpha.sum() * ref["scale"] ** 2, rel=0.03)


def test_ground_truth_points_fall_on_the_mask(cloth3d_root, reader):
    fractions = [fraction_on_mask(reader.load(line)["points2d"], reader.load(line)["mask"])
                 for line in all_lines(cloth3d_root)[::4]]
    assert np.mean(fractions) >= 0.95


def test_mat_files_are_read_once_per_sequence(cloth3d_root, monkeypatch):
    calls = []
    original = cloth3d.scipy.io.loadmat
    monkeypatch.setattr(cloth3d.scipy.io, "loadmat", lambda path: calls.append(path) or original(path))
    fresh = DataReader.CLOTH3DReader(cloth3d_root)
    for line in cloth3d.read_list(cloth3d_root / "train.txt")[::10]:
        fresh.targets(line)
    assert len(calls) == 4  # two sequences x (info.mat, info_body.mat)


# ----------------------------------------------------------------------------
# Geometric augmentation
# ----------------------------------------------------------------------------

def _rest_offsets(points, rotations):
    """R[0]^T (p_i - root) for the root's children (hips, spine1): the rest-pose
    offsets, which any rigid motion of the whole body leaves unchanged."""
    return points[:3] @ rotations[0]


def test_rotation_keeps_image_points_and_pose_consistent(cloth3d_root, reader):
    rng = np.random.default_rng(0)
    lines = all_lines(cloth3d_root)[2::12]
    fractions, offsets_px = [], []
    for line in lines:
        angle = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.15)
        ref = reference_frame(cloth3d_root, line)
        targets = augment.rotate(reader.targets(line), angle)
        image, mask = cloth3d.crop_rgba(reader.read_frame(line), targets.crop_from_image)
        # the rotated 3D points, projected by the un-rotated camera and crop, land on the rotated mask
        projected = to_crop_px(ref, targets.points)
        fractions.append(fraction_on_mask(projected, mask))
        offsets_px.append(np.linalg.norm(projected - targets.points2d, axis=1).max())
        # points and R[0] turned by the same rotation: rest offsets unchanged
        np.testing.assert_allclose(_rest_offsets(targets.points, targets.rotations),
                                   _rest_offsets(ref["points"], ref["rotations"]), atol=1e-5)
        np.testing.assert_allclose(targets.rotations[1:], ref["rotations"][1:], atol=1e-5)
        # the image really turned: the points moved by about angle * radius
        moved = np.linalg.norm(targets.points2d - to_crop_px(ref, ref["points"]), axis=1).max()
        assert moved > 5.0
    assert np.mean(fractions) >= 0.90
    assert max(offsets_px) < 1.0


def test_rotating_back_restores_points_and_root_rotation(cloth3d_root, reader):
    targets = reader.targets("00742/0060.png")
    for angle in (0.15, -0.07, 0.01):
        back = augment.rotate(augment.rotate(targets, angle), -angle)
        np.testing.assert_allclose(back.points, targets.points, atol=1e-5)
        np.testing.assert_allclose(back.rotations[0], targets.rotations[0], atol=1e-5)
        np.testing.assert_allclose(back.points2d, targets.points2d, atol=1e-4)
        np.testing.assert_allclose(back.crop_from_image, targets.crop_from_image, atol=1e-9)


def test_flip_mirrors_points_and_pose(cloth3d_root, reader):
    from smpl import kinematics

    # the mirror permutation swaps left and right names, independently of the table
    names = list(kinematics.SMPL_JOINT_NAMES[1:]) + list(kinematics.LANDMARK_NAMES)
    swapped = [re.sub("left|right", lambda m: "right" if m.group() == "left" else "left", n) for n in names]
    # SPEC's landmark 'biceps/triceps' names mirror by side; 'hand' landmarks likewise
    assert [names[i] for i in augment.MIRROR_POINTS] == swapped
    assert [kinematics.SMPL_JOINT_NAMES[i] for i in augment.MIRROR_JOINTS] == [
        re.sub("left|right", lambda m: "right" if m.group() == "left" else "left", n)
        for n in kinematics.SMPL_JOINT_NAMES]

    fractions = []
    for line in ("00449/0030.png", "00742/0120.png", "05325/0006.png"):
        targets = reader.targets(line)
        flipped = augment.flip(targets)
        twice = augment.flip(flipped)
        for key in ("points", "rotations", "points2d", "crop_from_image"):
            np.testing.assert_allclose(getattr(twice, key), getattr(targets, key), atol=1e-6)
        np.testing.assert_allclose(np.linalg.det(flipped.rotations), 1.0, atol=1e-5)
        # a mirrored (nearly symmetric) SMPL body has the same rest offsets of hips and spine
        np.testing.assert_allclose(_rest_offsets(flipped.points, flipped.rotations),
                                   _rest_offsets(targets.points, targets.rotations), atol=0.015)
        _, mask = cloth3d.crop_rgba(reader.read_frame(line), flipped.crop_from_image)
        fractions.append(fraction_on_mask(flipped.points2d, mask))
        ref = reference_frame(cloth3d_root, line)
        assert np.abs(to_crop_px(ref, flipped.points) - flipped.points2d).max() < 1.5
    assert np.mean(fractions) >= 0.90


# ----------------------------------------------------------------------------
# Appearance augmentation
# ----------------------------------------------------------------------------

def test_colour_matrix_hand_cases():
    np.testing.assert_allclose(augment.hue_saturation_matrix(0.0, 1.0), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(augment.hue_saturation_matrix(1.0, 1.0), np.eye(3), atol=1e-12)
    luma = np.array([0.299, 0.587, 0.114])
    colours = np.random.default_rng(1).uniform(0, 255, (100, 3))
    turned = colours @ augment.hue_saturation_matrix(0.3, 0.5).T
    np.testing.assert_allclose(turned @ luma, colours @ luma, atol=1e-9)  # luma kept
    grey = colours @ augment.hue_saturation_matrix(0.0, 0.0).T
    np.testing.assert_allclose(grey, np.repeat((colours @ luma)[:, None], 3, 1), atol=1e-9)


class _FixedDraws:
    """A stand-in Generator: fixed coin flips (which jitters apply) and one fixed uniform value."""

    def __init__(self, apply, value):
        self.apply, self.value = np.array(apply), value

    def random(self, n):
        return np.where(self.apply[:n], 0.0, 0.99)

    def uniform(self, low, high):
        return self.value


def test_colour_jitter_hand_cases():
    image = np.random.default_rng(2).uniform(50, 200, (8, 8, 3)).astype(np.float32)
    reference = image.astype(np.float64)
    # order of the coin flips: hue, brightness, saturation, contrast
    mean = reference.mean(axis=(0, 1))
    contrast = augment.color_jitter(image, _FixedDraws([0, 0, 0, 1], 0.1))
    np.testing.assert_allclose(contrast, (reference - mean) * 0.1 + mean, atol=1e-3)  # tf.image's contrast
    bright = augment.color_jitter(image, _FixedDraws([0, 1, 0, 0], 0.04))
    np.testing.assert_allclose(bright, np.clip(reference + 0.04 * 255, 0, 255), atol=1e-3)
    grey = augment.color_jitter(image, _FixedDraws([0, 0, 1, 0], 0.0))
    luma = reference @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(grey, np.repeat(luma[..., None], 3, -1), atol=1e-3)
    unchanged = augment.color_jitter(image, _FixedDraws([0, 0, 0, 0], 0.3))
    np.testing.assert_array_equal(unchanged, image)


def test_occlusion_from_a_folder(tmp_path):
    folder = tmp_path / "occluders"
    folder.mkdir()
    cv2.imwrite(str(folder / "green.jpg"), np.full((20, 30, 3), (30, 200, 10), np.uint8))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (200, 0, 0)          # blue in BGR
    rgba[4:12, 4:12, 3] = 255            # alpha: a centred square
    cv2.imwrite(str(folder / "blue_square.png"), rgba)
    bank = occlusion.OccluderBank.from_folder(folder)
    assert len(bank) == 2
    image = np.full((64, 64, 3), 100.0, np.float32)
    person = np.zeros((64, 64, 1), np.float32)
    person[16:48, 16:48] = 1.0
    rng = np.random.default_rng(0)
    out = occlusion.random_occlusion(image, person, bank, rng, background_prob=1.0, occluder_prob=0.0)
    np.testing.assert_array_equal(out[16:48, 16:48], 100.0)     # the person is kept
    background = out[person[..., 0] == 0]
    assert np.all(np.abs(background - background[0]) < 1e-3) and not np.allclose(background[0], 100.0)
    # pasting an occluder with alpha: its opaque centre is blue, its transparent border leaves the image
    only_png = tmp_path / "only_png"
    only_png.mkdir()
    shutil.copy(folder / "blue_square.png", only_png)
    occluder_rgb, occluder_mask = occlusion.OccluderBank.from_folder(only_png).occluder(rng, 32)
    pasted = occlusion.paste_occluder(image, occluder_rgb, occluder_mask, (10, 20))
    np.testing.assert_allclose(pasted[26, 36], (0, 0, 200), atol=1)      # RGB
    np.testing.assert_allclose(pasted[10, 20], 100.0)
    assert occluder_mask.sum() == pytest.approx(16 * 16, rel=0.1)         # the 8x8 of 16x16, scaled to 32
    # an image without alpha occludes with its whole rectangle
    only_jpg = tmp_path / "only_jpg"
    only_jpg.mkdir()
    shutil.copy(folder / "green.jpg", only_jpg)
    occluder_rgb, occluder_mask = occlusion.OccluderBank.from_folder(only_jpg).occluder(rng, 32)
    pasted = occlusion.paste_occluder(image, occluder_rgb, occluder_mask, (10, 20))
    np.testing.assert_allclose(pasted[10:42, 20:52], occluder_rgb, atol=1e-4)
    np.testing.assert_allclose(occluder_rgb[16, 16], (10, 200, 30), atol=3)   # JPEG, RGB order
    np.testing.assert_array_equal(pasted[:10], 100.0)


def test_occluders_from_a_voc_layout(tmp_path):
    """VOC occluders: images without persons (label -1), one object of the
    SegmentationObject colours, never the background or the outline colour."""
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("ImageSets/Main", "JPEGImages", "SegmentationObject"):
        (voc / sub).mkdir(parents=True)
    (voc / "ImageSets/Main/person_trainval.txt").write_text(
        "2008_000001 -1\n2008_000002  1\n2008_000003 -1\n")
    for name in ("2008_000001", "2008_000002", "2008_000003"):
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), np.full((40, 40, 3), 128, np.uint8))
    segmentation = np.zeros((40, 40, 3), np.uint8)             # BGR
    segmentation[5:15, 5:15] = (0, 0, 128)                    # object 1 (VOC red)
    segmentation[20:35, 20:35] = (0, 128, 0)                  # object 2 (VOC green)
    segmentation[4, 4:16] = (192, 224, 224)                   # outline
    cv2.imwrite(str(voc / "SegmentationObject" / "2008_000001.png"), segmentation)
    cv2.imwrite(str(voc / "SegmentationObject" / "2008_000002.png"), segmentation)
    bank = occlusion.OccluderBank.from_voc(tmp_path)           # finds VOCdevkit/VOC2012
    assert [p.name for p in bank.backgrounds] == ["2008_000001.jpg"]  # person image and unsegmented one left out
    areas = set()
    for seed in range(12):
        _, mask = bank.occluder(np.random.default_rng(seed), 40)
        areas.add(int(mask.sum()))
    assert areas == {100, 225}


def test_occlusion_mode_needs_a_source(tmp_path):
    with pytest.raises(ValueError, match="needs occluder images"):
        augment.FrameAugmenter(2)
    with pytest.raises(ValueError, match="needs occluder images"):
        DataReader.shn_dataset(tmp_path, tmp_path / "list.txt", 2, True, augmentation=3)
    with pytest.raises(FileNotFoundError, match="person_trainval"):
        occlusion.OccluderBank.from_voc(tmp_path)
    with pytest.raises(ValueError, match="not one of"):
        augment.FrameAugmenter(4)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

@pytest.fixture
def broken_root(cloth3d_root, tmp_path):
    """A frames root in tmp_path with a copy of one real sequence's .mat files and two frames."""
    sequence = tmp_path / "frames" / "00449"
    sequence.mkdir(parents=True)
    for name in ("info.mat", "info_body.mat", "0003.png", "0006.png"):
        shutil.copy(cloth3d_root / "00449" / name, sequence / name)
    return tmp_path / "frames"


def test_bad_input_raises_a_clear_error(broken_root):
    sequence = broken_root / "00449"
    reader = DataReader.CLOTH3DReader(broken_root)
    assert reader.load("00449/0003.png")["points"].shape == (41, 3)

    with pytest.raises(FileNotFoundError, match=r"nothere.*sequence folder not found"):
        reader.load("nothere/0003.png")
    with pytest.raises(DataReader.CLOTH3DError, match=r"not of the form SEQ/NNNN.png"):
        reader.load("00449/frame.png")

    shutil.copy(sequence / "0003.png", sequence / "0400.png")
    with pytest.raises(DataReader.CLOTH3DError, match=r"info.mat: frame 400 is beyond 'trans'"):
        reader.load("00449/0400.png")

    data = (sequence / "0006.png").read_bytes()
    (sequence / "0006.png").write_bytes(data[:len(data) // 3])   # truncated: valid header
    with pytest.raises(DataReader.CLOTH3DError, match=r"0006.png: corrupt"):
        reader.load("00449/0006.png")
    (sequence / "0009.png").write_bytes(b"not a png at all" * 10)
    with pytest.raises(DataReader.CLOTH3DError, match=r"0009.png: corrupt or not a PNG"):
        reader.load("00449/0009.png")

    rgba = cv2.imread(str(sequence / "0003.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(sequence / "0012.png"), rgba[:, :, :3])
    with pytest.raises(DataReader.CLOTH3DError, match=r"0012.png: PNG has no alpha"):
        reader.load("00449/0012.png")
    with pytest.raises(FileNotFoundError, match=r"0015.png: frame not found"):
        reader.load("00449/0015.png")

    body = {k: v for k, v in scipy.io.loadmat(str(sequence / "info_body.mat")).items() if not k.startswith("__")}
    body["joints"][18, 5, 1] = np.nan
    scipy.io.savemat(str(sequence / "info_body.mat"), body)
    fresh = DataReader.CLOTH3DReader(broken_root)
    with pytest.raises(DataReader.CLOTH3DError, match=r"info_body.mat: NaN .* 'joints' at frame 18"):
        fresh.targets("00449/0018.png")
    assert fresh.targets("00449/0003.png").points.shape == (41, 3)

    (sequence / "info_body.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"00449/info_body.mat: missing"):
        DataReader.CLOTH3DReader(broken_root).load("00449/0003.png")


def test_pipeline_errors_name_the_file(broken_root):
    sequence = broken_root / "00449"
    (broken_root / "list.txt").write_text("00449/0003.png\n00449/0400.png\n")
    shutil.copy(sequence / "0003.png", sequence / "0400.png")
    with pytest.raises(DataReader.CLOTH3DError, match=r"info.mat: frame 400 is beyond"):
        DataReader.shn_dataset(broken_root, broken_root / "list.txt", 1, training=False)
    data = (sequence / "0006.png").read_bytes()
    (sequence / "0006.png").write_bytes(data[:len(data) // 3])
    (broken_root / "list.txt").write_text("00449/0003.png\n00449/0006.png\n")
    dataset = DataReader.shn_dataset(broken_root, broken_root / "list.txt", 1, training=False)
    with pytest.raises(Exception, match=r"0006.png: corrupt") as caught:
        list(dataset)
    # The command-line tools turn TensorFlow's wrapped error into the reader's one line.
    from training.cli import user_error_message
    assert user_error_message(caught.value) == f"{sequence / '0006.png'}: corrupt or unreadable PNG"
    assert user_error_message(RuntimeError("a bug")) is None


def test_empty_mask_is_skipped_with_a_counted_warning(broken_root, caplog):
    sequence = broken_root / "00449"
    rgba = cv2.imread(str(sequence / "0006.png"), cv2.IMREAD_UNCHANGED)
    rgba[:, :, 3] = 0
    cv2.imwrite(str(sequence / "0006.png"), rgba)
    with pytest.raises(DataReader.EmptyMaskError, match=r"0006.png: empty alpha mask"):
        DataReader.CLOTH3DReader(broken_root).load("00449/0006.png")
    (broken_root / "list.txt").write_text("00449/0003.png\n00449/0006.png\n00449/0003.png\n")
    dataset = DataReader.shn_dataset(broken_root, broken_root / "list.txt", 8, training=False)
    with caplog.at_level(logging.WARNING, logger="DataReader.cloth3d"):
        batches = list(dataset)
    assert [b["path"].shape[0] for b in batches] == [2]
    assert all(p.decode().endswith("0003.png") for p in batches[0]["path"].numpy())
    assert dataset.loader.reader.empty_masks_skipped == 1
    assert any("0006.png: empty alpha mask" in r.message and "1 empty-mask frame so far" in r.message
               for r in caplog.records)


# ----------------------------------------------------------------------------
# Pipelines
# ----------------------------------------------------------------------------

def test_shn_pipeline_standardises_the_reader_crop(cloth3d_root, reader):
    dataset = DataReader.shn_dataset(cloth3d_root, cloth3d_root / "val.txt", 3, training=False)
    batch = next(iter(dataset))
    assert set(batch) == {"image", "mask", "points", "points2d", "rotations", "shape", "root_camera", "path"}
    lines = cloth3d.read_list(cloth3d_root / "val.txt")[:3]
    for i, line in enumerate(lines):
        sample = reader.load(line)
        image = sample["image"].astype(np.float64)
        expected = (image - image.mean()) / max(image.std(), 1.0 / np.sqrt(image.size))
        np.testing.assert_allclose(batch["image"][i].numpy(), expected, atol=1e-4)
        for key in ("mask", "points", "points2d", "rotations", "shape"):
            np.testing.assert_allclose(batch[key][i].numpy(), sample[key], atol=1e-6)
        assert batch["path"][i].numpy().decode() == str(cloth3d_root / line)


def test_shn_pipeline_same_seed_same_first_batch(cloth3d_root):
    def first_batch(seed, **kwargs):
        dataset = DataReader.shn_dataset(cloth3d_root, cloth3d_root / "train.txt", 4, training=True,
                                         augmentation=1, seed=seed, **kwargs)
        return {k: v.numpy() for k, v in next(iter(dataset)).items()}

    a, b, c = first_batch(7), first_batch(7), first_batch(8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["path"], c["path"])
    # augmented training samples still carry consistent 2D points (rotations included)
    assert np.mean([fraction_on_mask(p, m) for p, m in zip(a["points2d"], a["mask"])]) >= 0.9


def test_shn_pipeline_with_flip_and_occluder_folder(cloth3d_root, tmp_path):
    folder = tmp_path / "occluders"
    folder.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        cv2.imwrite(str(folder / f"o{i}.png"), np.full((24, 24, 3), colour, np.uint8))
    dataset = DataReader.shn_dataset(cloth3d_root, cloth3d_root / "val.txt", 8, training=True,
                                     augmentation=3, seed=1, occluder_dir=folder, flip=True)
    batch = next(iter(dataset))
    assert set(batch) == {"image", "mask", "points", "points2d", "rotations", "shape", "root_camera", "path"}
    assert batch["image"].shape == (8, 256, 256, 3)
    np.testing.assert_allclose(batch["image"].numpy().mean(axis=(1, 2, 3)), 0.0, atol=0.05)
    fractions = [fraction_on_mask(p, m) for p, m in zip(batch["points2d"].numpy(), batch["mask"].numpy())]
    assert np.mean(fractions) >= 0.9


def test_standardize_image_and_its_noise():
    import tensorflow as tf
    from DataReader.pipelines import standardize_image
    image = np.random.default_rng(4).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    reference = (image - image.astype(np.float64).mean()) / image.astype(np.float64).std()
    plain = standardize_image(tf.constant(image)).numpy()
    np.testing.assert_allclose(plain, reference, atol=1e-5)
    noisy = [standardize_image(tf.constant(image), tf.constant([seed, 9], tf.int64)).numpy() - plain
             for seed in range(200)]
    applied = [n for n in noisy if np.abs(n).max() > 0]
    assert 0.15 < len(applied) / len(noisy) < 0.35          # probability 0.25
    np.testing.assert_allclose(np.std(applied), augment.IMAGE_NOISE_STD, rtol=0.05)


def test_noise_sigma_is_the_spec_table():
    if not SPEC_PATH.is_file():
        pytest.skip(f"SPEC not found at {SPEC_PATH}")
    text = SPEC_PATH.read_text()
    block = text[text.index("Input noise"):]
    block = block[block.index("```") + 3:]
    values = np.array(block[:block.index("```")].split(), dtype=np.float64)
    assert values.shape == (123,)
    np.testing.assert_array_equal(augment.NOISE_SIGMA.astype(np.float64), values.astype(np.float32))


def test_add_point_noise_hand_case():
    points = np.zeros((2, 41, 3))
    draw = np.full((2, 41, 3), 0.5)
    draw[1] = -0.25
    noisy = DataReader.add_point_noise(points, draw)
    sigma = augment.NOISE_SIGMA.reshape(41, 3).astype(np.float64)
    np.testing.assert_allclose(noisy[0], sigma, rtol=1e-6)        # 0.5 * sigma * 2
    np.testing.assert_allclose(noisy[1], -0.5 * sigma, rtol=1e-6)


def test_smplr_arrays_and_dataset(cloth3d_root, reader):
    train = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "train.txt")
    val = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "val.txt")
    assert len(train) == 200 and len(val) == 67
    ref = reference_frame(cloth3d_root, "00742/0003.png")
    index = list(train.paths).index(str(cloth3d_root / "00742/0003.png"))
    np.testing.assert_allclose(train.points[index], ref["points"], atol=1e-5)
    np.testing.assert_allclose(train.rotations[index], ref["rotations"], atol=1e-5)
    both = train.concatenate(val)
    assert len(both) == 267
    np.testing.assert_array_equal(both.points[200:], val.points)

    # evaluation: list order, no noise
    batch = next(iter(DataReader.smplr_dataset(val, 16, training=False)))
    np.testing.assert_array_equal(batch["points"].numpy(), val.points[:16])
    np.testing.assert_array_equal(batch["noisy_points"].numpy(), val.points[:16])

    # training: noise within +-sigma per coordinate, spread sigma / sqrt(3), seeded
    def noise_of(seed):
        batches = list(DataReader.smplr_dataset(both, 64, training=True, seed=seed))
        return np.concatenate([(b["noisy_points"] - b["points"]).numpy() for b in batches])

    noise, again = noise_of(3), noise_of(3)
    np.testing.assert_array_equal(noise, again)
    sigma = augment.NOISE_SIGMA.reshape(41, 3)
    assert np.all(np.abs(noise) <= sigma + 1e-6)
    np.testing.assert_allclose(noise.std(axis=0) / (sigma / np.sqrt(3)), 1.0, atol=0.25)
    assert noise.shape[0] == 256  # 267 samples, partial batch dropped in training
    # Too few samples for one full training batch: a clear error, not an empty dataset.
    with pytest.raises(ValueError, match="67 samples make no full batch of 256"):
        DataReader.smplr_dataset(val, 256, training=True)


def test_smplr_dataset_error_bank_noise(cloth3d_root):
    # Row k of the bank is k + 1 mm along every axis, so each sample's noise names the row it drew.
    val = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "val.txt")
    bank = np.arange(1, 6, dtype=np.float32)[:, None, None] * 1e-3 * np.ones((1, 41, 3), np.float32)

    def noise_of(seed):
        batches = list(DataReader.smplr_dataset(val.concatenate(val, val), 32, training=True, seed=seed,
                                                error_bank=bank))
        return np.concatenate([(b["noisy_points"] - b["points"]).numpy() for b in batches])

    noise = noise_of(5)
    rows = np.rint(noise[:, 0, 0] * 1e3).astype(int) - 1
    np.testing.assert_allclose(noise, bank[rows], atol=1e-6)
    assert set(rows.tolist()) == set(range(5))  # 192 draws: every row
    np.testing.assert_array_equal(noise, noise_of(5))
    assert not np.array_equal(noise, noise_of(6))


def test_smplr_dataset_bone_and_normal_features(cloth3d_root):
    from smpl import kinematics
    val = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "val.txt")
    template = kinematics.SPEC_BONE_TEMPLATE
    batch = next(iter(DataReader.smplr_dataset(val, 8, training=True, seed=0, bone_template=template)))
    noisy = batch["noisy_points"].numpy().astype(np.float64)
    with_root = np.concatenate([np.zeros((8, 1, 3)), noisy], axis=1)
    vectors = with_root[:, 1:] - with_root[:, kinematics.PARENTS[1:]]
    lengths = np.linalg.norm(vectors, axis=-1)
    np.testing.assert_allclose(batch["bones"].numpy(), lengths - template[1:], atol=1e-5)
    np.testing.assert_allclose(batch["normals"].numpy(), (vectors / lengths[..., None]).reshape(8, 123), atol=1e-5)


def test_importing_datareader_does_not_need_tensorflow():
    import subprocess
    import sys
    code = "import sys, DataReader; print('tensorflow' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_exit_with_a_live_iterator_is_clean(cloth3d_root):
    """A module-level iterator still prefetching at exit must not abort or hang the process."""
    import subprocess
    import sys
    code = (f"import DataReader\n"
            f"dataset = DataReader.shn_dataset({str(cloth3d_root)!r}, {str(cloth3d_root / 'val.txt')!r}, 2, True)\n"
            f"iterator = iter(dataset.repeat())\n"
            f"batch = next(iterator)\n"
            f"print('ok')\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
