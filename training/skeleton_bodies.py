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
two subjects' skeletons, scale them (size, per-bone length, soft-tissue girth)
and pose them with the generator's pose sampler; the points come out by
forward kinematics. Needs no body model file; bodies have no betas, so they
serve the ``dae`` and ``pose`` stages (their ``shape`` rows are NaN).
"""
import numpy as np

from DataReader import SMPLRArrays
from smpl import kinematics
from training import TrainingError
from training.synthetic_bodies import sample_parameters

ATTACHMENT = kinematics.ATTACHMENT
NUM_NODES = kinematics.NUM_NODES
LANDMARK_NODES = np.arange(kinematics.NUM_JOINTS, NUM_NODES)

#: Shape variation of a synthetic skeleton (chosen once, from anatomy, not tuned
#: on validation data): blend weight between two subjects, overall size,
#: per-bone length spread, soft-tissue girth (landmark offsets from their joint),
#: per-landmark spread and position jitter (metres).
BLEND_RANGE = (-0.3, 1.3)
SIZE_RANGE = (0.88, 1.12)
BONE_LENGTH_STD = 0.04
GIRTH_RANGE = (0.75, 1.6)
LANDMARK_SCALE_STD = 0.06
LANDMARK_JITTER_M = 0.008
#: A sequence whose rigid skeleton misses its own points by more than this
#: (mean, metres) has points and rotations that do not belong together.
MAX_FIT_ERROR_M = 0.01


def world_rotations(rotations):
    """Joint world rotations (N, 24, 3, 3) from SMPL's parent-relative ones (N, 24, 3, 3)."""
    world = [rotations[:, 0]]
    for joint in range(1, kinematics.NUM_JOINTS):
        world.append(world[kinematics.SMPL_PARENTS[joint]] @ rotations[:, joint])
    return np.stack(world, axis=1)


def skeleton_offsets(points, rotations):
    """Offsets (N, 42, 3) of every node from its attachment joint, in that joint's frame.

    points (N, 41, 3) root-relative, metres; rotations (N, 24, 3, 3). Node 0
    (the root, at the origin) gets a zero offset.
    """
    points, world = np.asarray(points, np.float64), world_rotations(np.asarray(rotations, np.float64))
    nodes = np.concatenate([np.zeros_like(points[:, :1]), points], axis=1)
    parents = ATTACHMENT[1:]
    offsets = np.einsum("npji,npj->npi", world[:, parents], nodes[:, 1:] - nodes[:, parents])
    return np.concatenate([np.zeros_like(offsets[:, :1]), offsets], axis=1)


def pose_skeleton(offsets, rotations):
    """Forward kinematics: points (N, 41, 3) of skeletons (N, 42, 3) in poses (N, 24, 3, 3)."""
    world = world_rotations(np.asarray(rotations, np.float64))
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
    sequences = np.array([str(path).replace("\\", "/").rsplit("/", 2)[-2] if "/" in str(path) else ""
                          for path in arrays.paths])
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


def sample_skeletons(skeletons, count, rng):
    """``count`` random skeletons (count, 42, 3) around the subjects' (S, 42, 3)."""
    skeletons = np.asarray(skeletons, np.float64)
    first = rng.integers(0, len(skeletons), count)
    second = rng.integers(0, len(skeletons), count)
    blend = rng.uniform(*BLEND_RANGE, (count, 1, 1))
    offsets = blend * skeletons[first] + (1.0 - blend) * skeletons[second]
    offsets *= rng.uniform(*SIZE_RANGE, (count, 1, 1))
    offsets *= rng.normal(1.0, BONE_LENGTH_STD, (count, NUM_NODES, 1))
    girth = rng.uniform(*GIRTH_RANGE, (count, 1, 1)) * rng.normal(1.0, LANDMARK_SCALE_STD, (count, len(LANDMARK_NODES), 1))
    offsets[:, LANDMARK_NODES] = offsets[:, LANDMARK_NODES] * girth \
        + rng.normal(0.0, LANDMARK_JITTER_M, (count, len(LANDMARK_NODES), 3))
    return offsets


def skeleton_arrays(arrays, count, seed):
    """``SMPLRArrays`` of ``count`` bodies re-posed from the subjects of ``arrays``.

    Poses (and the upright global rotation with a random heading) come from
    the generator's sampler, as ``--synthetic`` model bodies; the same seed
    gives the same bodies. Paths are ``skeleton/NNNNNN``; shape rows are NaN.
    """
    if len(arrays) == 0:
        raise TrainingError("skeleton bodies need training samples to take the skeletons from")
    skeletons = subject_skeletons(arrays)
    rotations, _ = sample_parameters(count, seed)
    rng = np.random.default_rng([int(seed), 0x5EE1E7])
    points = pose_skeleton(sample_skeletons(skeletons, count, rng), rotations)
    return SMPLRArrays(points=points.astype(np.float32), rotations=rotations,
                       shape=np.full((count, 11), np.nan, np.float32),
                       paths=np.array([f"skeleton/{i:06d}" for i in range(count)]))
