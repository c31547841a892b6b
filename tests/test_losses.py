"""Voxel heatmap targets, soft-argmax, VoxelHeatmapLoss and the SMPLR losses
against float64 NumPy references and hand-worked cases."""
import numpy as np
import pytest

from models import (VoxelGrid, VoxelHeatmapLoss, dae_loss, limb_bone_table, limb_heatmaps, point_heatmaps,
                    pose_loss, shape_loss, shapepose_loss, soft_argmax)
from smpl import kinematics

GRID = VoxelGrid()  # 64 x 64 x 16 over 2.5 m


def random_points(rng, batch, num=41, reach=(0.9, 0.9, 0.8)):
    """Root-relative points (B, num, 3) in metres, well inside the 2.5 m grid."""
    return (rng.uniform(-1.0, 1.0, (batch, num, 3)) * np.array(reach)).astype(np.float32)


# ---------- float64 NumPy references, written from SPEC's formulas ----------

def np_voxel_centres(size, depth):
    """(H, W, D, 3) voxel coordinates (x, y, z) of each cell centre: row = y, column = x."""
    centres = np.zeros((size, size, depth, 3))
    for i in range(size):
        for j in range(size):
            centres[i, j, :, 0] = j
            centres[i, j, :, 1] = i
            centres[i, j, :, 2] = np.arange(depth)
    return centres


def np_to_voxels(points, size, depth, extent=2.5):
    return (np.asarray(points, np.float64) / extent + 0.5) * np.array([size, size, depth])


def np_point_heatmaps(points, size, depth):
    """(B, H, W, D, N): 3-D unit-covariance normal density at each voxel centre."""
    centres = np_voxel_centres(size, depth)
    voxels = np_to_voxels(points, size, depth)
    diff = centres[None, :, :, :, None, :] - voxels[:, None, None, None, :, :]
    return np.exp(-0.5 * np.sum(diff ** 2, axis=-1)) / (2 * np.pi) ** 1.5


def np_segment_distance_sq(c, a, b):
    """Squared distance of point c to segment [a, b], with the original's 1e-5 guard."""
    ab = b - a
    t = np.clip(np.dot(c - a, ab) / (np.dot(ab, ab) + 1e-5), 0.0, 1.0)
    return np.sum((c - (a + t * ab)) ** 2)


def np_limb_heatmaps(points, size, depth, limb_end_nodes=kinematics.LIMB_END_NODES):
    """(B, H, W, D, L) with explicit loops over samples, limbs, bones and voxels."""
    centres = np_voxel_centres(size, depth).reshape(-1, 3)
    out = np.zeros((len(points), size, size, depth, len(limb_end_nodes)))
    for b, sample in enumerate(points):
        nodes = np_to_voxels(np.concatenate([np.zeros((1, 3)), sample]), size, depth)
        for limb, ends in enumerate(limb_end_nodes):
            maps = []
            for end in ends:
                start = kinematics.PARENTS[end]
                z = np.array([1.0 / (np_segment_distance_sq(c, nodes[start], nodes[end]) + 1.0) for c in centres])
                e = np.exp(z - z.max())
                maps.append(e / e.sum())
            out[b, ..., limb] = np.max(maps, axis=0).reshape(size, size, depth)
    return out


def np_sigmoid_cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    probability = 1.0 / (1.0 + np.exp(-logits))
    return -(labels * np.log(probability) + (1 - labels) * np.log(1 - probability))


# ---------- grid convention ----------

def test_points_to_voxels_hand_worked_and_inverse():
    points = np.array([[0.0, 0.0, 0.0], [1.25, -1.25, 0.625], [-0.5, 0.25, -1.0]], np.float32)
    expected = np.array([[32, 32, 8], [64, 0, 12], [19.2, 38.4, 1.6]])
    voxels = np.asarray(GRID.points_to_voxels(points))
    np.testing.assert_allclose(voxels, expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(GRID.voxels_to_points(voxels)), points, atol=1e-6)
    np.testing.assert_allclose(GRID.voxel_size, [2.5 / 64, 2.5 / 64, 2.5 / 16])


def test_voxel_centres_follow_row_y_column_x_order():
    np.testing.assert_array_equal(VoxelGrid(5, 3).voxel_centres(), np_voxel_centres(5, 3).reshape(-1, 3))


# ---------- point heatmaps ----------

def test_point_heatmaps_equal_float64_gaussian_density():
    rng = np.random.default_rng(1)
    points = random_points(rng, 2, num=5)
    ours = np.asarray(point_heatmaps(points, GRID))
    reference = np_point_heatmaps(points, 64, 16)
    assert ours.shape == (2, 64, 64, 16, 5)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-9)


def test_point_heatmap_maximum_sits_at_the_voxel_of_its_point():
    rng = np.random.default_rng(2)
    points = random_points(rng, 3)
    heatmaps = np.asarray(point_heatmaps(points, GRID))
    voxels = np_to_voxels(points, 64, 16)  # (B, N, 3) as x, y, z
    for b in range(3):
        for n in range(41):
            row, col, slice_ = np.unravel_index(np.argmax(heatmaps[b, ..., n]), (64, 64, 16))
            assert (col, row, slice_) == tuple(np.round(voxels[b, n]).astype(int)), (b, n)


def test_soft_argmax_recovers_points_from_sharpened_targets():
    rng = np.random.default_rng(3)
    points = random_points(rng, 2)
    targets = np.asarray(point_heatmaps(points, GRID), np.float64)
    # log of the density sharpened x4: a Gaussian of std 0.5 voxel as logits;
    # the four limb channels after the points are ignored by soft_argmax.
    logits = np.concatenate([4.0 * np.log(targets + 1e-300), np.zeros(targets.shape[:-1] + (4,))], axis=-1)
    recovered = np.asarray(soft_argmax(logits.astype(np.float32)))
    assert recovered.shape == (2, 41, 3)
    error_in_voxels = np.abs(recovered - points) / GRID.voxel_size
    assert error_in_voxels.max() < 0.5, error_in_voxels.max()
    # The read-out is the exact inverse of the grid mapping: a one-hot logit volume
    # at a voxel returns that voxel's centre.
    one_hot = np.full((1, 64, 64, 16, 1), -1e4, np.float32)
    one_hot[0, 10, 50, 3, 0] = 0.0  # row (y) 10, column (x) 50, slice (z) 3
    expected = (np.array([50, 10, 3]) / np.array([64, 64, 16]) - 0.5) * 2.5
    np.testing.assert_allclose(np.asarray(soft_argmax(one_hot, num_points=None))[0, 0], expected, atol=1e-6)


# ---------- limb maps ----------

def test_limb_bone_table_follows_spec_limbs():
    starts, ends = limb_bone_table(kinematics.LIMB_END_NODES, kinematics.PARENTS)
    np.testing.assert_array_equal(ends, [[17, 19, 21, 23], [16, 18, 20, 22], [5, 8, 11, 11], [4, 7, 10, 10]])
    np.testing.assert_array_equal(starts, [[14, 17, 19, 21], [13, 16, 18, 20], [2, 5, 8, 8], [1, 4, 7, 7]])


def test_limb_heatmaps_equal_float64_reference_on_small_grid():
    rng = np.random.default_rng(4)
    grid = VoxelGrid(size=8, depth=4)
    points = random_points(rng, 2)
    starts, ends = limb_bone_table(kinematics.LIMB_END_NODES, kinematics.PARENTS)
    ours = np.asarray(limb_heatmaps(points, starts, ends, grid))
    reference = np_limb_heatmaps(points, 8, 4)
    assert ours.shape == (2, 8, 8, 4, 4)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-9)


def test_each_limb_map_maximum_lies_on_its_bone_segment():
    rng = np.random.default_rng(5)
    points = random_points(rng, 2, reach=(0.7, 0.7, 0.6))
    starts, ends = limb_bone_table(kinematics.LIMB_END_NODES, kinematics.PARENTS)
    maps = np.asarray(limb_heatmaps(points, starts, ends, GRID))
    for b in range(2):
        nodes = np_to_voxels(np.concatenate([np.zeros((1, 3)), points[b]]), 64, 16)
        for limb, limb_ends in enumerate(kinematics.LIMB_END_NODES):
            row, col, slice_ = np.unravel_index(np.argmax(maps[b, ..., limb]), (64, 64, 16))
            centre = np.array([col, row, slice_], np.float64)
            nearest = min(np_segment_distance_sq(centre, nodes[kinematics.PARENTS[e]], nodes[e]) for e in limb_ends)
            # the cell centre nearest to a segment is at most half a cell diagonal away
            assert np.sqrt(nearest) <= np.sqrt(3) / 2 + 1e-4, (b, limb, np.sqrt(nearest))


# ---------- VoxelHeatmapLoss ----------

def test_voxel_heatmap_loss_equals_float64_reference_per_stack():
    rng = np.random.default_rng(6)
    grid = VoxelGrid(size=8, depth=4)
    points = random_points(rng, 2)
    logits = rng.normal(0.0, 2.0, (3, 2, 8, 8, 4, 45)).astype(np.float32)
    loss = VoxelHeatmapLoss(grid=grid)
    total, per_stack = loss(logits, points)
    targets = np.concatenate([np_point_heatmaps(points, 8, 4), np_limb_heatmaps(points, 8, 4)], axis=-1)
    np.testing.assert_allclose(np.asarray(loss.targets(points)), targets, rtol=1e-4, atol=1e-9)
    expected = np.array([np_sigmoid_cross_entropy(logits[s], targets).mean() for s in range(3)])
    np.testing.assert_allclose(np.asarray(per_stack), expected, rtol=1e-5)
    np.testing.assert_allclose(float(total), expected.sum(), rtol=1e-5)


def test_voxel_heatmap_loss_rejects_wrong_logit_shape():
    loss = VoxelHeatmapLoss()
    with pytest.raises(ValueError, match="VoxelHeatmapLoss: logits must be"):
        loss(np.zeros((1, 1, 64, 64, 16, 41), np.float32), np.zeros((1, 41, 3), np.float32))


# ---------- SMPLR losses ----------

def test_smplr_l1_losses_hand_worked():
    assert float(dae_loss([[0.0, 1.0, -2.0]], [[1.0, 1.0, 0.0]])) == pytest.approx(1.0)
    # L1 = mean(|1-0|, |-3-(-1)|) = 1.5; regulariser 0.01 * mean(1, 3) = 0.02
    assert float(shape_loss([[1.0, -3.0]], [[0.0, -1.0]])) == pytest.approx(1.52)
    rotations = np.tile(np.eye(3, dtype=np.float32), (2, 24, 1, 1))
    pose = rotations.reshape(2, 216) + 0.25
    assert float(pose_loss(pose, rotations)) == pytest.approx(0.25)


def test_shapepose_loss_against_numpy():
    rng = np.random.default_rng(7)
    outputs = {"shape": rng.normal(size=(3, 11)), "pose": rng.normal(size=(3, 216)),
               "points": rng.normal(size=(3, 41, 3))}
    shape, rotations, points = rng.normal(size=(3, 11)), rng.normal(size=(3, 24, 3, 3)), rng.normal(size=(3, 41, 3))
    terms = shapepose_loss({k: v.astype(np.float32) for k, v in outputs.items()}, shape.astype(np.float32),
                           rotations.astype(np.float32), points.reshape(3, 123).astype(np.float32))
    expected = {"pose": np.abs(outputs["pose"] - rotations.reshape(3, 216)).mean(),
                "shape": np.abs(outputs["shape"] - shape).mean(),
                "joints": np.abs(outputs["points"][:, :23] - points[:, :23]).mean(),
                "landmarks": np.abs(outputs["points"][:, 23:] - points[:, 23:]).mean()}
    expected["loss"] = sum(expected.values())
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-5), key
