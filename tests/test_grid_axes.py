"""SHN grid axes (`--grid-axes`): world (SPEC) and camera-aligned voxel grids.

Checked against hand-worked voxel positions, a NumPy inverse of the camera
permutation written out by hand, and the real CLOTH3D samples' 2-D points.
"""
import keras
import numpy as np
import pytest
from keras import ops
from scipy.stats import spearmanr

from conftest import requires_jax, run_backend
from DataReader import camera
from models import SHN, VoxelGrid, VoxelHeatmapLoss, point_heatmaps, soft_argmax
from models.heatmaps import GRID_AXES, from_grid_axes, to_grid_axes
from training import TrainingError
from training.config import GRID_AXES as CONFIG_GRID_AXES, stage_config


def camera_to_world_by_hand(q):
    """Grid-axes points q = (y, -z, -x) of the camera grid -> world (x, y, z), float64."""
    q = np.asarray(q, np.float64)
    return np.stack([-q[..., 2], q[..., 0], -q[..., 1]], axis=-1)


def exact_logits(points, grid):
    """Logits whose softmax is exactly the Gaussian of each point: log of the peak-1 heatmaps."""
    return np.log(np.maximum(np.asarray(point_heatmaps(points, grid, peak_one=True)), 1e-30))


def test_camera_axes_are_the_cloth3d_camera_rotation():
    np.testing.assert_array_equal(GRID_AXES["camera"], camera.R_WORLD_TO_CAMERA)
    assert set(CONFIG_GRID_AXES) == set(GRID_AXES)
    points = np.random.default_rng(0).uniform(-1, 1, (5, 41, 3)).astype(np.float32)
    grid_points = np.asarray(to_grid_axes(points, "camera"))
    np.testing.assert_array_equal(grid_points, np.stack([points[..., 1], -points[..., 2], -points[..., 0]], -1))
    np.testing.assert_array_equal(camera_to_world_by_hand(grid_points), points)
    np.testing.assert_array_equal(np.asarray(from_grid_axes(grid_points, "camera")), points)
    np.testing.assert_array_equal(np.asarray(to_grid_axes(points, "world")), points)


def test_world_default_is_the_spec_grid():
    points = np.random.default_rng(1).uniform(-1.2, 1.2, (3, 41, 3)).astype(np.float32)
    expected = (points / 2.5 + 0.5) * np.array([64, 64, 16], np.float32)
    for grid in (VoxelGrid(), VoxelGrid(axes="world")):
        np.testing.assert_array_equal(np.asarray(grid.points_to_voxels(points)), expected)
    assert VoxelHeatmapLoss().grid.axes == "world"
    assert SHN(num_stacks=1, num_features=4).grid_axes == "world"


@pytest.mark.parametrize("axes", ["world", "camera"])
def test_targets_read_back_by_soft_argmax(axes):
    # Points over 3 voxels from the outer cell centres on either grid: |p| <= 0.55 m
    # puts them between depth slices 3.5 and 11.5 of 0..15 (15.6 cm each).
    points = np.random.default_rng(2).uniform(-0.55, 0.55, (4, 41, 3)).astype(np.float32)
    grid = VoxelGrid(axes=axes)
    read = np.asarray(soft_argmax(exact_logits(points, grid), axes=axes))
    np.testing.assert_allclose(read, points, atol=1e-4)  # far finer than a voxel (39 / 156 mm)
    # The loss's targets carry the grid's axes: its point maps are the same maps.
    targets = np.asarray(VoxelHeatmapLoss(grid, peak_one=True).targets(points))[..., :41]
    np.testing.assert_allclose(targets, np.exp(exact_logits(points, grid)), atol=1e-6)


def test_a_point_one_metre_below_the_root_lands_on_rows_of_the_camera_grid():
    below = np.array([[[0.0, 0.0, -1.0]]], np.float32)  # 1 m below the root, world z up
    right = np.array([[[0.0, 0.5, 0.0]]], np.float32)  # 0.5 m to the image's right (world +y)
    near = np.array([[[0.5, 0.0, 0.0]]], np.float32)  # 0.5 m towards the camera (world +x)

    def peak(points, axes):
        volume = np.asarray(point_heatmaps(points, VoxelGrid(axes=axes)))[0, ..., 0]
        return np.unravel_index(np.argmax(volume), volume.shape)  # (row, column, slice)

    # camera: 1 m / 2.5 m * 64 = 25.6 rows below the centre row 32 -> row 57.6, peak 58
    assert peak(below, "camera") == (58, 32, 8)
    # world (SPEC): the same metre is 6.4 coarse depth slices: 8 - 6.4 = 1.6, peak 2
    assert peak(below, "world") == (32, 32, 2)
    assert peak(right, "camera") == (32, 45, 8)  # column 32 + 12.8
    assert peak(near, "camera") == (32, 32, 5)  # slice 8 - 3.2: nearer the camera, smaller depth
    grid = VoxelGrid(axes="camera")
    np.testing.assert_allclose(np.asarray(grid.points_to_voxels(below))[0, 0], [32.0, 57.6, 8.0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(soft_argmax(exact_logits(below, grid), num_points=1, axes="camera"))[0, 0],
                               [0.0, 0.0, -1.0], atol=1e-4)


def test_camera_grid_follows_the_image_on_real_samples(cloth3d_root):
    from DataReader import CLOTH3DReader

    reader = CLOTH3DReader(cloth3d_root)
    lines = (cloth3d_root / "train.txt").read_text().split()[:3] + (cloth3d_root / "val.txt").read_text().split()[:2]
    for line in lines:
        sample = reader.load(line)
        points, points2d = sample["points"], sample["points2d"]
        camera_voxels = np.asarray(VoxelGrid(axes="camera").points_to_voxels(points))
        world_voxels = np.asarray(VoxelGrid().points_to_voxels(points))
        assert spearmanr(camera_voxels[:, 0], points2d[:, 0])[0] > 0.9, line  # columns ~ image x
        assert spearmanr(camera_voxels[:, 1], points2d[:, 1])[0] > 0.9, line  # rows ~ image y
        # The finding: on the SPEC grid the image's vertical is the depth slices.
        assert spearmanr(world_voxels[:, 2], points2d[:, 1])[0] < -0.9, line


class FixedLogitsSHN(keras.layers.Layer):
    """Stands in for an SHN of grid axes `grid_axes`: one stack of hand-set logits, whatever the image."""

    def __init__(self, logits, grid_axes):
        super().__init__()
        self.logits, self.grid_axes, self.num_points = logits, grid_axes, logits.shape[-1]

    def call(self, images, training=False):
        return ops.convert_to_tensor(self.logits)[None]


@pytest.mark.parametrize("axes", ["world", "camera"])
def test_pipeline_returns_world_axes_points(axes):
    import smpl
    from models import DAE, SMPLR, Pipeline
    from test_models import random_body_models

    rng = np.random.default_rng(3)
    points = rng.uniform(-0.55, 0.55, (2, 41, 3)).astype(np.float32)
    logits = exact_logits(points, VoxelGrid(axes=axes))  # Gaussian peaks at the points, on `axes`
    pipeline = Pipeline(FixedLogitsSHN(logits, axes), DAE(), SMPLR(smpl.SMPL(*random_body_models())))
    out = np.asarray(pipeline(np.zeros((2, 256, 256, 3), np.float32))["shn_points"])
    # Independent reference: read on the grid's own axes, then the hand-written inverse.
    grid_read = np.asarray(soft_argmax(logits, axes="world"))
    expected = grid_read if axes == "world" else camera_to_world_by_hand(grid_read)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out, points, atol=1e-4)  # world axes, as the DAE expects
    if axes == "camera":
        assert np.abs(grid_read - points).max() > 0.2  # the grid's own axes are not world axes


def test_unknown_axes_are_one_clear_error():
    with pytest.raises(ValueError, match="grid axes must be one of world, camera, got 'image'"):
        VoxelGrid(axes="image")
    with pytest.raises(ValueError, match="SHN: grid_axes must be one of"):
        SHN(num_stacks=1, num_features=4, grid_axes="image")
    with pytest.raises(TrainingError, match="--grid-axes must be one of world, camera, got 'image'"):
        stage_config("shn", grid_axes="image")
    assert stage_config("shn").grid_axes == "world"
    assert stage_config("shn", recipe="fast").grid_axes == "camera"  # what the shipped SHN uses
    assert stage_config("shn", recipe="fast", grid_axes="world").grid_axes == "world"  # an option wins
    assert stage_config("shn", grid_axes="camera").grid_axes == "camera"


def test_grid_axes_option_on_the_command_line(tmp_path):
    from training.cli import build_parser, config_from_args

    (tmp_path / "train.txt").write_text("a/0000.png\n")
    (tmp_path / "val.txt").write_text("a/0000.png\n")
    parse = build_parser().parse_args
    config = config_from_args(parse(["shn", "0", "--data", str(tmp_path), "--grid-axes", "camera"]))
    assert config.grid_axes == "camera" and config.to_json()["grid_axes"] == "camera"  # saved in state.json
    assert config_from_args(parse(["shn", "0", "--data", str(tmp_path)])).grid_axes == "world"
    with pytest.raises(TrainingError, match="--grid-axes.* apply to the shn stage only"):
        config_from_args(parse(["dae", "0", "--data", str(tmp_path), "--grid-axes", "camera"]))
    with pytest.raises(SystemExit):
        parse(["shn", "0", "--grid-axes", "image"])


def test_load_stages_builds_the_shn_with_its_checkpoints_grid_axes(tmp_path):
    import json

    from training.evaluate import load_stages
    from training.predict import save_untrained_checkpoints

    save_untrained_checkpoints(tmp_path, num_stacks=1, num_features=16)
    pipeline, _, _ = load_stages(tmp_path, "shn", "dae", "smplr")
    assert pipeline.shn.grid_axes == "world"  # no grid_axes in state.json: SPEC
    state_path = tmp_path / "checkpoints" / "shn" / "best" / "state.json"
    for axes in ("camera", "image"):
        state = json.loads(state_path.read_text())
        state["config"]["grid_axes"] = axes
        state_path.write_text(json.dumps(state))
        if axes == "camera":
            assert load_stages(tmp_path, "shn", "dae", "smplr")[0].shn.grid_axes == "camera"
        else:
            with pytest.raises(TrainingError, match="unknown grid_axes 'image'"):
                load_stages(tmp_path, "shn", "dae", "smplr")


@requires_jax
def test_camera_axes_round_trip_on_jax():
    out = run_backend("jax", """
        import keras, numpy as np
        from models import VoxelGrid, point_heatmaps, soft_argmax
        assert keras.backend.backend() == "jax"
        points = np.array([[[0.0, 0.0, -1.0], [0.3, -0.5, 0.6]]], np.float32)
        logits = np.log(np.maximum(np.asarray(point_heatmaps(points, VoxelGrid(axes="camera"), peak_one=True)), 1e-30))
        print(np.asarray(soft_argmax(logits, num_points=2, axes="camera")).tolist())
    """)
    read = np.array(eval(out.strip().splitlines()[-1]))
    np.testing.assert_allclose(read, [[[0.0, 0.0, -1.0], [0.3, -0.5, 0.6]]], atol=1e-4)
