"""Synthetic SMPLR training bodies that re-pose the training subjects' own skeletons.

Why: the DAE and the pose net learn how the 41 points hang together (bone
lengths, where a landmark sits on its limb). Bodies from the body model teach
that only when the model is SMPL itself; the project's open default body puts
joints and landmarks up to 40 degrees off SMPL's bone directions, so its
bodies teach another skeleton (measured: a DAE trained with 20,000 of them
gains 4-6% on the real validation sequence, see README "DAE").

How: SMPL joints move rigidly with their parent's frame and the landmarks
nearly so (`smpl.kinematics.ATTACHMENT`), so each training sequence's ground
truth (points + rotations) gives its subject's skeleton as 42 constant offsets,
exact for the joints and within a few mm for the landmarks. New bodies blend
two subjects' skeletons, scale every bone and landmark offset by the length
ratios of a random body of the body model (its shape variation, not its
skeleton), and pose them with the generator's pose sampler; the points come
out by forward kinematics. Bodies have no betas, so they serve the ``dae``
and ``pose`` stages (their ``shape`` rows are NaN).
"""
from pathlib import Path

import numpy as np

from DataReader import SMPLRArrays
from smpl import kinematics
from smpl.transforms import along_chain
from training import TrainingError
from training.synthetic_bodies import sample_parameters

ATTACHMENT = kinematics.ATTACHMENT
NUM_NODES = kinematics.NUM_NODES
LANDMARK_NODES = np.arange(kinematics.NUM_JOINTS, NUM_NODES)

#: Shape variation of a synthetic skeleton (chosen once, from anatomy and the
#: data's range, not tuned on validation data): blend weight between two
#: subjects; betas of the body model whose per-bone length ratios (shaped body
#: over mean body) scale the blend, uniform in +-BETA_RANGE as wide as the
#: broad shapes CLOTH3D samples (|beta| up to 2.4 on the training subjects);
#: extra per-bone length spread; landmark position jitter (metres).
BLEND_RANGE = (-0.3, 1.3)
BETA_RANGE = 3.0
BONE_LENGTH_STD = 0.03
LANDMARK_JITTER_M = 0.008
#: A sequence whose rigid skeleton misses its own points by more than this
#: (mean, metres) has points and rotations that do not belong together.
MAX_FIT_ERROR_M = 0.01


def world_rotations(rotations):
    """Joint world rotations (N, 24, 3, 3) float64 from SMPL's parent-relative ones (N, 24, 3, 3)."""
    return along_chain(np.asarray(rotations, np.float64), kinematics.SMPL_PARENTS)


def skeleton_offsets(points, rotations):
    """Offsets (N, 42, 3) of every node from its attachment joint, in that joint's frame.

    points (N, 41, 3) root-relative, metres; rotations (N, 24, 3, 3). Node 0
    (the root, at the origin) gets a zero offset.
    """
    points, world = np.asarray(points, np.float64), world_rotations(rotations)
    nodes = np.concatenate([np.zeros_like(points[:, :1]), points], axis=1)
    parents = ATTACHMENT[1:]
    offsets = np.einsum("npji,npj->npi", world[:, parents], nodes[:, 1:] - nodes[:, parents])
    return np.concatenate([np.zeros_like(offsets[:, :1]), offsets], axis=1)


def pose_skeleton(offsets, rotations):
    """Forward kinematics: points (N, 41, 3) of skeletons (N, 42, 3) in poses (N, 24, 3, 3)."""
    world = world_rotations(rotations)
    offsets = np.asarray(offsets, np.float64)
    nodes = [np.zeros((len(world), 3))]
    for node in range(1, NUM_NODES):  # ATTACHMENT[node] < node, so parents come first
        parent = ATTACHMENT[node]
        nodes.append(nodes[parent] + np.einsum("nij,nj->ni", world[:, parent], offsets[:, node]))
    return np.stack(nodes[1:], axis=1)


def subject_skeletons(arrays):
    """One skeleton (S, 42, 3) per sequence of ``arrays`` (an ``SMPLRArrays``).

    A sequence is the folder of a sample's path (one subject in CLOTH3D). Raises
    TrainingError when a sequence's points and rotations do not fit a rigid
    skeleton (``MAX_FIT_ERROR_M``), e.g. rotations of another body model.
    """
    sequences = np.array([Path(str(path)).parent.name for path in arrays.paths])
    skeletons = []
    for name in dict.fromkeys(sequences):  # first-appearance order
        rows = sequences == name
        skeleton = skeleton_offsets(arrays.points[rows], arrays.rotations[rows]).mean(axis=0)
        refit = pose_skeleton(np.broadcast_to(skeleton, (int(rows.sum()), NUM_NODES, 3)), arrays.rotations[rows])
        error = float(np.linalg.norm(refit - arrays.points[rows], axis=-1).mean())
        if error > MAX_FIT_ERROR_M:
            raise TrainingError(f"sequence {name}: its points and rotations do not fit one rigid skeleton "
                                f"(mean error {1000 * error:.1f} mm); skeleton bodies need SMPL ground truth")
        skeletons.append(skeleton)
    return np.stack(skeletons)


def rest_offsets(model, betas):
    """Offsets (N, 42, 3) of a body model's rest pose for betas (N, 10), as `skeleton_offsets` gives them.

    In the rest pose every joint frame is the identity, so an offset is the
    node minus its attachment joint. Joints and landmarks are linear in the
    betas, so only their 42 rows of the shape blend shapes are used.
    """
    joints = model.J_regressor.astype(np.float64)
    template = np.concatenate([joints @ model.v_template, model.v_template[model.landmark_ids]])
    directions = np.concatenate([np.einsum("jv,vcb->jcb", joints, model.shapedirs[:, :, :10]),
                                 model.shapedirs[model.landmark_ids, :, :10]]).astype(np.float64)
    nodes = template[None] + np.einsum("jcb,nb->njc", directions, np.asarray(betas, np.float64))
    offsets = np.zeros_like(nodes)
    offsets[:, 1:] = nodes[:, 1:] - nodes[:, ATTACHMENT[1:]]
    return offsets


def shape_length_ratios(models, count, rng):
    """Per-node length ratios (count, 42) of random bodies over the mean body.

    models: (female, male) ``SMPLModel``s, one picked at random per body;
    betas uniform in +-``BETA_RANGE``. The ratios carry the body model's
    co-variation of bones and soft tissue (wide hips with a big belly...).
    """
    ratios = np.ones((count, NUM_NODES))
    gender = rng.integers(0, 2, count)
    betas = rng.uniform(-BETA_RANGE, BETA_RANGE, (count, 10))
    for index, model in enumerate(models):
        rows = gender == index
        mean = np.linalg.norm(rest_offsets(model, np.zeros((1, 10))), axis=-1)
        shaped = np.linalg.norm(rest_offsets(model, betas[rows]), axis=-1)
        ratios[rows, 1:] = shaped[:, 1:] / np.maximum(mean[:, 1:], 1e-6)
    return ratios


def sample_skeletons(skeletons, length_ratios, rng):
    """Random skeletons (N, 42, 3) around the subjects' (S, 42, 3), scaled per node by (N, 42) ratios."""
    skeletons = np.asarray(skeletons, np.float64)
    count = len(length_ratios)
    first = rng.integers(0, len(skeletons), count)
    second = rng.integers(0, len(skeletons), count)
    blend = rng.uniform(*BLEND_RANGE, (count, 1, 1))
    offsets = blend * skeletons[first] + (1.0 - blend) * skeletons[second]
    offsets *= np.asarray(length_ratios)[..., None] * rng.normal(1.0, BONE_LENGTH_STD, (count, NUM_NODES, 1))
    offsets[:, LANDMARK_NODES] += rng.normal(0.0, LANDMARK_JITTER_M, (count, len(LANDMARK_NODES), 3))
    return offsets


def skeleton_arrays(arrays, count, seed, models):
    """``SMPLRArrays`` of ``count`` bodies re-posed from the subjects of ``arrays``.

    models: (female, male) ``SMPLModel``s lending their shape variation
    (`shape_length_ratios`); their own skeleton is not used.

    Poses (and the upright global rotation with a random heading) come from
    the generator's sampler, as ``--synthetic`` model bodies; the same seed
    gives the same bodies. Paths are ``skeleton/NNNNNN``; shape rows are NaN.
    """
    if len(arrays) == 0:
        raise TrainingError("skeleton bodies need training samples to take the skeletons from")
    skeletons = subject_skeletons(arrays)
    rotations, _ = sample_parameters(count, seed)
    rng = np.random.default_rng([int(seed), 0x5EE1E7])
    ratios = shape_length_ratios(models, count, rng)
    points = pose_skeleton(sample_skeletons(skeletons, ratios, rng), rotations)
    return SMPLRArrays(points=points.astype(np.float32), rotations=rotations,
                       shape=np.full((count, 11), np.nan, np.float32),
                       paths=np.array([f"skeleton/{i:06d}" for i in range(count)]))
