"""Tests of the synthetic CLOTH3D-format generator: rasteriser, pose sampler,
file format against the real samples, reader round trip, determinism, CLI.

References used: brute-force float64 per-pixel rasterisation, an analytic
sphere (silhouette and Lambert shading), a float64 NumPy SMPL (linear blend
skinning) written here, and the real CLOTH3D++ samples (when present).
Most tests use a small body-like SMPL-format model built here (capsules on an
SMPL-like skeleton), so they run whatever body model files exist.
"""
import hashlib
import sys
from pathlib import Path

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
    affine = np.random.default_rng(7).normal(0.0, 0.03, (8, 3, 3))
    shapedirs[:, :, 2:] = np.einsum("kij,vj->vik", affine, v_template)  # smooth linear deformations
    surface = v_template[:-24]
    landmark_ids = np.argmin(np.linalg.norm(surface[None] - _LANDMARK_POSITIONS[:, None] * scale, axis=2), axis=1)
    return smpl.SMPLModel(v_template=v_template, shapedirs=shapedirs, posedirs=None,
                          J_regressor=regressor, weights=weights, parents=PARENTS,
                          faces=np.concatenate(faces), landmark_ids=landmark_ids,
                          gender=gender, path=f"<body-like {gender}>")


@pytest.fixture(scope="module")
def body_models():
    return body_like_model("female"), body_like_model("male")


def lbs_numpy(model, poses, betas):
    """Reference SMPL in float64 NumPy: poses (72,), betas (10,) ->
    root-centred vertices (V, 3) and joints (24, 3)."""
    v_shaped = model.v_template + np.einsum("vck,k->vc", model.shapedirs.astype(np.float64), betas)
    rest = model.J_regressor.astype(np.float64) @ v_shaped
    rot = Rotation.from_rotvec(np.asarray(poses, np.float64).reshape(24, 3)).as_matrix()
    v_posed = v_shaped + np.einsum("vck,k->vc", model.posedirs.astype(np.float64),
                                   (rot[1:] - np.eye(3)).reshape(-1))
    world = np.zeros((24, 4, 4))
    for k in range(24):
        local = np.eye(4)
        local[:3, :3] = rot[k]
        local[:3, 3] = rest[k] - (rest[model.parents[k]] if k else 0.0)
        world[k] = local if k == 0 else world[model.parents[k]] @ local
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum("kij,kj->ki", world[:, :3, :3], rest)
    per_vertex = np.einsum("vk,kij->vij", model.weights.astype(np.float64), skin)
    vertices = np.einsum("vij,vj->vi", per_vertex[:, :3, :3], v_posed) + per_vertex[:, :3, 3]
    joints = world[:, :3, 3]
    return vertices - joints[0], joints - joints[0]


def _synth(tmp_path, body_models, name="out", sequences=1, frames=2, seed=0, **kwargs):
    out = tmp_path / name
    lists = synthesize.synthesize(out, sequences, frames, seed=seed, models=body_models,
                                  progress=False, **kwargs)
    return out, lists


# --------------------------------------------------------------------------
# Rasteriser
# --------------------------------------------------------------------------

def _bruteforce_zbuffer(points_px, depth, faces, height, width):
    """Per-pixel loop over every triangle (float64): nearest face id and depth."""
    face_index = np.full((height, width), -1)
    zbuffer = np.full((height, width), np.inf)
    for i in range(height):
        for j in range(width):
            p = np.array([j + 0.5, i + 0.5])
            for f, (a, b, c) in enumerate(faces):
                m = np.column_stack([points_px[b] - points_px[a], points_px[c] - points_px[a]])
                if abs(np.linalg.det(m)) < 1e-12:
                    continue
                s, t = np.linalg.solve(m, p - points_px[a])
                w = np.array([1 - s - t, s, t])
                if np.all(w >= 0):
                    z = 1.0 / np.sum(w / depth[[a, b, c]])
                    if z < zbuffer[i, j]:
                        zbuffer[i, j], face_index[i, j] = z, f
    return face_index, zbuffer


def test_rasterize_matches_bruteforce_zbuffer_in_any_face_order():
    rng = np.random.default_rng(3)
    height, width, num_faces = 24, 32, 14
    points = np.column_stack([rng.uniform(-4, width + 4, 3 * num_faces), rng.uniform(-4, height + 4, 3 * num_faces)])
    depth = rng.uniform(1.0, 5.0, 3 * num_faces)
    faces = np.arange(3 * num_faces).reshape(num_faces, 3)
    expected_face, expected_depth = _bruteforce_zbuffer(points, depth, faces, height, width)
    assert (expected_face >= 0).mean() > 0.5 and len(np.unique(expected_face)) > 8  # overlaps happen
    for order in (np.arange(num_faces), np.arange(num_faces)[::-1], rng.permutation(num_faces)):
        face_index, bary, zbuffer = render.rasterize(points, depth, faces[order], height, width)
        got_face = np.where(face_index >= 0, order[np.maximum(face_index, 0)], -1)
        np.testing.assert_array_equal(got_face, expected_face)
        covered = expected_face >= 0
        np.testing.assert_allclose(zbuffer[covered], expected_depth[covered], rtol=1e-5)
        np.testing.assert_allclose(bary[covered].sum(1), 1.0, atol=1e-5)


def _uv_sphere(n_lat=60, n_lon=64):
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ring = np.stack([np.sin(theta)[:, None] * np.cos(phi), np.cos(theta)[:, None] * np.ones_like(phi),
                     np.sin(theta)[:, None] * np.sin(phi)], -1).reshape(-1, 3)
    vertices = np.vstack([[0, 1, 0], ring, [0, -1, 0]])
    faces, rows = [], n_lat - 1
    for j in range(n_lon):
        faces.append([0, 1 + (j + 1) % n_lon, 1 + j])
        last = 1 + (rows - 1) * n_lon
        faces.append([len(vertices) - 1, last + j, last + (j + 1) % n_lon])
    for r in range(rows - 1):
        for j in range(n_lon):
            a, b = 1 + r * n_lon + j, 1 + r * n_lon + (j + 1) % n_lon
            faces += [[a, b, a + n_lon], [b, b + n_lon, a + n_lon]]
    return vertices, np.array(faces)


def test_render_sphere_silhouette_and_lambert_match_analytic():
    unit, faces = _uv_sphere()
    radius, centre = 0.5, np.array([0.3, -0.2, 4.0])
    vertices = centre + radius * unit
    sign = render.outward_sign(vertices, faces)
    normals = sign * render.vertex_normals(vertices, faces)
    albedo, light, ambient = np.array([0.9, 0.6, 0.3]), np.array([0.3, -0.8, -0.5]), 0.3
    rgba = render.render_mesh(vertices, faces, render.lambert(normals, albedo, light, ambient),
                              camera.FOCAL_PX, camera.PRINCIPAL_POINT, 480, 640)
    # Analytic: the ray through each pixel centre hits the sphere where |c x d| < r.
    jj, ii = np.meshgrid(np.arange(640) + 0.5, np.arange(480) + 0.5)
    rays = np.stack([(jj - camera.PRINCIPAL_POINT[0]) / camera.FOCAL_PX,
                     (ii - camera.PRINCIPAL_POINT[1]) / camera.FOCAL_PX, np.ones_like(jj)], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    along = rays @ centre
    miss_sq = centre @ centre - along ** 2
    hit = miss_sq < radius ** 2
    edge_px = np.abs(np.sqrt(miss_sq) - radius) / radius * 110  # ~ distance to the rim in pixels
    mask = rgba[..., 3] > 127
    assert sign == 1.0
    assert np.all(mask[edge_px > 1.0] == hit[edge_px > 1.0])
    assert abs(mask.sum() - hit.sum()) / hit.sum() < 0.01
    assert np.all(rgba[..., 3][hit & (edge_px > 1.5)] == 255) and np.all(rgba[..., 3][~hit & (edge_px > 1.5)] == 0)
    depth = along - np.sqrt(np.clip(radius ** 2 - miss_sq, 0, None))
    normal = (rays * depth[..., None] - centre) / radius
    light_unit = light / np.linalg.norm(light)
    expected = albedo * (ambient + (1 - ambient) * np.clip(normal @ light_unit, 0, None))[..., None]
    inner = hit & (edge_px > 3.0)
    error = np.abs(rgba[inner][:, :3] / 255.0 - expected[inner])
    assert error.max() < 0.03 and error.mean() < 0.005
    assert np.all(rgba[rgba[..., 3] == 0] == 0)
    # Anti-aliased rim: alpha is the covered fraction of the pixel (analytic, 8x8 samples).
    rim_rows, rim_cols = np.nonzero(edge_px < 1.0)
    offsets = (np.arange(8) + 0.5) / 8
    sx = (rim_cols[:, None, None] + offsets[None, None, :] - camera.PRINCIPAL_POINT[0]) / camera.FOCAL_PX
    sy = (rim_rows[:, None, None] + offsets[None, :, None] - camera.PRINCIPAL_POINT[1]) / camera.FOCAL_PX
    sample_rays = np.stack(np.broadcast_arrays(sx, sy, np.ones_like(sx)), -1)
    sample_rays /= np.linalg.norm(sample_rays, axis=-1, keepdims=True)
    coverage = ((centre @ centre - (sample_rays @ centre) ** 2) < radius ** 2).mean(axis=(1, 2))
    rim_alpha = rgba[rim_rows, rim_cols, 3] / 255.0
    assert np.abs(rim_alpha - coverage).mean() < 0.06
    partly = (coverage > 0.25) & (coverage < 0.75)  # the mesh is inscribed: up to ~0.15 px inside
    assert partly.sum() > 100 and np.all((rim_alpha[partly] > 0) & (rim_alpha[partly] < 1))


# --------------------------------------------------------------------------
# Pose sampler
# --------------------------------------------------------------------------

def test_pose_sequence_is_plausible_smooth_upright_and_seeded():
    poses = pose_prior.sample_pose_sequence(np.random.default_rng(11), 150).reshape(150, 24, 3)
    again = pose_prior.sample_pose_sequence(np.random.default_rng(11), 150).reshape(150, 24, 3)
    other = pose_prior.sample_pose_sequence(np.random.default_rng(12), 150).reshape(150, 24, 3)
    np.testing.assert_array_equal(poses, again)
    assert np.abs(poses - other).max() > 0.3
    limits = pose_prior.JOINT_LIMITS[1:]
    body = poses[:, 1:]
    assert np.all(body >= limits[..., 0] - 1e-9) and np.all(body <= limits[..., 1] + 1e-9)
    assert np.all(poses[:, [4, 5], 0] >= 0)                        # knees bend one way
    assert np.all(poses[:, 18, 1] <= 0) and np.all(poses[:, 19, 1] >= 0)  # elbows too
    assert np.abs(np.diff(body, axis=0)).max() < 0.2              # smooth: < 0.2 rad per frame
    assert body.std(axis=0).max() > 0.2                           # but it moves
    up = Rotation.from_rotvec(poses[:, 0]).apply([0.0, 1.0, 0.0])
    assert np.all(up[:, 2] > np.cos(0.25))                        # body y axis along world +z
    global_step = (Rotation.from_rotvec(poses[1:, 0]) * Rotation.from_rotvec(poses[:-1, 0]).inv()).magnitude()
    assert global_step.max() < 0.1


def test_joint_limits_contain_real_cloth3d_motion(cloth3d_root):
    """The limits are anatomical, not arbitrary: real CLOTH3D++ poses (mocap) lie inside them."""
    poses = np.concatenate([scipy.io.loadmat(str(p))["poses"].T for p in sorted(cloth3d_root.glob("*/info.mat"))])
    body = poses.reshape(-1, 24, 3)[:, 1:]
    limits = pose_prior.JOINT_LIMITS[1:]
    inside = (body >= limits[..., 0] - 0.05) & (body <= limits[..., 1] + 0.05)
    assert inside.mean() > 0.995
    assert np.mean(inside.all(axis=(1, 2))) > 0.9
    knees, elbows = body[:, [3, 4], 0], body[:, [17, 18], 1] * np.array([-1, 1])
    assert np.all(knees > -0.15) and np.all(elbows > -0.15)       # one-way joints agree with mocap


# --------------------------------------------------------------------------
# The world/body convention, checked on the real samples
# --------------------------------------------------------------------------

def test_real_samples_follow_the_documented_convention(cloth3d_root):
    inside = []
    for folder in sorted(p for p in cloth3d_root.iterdir() if (p / "info.mat").is_file()):
        info = scipy.io.loadmat(str(folder / "info.mat"))
        body = scipy.io.loadmat(str(folder / "info_body.mat"))
        joints, lmarks = body["joints"].astype(np.float64), body["lmarks"].astype(np.float64)
        num = len(joints)
        assert np.abs(joints[:, 0]).max() < 1e-6                            # root-centred
        assert np.all(joints[:, 15, 2] - joints[:, 0, 2] > 0.3)            # head above root: z up
        rot = Rotation.from_rotvec(info["poses"][:, :num].T.reshape(-1, 3)).as_matrix().reshape(num, 24, 3, 3)
        np.testing.assert_allclose(body["rotations"], rot, atol=1e-5)       # Rodrigues(poses)
        assert np.all(rot[:, 0, 2, 1] > 0.7)  # global rotation turns body y (up) into world z
        z_rot = camera.z_rotation(float(info["zrot"].item()))
        frames = sorted(folder.glob("*.png"))[::10]
        for frame in frames:
            t = int(frame.stem)
            alpha = cv2.imread(str(frame), cv2.IMREAD_UNCHANGED)[..., 3]
            points = np.concatenate([joints[t, 1:], lmarks[t]]) - joints[t, 0]
            world = points @ z_rot.T + z_rot @ info["trans"][:, t]
            px = np.floor(camera.project(camera.world_to_camera(world, info["camLoc"]))).astype(int)
            ok = (px[:, 0] >= 0) & (px[:, 0] < 640) & (px[:, 1] >= 0) & (px[:, 1] < 480)
            inside.append(np.where(ok, alpha[np.clip(px[:, 1], 0, 479), np.clip(px[:, 0], 0, 639)] > 0, False))
    assert np.mean(inside) >= 0.95


# --------------------------------------------------------------------------
# Generated sequences
# --------------------------------------------------------------------------

def test_generated_files_match_the_real_format(tmp_path, body_models, cloth3d_root):
    out, lists = _synth(tmp_path, body_models, sequences=1, frames=3)
    real = sorted(p for p in cloth3d_root.iterdir() if (p / "info.mat").is_file())[0]
    # Field -> its frame axis (None: no frame axis); shapes must agree on every other axis.
    fields = {"info.mat": {"poses": 1, "shape": None, "gender": None, "trans": 1, "zrot": None, "camLoc": None},
              "info_body.mat": {"joints": 0, "lmarks": 0, "rotations": 0}}
    for name, frame_axes in fields.items():
        ours, theirs = scipy.io.loadmat(str(out / "00000" / name)), scipy.io.loadmat(str(real / name))
        assert sorted(k for k in ours if not k.startswith("__")) == sorted(frame_axes)
        for key, axis in frame_axes.items():
            assert ours[key].dtype == theirs[key].dtype, key
            ours_shape, theirs_shape = list(ours[key].shape), list(theirs[key].shape)
            if axis is not None:
                assert ours_shape.pop(axis) == 3, key
                theirs_shape.pop(axis)
            assert ours_shape == theirs_shape, key
    ours_png = cv2.imread(str(out / "00000" / "0000.png"), cv2.IMREAD_UNCHANGED)
    theirs_png = cv2.imread(str(real / "0000.png"), cv2.IMREAD_UNCHANGED)
    assert ours_png.shape == theirs_png.shape == (480, 640, 4) and ours_png.dtype == theirs_png.dtype
    for image in (ours_png, theirs_png):  # outside the person: alpha 0, RGB a 0/1 dither
        outside = image[..., 3] == 0
        assert set(np.unique(image[outside][:, :3])) == {0, 1}
        assert 0.03 < (image[..., 3] > 0).mean() < 0.5
    assert lists == {"train": ["00000/0000.png", "00000/0001.png", "00000/0002.png"], "val": []}
    assert (out / "train.txt").read_text() == "00000/0000.png\n00000/0001.png\n00000/0002.png\n"
    assert (out / "val.txt").read_text() == ""


def test_generated_ground_truth_matches_numpy_smpl_and_the_rendered_mask(tmp_path, body_models):
    out, _ = _synth(tmp_path, body_models, sequences=2, frames=3, seed=5)
    iou = []
    for sequence in ("00000", "00001"):
        info = scipy.io.loadmat(str(out / sequence / "info.mat"))
        body = scipy.io.loadmat(str(out / sequence / "info_body.mat"))
        model = body_models[int(info["gender"].item())]
        z_rot = camera.z_rotation(float(info["zrot"].item()))
        assert 4.2 <= info["camLoc"][0, 0] <= 5.0 and np.all(info["camLoc"][0, 1:] == [0, 1])
        for t in range(3):
            vertices, joints = lbs_numpy(model, info["poses"][:, t], info["shape"][0])
            np.testing.assert_allclose(body["joints"][t], joints, atol=2e-5)
            np.testing.assert_allclose(body["lmarks"][t], vertices[model.landmark_ids], atol=2e-5)
            assert abs(vertices[:, 2].min() + info["trans"][2, t]) < 1e-4      # feet on the floor z = 0
            world = (vertices + info["trans"][:, t]) @ z_rot.T
            alpha = cv2.imread(str(out / sequence / f"{t:04d}.png"), cv2.IMREAD_UNCHANGED)[..., 3]
            # Independent silhouette: OpenCV fills every projected triangle (pixel centres at +0.5).
            px = camera.project(camera.world_to_camera(world, info["camLoc"])) - 0.5
            triangles = np.round(px[model.faces] * 16).astype(np.int32)
            expected = np.zeros_like(alpha)
            for triangle in triangles:
                cv2.fillConvexPoly(expected, triangle, 255, cv2.LINE_8, 4)
            rendered, expected = alpha > 0, expected > 0
            iou.append(np.sum(rendered & expected) / np.sum(rendered | expected))
            grow = lambda m: cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # noqa: E731
            assert np.all(grow(expected)[rendered]) and np.all(grow(rendered)[expected])  # within 1 px
    assert min(iou) > 0.9


def _round_trip(frames_root, lines):
    """Fraction of the reader's 41 points2d on its crop mask (alpha > 0), and the largest
    distance (px) between the crop centre and the root's own projection."""
    from DataReader.cloth3d import CLOTH3DReader, apply_affine
    reader = CLOTH3DReader(frames_root)
    inside, centre_error = [], []
    for line in lines:
        sample = reader.load(line)
        assert sample["image"].shape == (256, 256, 3) and sample["mask"].shape == (256, 256, 1)
        px = np.round(sample["points2d"]).astype(int)
        ok = np.all((px >= 0) & (px < 256), axis=1)
        inside.append(np.where(ok, sample["mask"][np.clip(px[:, 1], 0, 255), np.clip(px[:, 0], 0, 255), 0] > 0,
                               False))
        # The root, from the sequence's files only, projected and taken into the crop.
        sequence, frame = line.split("/")
        info = scipy.io.loadmat(str(frames_root / sequence / "info.mat"))
        root_world = camera.z_rotation(float(info["zrot"].item())) @ info["trans"][:, int(frame[:4])]
        root_px = camera.project(camera.world_to_camera(root_world, info["camLoc"]))
        crop_root = apply_affine(reader.targets(line).crop_from_image, root_px)
        centre_error.append(np.abs(crop_root - 127.5).max())
        assert sample["mask"][127, 127, 0] > 0.5 or sample["mask"][128, 128, 0] > 0.5  # root is on the body
    return float(np.mean(inside)), float(np.max(centre_error))


def test_reader_round_trip_on_generated_frames(tmp_path, body_models):
    out, lists = _synth(tmp_path, body_models, sequences=8, frames=2, seed=2)
    assert [len(lists["train"]), len(lists["val"])] == [14, 2]
    inside, centre_error = _round_trip(out, lists["train"] + lists["val"])
    assert inside >= 0.95
    assert centre_error <= 2.0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import contact_sheet
    sheet = contact_sheet.contact_sheet(out, count=8, columns=4)
    assert sheet.shape == (512, 1024, 3)
    assert np.all(sheet[256 + 128, 512 + 128] == 255)  # the root cross of tile 7 at its crop centre


def test_reader_round_trip_with_default_body_model(tmp_path):
    """The same with the body model `make demo` uses (official SMPL if found, else the open body)."""
    import smpl
    try:
        female, male = smpl.find_models()
    except FileNotFoundError as error:
        pytest.skip(f"no default body model yet: {error}")
    out, lists = _synth(tmp_path, (smpl.load_model(female), smpl.load_model(male)), sequences=2, frames=2, seed=1)
    inside, centre_error = _round_trip(out, lists["train"] + lists["val"])
    assert inside >= 0.95 and centre_error <= 2.0


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_identical_files(tmp_path, body_models):
    first, _ = _synth(tmp_path, body_models, "a", sequences=1, frames=2, seed=9)
    second, _ = _synth(tmp_path, body_models, "b", sequences=1, frames=2, seed=9)
    other, _ = _synth(tmp_path, body_models, "c", sequences=1, frames=2, seed=10)
    for name in ("info.mat", "info_body.mat"):
        a, b = scipy.io.loadmat(str(first / "00000" / name)), scipy.io.loadmat(str(second / "00000" / name))
        for key in (k for k in a if not k.startswith("__")):
            np.testing.assert_array_equal(a[key], b[key])
    digest_a, digest_b, digest_c = _digest(first), _digest(second), _digest(other)
    assert digest_a == digest_b  # every file byte for byte, .mat headers included
    assert len(digest_a) == 6 and all(digest_a[k] != digest_c[k] for k in digest_a if "/" in k)


def test_poses_from_cloth3d_info_mat_and_npz(tmp_path, body_models, cloth3d_root):
    source = sorted(cloth3d_root.glob("*/info.mat"))[0]
    real = scipy.io.loadmat(str(source))["poses"]  # (72, T)
    out, _ = _synth(tmp_path, body_models, "mat", frames=3, poses_file=source)
    written = scipy.io.loadmat(str(out / "00000" / "info.mat"))["poses"]
    starts = [s for s in range(real.shape[1] - 2) if np.array_equal(real[:, s:s + 3], written)]
    assert len(starts) == 1  # a window of consecutive real frames
    for layout, array in (("T72", written.T), ("72T", written)):
        np.savez(tmp_path / f"{layout}.npz", poses=array)
        np.testing.assert_array_equal(synthesize.load_pose_file(tmp_path / f"{layout}.npz"), written.T)
    with pytest.raises(synthesize.PoseFileError, match="fewer than --frames 5"):
        _synth(tmp_path, body_models, "short", frames=5, poses_file=tmp_path / "T72.npz")
    np.savez(tmp_path / "bad.npz", poses=np.zeros((10, 70)))
    with pytest.raises(synthesize.PoseFileError, match="bad.npz.*expected"):
        synthesize.load_pose_file(tmp_path / "bad.npz")


def test_cli_refuses_to_overwrite_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "frames"
    (out / "00000").mkdir(parents=True)
    assert synthesize.main(["--out", str(out), "--sequences", "1", "--frames", "1", "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "00000" in error and "--overwrite" in error and error.count("\n") == 1
    assert synthesize.main(["--out", str(tmp_path / "x"), "--poses", str(tmp_path / "missing.npz")]) == 1
    assert "missing.npz" in capsys.readouterr().err
    assert synthesize.main(["--out", str(tmp_path / "y"), "--frames", "0"]) == 1
    assert "--frames 0" in capsys.readouterr().err


def test_split_by_sequence_and_tree_of_contact_sheet():
    assert synthesize.split_sequences(1) == ([0], [])
    assert synthesize.split_sequences(2) == ([0], [1])
    assert synthesize.split_sequences(30) == (list(range(27)), [27, 28, 29])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import contact_sheet
    from smpl import kinematics
    np.testing.assert_array_equal(contact_sheet.TREE_PARENTS, kinematics.PARENTS)
