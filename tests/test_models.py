"""SHN, DAE, ShapeNet, PoseNet, SMPLR and Pipeline: the original's parameter counts,
wiring against direct computations, gradient flow and small overfit runs."""
import keras
from keras import ops
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

import smpl
from models import (DAE, SHN, SMPLR, Pipeline, PoseNet, ShapeNet, VoxelHeatmapLoss, dae_loss, pose_loss,
                    shape_loss, shapepose_loss, soft_argmax)
from models.smplr import nearest_rotation
from smpl import kinematics


def count_trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def assert_gradients_reach_every_variable(gradients, variables):
    for gradient, variable in zip(gradients, variables):
        assert gradient is not None, f"no gradient for {variable.path}"
        assert np.any(np.asarray(gradient) != 0), f"all-zero gradient for {variable.path}"


def train(model, inputs, target, loss_fn, steps, learning_rate):
    """Full-batch Adam steps in training mode; returns (first loss, last loss, first gradients)."""
    model(inputs, training=False)  # creates the variables
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True), target)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, gradients

    first, first_gradients = step()
    for _ in range(steps - 1):
        last, _ = step()
    return float(first), float(last), first_gradients


def random_body_models(seed=0, num_vertices=60):
    """A small random female/male SMPL-format pair (shares faces and landmark ids)."""
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, num_vertices, (20, 3))
    landmark_ids = rng.choice(num_vertices, kinematics.NUM_LANDMARKS, replace=False)

    def model(gender):
        regressor = rng.uniform(0.0, 1.0, (24, num_vertices))
        weights = rng.uniform(0.0, 1.0, (num_vertices, 24)) ** 4
        return smpl.SMPLModel(
            v_template=rng.normal(0.0, 0.4, (num_vertices, 3)), shapedirs=rng.normal(0.0, 0.01, (num_vertices, 3, 10)),
            posedirs=rng.normal(0.0, 0.01, (num_vertices, 3, 207)),
            J_regressor=regressor / regressor.sum(1, keepdims=True), weights=weights / weights.sum(1, keepdims=True),
            parents=kinematics.SMPL_PARENTS, faces=faces, landmark_ids=landmark_ids, gender=gender)
    return model("female"), model("male")


# ---------- parameter counts of the original ----------

def test_parameter_counts_equal_the_original():
    shn = SHN()
    shn.build((None, 256, 256, 3))
    dae, shape_net, pose_net = DAE(), ShapeNet(), PoseNet()
    dae(np.zeros((2, 123), np.float32))
    shape_net(np.zeros((2, 41), np.float32))
    pose_net(np.zeros((2, 123), np.float32))
    assert count_trainable(shn) == 16_475_456
    assert count_trainable(dae) == 3_411_579
    assert count_trainable(shape_net) == 2_485_779
    assert count_trainable(pose_net) == 2_768_392
    # SHN batch norm: learned offset, no learned scale; the MLPs' batch norm has both.
    shn_norms = [layer for layer in shn._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert shn_norms and all(n.center and not n.scale and n.momentum == 0.9 and n.epsilon == 1e-5 for n in shn_norms)
    assert not any(getattr(layer, "use_bias", False) for layer in shn._flatten_layers()
                   if isinstance(layer, keras.layers.Conv2D))
    dae_norms = [layer for layer in dae._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(dae_norms) == 5 and all(n.center and n.scale for n in dae_norms)


# ---------- SHN ----------

def test_shn_overfits_two_samples_and_every_variable_gets_gradient():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 256, 256, 3)).astype(np.float32)
    points = (rng.uniform(-0.8, 0.8, (2, 41, 3))).astype(np.float32)
    shn = SHN(num_stacks=2, num_features=64)
    shn.build(images.shape)
    heatmap_loss = VoxelHeatmapLoss()
    logits = shn(images, training=False)
    assert logits.shape == (2, 2, 64, 64, 16, 45) and logits.dtype == tf.float32
    first, last, gradients = train(shn, images, points, lambda out, y: heatmap_loss(out, y)[0],
                                   steps=20, learning_rate=3e-3)
    assert_gradients_reach_every_variable(gradients, shn.trainable_variables)
    assert last <= 0.5 * first, (first, last)


def test_shn_mixed_precision_body_float32_logits():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(1, 256, 256, 3)).astype(np.float32)
    reference = SHN(num_stacks=1, num_features=16)
    expected = np.asarray(reference(images, training=False))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = SHN(num_stacks=1, num_features=16)
        mixed.build(images.shape)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    assert mixed.out_convs[0].compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    logits = mixed(images, training=False)
    assert logits.dtype == tf.float32
    np.testing.assert_allclose(np.asarray(logits), expected, atol=0.05 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(soft_argmax(logits[-1])), np.asarray(soft_argmax(expected[-1])),
                               atol=0.01)


def test_shn_rejects_wrong_image_size():
    with pytest.raises(ValueError, match=r"SHN: images must be \(B, 256, 256, 3\)"):
        SHN(num_stacks=1, num_features=16)(np.zeros((1, 128, 128, 3), np.float32))


# ---------- DAE, ShapeNet, PoseNet ----------

def test_dae_overfits_64_samples():
    # Body-like points: a mean pose plus low-dimensional variation, so the
    # coordinates the input dropout removes can be inferred from the others.
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    mean_pose = rng.uniform(-0.8, 0.8, (1, 123))
    clean = (mean_pose + rng.normal(size=(64, 6)) @ rng.normal(0.0, 0.05, (6, 123))).astype(np.float32)
    noisy = clean + rng.uniform(-0.03, 0.03, clean.shape).astype(np.float32)
    # A fresh DAE is the identity, so the first loss is the noise level; no
    # dropout here, so that the training-mode loss measures the fit alone.
    first, last, _ = train(DAE(dropout_rate=0.0), noisy, clean, dae_loss, steps=300, learning_rate=1e-3)
    assert abs(first - np.abs(noisy - clean).mean()) < 1e-6
    assert last < 0.35 * first, (first, last)


def test_fresh_dae_is_the_identity_in_both_modes():
    rng = np.random.default_rng(6)
    points = rng.normal(0.0, 0.4, (16, 123)).astype(np.float32)
    dae = DAE()
    np.testing.assert_array_equal(dae(points, training=False).numpy(), points)
    np.testing.assert_array_equal(dae(points, training=True).numpy(), points)  # dropout only feeds the residual


def test_shape_net_overfits_64_samples():
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    bones = rng.normal(0.0, 0.02, (64, 41)).astype(np.float32)
    shape = np.concatenate([rng.normal(0.0, 1.0, (64, 10)), rng.choice([-1.0, 1.0], (64, 1))], 1).astype(np.float32)
    first, last, _ = train(ShapeNet(), bones, shape, shape_loss, steps=100, learning_rate=1e-3)
    assert last < 0.1 * first, (first, last)


def test_pose_net_overfits_64_samples():
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    points = rng.uniform(-0.8, 0.8, (64, 41, 3)).astype(np.float32)
    normals = np.asarray(kinematics.normal_features(points))
    rotations = Rotation.random(64 * 24, random_state=4).as_matrix().reshape(64, 216).astype(np.float32)
    first, last, _ = train(PoseNet(), normals, rotations, pose_loss, steps=100, learning_rate=1e-3)
    assert last < 0.1 * first, (first, last)


@pytest.mark.parametrize("make, width", [(DAE, 123), (ShapeNet, 41), (PoseNet, 123)])
def test_mlp_gradients_reach_every_variable(make, width):
    # Inference-mode batch norm: in training mode the batch mean cancels the bias
    # of each fc that feeds a batch norm (true of the original too), so its
    # gradient is zero by construction.
    rng = np.random.default_rng(5)
    model = make()
    inputs = rng.normal(0.0, 0.3, (8, width)).astype(np.float32)
    model(inputs)
    if make is DAE:
        # A fresh DAE's residual layer is zero (identity start), which stops
        # the gradient to the layers before it until its first update.
        model.residual.kernel.assign(rng.normal(0.0, 0.05, model.residual.kernel.shape))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.abs(model(inputs, training=False) - 0.1))
    assert_gradients_reach_every_variable(tape.gradient(loss, model.trainable_variables), model.trainable_variables)


def test_dae_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"DAE: points must be \(B, 123\)"):
        DAE()(np.zeros((2, 41, 3), np.float32))


# ---------- SMPLR and the pipeline ----------

@pytest.fixture(scope="module")
def smpl_layer():
    female, male = random_body_models()
    return smpl.SMPL(female, male)


def np_features(points, template):
    """float64 reference of SPEC's bones and normals (B, 41), (B, 123)."""
    points = np.asarray(points, np.float64)
    nodes = np.concatenate([np.zeros((len(points), 1, 3)), points], axis=1)
    vectors = nodes[:, 1:] - nodes[:, kinematics.PARENTS[1:]]
    lengths = np.linalg.norm(vectors, axis=-1)
    return lengths - template[1:], (vectors / lengths[..., None]).reshape(len(points), 123)


def test_smplr_outputs_equal_direct_computation(smpl_layer):
    rng = np.random.default_rng(6)
    points = rng.uniform(-0.8, 0.8, (3, 41, 3)).astype(np.float32)
    smplr = SMPLR(smpl_layer)
    outputs = smplr(points)
    lean = smplr(points, return_vertices=False)  # before any training=True call moves the batch norm statistics

    # Bone template: mean female/male rest-pose bone lengths of the given models.
    lengths = []
    for model in (smpl_layer.female, smpl_layer.male):
        joints = model.J_regressor.astype(np.float64) @ model.v_template.astype(np.float64)
        rest = np.concatenate([joints[1:], model.v_template[model.landmark_ids]]) - joints[0]
        nodes = np.concatenate([np.zeros((1, 3)), rest])
        lengths.append(np.linalg.norm(nodes[1:] - nodes[kinematics.PARENTS[1:]], axis=-1))
    template = np.concatenate([[0.0], np.mean(lengths, axis=0)])
    np.testing.assert_allclose(smplr.bone_template, template, atol=1e-6)
    assert not any(v is smplr.bone_template for v in smplr.trainable_variables)

    bones, normals = np_features(points, template)
    np.testing.assert_allclose(np.asarray(outputs["shape"]),
                               np.asarray(smplr.shape_net(bones.astype(np.float32))), atol=1e-5)
    np.testing.assert_allclose(np.asarray(outputs["pose"]),
                               np.asarray(smplr.pose_net(normals.astype(np.float32))), atol=1e-5)
    # Inference poses SMPL with the nearest rotations (float64 SVD reference),
    # training with the raw matrices, as the original trained.
    raw = np.asarray(outputs["pose"], np.float64).reshape(3, 24, 3, 3)
    u, _, vt = np.linalg.svd(raw)
    d = np.sign(np.linalg.det(u @ vt))
    reference = u @ (np.eye(3) * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[..., None, :]) @ vt
    np.testing.assert_allclose(np.asarray(outputs["rotations"]), reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(np.asarray(outputs["rotations"], np.float64)), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(smplr(points, training=True, run_smpl=False)["rotations"]),
                                  np.asarray(smplr(points, training=True, run_smpl=False)["pose"]).reshape(3, 24, 3, 3))
    vertices, joints = smpl_layer(outputs["rotations"], outputs["shape"])
    np.testing.assert_allclose(np.asarray(outputs["vertices"]), np.asarray(vertices), atol=1e-6)
    np.testing.assert_allclose(np.asarray(outputs["joints"]), np.asarray(joints), atol=1e-6)
    expected_points = np.concatenate([np.asarray(joints)[:, 1:],
                                      np.asarray(vertices)[:, smpl_layer.female.landmark_ids]], axis=1)
    np.testing.assert_allclose(np.asarray(outputs["points"]), expected_points, atol=1e-6)
    assert set(smplr(points, run_smpl=False)) == {"shape", "pose", "rotations"}
    # Joints and landmarks only: no mesh (the default while training), the same points.
    assert "vertices" not in lean and "vertices" not in smplr(points, training=True)
    np.testing.assert_allclose(np.asarray(lean["points"]), np.asarray(outputs["points"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(lean["joints"]), np.asarray(outputs["joints"]), atol=1e-6)


def test_nearest_rotation_keeps_rotations_and_never_reflects():
    rotations = Rotation.random(50, random_state=8).as_matrix()
    np.testing.assert_allclose(np.asarray(nearest_rotation(rotations)), rotations, atol=1e-5)
    # A noisy rotation comes back to within the noise; a reflection to a proper rotation.
    noisy = rotations + np.random.default_rng(8).normal(0.0, 0.05, rotations.shape)
    angle = (Rotation.from_matrix(np.asarray(nearest_rotation(noisy), np.float64)).inv()
             * Rotation.from_matrix(rotations))
    assert np.degrees(angle.magnitude()).max() < 10.0
    reflected = rotations * np.array([1.0, 1.0, -1.0])
    np.testing.assert_allclose(np.linalg.det(np.asarray(nearest_rotation(reflected), np.float64)), 1.0, atol=1e-5)


def test_nearest_rotation_one_definition_for_keras_and_numpy():
    """models.smplr (keras.ops, float32) and training.metrics (NumPy, float64) project
    with the same function, and agree with a float64 SVD reference."""
    from smpl import transforms
    from training import metrics

    assert metrics.nearest_rotation is transforms.nearest_rotation
    matrices = np.random.default_rng(9).uniform(-1.0, 1.0, (40, 3, 3))
    u, _, vt = np.linalg.svd(matrices)
    d = np.sign(np.linalg.det(u @ vt))
    reference = u @ (np.eye(3) * np.stack([np.ones_like(d), np.ones_like(d), d], -1)[..., None, :]) @ vt
    evaluated = metrics.nearest_rotation(matrices)
    assert evaluated.dtype == np.float64
    np.testing.assert_allclose(evaluated, reference, atol=1e-12)
    np.testing.assert_allclose(np.asarray(nearest_rotation(matrices), np.float64), reference, atol=1e-5)


def test_along_chain_equals_hand_composed_transforms():
    from smpl.transforms import along_chain

    rotations = Rotation.random(2 * 24, random_state=3).as_matrix().reshape(2, 24, 3, 3)
    world = along_chain(rotations, kinematics.SMPL_PARENTS)
    # Left wrist (20): pelvis 0 -> spine1 3 -> spine2 6 -> spine3 9 -> collar 13 -> shoulder 16 -> elbow 18 -> 20.
    expected = np.eye(3)
    for joint in (0, 3, 6, 9, 13, 16, 18, 20):
        expected = expected @ rotations[1, joint]
    np.testing.assert_allclose(world[1, 20], expected, atol=1e-12)
    np.testing.assert_allclose(np.asarray(along_chain(ops.convert_to_tensor(rotations, "float32"),
                                                      kinematics.SMPL_PARENTS, xp=ops)), world, atol=1e-5)


def test_smplr_shapepose_gradients_reach_every_variable(smpl_layer):
    rng = np.random.default_rng(7)
    points = rng.uniform(-0.8, 0.8, (4, 41, 3)).astype(np.float32)
    smplr = SMPLR(smpl_layer)
    smplr(points)
    target_shape = rng.normal(size=(4, 11)).astype(np.float32)
    target_rotations = Rotation.random(96, random_state=7).as_matrix().reshape(4, 24, 3, 3).astype(np.float32)
    with tf.GradientTape() as tape:
        # inference-mode batch norm, see test_mlp_gradients_reach_every_variable
        terms = shapepose_loss(smplr(points, training=False), target_shape, target_rotations, points)
    assert len(smplr.trainable_variables) == len(smplr.shape_net.trainable_variables) + \
        len(smplr.pose_net.trainable_variables)
    assert_gradients_reach_every_variable(tape.gradient(terms["loss"], smplr.trainable_variables),
                                          smplr.trainable_variables)
    # the joints and landmarks terms alone reach both nets through the SMPL layer
    with tf.GradientTape() as tape:
        terms = shapepose_loss(smplr(points, training=False), target_shape, target_rotations, points)
        body_terms = terms["joints"] + terms["landmarks"]
    last_layers = [smplr.shape_net.final.kernel, smplr.pose_net.final.kernel]
    assert all(np.any(np.asarray(g) != 0) for g in tape.gradient(body_terms, last_layers))


def test_smplr_rejects_wrong_point_shape(smpl_layer):
    with pytest.raises(ValueError, match=r"SMPLR: points must be \(B, 41, 3\)"):
        SMPLR(smpl_layer)(np.zeros((2, 23, 3), np.float32))


def test_pipeline_chains_soft_argmax_dae_and_smplr(smpl_layer):
    rng = np.random.default_rng(8)
    images = rng.normal(size=(2, 256, 256, 3)).astype(np.float32)
    shn, dae, smplr = SHN(num_stacks=1, num_features=16), DAE(), SMPLR(smpl_layer)
    outputs = Pipeline(shn, dae, smplr)(images)
    shn_points = np.asarray(soft_argmax(shn(images)[-1]))
    np.testing.assert_allclose(np.asarray(outputs["shn_points"]), shn_points, atol=1e-6)
    dae_points = np.asarray(dae(shn_points.reshape(2, 123))).reshape(2, 41, 3)
    np.testing.assert_allclose(np.asarray(outputs["dae_points"]), dae_points, atol=1e-5)
    expected = smplr(dae_points)
    assert set(outputs) == {"shn_points", "dae_points", *expected}
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(outputs[key]), np.asarray(value), atol=1e-4, err_msg=key)
