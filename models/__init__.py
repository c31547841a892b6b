"""SMPLR's networks and losses (no file I/O here).

- `SHN` (hourglass.py): image -> per-stack voxel heatmap logits.
- `DAE` (dae.py): noisy 41 points -> cleaned points.
- `ShapeNet`, `PoseNet`, `SMPLR` (smplr.py): bone features -> SMPL shape and pose -> body.
- `Pipeline` (pipeline.py): the three chained for inference.
- flip.py: `mirror_points`, `shn_points`: the SHN's points, optionally averaged
  over the crop and its mirror image (``--flip-test``).
- heatmaps.py: the voxel grid convention, target heatmaps, `soft_argmax`.
- losses.py: `VoxelHeatmapLoss` and the SMPLR stages' L1 losses.
"""
from .dae import DAE, DenseBatchNormELU
from .heatmaps import VoxelGrid, limb_bone_table, limb_heatmaps, point_heatmaps, soft_argmax
from .hourglass import SHN, Hourglass, Residual
from .losses import VoxelHeatmapLoss, dae_loss, pose_loss, shape_loss, shapepose_loss
from .pipeline import Pipeline
from .smplr import SMPLR, PoseNet, ShapeNet

__all__ = ["DAE", "SHN", "SMPLR", "DenseBatchNormELU", "Hourglass", "Pipeline", "PoseNet", "Residual",
           "ShapeNet", "VoxelGrid", "VoxelHeatmapLoss", "dae_loss", "limb_bone_table", "limb_heatmaps",
           "point_heatmaps", "pose_loss", "shape_loss", "shapepose_loss", "soft_argmax"]
