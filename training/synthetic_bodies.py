"""Synthetic SMPLR training samples straight from the body model (``--synthetic N``).

The SMPLR stages read no images, so extra training bodies need no rendering:
random plausible poses (``DataReader.pose_prior``, the generator's sampler),
betas ~ N(0, 1) clipped to +-2.5 and a random gender go through the SMPL
layer, and the 41 points are read off the posed body. The global rotation is
the generator's upright one (heading about world z, small lean), so points
and rotations follow the CLOTH3D target convention (world axes, z up,
root-centred, R[0] including the heading as zRot would).
"""
import numpy as np
from scipy.spatial.transform import Rotation

from DataReader import SMPLRArrays
from DataReader import pose_prior
from smpl.constants import NUM_BETAS

BETA_CLIP = 2.5


def sample_parameters(count, seed):
    """Rotations (N, 24, 3, 3) float32 and shapes (N, 11) float32 of ``count`` random bodies."""
    rng = np.random.default_rng([int(seed), 0x5B0D1E5])
    poses = np.stack([pose_prior.sample_key_pose(rng) for _ in range(count)])  # (N, 24, 3)
    heading = rng.uniform(-np.pi, np.pi, count)
    lean = rng.uniform(-1.0, 1.0, (count, 2)) * np.asarray(pose_prior.MAX_LEAN)
    poses[:, 0] = pose_prior.global_rotation(heading, lean[:, 0], lean[:, 1])
    rotations = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(count, 24, 3, 3)
    betas = np.clip(rng.normal(0.0, 1.0, (count, NUM_BETAS)), -BETA_CLIP, BETA_CLIP)
    gender = rng.integers(0, 2, count) * 2.0 - 1.0
    shapes = np.concatenate([betas, gender[:, None]], axis=1)
    return rotations.astype(np.float32), shapes.astype(np.float32)


def synthetic_arrays(smpl_layer, count, seed, batch_size=256):
    """``SMPLRArrays`` of ``count`` synthetic bodies posed by ``smpl_layer`` (an ``smpl.SMPL``).

    paths are ``synthetic/NNNNNN``; the same seed gives the same bodies.
    """
    rotations, shapes = sample_parameters(count, seed)
    points = []
    for start in range(0, count, batch_size):
        vertices, joints = smpl_layer(rotations[start:start + batch_size], shapes[start:start + batch_size])
        points.append(np.asarray(smpl_layer.points41(vertices, joints), np.float32))
    return SMPLRArrays(points=np.concatenate(points), rotations=rotations, shape=shapes,
                       paths=np.array([f"synthetic/{i:06d}" for i in range(count)]))
