"""The SMPL body model as a Keras layer (gender-aware, vectorised over the batch).

Linear blend skinning, as in SMPL v1.0 (Loper et al. 2015):

    v_shaped = v_template + shapedirs . betas
    J        = J_regressor . v_shaped
    v_posed  = v_shaped + posedirs . (R[1:] - I)
    G_k      = G_parent(k) . [R_k | J_k - J_parent(k)]     (world transform per joint)
    v        = sum_k weights[:, k] * (G_k - [0 | G_k^R J_k]) . v_posed

Every sample picks the female or the male model by its gender value: the
batch is split by gender, each part goes through `linear_blend_skinning` with
its model as whole-batch matrix products, and the parts are stitched back in
the original order (no per-sample loop, each sample computed once).
"""
import numpy as np
import tensorflow as tf
import keras

from .io import SMPLModel, load_model
from .constants import NUM_JOINTS, NUM_SHAPE


def rodrigues(axis_angle):
    """Axis-angle vectors (..., 3) in radians -> rotation matrices (..., 3, 3).

    R = I + a K + b K^2 with K the cross-product matrix of the (unnormalised)
    vector, a = sin(t)/t, b = (1 - cos t)/t^2; a Taylor series near t = 0 keeps
    values and gradients finite at zero angle.
    """
    axis_angle = tf.convert_to_tensor(axis_angle, dtype=tf.float32)
    angle_sq = tf.reduce_sum(tf.square(axis_angle), axis=-1)[..., None, None]
    small = angle_sq < 1e-6
    safe_sq = tf.where(small, tf.ones_like(angle_sq), angle_sq)
    angle = tf.sqrt(safe_sq)
    a = tf.where(small, 1.0 - angle_sq / 6.0, tf.sin(angle) / angle)
    b = tf.where(small, 0.5 - angle_sq / 24.0, (1.0 - tf.cos(angle)) / safe_sq)
    x, y, z = tf.unstack(axis_angle, axis=-1)
    zero = tf.zeros_like(x)
    k = tf.reshape(tf.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1),
                   tf.concat([tf.shape(axis_angle)[:-1], [3, 3]], axis=0))
    eye = tf.eye(3, dtype=tf.float32)
    return eye + a * k + b * tf.matmul(k, k)


def linear_blend_skinning(rotations, betas, model, parents):
    """SMPL for a batch of one gender.

    rotations (B, 24, 3, 3), betas (B, 10); `model` a dict of float32 tensors
    laid out coordinate-first (V last) so every per-vertex step runs over
    contiguous rows: v_template (3, V), shapedirs (10, 3*V), posedirs
    (207, 3*V) or None, joint_template (24, 3) = J_regressor . v_template,
    joint_shapedirs (10, 72) = J_regressor . shapedirs (the regression is
    linear, so rest joints come from the betas directly), weights_t (24, V).
    Returns vertices (B, V, 3) and joints (B, 24, 3) in metres, in the model's
    frame (not root-centred).
    """
    batch = tf.shape(rotations)[0]
    num_vertices = model["v_template"].shape[1]
    v_shaped = model["v_template"] + tf.reshape(tf.matmul(betas, model["shapedirs"]), (batch, 3, num_vertices))
    rest_joints = model["joint_template"] + tf.reshape(tf.matmul(betas, model["joint_shapedirs"]),
                                                       (batch, NUM_JOINTS, 3))
    v_posed = v_shaped
    if model["posedirs"] is not None:
        pose_feature = tf.reshape(rotations[:, 1:] - tf.eye(3), (batch, 9 * (NUM_JOINTS - 1)))
        v_posed += tf.reshape(tf.matmul(pose_feature, model["posedirs"]), (batch, 3, num_vertices))

    world = world_transforms(rotations, rest_joints, parents)  # (B, 24, 4, 4)
    posed_joints = world[:, :, :3, 3]
    # Skinning transforms G_k [I | -J_k] (B, 24, 3x4), blended per vertex by the weights.
    offset = posed_joints - tf.reduce_sum(world[:, :, :3, :3] * rest_joints[:, :, None, :], axis=-1)
    skin = tf.reshape(tf.concat([world[:, :, :3, :3], offset[..., None]], axis=-1), (batch, NUM_JOINTS, 12))
    per_vertex = tf.matmul(skin, model["weights_t"], transpose_a=True)  # (B, 12, V)
    x, y, z = v_posed[:, 0], v_posed[:, 1], v_posed[:, 2]
    vertices = tf.stack([per_vertex[:, 4 * i] * x + per_vertex[:, 4 * i + 1] * y
                         + per_vertex[:, 4 * i + 2] * z + per_vertex[:, 4 * i + 3] for i in range(3)], axis=-1)
    return vertices, posed_joints


def world_transforms(rotations, rest_joints, parents):
    """World transforms (B, 24, 4, 4) along the kinematic chain (unrolled at trace time).

    rotations (B, 24, 3, 3) are relative to each joint's parent; rest_joints (B, 24, 3).
    """
    parent_joints = tf.gather(rest_joints, [max(p, 0) for p in parents], axis=1)
    relative = tf.concat([rest_joints[:, :1], (rest_joints - parent_joints)[:, 1:]], axis=1)
    local = tf.concat([rotations, relative[..., None]], axis=-1)  # (B, 24, 3, 4)
    bottom = tf.broadcast_to(tf.constant([0.0, 0.0, 0.0, 1.0]), tf.concat([tf.shape(local)[:2], [1, 4]], 0))
    local = tf.concat([local, bottom], axis=2)
    chain = [local[:, 0]]
    for k in range(1, NUM_JOINTS):
        chain.append(tf.matmul(chain[parents[k]], local[:, k]))
    return tf.stack(chain, axis=1)


class SMPL(keras.layers.Layer):
    """vertices (B,V,3), joints (B,24,3) = SMPL(female, male)(rotations, shape).

    rotations: (B, 24, 3, 3) float32 rotation matrices (joint 0 = global).
    shape: (B, 11) float32 = 10 betas + a gender value (male where >= 0).
    Outputs are in metres with joint 0 moved to the origin. `female` and
    `male` are `SMPLModel`s or paths to model files, of the same mesh topology.
    """

    def __init__(self, female, male, check_inputs=True, **kwargs):
        super().__init__(trainable=False, **kwargs)
        female = female if isinstance(female, SMPLModel) else load_model(female)
        male = male if isinstance(male, SMPLModel) else load_model(male)
        if female.num_vertices != male.num_vertices or not np.array_equal(female.faces, male.faces) \
                or not np.array_equal(female.landmark_ids, male.landmark_ids):
            raise ValueError(f"SMPL layer: {female.path} and {male.path} do not share one mesh "
                             "(vertex count, faces and landmark ids must match)")
        if not np.array_equal(female.parents, male.parents):
            raise ValueError(f"SMPL layer: {female.path} and {male.path} have different kinematic trees")
        self.female, self.male = female, male
        self.check_inputs = check_inputs
        self.num_vertices = female.num_vertices
        self.faces = female.faces
        self.landmark_ids = female.landmark_ids
        self.parents = [int(p) for p in female.parents]
        self._models = [self._as_tensors(female), self._as_tensors(male)]

    @staticmethod
    def _as_tensors(model):
        """The arrays `linear_blend_skinning` takes, as float32 constants."""
        def coordinate_first(dirs):  # (V, 3, K) -> (K, 3*V)
            return tf.constant(np.transpose(dirs, (2, 1, 0)).reshape(dirs.shape[2], -1))

        regressor = model.J_regressor.astype(np.float64)
        joint_shapedirs = np.einsum("jv,vck->kjc", regressor, model.shapedirs)  # (10, 24, 3)
        return {"v_template": tf.constant(model.v_template.T),
                "shapedirs": coordinate_first(model.shapedirs),
                "posedirs": coordinate_first(model.posedirs) if np.any(model.posedirs) else None,
                "joint_template": tf.constant((regressor @ model.v_template).astype(np.float32)),
                "joint_shapedirs": tf.constant(joint_shapedirs.reshape(joint_shapedirs.shape[0], -1).astype(np.float32)),
                "weights_t": tf.constant(model.weights.T)}

    def _check(self, rotations, shape):
        if rotations.shape.rank != 4 or tuple(rotations.shape[1:]) != (NUM_JOINTS, 3, 3):
            raise ValueError(f"SMPL layer: rotations must be (B, 24, 3, 3), got {tuple(rotations.shape)}")
        if shape.shape.rank != 2 or shape.shape[1] != NUM_SHAPE:
            raise ValueError(f"SMPL layer: shape must be (B, 11) = 10 betas + gender, got {tuple(shape.shape)}")
        if self.check_inputs:
            tf.debugging.assert_all_finite(rotations, "SMPL layer: rotations contain NaN or Inf")
            tf.debugging.assert_all_finite(shape, "SMPL layer: shape contains NaN or Inf")

    def call(self, rotations, shape):
        rotations = tf.convert_to_tensor(rotations, tf.float32)
        shape = tf.convert_to_tensor(shape, tf.float32)
        self._check(rotations, shape)
        is_male = tf.cast(shape[:, 10] >= 0.0, tf.int32)
        indices = tf.dynamic_partition(tf.range(tf.shape(shape)[0]), is_male, 2)
        vertices, joints = [], []
        for gender, model in enumerate(self._models):
            v, j = linear_blend_skinning(tf.gather(rotations, indices[gender]),
                                         tf.gather(shape[:, :10], indices[gender]), model, self.parents)
            vertices.append(v)
            joints.append(j)
        vertices = tf.dynamic_stitch(indices, vertices)
        joints = tf.dynamic_stitch(indices, joints)
        root = joints[:, :1]
        return vertices - root, joints - root

    def points41(self, vertices, joints):
        """The 41 SMPLR points (B, 41, 3): joints 1..23, then the 18 landmark vertices."""
        return tf.concat([joints[:, 1:], tf.gather(vertices, self.landmark_ids, axis=1)], axis=1)

    def compute_output_spec(self, rotations, shape):
        batch = rotations.shape[0]
        return (keras.KerasTensor((batch, self.num_vertices, 3)), keras.KerasTensor((batch, NUM_JOINTS, 3)))
