"""predict.py: a body from any image (training.predict).

Checked against test.py's pipeline (training.evaluate) on a synthetic
CLOTH3D-format frame with its info.mat, against the frame's own camera for
the crop rules, against SMPL's Rodrigues formula for the axis-angles, by
reading the written files back, for each kind of bad input, and on Keras's
JAX backend against TensorFlow.
"""
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import requires_jax, run_backend
from training import predict as P

NAMES = ("shn", "dae", "smplr")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A synthetic sequence of 2 frames (with info.mat) and untrained tiny checkpoints."""
    from DataReader.synthesize import synthesize

    root = tmp_path_factory.mktemp("predict")
    synthesize(root / "frames", num_sequences=1, num_frames=2, seed=0, progress=False)
    P.save_untrained_checkpoints(root / "tmp", NAMES, num_stacks=1, num_features=16, seed=0)
    return root


@pytest.fixture(scope="module")
def predictor(chain):
    return P.Predictor(chain / "tmp", *NAMES, batch_size=2)


@pytest.fixture(scope="module")
def predicted(chain, predictor):
    """predict() over the sequence folder; returns (summary, out folder)."""
    out = chain / "out"
    summary = P.predict(predictor, [chain / "frames" / "00000"], out, progress=False)
    return summary, out


def test_equals_test_py_pipeline_on_a_cloth3d_frame(chain, predicted):
    from training.evaluate import evaluate

    summary, out = predicted
    assert summary["written"] == ["0000", "0001"] and not summary["failed"]
    evaluate(chain / "tmp", *NAMES, data=chain / "frames", list_name="train.txt", batch_size=2, out="eval",
             num_overlays=0)
    reference = np.load(chain / "tmp" / "results" / "eval" / "batch_00000.npz")
    for k, path in enumerate(reference["paths"]):
        ours = np.load(out / f"{P.Path(str(path)).stem}.npz")
        assert str(ours["crop_source"]) == "info.mat"
        np.testing.assert_allclose(ours["root_camera"], reference["root_camera"][k], atol=1e-5)
        for key, theirs in (("shn_points", "shn_points"), ("dae_points", "dae_points"),
                            ("smpl_points", "smpl_points"), ("smpl_joints", "smpl_joints"),
                            ("vertices", "vertices")):
            np.testing.assert_allclose(ours[key], reference[theirs][k], atol=1e-4, err_msg=key)
        np.testing.assert_allclose(ours["rotations"], reference["pose"][k], atol=1e-4)
        np.testing.assert_allclose(np.r_[ours["betas"], ours["gender_value"]], reference["shape"][k], atol=1e-4)


def test_obj_json_and_overlay_round_trip(chain, predictor, predicted):
    from DataReader.cloth3d import crop_rgba
    from smpl import rodrigues

    _, out = predicted
    arrays = np.load(out / "0000.npz")
    vertices, faces = P.read_obj(out / "0000.obj")
    num_vertices = predictor.pipeline.smplr.smpl_layer.num_vertices
    assert vertices.shape == (num_vertices, 3) and faces.shape == predictor.faces.shape
    np.testing.assert_array_equal(faces, predictor.faces)
    np.testing.assert_allclose(vertices, arrays["vertices"], atol=1e-6)  # 6 decimals in the file
    assert np.ptp(vertices, axis=0).max() > 0.5  # a body-sized mesh, not a point

    document = json.loads((out / "0000.json").read_text())
    for key in ("shn_points", "dae_points", "smpl_points", "smpl_joints", "betas", "gender_value", "rotations",
                "axis_angles", "root_camera", "camera_from_world"):
        np.testing.assert_array_equal(np.asarray(document[key], np.float32), arrays[key], err_msg=key)
    assert np.shape(document["shn_points"]) == (41, 3) and np.shape(document["axis_angles"]) == (24, 3)
    assert document["gender"] == ("male" if arrays["gender_value"] >= 0 else "female") == str(arrays["gender"])
    assert document["crop"]["source"] == "info.mat" and document["image"].endswith("0000.png")
    # The axis-angles are the rotations, by SMPL's own Rodrigues formula.
    np.testing.assert_allclose(np.asarray(rodrigues(document["axis_angles"])), arrays["rotations"], atol=2e-5)

    picture = cv2.imread(str(out / "0000_overlay.png"))[..., ::-1]
    size = P.OVERLAY_SIZE
    assert picture.shape == (size, 2 * size, 3)
    crop = P.cloth3d_crop(chain / "frames" / "00000" / "0000.png", {})
    rgba, _ = P.read_image(chain / "frames" / "00000" / "0000.png")
    plain = np.clip(crop_rgba(rgba, crop.affine(size), size)[0], 0, 255).astype(np.uint8)
    changed = np.any(np.abs(picture[:, :size].astype(int) - plain) > 20, axis=-1)
    assert changed.mean() > 0.02  # the mesh is drawn over the crop
    side = picture[:, size:]
    assert np.mean(np.any(np.abs(side.astype(int) - 235) > 20, axis=-1)) > 0.02  # and seen from the side


def test_crop_rules(chain, tmp_path):
    from training.summaries import project_to_crop

    # Hand-worked box rule: box 80 x 200 at (100, 50) in a 640 x 480 image, f = 1000 px.
    crop = P.crop_for_box((100, 50, 80, 200), (480, 640), focal_px=1000.0)
    side = 200 * 2.5 / 1.7
    np.testing.assert_allclose(crop.side_px, side)
    np.testing.assert_allclose(crop.root_px, [140.0, 140.0])
    depth = 1000.0 * 2.5 / side  # 8.5 m
    np.testing.assert_allclose(crop.root_camera, [-180 * depth / 1000, -100 * depth / 1000, depth])
    np.testing.assert_allclose(crop.affine(256) @ [140.0, 140.0, 1.0], [127.5, 127.5])
    np.testing.assert_allclose(crop.affine(256) @ [140.0 + side / 2, 140.0, 1.0], [255.5, 127.5])
    # The root projects to the crop centre whatever the focal length.
    np.testing.assert_allclose(project_to_crop(np.zeros((1, 3)), crop.root_camera, 256), [[127.5, 127.5]])
    assert P.crop_for_box((100, 50, 80, 200), (480, 640)).focal_px == pytest.approx(888.888888, rel=1e-6)

    # On a CLOTH3D frame away from its info.mat, the alpha rule lands near the exact crop.
    frame = chain / "frames" / "00000" / "0000.png"
    exact = P.cloth3d_crop(frame, {})
    copy = tmp_path / "0000.png"
    shutil.copy(frame, copy)
    rgba, has_alpha = P.read_image(copy)
    assert has_alpha and P.cloth3d_crop(copy, {}) is None
    by_alpha = P.find_crop(copy, rgba, has_alpha)
    assert by_alpha.source == "alpha"
    assert abs(by_alpha.side_px / exact.side_px - 1) < 0.12
    assert np.linalg.norm(by_alpha.root_px - exact.root_px) < 0.1 * exact.side_px
    assert abs(by_alpha.root_camera[2] / exact.root_camera[2] - 1) < 0.12

    # --mask with the same silhouette gives the same crop as the alpha; --bbox and --mask beat info.mat.
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.where(rgba[:, :, 3] >= 128, 255, 0).astype(np.uint8))
    rgb = tmp_path / "person.jpg"
    cv2.imwrite(str(rgb), rgba[:, :, :3])
    rgb_image, rgb_alpha = P.read_image(rgb)
    assert not rgb_alpha
    by_mask = P.find_crop(rgb, rgb_image, rgb_alpha, mask_path=mask)
    assert by_mask.source == "mask"
    np.testing.assert_allclose(by_mask.root_px, by_alpha.root_px)
    np.testing.assert_allclose(by_mask.side_px, by_alpha.side_px)
    assert P.find_crop(frame, *P.read_image(frame), mask_path=mask).source == "mask"
    assert P.find_crop(frame, *P.read_image(frame), bbox=(10, 20, 30, 40), mask_path=mask).source == "bbox"
    assert P.find_crop(frame, *P.read_image(frame)).source == "info.mat"
    whole = P.find_crop(rgb, rgb_image, rgb_alpha)
    assert whole.source == "whole image"
    np.testing.assert_allclose(whole.box, [0, 0, 640, 480])


def _error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_bad_inputs_each_one_line_others_processed(chain, predictor, tmp_path, capsys):
    good = tmp_path / "in" / "good.png"
    good.parent.mkdir()
    shutil.copy(chain / "frames" / "00000" / "0001.png", good)
    (tmp_path / "in" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    transparent = np.zeros((48, 64, 4), np.uint8)
    cv2.imwrite(str(tmp_path / "transparent.png"), transparent)
    (tmp_path / "empty").mkdir()
    bad = {"corrupt.png": "corrupt or unreadable", "notes.txt": "not a PNG or JPEG",
           "missing.png": "not found", "transparent.png": "empty mask", "empty": "no PNG or JPEG"}
    out = tmp_path / "out"
    args = ["-1", str(tmp_path / "in"), str(tmp_path / "notes.txt"), str(tmp_path / "missing.png"),
            str(tmp_path / "transparent.png"), str(tmp_path / "empty"), "--out", str(out),
            "--tmp", str(chain / "tmp"), "--checkpoints", *NAMES, "--batch-size", "2"]
    assert P.main(args) == 1
    captured = capsys.readouterr()
    errors = _error_lines(captured.err)
    assert len(errors) == len(bad), captured.err
    for name, words in bad.items():
        assert sum(name in line and words in line for line in errors) == 1, (name, errors)
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "good.npz", "good.obj", "good_overlay.png"]
    assert "predicted 1 of 6 images" in captured.out and "5 failed" in captured.out

    # Earlier results are not replaced without --overwrite.
    before = (out / "good.obj").stat().st_mtime_ns
    summary = P.predict(predictor, [good], out, progress=False)
    assert not summary["written"] and "already exists" in summary["failed"][0][1]
    assert (out / "good.obj").stat().st_mtime_ns == before
    assert P.predict(predictor, [good], out, overwrite=True, progress=False)["written"] == ["good"]

    # An empty --mask, a mask of the wrong size, a box outside the image: that image fails, one line each.
    cv2.imwrite(str(tmp_path / "empty_mask.png"), np.zeros((480, 640), np.uint8))
    cv2.imwrite(str(tmp_path / "small_mask.png"), np.full((10, 10), 255, np.uint8))
    capsys.readouterr()
    for options, words in (({"mask": tmp_path / "empty_mask.png"}, "empty mask"),
                           ({"mask": tmp_path / "small_mask.png"}, "is 10x10 pixels"),
                           ({"bbox": (600, 100, 100, 200)}, "is not inside the 640x480 image"),
                           ({"bbox": (10, 10, 0, 20)}, "must be positive")):
        summary = P.predict(predictor, [good], tmp_path / "other", progress=False, **options)
        assert not summary["written"] and len(summary["failed"]) == 1
        errors = _error_lines(capsys.readouterr().err)
        assert len(errors) == 1 and words in errors[0], (options, errors)

    # A missing checkpoint stops the run with one line (status 2) naming it.
    assert P.main(["-1", str(good), "--tmp", str(chain / "tmp"), "--out", str(tmp_path / "x"),
                   "--checkpoints", "shn", "nope", "smplr"]) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "'nope' not found" in errors[0]


@requires_jax
def test_jax_backend_gives_the_same_body(chain, predicted):
    _, out = predicted
    # In the same JAX process, --flip-test's parts (tests/test_flip_test.py): models.flip's
    # mirror_points and shn_points on a tiny SHN, against NumPy references here.
    flip = run_backend("jax", f"""
        import json, keras, numpy as np
        from models import SHN, soft_argmax
        from models.flip import mirror_points, shn_points
        from training.predict import main
        assert main(["-1", {str(chain / "frames" / "00000" / "0000.png")!r}, "--out", {str(chain / "jax")!r},
                     "--tmp", {str(chain / "tmp")!r}, "--checkpoints", "shn", "dae", "smplr"]) == 0
        assert keras.backend.backend() == "jax"
        keras.utils.set_random_seed(3)
        rng = np.random.default_rng(3)
        shn = SHN(num_stacks=1, num_features=8, grid_axes="camera")
        images = rng.normal(size=(1, 256, 256, 3)).astype(np.float32)
        roots = np.float32([[0.4, -0.2, 3.0], [-1.0, 0.5, 6.0]])
        points = rng.uniform(-1, 1, (2, 41, 3)).astype(np.float32)
        read = lambda x: np.asarray(soft_argmax(shn(x)[-1], axes="camera")).tolist()
        print(json.dumps({{"average": np.asarray(shn_points(shn, images, roots[:1], flip_test=True)).tolist(),
                           "plain": read(images), "flipped": read(images[:, :, ::-1]), "points": points.tolist(),
                           "mirrored": np.asarray(mirror_points(points, roots)).tolist()}}))
    """)
    ours, theirs = np.load(chain / "jax" / "0000.npz"), np.load(out / "0000.npz")
    for key in ("shn_points", "dae_points", "smpl_points", "smpl_joints", "vertices", "betas"):
        np.testing.assert_allclose(ours[key], theirs[key], atol=1e-4, err_msg=key)
    np.testing.assert_allclose(ours["rotations"], theirs["rotations"], atol=1e-3)  # SVD of float32 matrices

    from test_flip_test import reference_mirror
    got = {key: np.array(value) for key, value in json.loads(flip.strip().splitlines()[-1]).items()}
    roots = np.array([[0.4, -0.2, 3.0], [-1.0, 0.5, 6.0]])
    np.testing.assert_allclose(got["mirrored"], reference_mirror(got["points"], roots), atol=1e-5)
    expected = (got["plain"] + reference_mirror(got["flipped"], roots[:1])) / 2
    np.testing.assert_allclose(got["average"], expected, atol=1e-5)
