"""SMPLR: bone features -> shape and pose nets -> the SMPL layer.

ShapeNet: bones (B, 41) -> shape (B, 11) = 10 betas + gender value.
PoseNet: normals (B, 123) -> pose (B, 216) = 24 flattened 3x3 rotation matrices (tanh).
SMPLR: points (B, 41, 3) -> both nets -> SMPL mesh and joints, end to end.

Both nets share one architecture (`TrunkAndSideBranch`): a trunk of fc 1024,
1024, 512, 512, 512 (= e41), 256, 256 -> a linear head; a side branch
e41 -> fc 256 -> a linear head of the same size; the heads concatenated ->
a final fc. Hidden layers are fc + batch norm (offset and scale) + ELU.
"""
from typing import Any

import keras
import numpy as np
from keras import ops

from smpl import kinematics
from smpl import transforms
from smpl.constants import NUM_JOINTS, NUM_SHAPE

from .dae import DenseBatchNormELU, dense

TRUNK_UNITS = (1024, 1024, 512, 512, 512, 256, 256)
#: Index in TRUNK_UNITS of the layer (e41) the side branch starts from.
SIDE_BRANCH_FROM = 4
SIDE_BRANCH_UNITS = 256
NUM_POSE = NUM_JOINTS * 9  # 24 row-major 3x3 rotation matrices


class TrunkAndSideBranch(keras.Model):
    """features (B, input_size) -> (B, output_size), the SMPLR nets' shared architecture.

    final_activation: None (linear) or a Keras activation name applied to the final fc.
    """

    def __init__(self, input_size, output_size, final_activation=None, **kwargs):
        super().__init__(**kwargs)
        self.input_size, self.output_size = int(input_size), int(output_size)
        self.final_activation = final_activation
        self.trunk = [DenseBatchNormELU(units, name=f"trunk_{i}") for i, units in enumerate(TRUNK_UNITS)]
        self.trunk_head = dense(self.output_size, name="trunk_head")
        self.side = DenseBatchNormELU(SIDE_BRANCH_UNITS, name="side")
        self.side_head = dense(self.output_size, name="side_head")
        self.final = dense(self.output_size, activation=final_activation, name="final")

    def call(self, features, training=False):
        if len(features.shape) != 2 or features.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: features must be (B, {self.input_size}), "
                             f"got {tuple(features.shape)}")
        x = features
        for i, layer in enumerate(self.trunk):
            x = layer(x, training=training)
            if i == SIDE_BRANCH_FROM:
                branch = x
        side = self.side_head(self.side(branch, training=training))
        return self.final(ops.concatenate([self.trunk_head(x), side], axis=-1))


class ShapeNet(TrunkAndSideBranch):
    """Bone features (B, 41) in metres -> shape (B, 11): 10 betas + gender value (linear output)."""

    def __init__(self, **kwargs):
        super().__init__(kinematics.NUM_POINTS, NUM_SHAPE, final_activation=None, **kwargs)


class PoseNet(TrunkAndSideBranch):
    """Bone directions (B, 123) -> pose (B, 216): 24 row-major 3x3 rotation matrices, tanh output."""

    def __init__(self, **kwargs):
        super().__init__(3 * kinematics.NUM_POINTS, NUM_POSE, final_activation="tanh", **kwargs)


def nearest_rotation(matrices: Any) -> Any:
    """The rotation nearest (Frobenius) to each 3x3 matrix, float32 backend tensors
    (..., 3, 3) -> (..., 3, 3): `smpl.transforms.nearest_rotation` on `keras.ops`."""
    return transforms.nearest_rotation(matrices, xp=ops)


class SMPLR(keras.Model):
    """points (B, 41, 3) root-relative, metres -> dict of SMPL parameters and the body they give.

    smpl_layer: an `smpl.SMPL` layer; its female and male models give the bone
    template (`kinematics.bone_template`), kept as a constant (42,) float32.
    Outputs: 'shape' (B, 11), 'pose' (B, 216), 'rotations' (B, 24, 3, 3),
    'joints' (B, 24, 3), 'vertices' (B, V, 3), 'points' (B, 41, 3) = SMPL
    joints 1..23 then the landmark vertices; all root-centred, metres.
    `run_smpl=False` skips the body model (the shape and pose stages train the
    nets alone) and returns only 'shape', 'pose' and 'rotations'.
    `return_vertices=False` skins only the joints and the 18 landmark vertices
    (`smpl.SMPL.forward`) and leaves 'vertices' out; the default (None) keeps
    the mesh at inference and skips it while training, where the loss reads
    the points only.

    'rotations' are the pose net's matrices as they are while training (as the
    original, which trained through SMPL with them) and their nearest
    rotations at inference (`nearest_rotation`; beyond the original, whose
    test posed SMPL with the raw matrices), so evaluated bodies are valid
    SMPL bodies.
    """

    def __init__(self, smpl_layer, **kwargs):
        super().__init__(**kwargs)
        self.smpl_layer = smpl_layer
        self.bone_template = np.asarray(kinematics.bone_template(smpl_layer.female, smpl_layer.male), np.float32)
        self.shape_net = ShapeNet(name="shape")
        self.pose_net = PoseNet(name="pose")

    def build(self, input_shape):
        # The two nets build on their first call (their input sizes are fixed:
        # 41 bone lengths, 123 bone directions); the SMPL layer holds constants.
        # Without this, Keras warns that it marks the model built unbuilt.
        self.built = True

    def features(self, points: Any) -> tuple[Any, Any]:
        """Shape-net bones (B, 41) and pose-net normals (B, 123) of points (B, 41, 3)."""
        return (kinematics.bone_features(points, self.bone_template), kinematics.normal_features(points))

    def call(self, points, training=False, run_smpl=True, return_vertices=None):
        points = ops.convert_to_tensor(points, dtype="float32")
        if len(points.shape) == 2 and points.shape[-1] == 3 * kinematics.NUM_POINTS:
            points = ops.reshape(points, (-1, kinematics.NUM_POINTS, 3))
        if len(points.shape) != 3 or tuple(points.shape[1:]) != (kinematics.NUM_POINTS, 3):
            raise ValueError(f"SMPLR: points must be (B, {kinematics.NUM_POINTS}, 3) in metres, "
                             f"got {tuple(points.shape)}")
        bones, normals = self.features(points)
        shape = self.shape_net(bones, training=training)
        pose = self.pose_net(normals, training=training)
        rotations = ops.reshape(pose, (-1, kinematics.NUM_JOINTS, 3, 3))
        if not training:
            rotations = nearest_rotation(rotations)
        outputs = {"shape": shape, "pose": pose, "rotations": rotations}
        if run_smpl:
            body = self.smpl_layer.forward(rotations, shape,
                                           return_vertices=not training if return_vertices is None else return_vertices)
            outputs.update(joints=body.joints, points=body.points)
            if body.vertices is not None:
                outputs["vertices"] = body.vertices
        return outputs
