"""--flip-test: the SHN's points averaged over the crop and its mirror image (models.flip).

Checked against the float64 NumPy reflection of the augmentation
(`DataReader.augment.world_mirror_for_image_flip` + `MIRROR_POINTS`), against
two separate SHN calls averaged by hand, on a left-right symmetric image, in
test.py and predict.py, and on Keras's JAX backend (in tests/test_predict.py's JAX
subprocess: no process of its own).
"""
import json

import numpy as np
import pytest

from DataReader.augment import MIRROR_POINTS, world_mirror_for_image_flip
from models import DAE, SHN, SMPLR, Pipeline, soft_argmax
from models.flip import mirror_points

#: Horizontal offsets, heights and depths of random roots in the camera, metres.
ROOTS = ((-1.5, 1.5), (-1.0, 1.0), (2.0, 8.0))


def random_roots(rng, count):
    """Root cameras (count, 3) metres, spread over the field of view."""
    return np.stack([rng.uniform(low, high, count) for low, high in ROOTS], axis=-1)


def reference_mirror(points, root_camera):
    """float64 NumPy: the augmentation's reflection of each frame, then left <-> right (B, 41, 3)."""
    return np.stack([(np.asarray(p, np.float64) @ world_mirror_for_image_flip(np.asarray(r, np.float64)).T)
                     [MIRROR_POINTS] for p, r in zip(points, root_camera)])


def reference_flip_average(shn, images, root_camera):
    """Two separate SHN calls (the crops, then the crops flipped along the width), soft-argmax
    of each, the second mirrored back in float64 NumPy, averaged: (B, 41, 3) metres."""
    read = [np.asarray(soft_argmax(shn(x)[-1], axes=shn.grid_axes), np.float64)
            for x in (images, np.ascontiguousarray(images[:, :, ::-1]))]
    return (read[0] + reference_mirror(read[1], root_camera)) / 2


def test_mirror_points_is_the_augmentations_reflection_and_its_own_inverse():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, (6, 41, 3))
    roots = random_roots(rng, 6)
    roots[0] = (0.0, 0.3, 4.0)  # on the optical axis's vertical plane: the mirror negates camera x
    mirrored = np.asarray(mirror_points(points.astype(np.float32), roots.astype(np.float32)))
    assert mirrored.dtype == np.float32 and mirrored.shape == (6, 41, 3)
    np.testing.assert_allclose(mirrored, reference_mirror(points, roots), atol=1e-5)
    np.testing.assert_allclose(np.asarray(mirror_points(mirrored, roots)), points, atol=1e-5)
    # rx = 0: world y (the camera's x) changes sign and the body's sides swap; x and z stay.
    np.testing.assert_allclose(mirrored[0], points[0][MIRROR_POINTS] * [1.0, -1.0, 1.0], atol=1e-6)
    assert np.abs(mirrored - points).max() > 0.5


@pytest.fixture(scope="module")
def tiny_pipeline():
    """A Pipeline with --flip-test of untrained tiny nets: SHN on the camera grid (as the shipped one)."""
    import keras

    import smpl
    from test_models import random_body_models

    keras.utils.set_random_seed(1)
    shn = SHN(num_stacks=1, num_features=16, grid_axes="camera")
    return Pipeline(shn, DAE(), SMPLR(smpl.SMPL(*random_body_models())), flip_test=True)


def test_pipeline_flip_test_averages_two_separate_shn_calls(tiny_pipeline):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 256, 256, 3)).astype(np.float32)
    roots = random_roots(rng, 2).astype(np.float32)
    outputs = tiny_pipeline(images, roots)
    expected = reference_flip_average(tiny_pipeline.shn, images, roots)
    np.testing.assert_allclose(np.asarray(outputs["shn_points"]), expected, atol=1e-5)
    plain = np.asarray(soft_argmax(tiny_pipeline.shn(images)[-1], axes="camera"))
    assert np.abs(expected - plain).max() > 1e-3  # the mirror image changes the points
    # The DAE and SMPLR read the average.
    dae_points = np.asarray(tiny_pipeline.dae(np.asarray(outputs["shn_points"]).reshape(2, 123))).reshape(2, 41, 3)
    np.testing.assert_allclose(np.asarray(outputs["dae_points"]), dae_points, atol=1e-5)
    # Without flip_test: the plain points, root_camera unused.
    same_nets = Pipeline(tiny_pipeline.shn, tiny_pipeline.dae, tiny_pipeline.smplr)
    np.testing.assert_allclose(np.asarray(same_nets(images)["shn_points"]), plain, atol=1e-6)


def test_symmetric_image_gives_mirror_symmetric_points(tiny_pipeline):
    # A crop equal to its own mirror image: both SHN calls read the same points, so the
    # average is its own mirror (flipping along the height instead would break this).
    rng = np.random.default_rng(2)
    half = rng.normal(size=(1, 256, 128, 3)).astype(np.float32)
    image = np.concatenate([half, half[:, :, ::-1]], axis=2)
    root = np.float32([[0.0, 0.2, 5.0]])
    points = np.asarray(tiny_pipeline(image, root)["shn_points"])
    np.testing.assert_allclose(np.asarray(mirror_points(points, root)), points, atol=1e-5)
    plain = np.asarray(soft_argmax(tiny_pipeline.shn(image)[-1], axes="camera"))
    np.testing.assert_allclose(points, (plain + reference_mirror(plain, root)) / 2, atol=1e-5)


def test_flip_test_without_root_camera_is_a_clear_error(tiny_pipeline):
    with pytest.raises(ValueError, match=r"flip_test needs root_camera \(B, 3\)"):
        tiny_pipeline(np.zeros((1, 256, 256, 3), np.float32))


def test_test_py_and_predict_py_flip_test(tmp_path, cloth3d_root):
    import DataReader
    from training import predict as P
    from training.evaluate import load_stages
    from training.evaluate import main as test_py

    tmp = tmp_path / "tmp"
    P.save_untrained_checkpoints(tmp, num_stacks=1, num_features=16)
    assert test_py(["-1", "shn", "dae", "smplr", "--tmp", str(tmp), "--data", str(cloth3d_root), "--batch-size", "2",
                    "--max-batches", "1", "--overlays", "0", "--out", "flip", "--flip-test"]) == 0
    results = tmp / "results" / "flip"
    assert json.loads((results / "summary.json").read_text())["flip_test"] is True
    flip = np.load(results / "batch_00000.npz")
    # test.py's SHN points: the checkpoint's SHN on the first batch's crops and their mirror
    # images, averaged by hand (the plain run's summary says flip_test false: tests/test_faults.py).
    batch = next(iter(DataReader.shn_dataset(cloth3d_root, cloth3d_root / "val.txt", 2, training=False)))
    images, roots = np.asarray(batch["image"]), np.asarray(batch["root_camera"])
    np.testing.assert_array_equal(roots, flip["root_camera"])
    shn = load_stages(tmp, "shn", "dae", "smplr")[0].shn
    np.testing.assert_allclose(flip["shn_points"], reference_flip_average(shn, images, roots), atol=1e-4)
    plain = np.asarray(soft_argmax(shn(images)[-1], axes=shn.grid_axes))
    assert np.abs(flip["shn_points"] - plain).max() > 1e-3  # the plain points are not test.py's

    # predict.py on the first frame (a padded batch of 2): the same SHN points as test.py's.
    predictor = P.Predictor(tmp, "shn", "dae", "smplr", batch_size=2, flip_test=True)
    path = cloth3d_root / str(flip["paths"][0])
    summary = P.predict(predictor, [path], tmp_path / "out", progress=False)
    assert summary["written"] == [path.stem] and not summary["failed"]
    ours = np.load(tmp_path / "out" / f"{path.stem}.npz")
    np.testing.assert_allclose(ours["shn_points"], flip["shn_points"][0], atol=1e-4)
    assert json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())["flip_test"] is True
    assert P.build_parser().parse_args(["-1", str(path), "--flip-test"]).flip_test
