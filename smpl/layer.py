"""The SMPL body model as a Keras layer (gender-aware, vectorised over the batch).

Linear blend skinning, as in SMPL v1.0 (Loper et al. 2015):

    v_shaped = v_template + shapedirs . betas
    J        = J_regressor . v_shaped
    v_posed  = v_shaped + posedirs . (R[1:] - I)
    G_k      = G_parent(k) . [R_k | J_k - J_parent(k)]     (world transform per joint)
    v        = sum_k weights[:, k] * (G_k - [0 | G_k^R J_k]) . v_posed

Written in `keras.ops`, so it runs on TensorFlow and on JAX. Every sample
picks the female or the male model by its gender value, in one of two ways
that give the same numbers:

- JAX (and any backend but TensorFlow): `stacked_by_gender`, fixed shapes
  as `jax.jit` needs. Both models' arrays are stacked, and each sample's
  inputs (betas, pose feature, skinning transforms) are copied once per model
  and scaled by the sample's one-hot gender, so one matrix product per step
  applies the right model to every sample: no branch, no per-sample copy of
  model arrays, twice one model's multiply-adds for the arrays the genders
  do not share (an array both models hold identically, like the open body's
  skinning weights, is kept once). On JAX it runs as one `jax.jit` program
  even when the layer is called eagerly.
- TensorFlow: `split_by_gender_tf` partitions the batch by gender
  (`tf.dynamic_partition`), runs each part with its own model and stitches
  the parts back in order, so each sample's blend shapes are computed once.
"""
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import keras
from keras import ops

from .constants import NUM_BETAS, NUM_JOINTS, NUM_SHAPE
from .io import SMPLModel, load_model
from .transforms import along_chain

#: A backend tensor, or anything `keras.ops` converts to one (NumPy arrays).
Tensor = Any


def rodrigues(axis_angle: Tensor) -> Tensor:
    """Axis-angle vectors (..., 3) in radians -> rotation matrices (..., 3, 3).

    R = I + a K + b K^2 with K the cross-product matrix of the (unnormalised)
    vector, a = sin(t)/t, b = (1 - cos t)/t^2; a Taylor series near t = 0 keeps
    values and gradients finite at zero angle. Accepts NumPy arrays or backend
    tensors; returns a float32 backend tensor.
    """
    axis_angle = ops.cast(ops.convert_to_tensor(axis_angle), "float32")
    angle_sq = ops.sum(ops.square(axis_angle), axis=-1)[..., None, None]
    small = angle_sq < 1e-6
    safe_sq = ops.where(small, ops.ones_like(angle_sq), angle_sq)
    angle = ops.sqrt(safe_sq)
    a = ops.where(small, 1.0 - angle_sq / 6.0, ops.sin(angle) / angle)
    b = ops.where(small, 0.5 - angle_sq / 24.0, (1.0 - ops.cos(angle)) / safe_sq)
    x, y, z = axis_angle[..., 0], axis_angle[..., 1], axis_angle[..., 2]
    zero = ops.zeros_like(x)
    k = ops.stack([ops.stack([zero, -z, y], axis=-1),
                   ops.stack([z, zero, -x], axis=-1),
                   ops.stack([-y, x, zero], axis=-1)], axis=-2)
    return ops.eye(3, dtype="float32") + a * k + b * ops.matmul(k, k)


def linear_blend_skinning(rotations: Tensor, betas: Tensor, model: dict, parents: Sequence[int],
                          model_weights: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """SMPL vertices and joints for a batch, with one or two body models in `model`.

    rotations (B, 24, 3, 3), betas (B, 10). `model` is a dict of float32
    arrays laid out coordinate-first (V last) so the per-vertex steps run over
    contiguous rows: v_template (G, 3*V), shapedirs (G*10, 3*V), posedirs
    (G*207, 3*V) or None (no pose blend shapes), joint_template (G, 72) =
    J_regressor . v_template, joint_shapedirs (G*10, 72) = J_regressor .
    shapedirs (the regression is linear, so rest joints come from the betas
    directly), weights (G*24, V). Each array stacks its G models along the
    first axis; G may differ per array (G = 1: one array all models share).
    model_weights (B, G) says how much of each model a sample uses (one-hot:
    the sample's gender); None when every array has G = 1.

    Returns vertices (B, V, 3) and joints (B, 24, 3) in metres, in the
    model's frame (not root-centred).
    """
    batch = ops.shape(rotations)[0]
    num_vertices = model["weights"].shape[1]

    def times(x, matrix):
        """x (B, ..., K) @ matrix (G*K, N): x copied once per model and scaled by the sample's
        weight for that model, so each sample meets its own model's rows."""
        if matrix.shape[0] != x.shape[-1]:
            w = ops.reshape(model_weights, (batch,) + (1,) * (len(x.shape) - 2) + (-1, 1))
            x = ops.reshape(w * ops.expand_dims(x, -2), tuple(ops.shape(x)[:-1]) + (-1,))
        return ops.matmul(x, matrix)

    def own(template):
        """(G, K) -> each sample's template (B, K), or (1, K) to broadcast when G = 1."""
        return template if template.shape[0] == 1 else ops.matmul(model_weights, template)

    v_shaped = own(model["v_template"]) + times(betas, model["shapedirs"])
    rest_joints = ops.reshape(own(model["joint_template"]) + times(betas, model["joint_shapedirs"]),
                              (batch, NUM_JOINTS, 3))
    v_posed = v_shaped
    if model["posedirs"] is not None:
        pose_feature = ops.reshape(rotations[:, 1:] - ops.eye(3, dtype="float32"), (batch, 9 * (NUM_JOINTS - 1)))
        v_posed = v_posed + times(pose_feature, model["posedirs"])
    v_posed = ops.reshape(v_posed, (batch, 3, num_vertices))

    world_rotations, posed_joints = world_transforms(rotations, rest_joints, parents)
    # Skinning transforms G_k [I | -J_k] as (B, 12, 24): row 4i + c is entry (i, c) of the 3x4 matrix.
    offset = posed_joints - ops.sum(world_rotations * rest_joints[:, :, None, :], axis=-1)
    skin = ops.concatenate([world_rotations, offset[..., None]], axis=-1)  # (B, 24, 3, 4)
    skin = ops.reshape(ops.transpose(skin, (0, 2, 3, 1)), (batch, 12, NUM_JOINTS))
    per_vertex = times(skin, model["weights"])  # (B, 12, V)
    x, y, z = v_posed[:, 0], v_posed[:, 1], v_posed[:, 2]
    vertices = ops.stack([per_vertex[:, 4 * i] * x + per_vertex[:, 4 * i + 1] * y
                          + per_vertex[:, 4 * i + 2] * z + per_vertex[:, 4 * i + 3] for i in range(3)], axis=-1)
    return vertices, posed_joints


def world_transforms(rotations: Tensor, rest_joints: Tensor, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """World rotations (B, 24, 3, 3) and positions (B, 24, 3) of the joints along
    the kinematic chain (4x4 transforms, the chain unrolled at trace time).

    rotations (B, 24, 3, 3) are relative to each joint's parent; rest_joints
    (B, 24, 3) in metres; parents a sequence of 24 ints (-1 for the root).
    """
    parent_joints = ops.take(rest_joints, [max(p, 0) for p in parents], axis=1)
    bones = ops.concatenate([rest_joints[:, :1], (rest_joints - parent_joints)[:, 1:]], axis=1)
    local = ops.concatenate([rotations, bones[..., None]], axis=-1)  # (B, 24, 3, 4)
    homogeneous_row = np.zeros((4, 4), np.float32)
    homogeneous_row[3, 3] = 1.0
    local = ops.pad(local, [[0, 0], [0, 0], [0, 1], [0, 0]]) + homogeneous_row  # (B, 24, 4, 4)
    world = along_chain(local, parents, xp=ops)
    return world[:, :, :3, :3], world[:, :, :3, 3]


def stacked_by_gender(rotations: Tensor, shape: Tensor, models: dict, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Fixed shapes: `linear_blend_skinning` with both models stacked in
    `models` (see `SMPL._stack`), each sample weighted onto the model its
    gender value picks (male where shape[:, 10] >= 0). shape (B, 11)."""
    male = ops.cast(shape[:, NUM_BETAS] >= 0.0, "float32")[:, None]
    return linear_blend_skinning(rotations, shape[:, :NUM_BETAS], models, parents,
                                 model_weights=ops.concatenate([1.0 - male, male], axis=1))


def split_by_gender_tf(rotations: Tensor, shape: Tensor, models: Sequence[dict],
                       parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """TensorFlow only: `linear_blend_skinning` on the female and the male part
    of the batch with their own model (`models` = [female, male], G = 1 each),
    stitched back in the batch's order. shape (B, 11), male where shape[:, 10] >= 0."""
    import tensorflow as tf

    is_male = tf.cast(shape[:, NUM_BETAS] >= 0.0, tf.int32)
    indices = tf.dynamic_partition(tf.range(tf.shape(is_male)[0]), is_male, 2)
    vertices, joints = [], []
    for gender, model in enumerate(models):
        v, j = linear_blend_skinning(tf.gather(rotations, indices[gender]),
                                     tf.gather(shape[:, :NUM_BETAS], indices[gender]), model, parents)
        vertices.append(v)
        joints.append(j)
    return tf.dynamic_stitch(indices, vertices), tf.dynamic_stitch(indices, joints)


class Body(NamedTuple):
    """Named outputs of `SMPL.forward`, root-centred, metres.

    vertices (B, V, 3), or None when the mesh was skipped; joints (B, 24, 3);
    points (B, 41, 3) = joints 1..23 then the 18 landmark vertices.
    """
    vertices: Optional[object]
    joints: object
    points: object


class SMPL(keras.layers.Layer):
    """vertices (B,V,3), joints (B,24,3) = SMPL(female, male)(rotations, shape).

    `forward(rotations, shape, return_vertices=True)` gives the named `Body`
    (vertices, joints and the 41 SMPLR points); `return_vertices=False`
    skins only the 18 landmark vertices (their rows of every model array),
    for callers that need the joints and landmarks, not the mesh.

    rotations: (B, 24, 3, 3) float32 rotation matrices (joint 0 = global).
    shape: (B, 11) float32 = 10 betas + a gender value (male where >= 0).
    Outputs are in metres with joint 0 moved to the origin. `female` and
    `male` are `SMPLModel`s or paths to model files, of the same mesh topology.

    Wrong shapes raise ValueError on every backend. With `check_inputs`,
    NaN or Inf in the inputs raise too: `tf.errors.InvalidArgumentError` on
    TensorFlow (eager or inside `tf.function`), ValueError on JAX when the
    inputs are concrete arrays; inside `jax.jit` the values are not known, so
    the finite check is skipped there.
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
        self._split_by_gender = keras.backend.backend() == "tensorflow"
        arrays = [self._model_arrays(female), self._model_arrays(male)]
        landmark_arrays = [self._vertex_rows(a, self.landmark_ids) for a in arrays]
        if self._split_by_gender:
            self._models = [self._as_tensors(a) for a in arrays]
            self._landmark_models = [self._as_tensors(a) for a in landmark_arrays]
            self._skin = split_by_gender_tf
        else:
            self._models = self._as_tensors(self._stack(*arrays))
            self._landmark_models = self._as_tensors(self._stack(*landmark_arrays))
            self._skin = stacked_by_gender
            if keras.backend.backend() == "jax":
                # One compiled program instead of a few hundred dispatched ops when called
                # eagerly; the model arrays are arguments, not constants baked into it.
                import jax
                self._skin = jax.jit(stacked_by_gender, static_argnums=3)

    @staticmethod
    def _stack(female, male):
        """Both models' arrays stacked along the first axis (G = 2), except arrays
        the two models hold identically (e.g. skinning weights), kept once (G = 1)."""
        if (female["posedirs"] is None) != (male["posedirs"] is None):  # zeros stand in for the missing ones
            size = (female["posedirs"] if male["posedirs"] is None else male["posedirs"]).shape
            female, male = ({**a, "posedirs": np.zeros(size, np.float32) if a["posedirs"] is None else a["posedirs"]}
                            for a in (female, male))
        return {name: female[name] if female[name] is None or np.array_equal(female[name], male[name])
                else np.concatenate([female[name], male[name]]) for name in female}

    @staticmethod
    def _model_arrays(model):
        """One model's arrays in the layout `linear_blend_skinning` takes (G = 1), float32 NumPy."""
        def coordinate_first(dirs):  # (V, 3, K) -> (K, 3*V)
            return np.transpose(dirs, (2, 1, 0)).reshape(dirs.shape[2], -1).astype(np.float32)

        regressor = model.J_regressor.astype(np.float64)
        joint_shapedirs = np.einsum("jv,vck->kjc", regressor, model.shapedirs)  # (10, 24, 3)
        return {"v_template": model.v_template.T.reshape(1, -1).astype(np.float32),
                "shapedirs": coordinate_first(model.shapedirs),
                "posedirs": coordinate_first(model.posedirs) if np.any(model.posedirs) else None,
                "joint_template": (regressor @ model.v_template).reshape(1, -1).astype(np.float32),
                "joint_shapedirs": joint_shapedirs.reshape(NUM_BETAS, -1).astype(np.float32),
                "weights": model.weights.T.astype(np.float32)}

    @staticmethod
    def _vertex_rows(arrays, vertex_ids):
        """One model's arrays (`_model_arrays` layout) cut to the vertices `vertex_ids`
        (in that order); the joint arrays are kept whole."""
        num_vertices = arrays["weights"].shape[1]
        columns = (np.arange(3)[:, None] * num_vertices + np.asarray(vertex_ids)[None]).ravel()  # c * V + v
        cut = {name: arrays[name] if arrays[name] is None else np.ascontiguousarray(arrays[name][:, columns])
               for name in ("v_template", "shapedirs", "posedirs")}
        return {**arrays, **cut, "weights": np.ascontiguousarray(arrays["weights"][:, vertex_ids])}

    @staticmethod
    def _as_tensors(arrays):
        return {name: None if value is None else ops.convert_to_tensor(value, "float32")
                for name, value in arrays.items()}

    def _check(self, rotations, shape):
        if len(rotations.shape) != 4 or tuple(rotations.shape[1:]) != (NUM_JOINTS, 3, 3):
            raise ValueError(f"SMPL layer: rotations must be (B, 24, 3, 3), got {tuple(rotations.shape)}")
        if len(shape.shape) != 2 or shape.shape[1] != NUM_SHAPE:
            raise ValueError(f"SMPL layer: shape must be (B, 11) = 10 betas + gender, got {tuple(shape.shape)}")
        if not self.check_inputs:
            return
        if self._split_by_gender:
            import tensorflow as tf

            tf.debugging.assert_all_finite(rotations, "SMPL layer: rotations contain NaN or Inf")
            tf.debugging.assert_all_finite(shape, "SMPL layer: shape contains NaN or Inf")
            return
        if keras.backend.backend() == "jax":
            import jax

            if isinstance(rotations, jax.core.Tracer) or isinstance(shape, jax.core.Tracer):
                return  # inside jax.jit: the values are not known while tracing
        for name, value in (("rotations contain", rotations), ("shape contains", shape)):
            if not np.all(np.isfinite(ops.convert_to_numpy(value))):
                raise ValueError(f"SMPL layer: {name} NaN or Inf")

    def _root_centred(self, rotations, shape, models):
        """Skinned vertices of `models` (all, or the landmark rows) and the joints, root-centred."""
        rotations = ops.cast(ops.convert_to_tensor(rotations), "float32")
        shape = ops.cast(ops.convert_to_tensor(shape), "float32")
        self._check(rotations, shape)
        models = list(models) if self._split_by_gender else dict(models)  # plain, not Keras-tracked
        vertices, joints = self._skin(rotations, shape, models, tuple(self.parents))
        root = joints[:, :1]
        return vertices - root, joints - root

    def call(self, rotations, shape):
        return self._root_centred(rotations, shape, self._models)

    def forward(self, rotations: Tensor, shape: Tensor, return_vertices: bool = True) -> Body:
        """`Body`(vertices, joints, points) of rotations (B, 24, 3, 3) and shape (B, 11).

        return_vertices=False skins only the 18 landmark vertices (`vertices`
        is None); joints and points are the same as with the whole mesh.
        """
        if return_vertices:
            vertices, joints = self._root_centred(rotations, shape, self._models)
            return Body(vertices, joints, self.points41(vertices, joints))
        landmarks, joints = self._root_centred(rotations, shape, self._landmark_models)
        return Body(None, joints, ops.concatenate([joints[:, 1:], landmarks], axis=1))

    def points41(self, vertices: Tensor, joints: Tensor) -> Tensor:
        """The 41 SMPLR points (B, 41, 3): joints 1..23, then the 18 landmark vertices."""
        return ops.concatenate([joints[:, 1:], ops.take(vertices, self.landmark_ids, axis=1)], axis=1)

    def compute_output_spec(self, rotations, shape):
        batch = rotations.shape[0]
        return (keras.KerasTensor((batch, self.num_vertices, 3)), keras.KerasTensor((batch, NUM_JOINTS, 3)))
