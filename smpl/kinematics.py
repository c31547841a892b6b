"""The 42-node tree of SMPLR and the features the SMPLR nets read.

Nodes: 0 is the SMPL root (pelvis, the origin of every target), 1..23 are the
other SMPL joints in SMPL's order, 24..41 are the 18 surface landmarks (one
SMPL vertex each). A bone is (PARENTS[i], i) for i = 1..41. The 41 points a
network predicts are nodes 1..41, root-relative, in metres.

`bone_features` and `normal_features` are the single definition of the SMPLR
inputs; they accept NumPy arrays or TensorFlow tensors (they are written with
`keras.ops`) and return backend tensors, so the TF graph and the NumPy data
preparation use exactly the same maths (`np.asarray(...)` the result there).
The sizes and tables (`NUM_POINTS`, `PARENTS`, ...) live in `smpl.constants`
and are re-exported here.
"""
from typing import Any

import numpy as np
from keras import ops

from .constants import (  # noqa: F401  (re-exported: smpl.kinematics.NUM_POINTS etc.)
    NUM_JOINTS, NUM_LANDMARKS, NUM_POINTS, NUM_NODES, NUM_BETAS, NUM_SHAPE, NUM_POSE_FEATURES,
    SMPL_JOINT_NAMES, SMPL_PARENTS, LANDMARK_NAMES, SMPL_LANDMARK_VERTEX_IDS, SMPL_NUM_VERTICES,
    PARENTS, LANDMARK_JOINTS, ATTACHMENT, LIMB_END_NODES, SPEC_BONE_TEMPLATE)
from .io import SMPLModel

#: A backend tensor, or anything `keras.ops` converts to one (NumPy arrays).
Tensor = Any


def rest_points(model: SMPLModel) -> np.ndarray:
    """The 41 root-relative points (41, 3) of a body model in its rest pose, betas 0.

    `model` is an `smpl.SMPLModel`; joints come from its J_regressor, landmarks
    are its `landmark_ids` vertices; metres, the model's own axes.
    """
    joints = model.J_regressor.astype(np.float64) @ model.v_template.astype(np.float64)
    landmarks = model.v_template[model.landmark_ids].astype(np.float64)
    return np.concatenate([joints[1:], landmarks]) - joints[0]


def bone_template(model_f: SMPLModel, model_m: SMPLModel) -> np.ndarray:
    """Bone lengths (42,) float32 in metres of a body model: the mean of the
    female and male rest-pose bone lengths (node 0 holds 0), the reference the
    SMPLR shape net's bone features are measured against."""
    lengths = [np.linalg.norm(_bone_vectors_np(rest_points(m)), axis=-1) for m in (model_f, model_m)]
    return np.concatenate([[0.0], np.mean(lengths, axis=0)]).astype(np.float32)


def _bone_vectors_np(points):
    with_root = np.concatenate([np.zeros((1, 3)), points])
    return with_root[1:] - with_root[PARENTS[1:]]


def bone_vectors(points: Tensor) -> Tensor:
    """Bone vectors P[i] - P[parent(i)] (B, 41, 3) from points (B, 41, 3) in metres."""
    points = ops.convert_to_tensor(points, dtype="float32")
    root = ops.zeros_like(points[:, :1])
    with_root = ops.concatenate([root, points], axis=1)
    return points - ops.take(with_root, PARENTS[1:], axis=1)


def bone_features(points: Tensor, template: np.ndarray) -> Tensor:
    """Shape-net input (B, 41): bone lengths minus the template's, metres.

    points: (B, 41, 3) root-relative; template: (42,) from `bone_template`.
    """
    lengths = ops.norm(bone_vectors(points), axis=-1)
    return lengths - ops.convert_to_tensor(template, dtype="float32")[1:]


def normal_features(points: Tensor, eps: float = 1e-8) -> Tensor:
    """Pose-net input (B, 123): unit bone directions, flattened x, y, z per bone."""
    vectors = bone_vectors(points)
    lengths = ops.norm(vectors, axis=-1, keepdims=True)
    return ops.reshape(vectors / ops.maximum(lengths, eps), (-1, 3 * NUM_POINTS))
