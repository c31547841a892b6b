"""The SMPL body model as a Keras layer (gender-aware, vectorised over the batch).

Linear blend skinning, as in SMPL v1.0 (Loper et al. 2015):

    v_shaped = v_template + shapedirs . betas
    J        = J_regressor . v_shaped
    v_posed  = v_shaped + posedirs . (R[1:] - I)
    G_k      = G_parent(k) . [R_k | J_k - J_parent(k)]     (world transform per joint)
    v        = sum_k weights[:, k] * (G_k - [0 | G_k^R J_k]) . v_posed

Every sample picks the female or the male model by its gender value. Instead
of gathering per-sample model arrays, the inputs are gated: the blend
coefficients are written into the female half or the male half of one
stacked basis, so each step is a single matrix product for the whole batch.
"""
import numpy as np
import tensorflow as tf
import keras

from .io import SMPLModel, load_model
from .kinematics import NUM_JOINTS

NUM_SHAPE = 11  # 10 betas + gender value (male where >= 0)


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
        V = self.num_vertices

        def flat(dirs):  # (V, 3, K) -> (K, V*3)
            return np.reshape(np.transpose(dirs, (2, 0, 1)), (dirs.shape[2], V * 3))

        # Rows: female betas, male betas, female template, male template.
        self._shape_basis = tf.constant(np.concatenate([
            flat(female.shapedirs), flat(male.shapedirs),
            female.v_template.reshape(1, -1), male.v_template.reshape(1, -1)]))
        self._has_pose_blend = bool(np.any(female.posedirs) or np.any(male.posedirs))
        if self._has_pose_blend:
            self._pose_basis = tf.constant(np.concatenate([flat(female.posedirs), flat(male.posedirs)]))
        self._joint_regressor = tf.constant(np.concatenate([female.J_regressor, male.J_regressor]))  # (48, V)
        self._skinning_weights = tf.constant(np.concatenate([female.weights, male.weights], axis=1))  # (V, 48)

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
        batch = tf.shape(rotations)[0]
        male = tf.cast(shape[:, 10:11] >= 0.0, tf.float32)  # (B, 1)
        female = 1.0 - male
        betas = shape[:, :10]

        # Shape blend: gated coefficients against the stacked female/male basis.
        coeffs = tf.concat([betas * female, betas * male, female, male], axis=1)  # (B, 22)
        v_shaped = tf.reshape(tf.matmul(coeffs, self._shape_basis), (batch, self.num_vertices, 3))

        # Rest joints: regress with both genders' regressors, keep the sample's own.
        joints_both = tf.einsum("jv,bvc->bjc", self._joint_regressor, v_shaped)  # (B, 48, 3)
        rest_joints = (joints_both[:, :NUM_JOINTS] * female[:, :, None]
                       + joints_both[:, NUM_JOINTS:] * male[:, :, None])

        # Pose blend shapes from (R[1:] - I).
        v_posed = v_shaped
        if self._has_pose_blend:
            pose_feature = tf.reshape(rotations[:, 1:] - tf.eye(3), (batch, 9 * (NUM_JOINTS - 1)))
            gated = tf.concat([pose_feature * female, pose_feature * male], axis=1)
            v_posed += tf.reshape(tf.matmul(gated, self._pose_basis), (batch, self.num_vertices, 3))

        world = self._world_transforms(rotations, rest_joints)  # (B, 24, 4, 4)
        posed_joints = world[:, :, :3, 3]

        # Skinning transforms: remove the rest joint, G_k [I | -J_k].
        offset = posed_joints - tf.einsum("bjxy,bjy->bjx", world[:, :, :3, :3], rest_joints)
        skin = tf.concat([world[:, :, :3, :3], offset[..., None]], axis=-1)  # (B, 24, 3, 4)
        skin = tf.reshape(skin, (batch, NUM_JOINTS, 12))
        gated = tf.concat([skin * female[:, :, None], skin * male[:, :, None]], axis=1)  # (B, 48, 12)
        per_vertex = tf.reshape(tf.einsum("vk,bkc->bvc", self._skinning_weights, gated),
                                (batch, self.num_vertices, 3, 4))
        vertices = tf.einsum("bvxy,bvy->bvx", per_vertex[..., :3], v_posed) + per_vertex[..., 3]

        root = posed_joints[:, :1]
        return vertices - root, posed_joints - root

    def _world_transforms(self, rotations, rest_joints):
        """World transforms (B, 24, 4, 4) along the kinematic chain (unrolled at trace time)."""
        parents = self.parents
        relative = rest_joints - tf.gather(rest_joints, [max(p, 0) for p in parents], axis=1)
        relative = tf.concat([rest_joints[:, :1], relative[:, 1:]], axis=1)
        local = tf.concat([rotations, relative[..., None]], axis=-1)  # (B, 24, 3, 4)
        bottom = tf.broadcast_to(tf.constant([0.0, 0.0, 0.0, 1.0]), tf.concat([tf.shape(local)[:2], [1, 4]], 0))
        local = tf.concat([local, bottom], axis=2)
        chain = [local[:, 0]]
        for k in range(1, NUM_JOINTS):
            chain.append(tf.matmul(chain[parents[k]], local[:, k]))
        return tf.stack(chain, axis=1)

    def points41(self, vertices, joints):
        """The 41 SMPLR points (B, 41, 3): joints 1..23, then the 18 landmark vertices."""
        return tf.concat([joints[:, 1:], tf.gather(vertices, self.landmark_ids, axis=1)], axis=1)

    def compute_output_spec(self, rotations, shape):
        batch = rotations.shape[0]
        return (keras.KerasTensor((batch, self.num_vertices, 3)), keras.KerasTensor((batch, NUM_JOINTS, 3)))
