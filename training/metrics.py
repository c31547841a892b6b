"""Evaluation figures of SPEC "Evaluation", in NumPy (float64).

The 41 points are SMPL joints 1..23 (point index j - 1 holds SMPL joint j; the
root, joint 0, is the origin) followed by 18 surface landmarks. Errors are
Euclidean distances in millimetres, averaged over samples and points.
"""
from typing import Any

import numpy as np

from smpl.constants import NUM_JOINTS as NUM_SMPL_JOINTS, NUM_POINTS
from smpl.transforms import nearest_rotation  # noqa: F401  (float64 NumPy by default; re-exported)

#: Joint points among the 41 (SMPL joints 1..23, points 0..22); the rest are landmarks.
NUM_JOINTS = NUM_SMPL_JOINTS - 1

#: SPEC joint groups, as indices into the 24 SMPL joints (never joint 0).
JOINT_GROUPS = {
    "Head": (12, 15),
    "Torso": (3, 6, 9),
    "Shoulder": (13, 14, 16, 17),
    "Elbow": (18, 19),
    "Wrist": (20, 21),
    "Hip": (1, 2),
    "Knee": (4, 5),
    "Foot": (7, 8, 10, 11),
    "All": (1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 18, 19, 20, 21),
}


def _check_points(points, what):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (NUM_POINTS, 3):
        raise ValueError(f"{what} must have shape (B, {NUM_POINTS}, 3), got {points.shape}")
    return points


def point_errors_mm(pred: Any, target: Any) -> np.ndarray:
    """Per-sample, per-point Euclidean error (B, 41) in mm of points given in metres."""
    pred = _check_points(pred, "pred")
    target = _check_points(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
    return 1000.0 * np.linalg.norm(pred - target, axis=-1)


def summarize_point_errors(errors_mm: np.ndarray) -> dict[str, float]:
    """Mean errors in mm from per-point errors (B, 41) (or their mean (41,)).

    Returns dict ``joints`` (points 0..22), ``landmarks`` (23..40), ``all``.
    """
    per_point = np.asarray(errors_mm, dtype=np.float64)
    if per_point.ndim == 2:
        per_point = per_point.mean(axis=0)
    return {"joints": float(per_point[:NUM_JOINTS].mean()),
            "landmarks": float(per_point[NUM_JOINTS:].mean()),
            "all": float(per_point.mean())}


def group_errors(errors_mm: np.ndarray) -> dict[str, float]:
    """SPEC joint-group errors in mm from per-point errors (B, 41) or (41,).

    SMPL joint j sits at point j - 1; returns dict group -> mean error.
    """
    per_point = np.asarray(errors_mm, dtype=np.float64)
    if per_point.ndim == 2:
        per_point = per_point.mean(axis=0)
    return {group: float(per_point[[j - 1 for j in joints]].mean())
            for group, joints in JOINT_GROUPS.items()}


def rotation_errors_deg(pred: Any, target: Any, project: bool = True) -> np.ndarray:
    """Geodesic angle (B, J) in degrees between rotation matrices (B, J, 3, 3).

    ``project``: first map ``pred`` to the nearest rotation (see
    :func:`smpl.transforms.nearest_rotation`, float64); the angle is arccos((trace(P^T T) - 1) / 2).
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be (..., 3, 3), got {pred.shape} and {target.shape}")
    if project:
        pred = nearest_rotation(pred)
    trace = np.einsum("...ij,...ij->...", pred, target)
    cos = np.clip((trace - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos))


class PointErrorMeter:
    """Accumulates per-point errors over batches (sum and count), for validation."""

    def __init__(self) -> None:
        self.total = np.zeros(NUM_POINTS)
        self.count = 0

    def update(self, pred: Any, target: Any) -> np.ndarray:
        """Add a batch of points (B, 41, 3) in metres; returns its (B, 41) errors in mm."""
        errors = point_errors_mm(pred, target)
        self.total += errors.sum(axis=0)
        self.count += errors.shape[0]
        return errors

    @property
    def per_point(self) -> np.ndarray:
        """Mean error per point (41,) in mm (NaN before any update)."""
        if self.count == 0:
            return np.full(NUM_POINTS, np.nan)
        return self.total / self.count

    def summary(self) -> dict[str, float]:
        return summarize_point_errors(self.per_point)

    def groups(self) -> dict[str, float]:
        return group_errors(self.per_point)
