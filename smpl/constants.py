"""Numbers and tables of the SMPL body and the SMPLR 42-node tree (NumPy only).

This module imports neither Keras nor TensorFlow, so data readers, tools and
tests can use the sizes and trees without a deep-learning backend
(`from smpl.constants import NUM_POINTS`). `smpl.kinematics` re-exports all
of it next to the features it computes.

Nodes of the SMPLR tree: 0 is the SMPL root (pelvis), 1..23 the other SMPL
joints in SMPL's order, 24..41 the 18 surface landmarks (one SMPL vertex
each). A bone is (PARENTS[i], i) for i = 1..41.
"""
import numpy as np

NUM_JOINTS = 24
NUM_LANDMARKS = 18
NUM_POINTS = 41  # SMPL joints 1..23 + 18 landmarks
NUM_NODES = 42   # the root + the 41 points
NUM_BETAS = 10   # shape coefficients the SMPL layer reads
NUM_SHAPE = 11   # SMPLR shape vector: 10 betas + a gender value (male where >= 0)
NUM_POSE_FEATURES = 9 * (NUM_JOINTS - 1)  # 207 pose blend shape inputs

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand")

#: SMPL's own kinematic tree (parent of each of the 24 joints, -1 for the root).
SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                         9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])

# SPEC calls the last landmark (SMPL vertex 331) "top of head"; on the SMPL
# mesh that vertex actually sits at the tip of the nose (10 cm ahead of and
# 6.5 cm above the head joint on the CLOTH3D++ ground truth). The name is kept
# for compatibility with the original; the open body puts it on the nose too.
LANDMARK_NAMES = (
    "breast_left", "breast_right", "belly", "right_hip", "left_hip",
    "right_upper_leg_front", "left_upper_leg_front", "right_upper_leg_back",
    "left_upper_leg_back", "left_foot", "right_foot", "left_hand",
    "left_biceps", "left_triceps", "right_biceps", "right_triceps",
    "right_hand", "top_of_head")

#: The landmarks' vertex ids on the official SMPL mesh (6890 vertices), SPEC order.
SMPL_LANDMARK_VERTEX_IDS = np.array([3042, 4428, 3503, 4311, 822, 4361, 877, 4386, 898,
                                     3222, 6620, 2544, 2820, 1258, 4116, 5365, 5989, 331])
SMPL_NUM_VERTICES = 6890

#: Parent of each of the 42 nodes (-1 for the root).
PARENTS = np.concatenate([
    SMPL_PARENTS,
    [9, 9, 0, 0, 0, 2, 1, 29, 30, 10, 11, 22, 16, 36, 17, 38, 23, 15]]).astype(np.int64)

#: The SMPL joint whose frame each landmark rides on (SPEC order): the joint
#: in whose frame the landmark's offset varies least over the CLOTH3D++
#: ground truth (std 2-7 mm; the rest is skinning blend and pose blend shapes).
LANDMARK_JOINTS = np.array([9, 9, 0, 0, 0, 2, 1, 2, 1, 10, 11, 22, 16, 16, 17, 17, 23, 15], dtype=np.int64)

#: Rigid-skeleton attachment of each of the 42 nodes (-1 for the root): a
#: joint hangs off its SMPL parent, a landmark off `LANDMARK_JOINTS`. Posing
#: node i is X[i] = X[ATTACHMENT[i]] + G[ATTACHMENT[i]] @ offset[i], with G the
#: joints' world rotations (exact for SMPL joints, ~1 mm for the landmarks).
ATTACHMENT = np.concatenate([SMPL_PARENTS, LANDMARK_JOINTS]).astype(np.int64)

#: End nodes of the bones that make up each limb map of the SHN, in SPEC's
#: order: right arm, left arm, right leg, left leg.
LIMB_END_NODES = ((17, 19, 21, 23), (16, 18, 20, 22), (5, 8, 11), (4, 7, 10))

#: The original's bone lengths (metres) on the SMPL template, nodes 0..41.
SPEC_BONE_TEMPLATE = np.array([
    0.0, 0.1148, 0.1127, 0.1056, 0.3656, 0.3725, 0.1277, 0.3860, 0.3862, 0.0565, 0.1289, 0.1286,
    0.2141, 0.1446, 0.1451, 0.0801, 0.0913, 0.0955, 0.2530, 0.2472, 0.2382, 0.2454, 0.0813, 0.0814,
    0.1461, 0.1390, 0.1461, 0.1800, 0.1817, 0.1639, 0.1663, 0.1886, 0.1877, 0.0672, 0.0666, 0.0772,
    0.1203, 0.0927, 0.1423, 0.0912, 0.0814, 0.1187], dtype=np.float32)

#: Left/right mirror of the 42 nodes as (node, partner) pairs: SMPL joints
#: 1..23 swap left and right, landmarks swap with their partner (breasts,
#: hips, upper legs front/back, feet, hands, biceps, triceps); spine, neck,
#: head, belly and top of head map to themselves.
_MIRROR_NODE_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23),
                      (24, 25), (27, 28), (29, 30), (31, 32), (33, 34), (35, 40), (36, 38), (37, 39))


def _mirror_permutation(num_nodes: int) -> np.ndarray:
    """The mirror of nodes 0..num_nodes-1 as an index array (num_nodes,) int64."""
    perm = np.arange(num_nodes)
    for a, b in _MIRROR_NODE_PAIRS:
        if b < num_nodes:
            perm[a], perm[b] = b, a
    return perm


#: Mirror of the 24 SMPL joints (24,), and of the 41 points (41,; 0-based: point k is node k + 1):
#: `points[..., MIRROR_POINTS, :]` is the left-right mirrored body's order.
MIRROR_JOINTS = _mirror_permutation(NUM_JOINTS)
MIRROR_POINTS = _mirror_permutation(NUM_NODES)[1:] - 1
