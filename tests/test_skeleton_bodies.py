"""Tests of the rigid-skeleton synthetic bodies (training/skeleton_bodies.py)
and of how a stage picks its ``--synthetic`` body source.

References: the SMPL layer (joints are exactly rigid in SMPL, so forward
kinematics of rest-pose offsets must reproduce them), and the real CLOTH3D++
ground truth (points and rotations of the official SMPL).
"""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import DataReader
import smpl
from smpl import kinematics
from smpl.io import OPEN_BODY_FILES
from training import TrainingError
from training.config import stage_config
from training.skeleton_bodies import (BETA_RANGE, pose_skeleton, rest_offsets, shape_length_ratios,
                                      skeleton_arrays, skeleton_offsets, subject_skeletons)
from training.smplr_loop import synthetic_body_source


@pytest.fixture(scope="module")
def open_body():
    return smpl.load_model(OPEN_BODY_FILES["female"]), smpl.load_model(OPEN_BODY_FILES["male"])


def _random_rotations(rng, count, scale=0.5):
    return Rotation.from_rotvec(rng.normal(0.0, scale, (count * 24, 3))).as_matrix().reshape(count, 24, 3, 3)


def test_posed_rest_skeleton_reproduces_the_smpl_layer_joints(open_body):
    model = open_body[0]
    layer = smpl.SMPL(*open_body)
    rng = np.random.default_rng(4)
    betas = rng.normal(0.0, 1.0, 10)
    v_shaped = model.v_template.astype(np.float64) + model.shapedirs[:, :, :10].astype(np.float64) @ betas
    joints = model.J_regressor.astype(np.float64) @ v_shaped
    rest_nodes = np.concatenate([joints, v_shaped[model.landmark_ids]])  # (42, 3), node 0 = root
    attach = kinematics.ATTACHMENT
    offsets = np.zeros((42, 3))
    offsets[1:] = rest_nodes[1:] - rest_nodes[attach[1:]]  # rest pose: every frame is the identity
    # rest_offsets does the same from the 42 rows of the blend shapes only.
    np.testing.assert_allclose(rest_offsets(model, betas[None])[0], offsets, atol=1e-9)

    rotations = _random_rotations(rng, 8)
    shape = np.concatenate([np.broadcast_to(betas, (8, 10)), -np.ones((8, 1))], axis=1)
    vertices, posed_joints = layer(rotations.astype(np.float32), shape.astype(np.float32))
    reference = np.asarray(layer.points41(vertices, posed_joints), np.float64)
    ours = pose_skeleton(np.broadcast_to(offsets, (8, 42, 3)), rotations)

    joint_error = np.abs(ours[:, :23] - reference[:, :23]).max()
    assert joint_error < 1e-5, joint_error  # metres; float32 layer
    # Landmarks are skinned vertices, rigid only approximately (blend of nearby joints).
    landmark_error = np.linalg.norm(ours[:, 23:] - reference[:, 23:], axis=-1).mean()
    assert landmark_error < 0.03, landmark_error
    # And the inverse: offsets read back from the posed joints are the rest ones.
    back = skeleton_offsets(ours, rotations)
    np.testing.assert_allclose(back, np.broadcast_to(offsets, back.shape), atol=1e-9)


def test_real_sequences_are_one_rigid_skeleton_each(cloth3d_root):
    arrays = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "train.txt")
    skeletons = subject_skeletons(arrays)
    assert skeletons.shape == (2, 42, 3)  # 00449 and 00742
    for index, name in enumerate(("00449", "00742")):
        rows = np.array([f"/{name}/" in str(p) for p in arrays.paths])
        refit = pose_skeleton(np.broadcast_to(skeletons[index], (rows.sum(), 42, 3)), arrays.rotations[rows])
        error = np.linalg.norm(refit - arrays.points[rows], axis=-1)
        assert error[:, :23].max() < 1e-4  # SMPL joints are exactly rigid (float32 data)
        assert error[:, 23:].mean() < 0.003  # landmarks: skinning blend and pose blend shapes
    # The two subjects differ (male vs female): thigh bone lengths 33 vs 39 cm.
    thigh = np.linalg.norm(skeletons[:, 4], axis=-1)
    assert 0.30 < thigh.min() < 0.35 and 0.37 < thigh.max() < 0.42

    # Rotations that do not belong to the points are refused, naming the sequence.
    shuffled = DataReader.SMPLRArrays(arrays.points, arrays.rotations[::-1].copy(), arrays.shape, arrays.paths)
    with pytest.raises(TrainingError, match="sequence 00449: .* do not fit one rigid skeleton"):
        subject_skeletons(shuffled)


def test_skeleton_bodies_are_seeded_and_vary_as_documented(cloth3d_root, open_body):
    arrays = DataReader.SMPLRArrays.from_list(cloth3d_root, cloth3d_root / "train.txt")
    first = skeleton_arrays(arrays, 300, seed=3, models=open_body)
    np.testing.assert_array_equal(first.points, skeleton_arrays(arrays, 300, seed=3, models=open_body).points)
    assert not np.allclose(skeleton_arrays(arrays, 300, seed=4, models=open_body).points, first.points)
    assert np.isnan(first.shape).all() and np.isfinite(first.points).all()

    # Every body is its own skeleton posed by its own rotations.
    offsets = skeleton_offsets(first.points, first.rotations)
    np.testing.assert_allclose(pose_skeleton(offsets, first.rotations), first.points, atol=1e-5)
    # Bones stay within blend x shape ratio x spread of the subjects'.
    subjects = np.linalg.norm(subject_skeletons(arrays), axis=-1)
    ratio = np.linalg.norm(offsets, axis=-1)[:, 1:] / subjects[:, 1:].mean(axis=0)
    assert 0.4 < ratio.min() and ratio.max() < 2.5
    # Upright bodies: the head (joint 15) is above the root in the z-up world.
    assert (first.points[:, 14, 2] > 0.2).all() and np.median(first.points[:, 14, 2]) > 0.4


def test_shape_ratios_follow_the_body_model(open_body):
    rng = np.random.default_rng(7)
    ratios = shape_length_ratios(open_body, 2000, rng)
    assert ratios.shape == (2000, 42) and (ratios[:, 0] == 1).all() and (ratios > 0).all()
    # Independent check of one body: lengths of the shaped rest body over the mean body's.
    female = open_body[0]
    betas = np.full((1, 10), BETA_RANGE)
    v = female.v_template + female.shapedirs[:, :, :10] @ betas[0]
    nodes = np.concatenate([female.J_regressor @ v, v[female.landmark_ids]])
    v0 = female.v_template
    nodes0 = np.concatenate([female.J_regressor @ v0, v0[female.landmark_ids]])
    parents = kinematics.ATTACHMENT[1:]
    expected = (np.linalg.norm(nodes[1:] - nodes[parents], axis=-1)
                / np.linalg.norm(nodes0[1:] - nodes0[parents], axis=-1))
    got = np.linalg.norm(rest_offsets(female, betas), axis=-1)[0, 1:] / \
        np.linalg.norm(rest_offsets(female, np.zeros((1, 10))), axis=-1)[0, 1:]
    np.testing.assert_allclose(got, expected, rtol=1e-5)  # the reference runs in the model files float32
    # Soft tissue (landmark offsets) varies more across bodies than the long bones.
    thighs_shins = ratios[:, [4, 5, 7, 8]].std()
    belly_hips = ratios[:, [26, 27, 28]].std()
    assert belly_hips > thighs_shins


def test_synthetic_body_source_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("SMPLR_SMPL_DIR", raising=False)
    monkeypatch.setattr(smpl.io, "MODELS_DIR", tmp_path)  # no official files anywhere
    auto = {kind: synthetic_body_source(stage_config(kind, synthetic=10)) for kind in ("dae", "pose", "shape")}
    assert auto == {"dae": "skeleton", "pose": "skeleton", "shape": "model"}
    assert synthetic_body_source(stage_config("dae", synthetic=10, synthetic_bodies="model")) == "model"
    with pytest.raises(TrainingError, match="skeleton has no betas"):
        stage_config("shape", synthetic=10, synthetic_bodies="skeleton")
    with pytest.raises(TrainingError, match="--synthetic-bodies must be one of"):
        stage_config("dae", synthetic_bodies="mesh")
