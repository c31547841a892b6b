"""Tests of the synthetic CLOTH3D-format generator: rasteriser, pose sampler,
file format against the real samples, reader round trip, determinism, CLI.

References used: brute-force float64 per-pixel rasterisation, an analytic
sphere (silhouette and Lambert shading), a float64 NumPy SMPL (linear blend
skinning) written here, and the real CLOTH3D++ samples (when present).
Most tests use a small body-like SMPL-format model built here (capsules on an
SMPL-like skeleton), so they run whatever body model files exist.
"""
import hashlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from DataReader import camera, pose_prior, render, synthesize

# --------------------------------------------------------------------------
# A small body-like SMPL-format model (y up, x to the body's left, z forward)
# --------------------------------------------------------------------------

REST_JOINTS = np.array([
    [0.0, 0.0, 0.0], [0.06, -0.09, 0.0], [-0.06, -0.09, 0.0], [0.0, 0.11, -0.01],
    [0.10, -0.47, 0.0], [-0.10, -0.47, 0.0], [0.0, 0.24, 0.0], [0.09, -0.87, -0.04],
    [-0.09, -0.87, -0.04], [0.0, 0.30, 0.02], [0.11, -0.93, 0.08], [-0.11, -0.93, 0.08],
    [0.0, 0.51, -0.01], [0.07, 0.42, 0.0], [-0.07, 0.42, 0.0], [0.0, 0.58, 0.04],
    [0.17, 0.45, -0.01], [-0.17, 0.45, -0.01], [0.43, 0.44, -0.03], [-0.43, 0.44, -0.03],
    [0.68, 0.45, -0.03], [-0.68, 0.45, -0.03], [0.77, 0.44, -0.04], [-0.77, 0.44, -0.04]])
PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])

# Tubes: (polyline of joint ids or points, radius, joint that moves each segment).
_END = {"head_top": [0.0, 0.80, 0.02], "l_toe": [0.11, -0.93, 0.16], "r_toe": [-0.11, -0.93, 0.16],
        "l_tip": [0.86, 0.44, -0.04], "r_tip": [-0.86, 0.44, -0.04]}
_TUBES = [
    ([0, 3, 6, 9, 12], 0.13, [0, 3, 6, 9]),
    ([12, 15, "head_top"], 0.085, [12, 15]),
    ([2, 1], 0.11, [0]),
    ([1, 4, 7], 0.07, [1, 4]), ([2, 5, 8], 0.07, [2, 5]),
    ([7, "l_toe"], 0.045, [7]), ([8, "r_toe"], 0.045, [8]),
    ([13, 16, 18, 20, 22, "l_tip"], 0.045, [13, 16, 18, 20, 22]),
    ([14, 17, 19, 21, 23, "r_tip"], 0.045, [14, 17, 19, 21, 23]),
]
_LANDMARK_POSITIONS = np.array([
    [0.08, 0.30, 0.13], [-0.08, 0.30, 0.13], [0.0, 0.05, 0.13], [-0.17, -0.06, 0.0], [0.17, -0.06, 0.0],
    [-0.10, -0.25, 0.07], [0.10, -0.25, 0.07], [-0.10, -0.25, -0.07], [0.10, -0.25, -0.07],
    [0.11, -0.93, 0.17], [-0.11, -0.93, 0.17], [0.87, 0.44, -0.04], [0.30, 0.44, 0.05],
    [0.30, 0.44, -0.05], [-0.30, 0.44, 0.05], [-0.30, 0.44, -0.05], [-0.87, 0.44, -0.04], [0.0, 0.81, 0.02]])


def _tube(points, radius, around=10, per_segment=4):
    """A closed tube along a polyline: vertices (N, 3), faces (M, 3) wound outward,
    segment index per vertex (N,), radial unit offsets (N, 3)."""
    points = np.asarray(points, np.float64)
    rings, segment, radial = [], [], []
    angles = np.linspace(0.0, 2 * np.pi, around, endpoint=False)
    for s in range(len(points) - 1):
        a, b = points[s], points[s + 1]
        axis = (b - a) / np.linalg.norm(b - a)
        helper = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u)
        w = np.cross(axis, u)
        last = s == len(points) - 2
        for k in range(per_segment + (1 if last else 0)):
            centre = a + (b - a) * k / per_segment
            offsets = np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * w
            rings.append(centre + radius * offsets)
            radial.append(offsets)
            segment.append(np.full(around, s))
    vertices, radial, segment = np.concatenate(rings), np.concatenate(radial), np.concatenate(segment)
    num_rings = len(rings)
    faces = []
    for r in range(num_rings - 1):
        for k in range(around):
            a, b = r * around + k, r * around + (k + 1) % around
            c, d = a + around, b + around
            faces += [[a, b, c], [b, d, c]]
    # Caps: a centre vertex at each end.
    start_centre, end_centre = len(vertices), len(vertices) + 1
    first_axis = (points[1] - points[0]) / np.linalg.norm(points[1] - points[0])
    last_axis = (points[-1] - points[-2]) / np.linalg.norm(points[-1] - points[-2])
    vertices = np.vstack([vertices, points[0] - 0.5 * radius * first_axis, points[-1] + 0.5 * radius * last_axis])
    radial = np.vstack([radial, -first_axis, last_axis])
    segment = np.concatenate([segment, [0, len(points) - 2]])
    last_ring = (num_rings - 1) * around
    for k in range(around):
        faces.append([start_centre, (k + 1) % around, k])
        faces.append([end_centre, last_ring + k, last_ring + (k + 1) % around])
    faces = np.array(faces)
    tri = vertices[faces]
    volume = np.einsum("fi,fi->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))
    if volume < 0:
        faces = faces[:, ::-1]
    return vertices, faces, segment, radial


def body_like_model(gender):
    """An SMPL-format `smpl.SMPLModel` (about 1.7 m tall) built from tubes on an SMPL-like skeleton."""
    import smpl
    scale = 1.0 if gender == "female" else 1.07
    joints = REST_JOINTS * scale
    vertices, faces, weights_joint, radial = [], [], [], []
    for polyline, radius, movers in _TUBES:
        points = [joints[p] if not isinstance(p, str) else np.array(_END[p]) * scale for p in polyline]
        v, f, seg, rad = _tube(points, radius * scale)
        faces.append(f + sum(len(x) for x in vertices))
        vertices.append(v)
        weights_joint.append(np.asarray(movers)[seg])
        radial.append(rad)
    # One loose vertex at each joint: the joint regressor reads them.
    vertices.append(joints)
    weights_joint.append(np.arange(24))
    radial.append(np.zeros((24, 3)))
    v_template = np.concatenate(vertices)
    num_vertices = len(v_template)
    weights = np.eye(24)[np.concatenate(weights_joint)]
    radial = np.concatenate(radial)
    regressor = np.zeros((24, num_vertices))
    regressor[np.arange(24), num_vertices - 24 + np.arange(24)] = 1.0
    shapedirs = np.zeros((num_vertices, 3, 10))
    shapedirs[:, :, 0] = 0.05 * v_template                      # overall size
    shapedirs[:, :, 1] = 0.02 * radial                          # girth
    smooth = np.random.default_rng(7).normal(0.0, 0.01, (24, 3, 8))
    shapedirs[:, :, 2:] = smooth[np.concatenate(weights_joint)]  # per-part shifts
    surface = v_template[:-24]
    landmark_ids = np.argmin(np.linalg.norm(surface[None] - _LANDMARK_POSITIONS[:, None] * scale, axis=2), axis=1)
    return smpl.SMPLModel(v_template=v_template, shapedirs=shapedirs, posedirs=None,
                          J_regressor=regressor, weights=weights, parents=PARENTS,
                          faces=np.concatenate(faces), landmark_ids=landmark_ids,
                          gender=gender, path=f"<body-like {gender}>")


@pytest.fixture(scope="module")
def body_models():
    return body_like_model("female"), body_like_model("male")
