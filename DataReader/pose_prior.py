"""A built-in sampler of plausible, smooth SMPL pose sequences (axis-angle, radians).

Each sequence interpolates between random key poses. A key pose is a relaxed
standing pose (arms down, elbows and knees slightly bent) plus normal
deviations scaled to each joint's limits and clipped to them
(`JOINT_LIMITS`), so knees and elbows bend one way only,
spines and necks bend a little, shoulders and hips have wide ranges. Keys are
15..40 frames apart and joined by monotone cubic (PCHIP) interpolation, which
is smooth and never leaves the range of its keys, hence never the limits.

SMPL's local axes (rest T-pose, body frame): x towards the body's left, y up,
z forward. Knee flexion is +x, hip flexion (thigh forward) -x, spine forward
bend +x; the left arm lies along +x, so left elbow flexion is -y and lowering
the left arm is -z about the shoulder (mirrored, +y and +z, on the right).

The global rotation (joint 0) follows CLOTH3D: the SMPL body frame (y up) is
turned into the z-up world by +90 degrees about x, folded into pose[0:3],
together with a slow random heading about world z and a small lean:

    R_global(t) = Rz(heading(t)) @ Rx(+pi/2) @ R_lean(t)

so R_global @ (0, 1, 0) (the body's up) stays near world +z.
"""
import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation

from smpl.constants import NUM_JOINTS

#: Per-joint limits of the axis-angle components (radians): JOINT_LIMITS[j] =
#: ((x_lo, x_hi), (y_lo, y_hi), (z_lo, z_hi)). Joint 0 (global) is sampled apart.
JOINT_LIMITS = np.zeros((NUM_JOINTS, 3, 2))
_LIMITS = {
    1: ((-1.0, 0.4), (-0.4, 0.4), (-0.15, 0.6)),    # left hip: flexion -x, abduction +z
    2: ((-1.0, 0.4), (-0.4, 0.4), (-0.6, 0.15)),    # right hip
    3: ((-0.2, 0.5), (-0.3, 0.3), (-0.2, 0.2)),     # spine1: forward bend +x
    4: ((0.0, 2.0), (-0.4, 0.3), (-0.25, 0.05)),   # left knee: flexion +x only
    5: ((0.0, 2.0), (-0.3, 0.4), (-0.05, 0.25)),   # right knee
    6: ((-0.1, 0.3), (-0.2, 0.2), (-0.1, 0.1)),     # spine2
    7: ((-0.4, 0.5), (-0.4, 0.4), (-0.4, 0.4)),     # left ankle
    8: ((-0.4, 0.5), (-0.4, 0.4), (-0.4, 0.4)),     # right ankle
    9: ((-0.1, 0.3), (-0.2, 0.2), (-0.1, 0.1)),     # spine3
    10: ((-0.5, 0.3), (-0.3, 0.3), (-0.3, 0.3)),    # left foot (toes)
    11: ((-0.5, 0.3), (-0.3, 0.3), (-0.6, 0.3)),    # right foot
    12: ((-0.45, 0.5), (-0.4, 0.4), (-0.2, 0.2)),   # neck
    13: ((-0.15, 0.15), (-0.55, 0.2), (-0.7, 0.1)),  # left collar: lowers the shoulder -z
    14: ((-0.15, 0.15), (-0.2, 0.55), (-0.1, 0.7)),  # right collar
    15: ((-0.3, 0.4), (-0.5, 0.5), (-0.2, 0.2)),    # head
    16: ((-0.5, 0.5), (-1.2, 0.6), (-1.4, 0.5)),    # left shoulder: forward -y, down -z
    17: ((-0.5, 0.5), (-0.6, 1.2), (-0.5, 1.4)),    # right shoulder: forward +y, down +z
    18: ((-1.1, 0.4), (-2.3, 0.0), (-0.3, 0.5)),    # left elbow: flexion -y only
    19: ((-1.1, 0.4), (0.0, 2.3), (-0.5, 0.3)),     # right elbow: flexion +y only
    20: ((-0.85, 0.6), (-0.55, 0.3), (-0.5, 0.5)),  # left wrist
    21: ((-0.85, 0.6), (-0.3, 0.55), (-0.5, 0.5)),  # right wrist
    22: ((-0.45, 0.2), (-0.3, 0.2), (-0.45, 0.1)),  # left hand
    23: ((-0.45, 0.2), (-0.2, 0.3), (-0.1, 0.45)),  # right hand
}
for _joint, _axes in _LIMITS.items():
    JOINT_LIMITS[_joint] = _axes

#: A relaxed standing pose (24, 3): arms down by the sides, slight bends.
RELAXED_POSE = np.zeros((NUM_JOINTS, 3))
RELAXED_POSE[[1, 2], 0] = -0.2                        # hips slightly flexed
RELAXED_POSE[[4, 5], 0] = 0.3                         # knees
RELAXED_POSE[3, 0] = 0.1                              # spine1
RELAXED_POSE[13, 2], RELAXED_POSE[14, 2] = -0.3, 0.3  # collars
RELAXED_POSE[16, 2], RELAXED_POSE[17, 2] = -0.9, 0.9  # arms down
RELAXED_POSE[18, 1], RELAXED_POSE[19, 1] = -0.5, 0.5  # elbows

#: Largest lean of the body from vertical (radians) about its x and z axes.
MAX_LEAN = (0.15, 0.1)
#: Key poses are this many frames apart (inclusive range).
KEY_SPACING_FRAMES = (15, 40)

BODY_TO_WORLD = Rotation.from_rotvec([np.pi / 2, 0.0, 0.0])  # SMPL y-up -> world z-up


def sample_key_pose(rng: np.random.Generator) -> np.ndarray:
    """One random body pose (24, 3) axis-angle within `JOINT_LIMITS`; joint 0 is zero.

    rng: numpy Generator. Each component is `RELAXED_POSE` plus a normal draw
    with a standard deviation of `activity` x half its limit range, clipped
    to the limits; the activity (0.2..0.8) is drawn per key pose, so some keys
    stay near the relaxed pose and some move a lot.
    """
    activity = rng.uniform(0.2, 0.8)
    half_range = 0.5 * (JOINT_LIMITS[..., 1] - JOINT_LIMITS[..., 0])
    pose = RELAXED_POSE + activity * half_range * rng.standard_normal((NUM_JOINTS, 3))
    pose = np.clip(pose, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])
    pose[0] = 0.0
    return pose


def _key_frames(rng, num_frames):
    """Frame indices of key poses: 0, then every 15..40 frames, ending past the last frame."""
    keys = [0]
    while keys[-1] < num_frames - 1:
        keys.append(keys[-1] + int(rng.integers(KEY_SPACING_FRAMES[0], KEY_SPACING_FRAMES[1] + 1)))
    return np.array(keys, np.float64)


def _smooth_curve(keys, values, num_frames):
    """PCHIP through (keys, values) sampled at frames 0..T-1; values (K, ...) -> (T, ...)."""
    frames = np.arange(num_frames, dtype=np.float64)
    if len(keys) == 1:
        return np.repeat(values[:1], num_frames, axis=0)
    return PchipInterpolator(keys, values, axis=0)(frames)


def global_rotation(heading: np.ndarray, lean_x: np.ndarray, lean_z: np.ndarray) -> np.ndarray:
    """Global (joint 0) rotations as axis-angle (T, 3).

    heading: (T,) rotation about world z, radians; lean_x, lean_z: (T,) lean
    about the body's x (forward/back) and z (sideways) axes, radians.
    R = Rz(heading) @ Rx(+pi/2) @ R_lean, as CLOTH3D stores the body upright.
    """
    heading = np.asarray(heading, np.float64)
    yaw = Rotation.from_rotvec(np.stack([np.zeros_like(heading), np.zeros_like(heading), heading], 1))
    lean = Rotation.from_rotvec(np.stack([lean_x, np.zeros_like(heading), lean_z], 1))
    return (yaw * BODY_TO_WORLD * lean).as_rotvec()


def sample_pose_sequence(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """A smooth sequence of plausible poses, (T, 72) float64 axis-angle in SMPL order.

    rng: numpy Generator (the only source of randomness). Joint 0 holds the
    upright global rotation described in the module docstring, with a random
    initial heading that drifts by up to +-0.6 rad between key poses.
    """
    if num_frames < 1:
        raise ValueError(f"sample_pose_sequence: num_frames must be >= 1, got {num_frames}")
    keys = _key_frames(rng, num_frames)
    key_poses = np.stack([sample_key_pose(rng) for _ in keys])  # (K, 24, 3)
    body = _smooth_curve(keys, key_poses, num_frames)            # (T, 24, 3)

    heading_keys = rng.uniform(-np.pi, np.pi) + np.cumsum(rng.uniform(-0.6, 0.6, len(keys)))
    lean_keys = rng.uniform(-1.0, 1.0, (len(keys), 2)) * np.array(MAX_LEAN)
    heading = _smooth_curve(keys, heading_keys, num_frames)
    lean = _smooth_curve(keys, lean_keys, num_frames)
    body[:, 0] = global_rotation(heading, lean[:, 0], lean[:, 1])
    return body.reshape(num_frames, 3 * NUM_JOINTS)
