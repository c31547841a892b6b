"""The smpl package on Keras' JAX backend, against TensorFlow and float64 NumPy.

The pytest process runs Keras on TensorFlow; one JAX subprocess (TensorFlow
blocked, as on the GPU machine) runs the SMPL layer on the same inputs and
writes its outputs to an npz. Checked: vertices and joints on JAX equal the
TF layer's and the float64 reference to float32 tolerance, for a model whose
female and male arrays all differ (pose blend shapes included) and for the
open body (skinning weights shared by both genders); for the former, the
layer inside `jax.jit` gives the same numbers and its gradients are finite
and equal TF's; bad input gives clear errors;
smpl, models and DataReader import without TensorFlow.
"""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.transform import Rotation

import smpl
from conftest import requires_jax, run_backend
from smpl.constants import NUM_POSE_FEATURES, SMPL_PARENTS
from test_smpl import lbs_reference

pytestmark = requires_jax

V = 300  # a small mesh keeps the float64 reference and the subprocess quick
BATCH = 6
GENDERS = np.array([-1.0, 1.0, 1.0, -1.0, 0.0, -0.5])  # 0.0 counts as male


def _random_model(gender, seed):
    """A SMPL-format model of V vertices whose every array differs between seeds."""
    rng = np.random.default_rng(seed)
    return smpl.SMPLModel(
        v_template=rng.normal(0.0, 0.3, (V, 3)).astype(np.float32),
        shapedirs=rng.normal(0.0, 0.01, (V, 3, 10)).astype(np.float32),
        posedirs=rng.normal(0.0, 0.005, (V, 3, NUM_POSE_FEATURES)).astype(np.float32),
        J_regressor=rng.dirichlet(np.ones(V) * 0.05, 24).astype(np.float32),
        weights=rng.dirichlet(np.ones(24) * 0.2, V).astype(np.float32),
        parents=SMPL_PARENTS.copy(), faces=np.arange(3 * 100).reshape(100, 3).astype(np.int32) % V,
        landmark_ids=np.arange(18, dtype=np.int64) * 7, gender=gender)


def _arrays(model):
    """The model in the form `lbs_reference` takes, in float64."""
    return {name: getattr(model, name).astype(np.float64)
            for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")}


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """Inputs, the models' paths and the JAX subprocess's outputs (dict of arrays)."""
    folder = tmp_path_factory.mktemp("smpl_backends")
    female, male = _random_model("female", 1), _random_model("male", 2)
    smpl.save_npz(female, folder / "female.npz")
    smpl.save_npz(male, folder / "male.npz")
    rng = np.random.default_rng(7)
    rotations = Rotation.random(BATCH * 24, random_state=3).as_matrix().reshape(BATCH, 24, 3, 3)
    shape = np.concatenate([rng.normal(0.0, 1.0, (BATCH, 10)), GENDERS[:, None]], axis=1)
    axis_angle = np.concatenate([rng.normal(0.0, 1.5, (50, 3)), np.zeros((1, 3)), 1e-5 * rng.normal(size=(3, 3))])
    np.savez(folder / "inputs.npz", rotations=rotations.astype(np.float32), shape=shape.astype(np.float32),
             axis_angle=axis_angle.astype(np.float32))

    run_backend("jax", f"""
        import jax, jax.numpy as jnp, keras, numpy as np
        import smpl
        assert keras.backend.backend() == "jax"
        d = {str(folder)!r}
        x = np.load(d + "/inputs.npz")
        out = {{}}
        loss = lambda layer, r, s: sum(jnp.sum(jnp.square(o)) for o in layer(r, s))
        for name, paths in (("open", smpl.find_models()), ("random", (d + "/female.npz", d + "/male.npz"))):
            layer = smpl.SMPL(*paths)
            v, j = layer(x["rotations"], x["shape"])
            out[name + "_vertices"], out[name + "_joints"] = np.asarray(v), np.asarray(j)
            out[name + "_points"] = np.asarray(layer.points41(v, j))
            body = layer.forward(x["rotations"], x["shape"], return_vertices=False)  # landmark rows only
            assert body.vertices is None
            out[name + "_lean_joints"], out[name + "_lean_points"] = np.asarray(body.joints), np.asarray(body.points)
        lean = jax.jit(lambda r, s: layer.forward(r, s, return_vertices=False).points)
        out["jit_lean_points"] = np.asarray(lean(x["rotations"], x["shape"]))
        # The random model (every array differs by gender) also inside jax.jit and differentiated.
        v, j = jax.jit(lambda r, s: layer(r, s))(x["rotations"], x["shape"])
        out["jit_vertices"], out["jit_joints"] = np.asarray(v), np.asarray(j)
        grads = jax.jit(jax.grad(lambda r, s: loss(layer, r, s), argnums=(0, 1)))(x["rotations"], x["shape"])
        out["grad_rotations"], out["grad_shape"] = (np.asarray(g) for g in grads)
        out["rodrigues"] = np.asarray(smpl.rodrigues(x["axis_angle"]))
        out["rodrigues_grad_at_zero"] = np.asarray(jax.grad(
            lambda a: jnp.sum(smpl.rodrigues(a) * jnp.arange(9.0).reshape(3, 3)))(jnp.zeros((1, 3))))
        errors = []
        bad = np.array(x["shape"]); bad[1, 3] = np.nan
        for args in ((x["rotations"], bad), (x["rotations"], x["shape"][:, :10]), (x["rotations"][:, :23], x["shape"])):
            try:
                layer(*args)
                errors.append("no error")
            except ValueError as e:
                errors.append(str(e))
        try:  # inside jit the shape check still runs (shapes are static)
            jax.jit(lambda r, s: layer(r, s))(x["rotations"], x["shape"][:, :10])
            errors.append("no error")
        except ValueError as e:
            errors.append(str(e))
        out["errors"] = np.array(errors)
        np.savez(d + "/jax.npz", **out)
    """)
    models = {"random": (female, male, folder / "female.npz", folder / "male.npz"),
              "open": tuple(smpl.load_model(p) for p in smpl.find_models()) + smpl.find_models()}
    return dict(np.load(folder / "inputs.npz")), models, dict(np.load(folder / "jax.npz"))


@pytest.mark.parametrize("body", ["random", "open"])
def test_jax_layer_equals_float64_reference_and_tf(jax_run, body):
    inputs, models, jax_out = jax_run
    female, male, f_path, m_path = models[body]
    rotations, shape = inputs["rotations"].astype(np.float64), inputs["shape"].astype(np.float64)
    for b in range(BATCH):
        model = male if GENDERS[b] >= 0 else female
        ref_v, ref_j = lbs_reference(_arrays(model), rotations[b], shape[b, :10])
        np.testing.assert_allclose(jax_out[f"{body}_vertices"][b], ref_v, atol=1e-5, err_msg=f"sample {b}")
        np.testing.assert_allclose(jax_out[f"{body}_joints"][b], ref_j, atol=1e-5, err_msg=f"sample {b}")
    layer = smpl.SMPL(f_path, m_path)
    tf_v, tf_j = (o.numpy() for o in layer(tf.constant(inputs["rotations"]), tf.constant(inputs["shape"])))
    np.testing.assert_allclose(jax_out[f"{body}_vertices"], tf_v, atol=1e-5)
    np.testing.assert_allclose(jax_out[f"{body}_joints"], tf_j, atol=1e-5)
    points = jax_out[f"{body}_points"]
    np.testing.assert_array_equal(points[:, :23], jax_out[f"{body}_joints"][:, 1:])
    np.testing.assert_array_equal(points[:, 23:], jax_out[f"{body}_vertices"][:, female.landmark_ids])


@pytest.mark.parametrize("body", ["random", "open"])
def test_jax_joints_and_landmarks_only_equal_the_whole_mesh(jax_run, body):
    _, _, jax_out = jax_run
    np.testing.assert_allclose(jax_out[f"{body}_lean_joints"], jax_out[f"{body}_joints"], atol=1e-6)
    np.testing.assert_allclose(jax_out[f"{body}_lean_points"], jax_out[f"{body}_points"], atol=1e-6)
    if body == "random":
        np.testing.assert_allclose(jax_out["jit_lean_points"], jax_out["random_points"], atol=1e-6)


def test_jax_jit_and_gradients_equal_tf(jax_run):
    inputs, models, jax_out = jax_run
    np.testing.assert_allclose(jax_out["jit_vertices"], jax_out["random_vertices"], atol=1e-6)
    np.testing.assert_allclose(jax_out["jit_joints"], jax_out["random_joints"], atol=1e-6)
    layer = smpl.SMPL(models["random"][2], models["random"][3])
    rotations, shape = tf.constant(inputs["rotations"]), tf.constant(inputs["shape"])
    with tf.GradientTape() as tape:
        tape.watch([rotations, shape])
        loss = sum(tf.reduce_sum(tf.square(o)) for o in layer(rotations, shape))
    tf_grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, [rotations, shape])]
    for name, tf_grad in zip(("rotations", "shape"), tf_grads):
        grad = jax_out[f"grad_{name}"]
        assert np.all(np.isfinite(grad)), name
        np.testing.assert_allclose(grad, tf_grad, rtol=1e-3, atol=1e-3 * np.abs(tf_grad).max(), err_msg=name)
    # Every sample's betas receive a gradient: the female and the male path are both live.
    assert np.all(np.abs(jax_out["grad_shape"][:, :10]).max(axis=1) > 1e-6)


def test_jax_rodrigues_matches_scipy_and_is_stable_at_zero(jax_run):
    inputs, _, jax_out = jax_run
    np.testing.assert_allclose(jax_out["rodrigues"], Rotation.from_rotvec(inputs["axis_angle"]).as_matrix(),
                               atol=2e-6)
    grad = jax_out["rodrigues_grad_at_zero"]
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_jax_bad_inputs_raise_clear_errors(jax_run):
    errors = list(jax_run[2]["errors"])
    assert "SMPL layer: shape contains NaN or Inf" in errors[0]
    assert "shape must be (B, 11)" in errors[1]
    assert "rotations must be (B, 24, 3, 3)" in errors[2]
    assert "shape must be (B, 11)" in errors[3]


def test_packages_import_without_tensorflow():
    run_backend("jax", """
        import sys
        import smpl.constants
        from smpl.constants import NUM_POINTS
        assert NUM_POINTS == 41
        assert "keras" not in sys.modules, "importing smpl.constants pulled in Keras"
        import smpl, models, DataReader, DataReader.synthesize
        assert smpl.kinematics.NUM_POINTS == DataReader.cloth3d.NUM_POINTS == 41
        assert "tensorflow" not in sys.modules or sys.modules["tensorflow"] is None
    """)
