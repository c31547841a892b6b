"""Training losses: the SHN's voxel heatmap loss and the SMPLR stages' L1 losses.

Every loss is a mean over all of its elements, as in the original.
"""
from typing import Any

from keras import ops

from smpl import kinematics

from .heatmaps import Tensor, VoxelGrid, limb_bone_table, limb_heatmaps, point_heatmaps


class VoxelHeatmapLoss:
    """Sigmoid cross-entropy of the SHN's per-stack logits against targets built from points.

    `total, per_stack = loss(logits, points)`:
    logits: (S, B, H, W, D, P + L) heatmap logits of S stacks (any float dtype;
    computed in float32). points: (B, P, 3) root-relative target points in
    metres. per_stack: (S,) mean cross-entropy of each stack; total: () their sum.

    Targets (`targets(points)`, (B, H, W, D, P + L)): P point heatmaps
    (`heatmaps.point_heatmaps`) then L limb maps (`heatmaps.limb_heatmaps`)
    of the limbs in `limb_end_nodes` (default: SPEC's right arm, left arm,
    right leg, left leg over the 42-node tree). `peak_one`: point heatmaps
    scaled to a peak of 1 instead of the Gaussian density's 0.0635 (SPEC:
    False; see `heatmaps.point_heatmaps` and the SHN recipes in `training`).
    `grid`: the `heatmaps.VoxelGrid`, with its `axes` ("world", SPEC, or
    "camera"); points are given in world axes whatever the grid's axes, and
    the targets are built on the grid's axes.
    """

    def __init__(self, grid=None, limb_end_nodes=kinematics.LIMB_END_NODES, parents=kinematics.PARENTS,
                 peak_one=False):
        self.grid = grid or VoxelGrid()
        self.peak_one = bool(peak_one)
        self.bone_starts, self.bone_ends = limb_bone_table(limb_end_nodes, parents)
        self.num_limbs = self.bone_starts.shape[0]

    def targets(self, points: Tensor) -> Tensor:
        """Target volumes (B, H, W, D, P + L) float32 for points (B, P, 3) in metres."""
        return ops.concatenate([point_heatmaps(points, self.grid, peak_one=self.peak_one),
                                limb_heatmaps(points, self.bone_starts, self.bone_ends, self.grid)], axis=-1)

    def __call__(self, logits, points):
        logits = ops.cast(ops.convert_to_tensor(logits), "float32")
        points = ops.convert_to_tensor(points, dtype="float32")
        expected = (self.grid.shape + (points.shape[1] + self.num_limbs,))
        if len(logits.shape) != 6 or tuple(logits.shape[2:]) != expected:
            raise ValueError(f"VoxelHeatmapLoss: logits must be (stacks, B) + {expected} for "
                             f"{points.shape[1]} points and {self.num_limbs} limbs, got {tuple(logits.shape)}")
        targets = self.targets(points)[None]  # (1, B, H, W, D, P + L), shared by all stacks
        cross_entropy = ops.binary_crossentropy(ops.broadcast_to(targets, ops.shape(logits)), logits,
                                                from_logits=True)
        per_stack = ops.mean(ops.reshape(cross_entropy, (ops.shape(logits)[0], -1)), axis=1)
        return ops.sum(per_stack), per_stack


def _l1(prediction, target):
    prediction = ops.convert_to_tensor(prediction, dtype="float32")
    target = ops.reshape(ops.convert_to_tensor(target, dtype="float32"), ops.shape(prediction))
    return ops.mean(ops.abs(prediction - target))


def dae_loss(cleaned_points: Tensor, target_points: Tensor) -> Tensor:
    """DAE stage: mean absolute error (metres) of cleaned (B, 123) against clean points (B, 123) or (B, 41, 3)."""
    return _l1(cleaned_points, target_points)


def shape_loss(shape: Tensor, target_shape: Tensor, regularisation: float = 0.01) -> Tensor:
    """Shape stage: L1 of shape (B, 11) against its target + 0.01 * mean |shape|."""
    shape = ops.convert_to_tensor(shape, dtype="float32")
    return _l1(shape, target_shape) + regularisation * ops.mean(ops.abs(shape))


def pose_loss(pose: Tensor, target_pose: Tensor) -> Tensor:
    """Pose stage: L1 of flattened rotation matrices pose (B, 216) against
    target rotations (B, 216) or (B, 24, 3, 3)."""
    return _l1(pose, target_pose)


def shapepose_loss(outputs: dict[str, Any], target_shape: Tensor, target_pose: Tensor,
                   target_points: Tensor) -> dict[str, Tensor]:
    """Shape+pose fine-tune: L1 pose + L1 shape + L1 SMPL joints + L1 SMPL landmarks.

    outputs: the dict of `models.SMPLR` ('shape' (B, 11), 'pose' (B, 216),
    'points' (B, 41, 3) = SMPL joints 1..23 then the landmark vertices).
    target_shape (B, 11); target_pose (B, 216) or (B, 24, 3, 3);
    target_points (B, 41, 3) or (B, 123) in metres.
    Returns a dict of scalars: 'loss' (the sum) and its terms 'pose', 'shape',
    'joints', 'landmarks' (no shape regularisation here, as in the original).
    """
    points = ops.convert_to_tensor(outputs["points"], dtype="float32")
    target_points = ops.reshape(ops.convert_to_tensor(target_points, dtype="float32"), ops.shape(points))
    num_joints = kinematics.NUM_JOINTS - 1
    terms = {"pose": _l1(outputs["pose"], target_pose),
             "shape": _l1(outputs["shape"], target_shape),
             "joints": _l1(points[:, :num_joints], target_points[:, :num_joints]),
             "landmarks": _l1(points[:, num_joints:], target_points[:, num_joints:])}
    terms["loss"] = terms["pose"] + terms["shape"] + terms["joints"] + terms["landmarks"]
    return terms
