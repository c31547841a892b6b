"""The smpl package against independent references: a float64 NumPy linear
blend skinning written here, scipy's rotations, and the real CLOTH3D++ data."""
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import tensorflow as tf
from scipy.spatial.transform import Rotation

import smpl
from smpl import kinematics

V = 6890  # the official SMPL mesh size


# ----------------------------------------------------------------------------
# A random SMPL-format model saved the way the official files are: a pickle of
# chumpy objects and a scipy sparse J_regressor.

class _FakeCh:
    """Pickles like chumpy.ch.Ch: a reconstructor of class chumpy.ch.Ch and a state dict holding 'x'."""

    def __init__(self, x):
        self.x = x

    def __getstate__(self):
        return {"x": self.x, "_dirty_vars": set(), "_itr": None}


def _random_model_arrays(seed, num_betas=10):
    rng = np.random.default_rng(seed)
    v_template = rng.normal(0.0, 0.3, (V, 3))
    shapedirs = rng.normal(0.0, 0.01, (V, 3, num_betas))
    posedirs = rng.normal(0.0, 0.005, (V, 3, 207))
    regressor = np.zeros((24, V))
    for j in range(24):
        ids = rng.choice(V, 12, replace=False)
        w = rng.random(12)
        regressor[j, ids] = w / w.sum()
    weights = np.zeros((V, 24))
    for v in range(V):
        ids = rng.choice(24, 3, replace=False)
        weights[v, ids] = rng.dirichlet(np.ones(3))
    faces = rng.integers(0, V, (13776, 3))
    kintree = np.stack([np.where(kinematics.SMPL_PARENTS < 0, 2 ** 32 - 1, kinematics.SMPL_PARENTS),
                        np.arange(24)]).astype(np.int64)
    return dict(v_template=v_template, shapedirs=shapedirs, posedirs=posedirs,
                J_regressor=regressor, weights=weights, f=faces, kintree_table=kintree)


def _write_chumpy_pickle(arrays, path):
    """Saves `arrays` like an official SMPL pickle, with a fake chumpy module."""
    chumpy = types.ModuleType("chumpy")
    chumpy_ch = types.ModuleType("chumpy.ch")
    ch_class = type("Ch", (_FakeCh,), {"__module__": "chumpy.ch"})
    chumpy_ch.Ch = ch_class
    chumpy.ch = chumpy_ch
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, chumpy_ch
    try:
        data = {
            "v_template": ch_class(arrays["v_template"]),
            "shapedirs": ch_class(arrays["shapedirs"]),
            "posedirs": arrays["posedirs"],
            "J_regressor": scipy.sparse.csc_matrix(arrays["J_regressor"]),
            "weights": ch_class(arrays["weights"]),
            "f": arrays["f"].astype(np.uint32),
            "kintree_table": arrays["kintree_table"],
            "J": ch_class(arrays["J_regressor"] @ arrays["v_template"]),
            "bs_style": "lbs", "bs_type": "lrotmin",
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    """(female arrays, male arrays, female path, male path); the male file is a
    v1.1-style pickle with 300 shape components."""
    folder = tmp_path_factory.mktemp("smpl_models")
    female = _random_model_arrays(1)
    male = _random_model_arrays(2, num_betas=300)
    male["f"] = female["f"]
    f_path = folder / "basicModel_f_lbs_10_207_0_v1.0.0.pkl"
    m_path = folder / "SMPL_MALE.pkl"
    _write_chumpy_pickle(female, f_path)
    _write_chumpy_pickle(male, m_path)
    return female, male, f_path, m_path


def lbs_reference(arrays, rotations, betas):
    """Float64 SMPL for one sample: rotations (24,3,3), betas (10,) -> vertices (V,3), joints (24,3), root-centred."""
    parents = kinematics.SMPL_PARENTS
    v_shaped = arrays["v_template"] + arrays["shapedirs"][:, :, :10] @ betas
    joints = arrays["J_regressor"] @ v_shaped
    pose_feature = (rotations[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + arrays["posedirs"] @ pose_feature
    world = np.zeros((24, 4, 4))
    for k in range(24):
        local = np.eye(4)
        local[:3, :3] = rotations[k]
        local[:3, 3] = joints[k] - (joints[parents[k]] if k else 0.0)
        world[k] = world[parents[k]] @ local if k else local
    skinning = world.copy()
    for k in range(24):
        skinning[k, :3, 3] -= world[k, :3, :3] @ joints[k]
    per_vertex = np.einsum("vk,kab->vab", arrays["weights"], skinning)
    vertices = np.einsum("vab,vb->va", per_vertex[:, :3, :3], v_posed) + per_vertex[:, :3, 3]
    posed_joints = world[:, :3, 3]
    return vertices - posed_joints[0], posed_joints - posed_joints[0]


# ----------------------------------------------------------------------------

def test_loader_reads_chumpy_pickles_without_chumpy(random_models):
    female, male, f_path, m_path = random_models
    assert "chumpy" not in sys.modules
    with pytest.raises(ImportError):
        import chumpy  # noqa: F401  (the loader must not need it)
    model_f, model_m = smpl.load_model(f_path), smpl.load_model(m_path)
    assert (model_f.gender, model_m.gender) == ("female", "male")
    np.testing.assert_allclose(model_f.v_template, female["v_template"], atol=1e-6)
    np.testing.assert_allclose(model_f.J_regressor, female["J_regressor"], atol=1e-7)
    assert model_f.J_regressor.dtype == np.float32 and isinstance(model_f.J_regressor, np.ndarray)
    np.testing.assert_allclose(model_m.shapedirs, male["shapedirs"][:, :, :10], atol=1e-7)
    assert model_m.shapedirs.shape == (V, 3, 10)
    np.testing.assert_array_equal(model_f.parents, kinematics.SMPL_PARENTS)
    np.testing.assert_array_equal(model_f.landmark_ids, kinematics.SMPL_LANDMARK_VERTEX_IDS)
    np.testing.assert_array_equal(model_f.faces, female["f"])


def test_npz_round_trip(random_models, tmp_path):
    model = smpl.load_model(random_models[2])
    smpl.save_npz(model, tmp_path / "model.npz")
    again = smpl.load_model(tmp_path / "model.npz")
    for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "faces", "landmark_ids"):
        np.testing.assert_array_equal(getattr(again, name), getattr(model, name), err_msg=name)
    assert again.gender == "female"


def test_layer_matches_float64_reference_on_mixed_genders(random_models):
    female, male, f_path, m_path = random_models
    layer = smpl.SMPL(f_path, m_path)
    rng = np.random.default_rng(7)
    batch = 6
    rotations = Rotation.random(batch * 24, random_state=3).as_matrix().reshape(batch, 24, 3, 3)
    betas = rng.normal(0.0, 1.0, (batch, 10))
    gender = np.array([-1.0, 1.0, 1.0, -1.0, 0.0, -0.5])  # 0.0 counts as male
    shape = np.concatenate([betas, gender[:, None]], axis=1)
    vertices, joints = layer(tf.constant(rotations, tf.float32), tf.constant(shape, tf.float32))
    for b in range(batch):
        arrays = male if gender[b] >= 0 else female
        ref_v, ref_j = lbs_reference(arrays, rotations[b], betas[b])
        np.testing.assert_allclose(vertices[b].numpy(), ref_v, atol=1e-5, err_msg=f"sample {b}")
        np.testing.assert_allclose(joints[b].numpy(), ref_j, atol=1e-5, err_msg=f"sample {b}")
    np.testing.assert_allclose(joints[:, 0].numpy(), 0.0, atol=1e-7)
    # The 41 SMPLR points are joints 1..23 then the landmark vertices.
    points = layer.points41(vertices, joints).numpy()
    np.testing.assert_array_equal(points[:, :23], joints[:, 1:].numpy())
    np.testing.assert_array_equal(points[:, 23:], vertices.numpy()[:, kinematics.SMPL_LANDMARK_VERTEX_IDS])


def test_named_outputs_and_joints_and_landmarks_only(random_models):
    """forward() names vertices, joints and the 41 points; return_vertices=False skins
    only the landmark rows and gives the same joints and points (eager and tf.function)."""
    _, _, f_path, m_path = random_models
    layer = smpl.SMPL(f_path, m_path)
    rng = np.random.default_rng(11)
    rotations = tf.constant(Rotation.random(5 * 24, random_state=4).as_matrix().reshape(5, 24, 3, 3), tf.float32)
    shape = tf.constant(np.c_[rng.normal(0.0, 1.5, (5, 10)), [-1.0, 1.0, -0.2, 0.0, 2.0]], tf.float32)
    vertices, joints = layer(rotations, shape)
    body = layer.forward(rotations, shape)
    np.testing.assert_array_equal(body.vertices.numpy(), vertices.numpy())
    np.testing.assert_array_equal(body.joints.numpy(), joints.numpy())
    np.testing.assert_array_equal(body.points.numpy(), layer.points41(vertices, joints).numpy())
    for lean in (layer.forward(rotations, shape, return_vertices=False),
                 tf.function(lambda r, s: layer.forward(r, s, return_vertices=False))(rotations, shape)):
        assert lean.vertices is None
        np.testing.assert_allclose(lean.joints.numpy(), joints.numpy(), atol=1e-6)
        np.testing.assert_allclose(lean.points.numpy(), body.points.numpy(), atol=1e-6)


def test_layer_in_a_tf_function_and_gradients(random_models):
    layer = smpl.SMPL(random_models[2], random_models[3])
    rotations = tf.constant(Rotation.random(2 * 24, random_state=5).as_matrix().reshape(2, 24, 3, 3), tf.float32)
    shape = tf.constant(np.r_[np.random.default_rng(0).normal(size=(2, 10)).T, [[-1.0, 1.0]]].T, tf.float32)

    @tf.function
    def loss_and_grads(rotations, shape):
        with tf.GradientTape() as tape:
            tape.watch([rotations, shape])
            vertices, joints = layer(rotations, shape)
            loss = tf.reduce_sum(tf.square(vertices)) + tf.reduce_sum(tf.square(joints))
        return tape.gradient(loss, [rotations, shape])

    grad_rot, grad_shape = (tf.convert_to_tensor(g) for g in loss_and_grads(rotations, shape))
    for grad in (grad_rot, grad_shape[:, :10]):
        assert np.all(np.isfinite(grad.numpy()))
        assert np.abs(grad.numpy()).max() > 1e-6
    # Every sample's betas receive a gradient (female and male paths both live).
    assert np.all(np.abs(grad_shape[:, :10].numpy()).max(axis=1) > 1e-6)


def test_rodrigues_matches_scipy_and_is_stable_at_zero():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([rng.normal(0.0, 1.5, (200, 3)), np.zeros((1, 3)), 1e-5 * rng.normal(size=(3, 3))])
    ours = smpl.rodrigues(vectors.astype(np.float32)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(vectors).as_matrix(), atol=2e-6)
    zero = tf.zeros((1, 3))
    with tf.GradientTape() as tape:
        tape.watch(zero)
        out = smpl.rodrigues(zero)
        loss = tf.reduce_sum(out * tf.constant(rng.normal(size=(1, 3, 3)), tf.float32))
    grad = tape.gradient(loss, zero).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_real_rotations_equal_rodrigues_of_poses(cloth3d_root):
    for seq in ("00449", "05325"):
        poses = scipy.io.loadmat(cloth3d_root / seq / "info.mat")["poses"]  # (72, T)
        rotations = scipy.io.loadmat(cloth3d_root / seq / "info_body.mat")["rotations"]  # (T, 24, 3, 3)
        # 05325 holds 200 poses but 199 rotations: compare the frames both have.
        frames = min(poses.shape[1], rotations.shape[0])
        assert frames >= 199
        ours = smpl.rodrigues(poses.T[:frames].reshape(-1, 24, 3).astype(np.float32)).numpy()
        np.testing.assert_allclose(ours, rotations[:frames], atol=1e-5, err_msg=seq)


def test_features_are_one_definition_for_numpy_and_tf():
    rng = np.random.default_rng(3)
    points = rng.normal(0.0, 0.5, (4, 41, 3)).astype(np.float32)
    template = kinematics.SPEC_BONE_TEMPLATE
    bones_np = np.asarray(kinematics.bone_features(points, template))
    bones_tf = tf.function(kinematics.bone_features)(tf.constant(points), template).numpy()
    np.testing.assert_allclose(bones_np, bones_tf, atol=1e-6)
    # Hand-written reference: loop over the 41 bones of the 42-node tree.
    with_root = np.concatenate([np.zeros((4, 1, 3)), points], axis=1).astype(np.float64)
    normals = np.asarray(kinematics.normal_features(points)).reshape(4, 41, 3)
    for i in range(1, 42):
        vec = with_root[:, i] - with_root[:, kinematics.PARENTS[i]]
        length = np.linalg.norm(vec, axis=-1)
        np.testing.assert_allclose(bones_np[:, i - 1], length - template[i], atol=1e-5)
        np.testing.assert_allclose(normals[:, i - 1], vec / length[:, None], atol=1e-5)


def test_bone_template_of_a_model_reproduces_its_rest_lengths(random_models):
    model_f, model_m = smpl.load_model(random_models[2]), smpl.load_model(random_models[3])
    template = kinematics.bone_template(model_f, model_m)
    assert template.shape == (42,) and template[0] == 0.0
    lengths = []
    for model in (model_f, model_m):
        joints = model.J_regressor.astype(np.float64) @ model.v_template
        nodes = np.concatenate([joints, model.v_template[model.landmark_ids]])
        lengths.append([np.linalg.norm(nodes[i] - nodes[kinematics.PARENTS[i]]) for i in range(1, 42)])
    np.testing.assert_allclose(template[1:], np.mean(lengths, axis=0), rtol=1e-5)
    # Features of the rest pose are zero bone deviations when both genders coincide.
    same = kinematics.bone_template(model_f, model_f)
    rest = kinematics.rest_points(model_f)[None]
    np.testing.assert_allclose(np.asarray(kinematics.bone_features(rest, same)), 0.0, atol=1e-5)


# ----------------------------------------------------------------------------
# Finding model files and bad input.

def test_find_models_explicit_dir_env_and_fallback(random_models, tmp_path, monkeypatch):
    _, _, f_path, m_path = random_models
    monkeypatch.delenv("SMPLR_SMPL_DIR", raising=False)
    assert smpl.find_models(f_path.parent) == (f_path, m_path)
    only_female = tmp_path / "only_female"
    only_female.mkdir()
    (only_female / f_path.name).write_bytes(f_path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"no male SMPL model.*SMPL_MALE\.pkl.*smpl\.is\.tue\.mpg\.de"):
        smpl.find_models(only_female)
    monkeypatch.setenv("SMPLR_SMPL_DIR", str(f_path.parent))
    assert smpl.find_models() == (f_path, m_path)
    monkeypatch.setenv("SMPLR_SMPL_DIR", str(only_female))
    with pytest.raises(FileNotFoundError, match="SMPLR_SMPL_DIR"):
        smpl.find_models()
    # Nothing named anywhere: the open default body, or a clear error without it.
    monkeypatch.delenv("SMPLR_SMPL_DIR")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(smpl.io, "MODELS_DIR", empty)
    monkeypatch.setattr(smpl.io, "OPEN_BODY_FILES", {"female": empty / "a.npz", "male": empty / "b.npz"})
    with pytest.raises(FileNotFoundError, match="open default body is missing"):
        smpl.find_models()
    for name in ("a.npz", "b.npz"):
        (empty / name).write_bytes(b"")
    assert smpl.find_models() == (empty / "a.npz", empty / "b.npz")


def test_bad_model_files_raise_clear_errors(random_models, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        smpl.load_model(tmp_path / "nothere.pkl")
    text = tmp_path / "notes.pkl"
    text.write_text("hello")
    with pytest.raises(smpl.SMPLModelError, match="notes.pkl.*not a readable SMPL pickle"):
        smpl.load_model(text)
    not_model = tmp_path / "dict.pkl"
    with open(not_model, "wb") as f:
        pickle.dump({"weights": np.zeros(3)}, f)
    with pytest.raises(smpl.SMPLModelError, match=r"dict.pkl: not a SMPL model \(missing v_template"):
        smpl.load_model(not_model)
    arrays = dict(np.load(_saved_npz(random_models, tmp_path)))
    arrays["weights"] = arrays["weights"][:, :23]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(smpl.SMPLModelError, match=r"bad.npz: 'weights' has shape \(6890, 23\)"):
        smpl.load_model(tmp_path / "bad.npz")
    arrays = dict(np.load(_saved_npz(random_models, tmp_path)))
    arrays["v_template"][5, 1] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(smpl.SMPLModelError, match="nan.npz: 'v_template' contains NaN"):
        smpl.load_model(tmp_path / "nan.npz")
    arrays = dict(np.load(_saved_npz(random_models, tmp_path)))
    arrays["gender"] = np.array("robot")
    np.savez(tmp_path / "robot.npz", **arrays)
    with pytest.raises(smpl.SMPLModelError, match="unknown gender 'robot'"):
        smpl.load_model(tmp_path / "robot.npz")


def _saved_npz(random_models, tmp_path):
    path = tmp_path / "good.npz"
    if not path.exists():
        smpl.save_npz(smpl.load_model(random_models[2]), path)
    return path


def test_bad_layer_inputs_raise_clear_errors(random_models):
    layer = smpl.SMPL(random_models[2], random_models[3])
    rotations = tf.eye(3, batch_shape=[2, 24])
    with pytest.raises(ValueError, match=r"shape must be \(B, 11\)"):
        layer(rotations, tf.zeros((2, 10)))
    with pytest.raises(ValueError, match=r"rotations must be \(B, 24, 3, 3\)"):
        layer(tf.eye(3, batch_shape=[2, 23]), tf.zeros((2, 11)))
    bad = np.zeros((2, 11), np.float32)
    bad[1, 3] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape contains NaN"):
        layer(rotations, tf.constant(bad))


def test_constants_and_model_loading_need_no_keras():
    from conftest import run_backend

    out = run_backend("tensorflow", """
        import sys
        sys.modules["keras"] = None
        import smpl, smpl.constants
        from smpl.constants import NUM_POINTS, PARENTS
        from smpl import find_models, load_model
        model = load_model(find_models()[0])
        print(NUM_POINTS, len(PARENTS), model.landmark_ids.shape[0])
    """, block_tensorflow=True)
    assert out.split() == ["41", "42", "18"]
    # kinematics re-exports the same objects.
    assert kinematics.PARENTS is smpl.constants.PARENTS and kinematics.NUM_POINTS == 41
