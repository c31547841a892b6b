"""Augmentations that keep image, mask, 3D points, 2D points and pose consistent.

Geometric augmentations change a frame's `FrameTargets`: the 3D points, the
global rotation R[0] and the crop's affine move together, so the one warp
that makes the crop (`cloth3d.crop_rgba`) also rotates or flips the image
and the mask. Appearance augmentations (colour jitter, occlusion) change the
cropped image only. Everything takes an explicit `numpy.random.Generator`,
so a pipeline seeded per sample is deterministic.

Augmentation modes (the original's argument): 0 none; 1 standard (rotation
and colour jitter, plus image noise after standardisation); 2 synthetic
occlusion (background replacement and pasted occluders); 3 = 1 + 2.
Horizontal flipping is separate and off by default (the original did not use it).

Also here: the SMPLR input noise (`NOISE_SIGMA`, `add_point_noise`).
"""
from typing import Optional

import cv2
import numpy as np

from smpl.constants import MIRROR_JOINTS, MIRROR_POINTS  # also importable from here

from . import camera
from .cloth3d import FrameTargets, apply_affine, compose_affine
from .occlusion import OccluderBank, random_occlusion

AUGMENTATION_MODES = (0, 1, 2, 3)

#: Image-plane rotation: probability and largest angle (radians), as the original.
ROTATION_PROB = 0.25
MAX_ROTATION_RAD = 0.15
#: Probability of a horizontal flip when flipping is enabled.
FLIP_PROB = 0.5

#: Colour jitter: each applied with probability 0.25, the original's ranges
#: (hue shift as a fraction of the hue circle, brightness on a 0..1 scale,
#: saturation and contrast factors).
COLOUR_PROB = 0.25
MAX_HUE_DELTA = 0.5
MAX_BRIGHTNESS_DELTA = 0.05
SATURATION_RANGE = (0.05, 0.15)
CONTRAST_RANGE = (0.05, 0.15)
#: Gaussian noise on the standardised image: probability and standard deviation.
IMAGE_NOISE_PROB = 0.25
IMAGE_NOISE_STD = 0.05

#: SMPL's body frame: x is the body's left-right axis, so a mirror negates x.
_BODY_MIRROR = np.diag([-1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------
# SMPLR input noise
# ----------------------------------------------------------------------------

#: Per-coordinate noise scale (123,) = x, y, z of the 41 points, metres (SPEC).
NOISE_SIGMA = np.array([
    0.0083, 0.0069, 0.0052, 0.0080, 0.0071, 0.0050, 0.0085, 0.0069, 0.0053, 0.0345, 0.0222, 0.0196,
    0.0343, 0.0231, 0.0191, 0.0149, 0.0089, 0.0098, 0.0535, 0.0235, 0.0242, 0.0521, 0.0223, 0.0255,
    0.0167, 0.0090, 0.0108, 0.0567, 0.0243, 0.0253, 0.0561, 0.0226, 0.0247, 0.0265, 0.0106, 0.0144,
    0.0217, 0.0104, 0.0122, 0.0222, 0.0103, 0.0122, 0.0305, 0.0119, 0.0158, 0.0262, 0.0164, 0.0174,
    0.0270, 0.0159, 0.0166, 0.0441, 0.0258, 0.0281, 0.0458, 0.0256, 0.0272, 0.0648, 0.0307, 0.0358,
    0.0697, 0.0295, 0.0334, 0.0757, 0.0336, 0.0406, 0.0817, 0.0325, 0.0375, 0.0206, 0.0146, 0.0150,
    0.0216, 0.0148, 0.0148, 0.0113, 0.0114, 0.0105, 0.0129, 0.0132, 0.0087, 0.0132, 0.0129, 0.0081,
    0.0177, 0.0159, 0.0144, 0.0186, 0.0153, 0.0141, 0.0161, 0.0123, 0.0104, 0.0153, 0.0116, 0.0101,
    0.0596, 0.0283, 0.0295, 0.0604, 0.0263, 0.0287, 0.0851, 0.0410, 0.0486, 0.0304, 0.0172, 0.0191,
    0.0311, 0.0198, 0.0218, 0.0339, 0.0178, 0.0197, 0.0337, 0.0204, 0.0223, 0.0912, 0.0416, 0.0459,
    0.0392, 0.0216, 0.0291], dtype=np.float32)


def add_point_noise(points: np.ndarray, uniform_draw: np.ndarray) -> np.ndarray:
    """The SPEC input noise: points + uniform(-0.5, 0.5) * sigma * 2 per coordinate.

    points (..., 41, 3) metres; uniform_draw of the same shape, drawn from
    U(-0.5, 0.5). Plain arithmetic, so it works on NumPy arrays and tensors.
    """
    return points + uniform_draw * (2.0 * NOISE_SIGMA.reshape(41, 3))


def load_error_bank(path) -> np.ndarray:
    """The ``errors`` (N, 41, 3) float32, metres, of an SHN error bank .npz
    (``tools/shn_error_bank.py``): input noise for the SMPLR stages in place
    of the SPEC noise, one row added to each sample's points
    (``smplr_dataset`` / ``smplr_batches`` with ``error_bank``).

    Raises ValueError (one line, naming the file) for a missing or unreadable
    file, or ``errors`` that are absent, of the wrong shape or not finite.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as bank:
            errors = np.asarray(bank["errors"], np.float32) if "errors" in bank.files else None
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: cannot read the error bank ({exc})") from None
    if errors is None:
        raise ValueError(f"{path}: no 'errors' array (an SHN error bank from tools/shn_error_bank.py)")
    if errors.ndim != 3 or errors.shape[1:] != (41, 3) or len(errors) == 0:
        raise ValueError(f"{path}: 'errors' must have shape (N >= 1, 41, 3), got {errors.shape}")
    if not np.isfinite(errors).all():
        raise ValueError(f"{path}: 'errors' holds values that are not finite")
    return errors


# ----------------------------------------------------------------------------
# Geometry: rotation and flip (image, mask, points, points2d, R[0] together)
# ----------------------------------------------------------------------------

def _axis_angle_matrix(axis, angle):
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def world_rotation_for_image_rotation(root_camera: np.ndarray, angle: float) -> np.ndarray:
    """The world-axes rotation (3, 3) matching an image rotation by `angle`
    radians about the root's pixel (clockwise on screen for angle > 0, as
    pixel y points down): a rotation of the body about the camera ray through
    the root (for a root on the optical axis: about the optical axis)."""
    rotation_camera = _axis_angle_matrix(root_camera, angle)
    return camera.R_WORLD_TO_CAMERA.T @ rotation_camera @ camera.R_WORLD_TO_CAMERA


def rotate(targets: FrameTargets, angle: float) -> FrameTargets:
    """Rotates a frame's crop by `angle` radians about its centre, and its
    3D points and global rotation R[0] by the same rotation in world axes.

    The original rotated the points about one axis and R[0] about another (a
    bug); here the one matrix acts on both, so pose and points stay consistent.
    """
    world = world_rotation_for_image_rotation(targets.root_camera, angle)
    c, s = np.cos(angle), np.sin(angle)
    centre = (targets.size - 1) / 2.0
    about_centre = np.array([[c, -s, centre - c * centre + s * centre],
                             [s, c, centre - s * centre - c * centre]])
    rotations = targets.rotations.copy()
    rotations[0] = world @ rotations[0]
    return targets.replace(points=targets.points @ world.T, rotations=rotations,
                           crop_from_image=compose_affine(about_centre, targets.crop_from_image),
                           points2d=apply_affine(about_centre, targets.points2d))


def world_mirror_for_image_flip(root_camera: np.ndarray) -> np.ndarray:
    """The world-axes reflection (3, 3) matching a horizontal flip of the crop
    about its centre column: a mirror in the plane through the camera centre
    holding the root's ray and the camera's vertical axis."""
    normal = np.array([1.0, 0.0, -root_camera[0] / root_camera[2]])
    normal /= np.linalg.norm(normal)
    mirror_camera = np.eye(3) - 2.0 * np.outer(normal, normal)
    return camera.R_WORLD_TO_CAMERA.T @ mirror_camera @ camera.R_WORLD_TO_CAMERA


def flip(targets: FrameTargets) -> FrameTargets:
    """Flips a frame's crop left-right and mirrors its body: points are
    reflected and swap left and right; the pose becomes the mirrored body's
    pose (joint rotations swap sides and are conjugated by the body-frame
    mirror; R[0] <- world mirror . R[0] . body mirror)."""
    world = world_mirror_for_image_flip(targets.root_camera)
    last = targets.size - 1.0
    mirror_x = np.array([[-1.0, 0.0, last], [0.0, 1.0, 0.0]])
    rotations = _BODY_MIRROR @ targets.rotations[MIRROR_JOINTS] @ _BODY_MIRROR
    rotations[0] = world @ targets.rotations[0] @ _BODY_MIRROR
    return targets.replace(points=(targets.points @ world.T)[MIRROR_POINTS], rotations=rotations,
                           crop_from_image=compose_affine(mirror_x, targets.crop_from_image),
                           points2d=apply_affine(mirror_x, targets.points2d)[MIRROR_POINTS])


def random_rotation(targets: FrameTargets, rng: np.random.Generator, prob: float = ROTATION_PROB,
                    max_angle: float = MAX_ROTATION_RAD) -> FrameTargets:
    """With probability `prob`, `rotate` by an angle uniform in (-max_angle, max_angle)."""
    if rng.random() >= prob:
        return targets
    return rotate(targets, rng.uniform(-max_angle, max_angle))


# ----------------------------------------------------------------------------
# Appearance: colour jitter
# ----------------------------------------------------------------------------

#: RGB <-> YIQ (NTSC): Y is luma, I and Q the chroma plane that a hue shift turns.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def hue_saturation_matrix(hue_delta: float = 0.0, saturation_factor: float = 1.0) -> np.ndarray:
    """(3, 3) RGB matrix turning hue by `hue_delta` turns and scaling saturation.

    Linear form of tf.image's HSV hue shift and saturation scaling: the chroma
    (I, Q) of YIQ is rotated by 2 pi hue_delta and scaled by the factor, luma
    kept. One matrix per image makes colour jitter a single pass over pixels.
    """
    angle = 2.0 * np.pi * hue_delta
    c, s = np.cos(angle), np.sin(angle)
    chroma = saturation_factor * np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    chroma[0, 0] = 1.0
    return _YIQ_TO_RGB @ chroma @ _RGB_TO_YIQ


def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue, brightness, saturation and contrast changes, each with probability
    `COLOUR_PROB`, at the original's ranges; one affine colour map per image.

    image (H, W, 3) float32 RGB 0..255. Contrast is tf.image's:
    (x - channel mean) * factor + channel mean; brightness adds delta * 255.
    """
    hue, brightness, saturation, contrast = rng.random(4) < COLOUR_PROB
    if not (hue or brightness or saturation or contrast):
        return image
    matrix = hue_saturation_matrix(rng.uniform(-MAX_HUE_DELTA, MAX_HUE_DELTA) if hue else 0.0,
                                   rng.uniform(*SATURATION_RANGE) if saturation else 1.0)
    offset = np.full(3, 255.0 * rng.uniform(-MAX_BRIGHTNESS_DELTA, MAX_BRIGHTNESS_DELTA) if brightness else 0.0)
    if contrast:
        factor = rng.uniform(*CONTRAST_RANGE)
        mean_after = matrix @ image.reshape(-1, 3).mean(axis=0, dtype=np.float64) + offset
        matrix, offset = factor * matrix, factor * offset + (1.0 - factor) * mean_after
    affine = np.hstack([matrix, offset[:, None]]).astype(np.float32)
    return np.clip(cv2.transform(image, affine), 0.0, 255.0)


# ----------------------------------------------------------------------------
# One sample
# ----------------------------------------------------------------------------

class FrameAugmenter:
    """The augmentation of one training sample for a mode (0..3) and flip flag.

    `geometry(targets, rng)` before the crop, `appearance(image, mask, rng)`
    after it; `image_noise` tells the pipeline to add noise after standardising.
    `occluders` (an `occlusion.OccluderBank`) is required for modes 2 and 3.
    """

    def __init__(self, mode: int = 1, flip: bool = False, occluders: Optional[OccluderBank] = None) -> None:
        if mode not in AUGMENTATION_MODES:
            raise ValueError(f"augmentation mode {mode!r} is not one of {AUGMENTATION_MODES} "
                             "(0 none, 1 standard, 2 synthetic occlusion, 3 both)")
        if mode >= 2 and occluders is None:
            raise ValueError(f"augmentation mode {mode} needs occluder images: give a Pascal VOC 2012 "
                             "folder (--voc DIR) or a folder of occluder images")
        self.mode, self.flip, self.occluders = mode, bool(flip), occluders
        self.standard = mode in (1, 3)
        self.occlusion = mode in (2, 3)
        self.image_noise = self.standard

    def geometry(self, targets: FrameTargets, rng: np.random.Generator) -> FrameTargets:
        if self.flip and rng.random() < FLIP_PROB:
            targets = flip(targets)
        if self.standard:
            targets = random_rotation(targets, rng)
        return targets

    def appearance(self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.occlusion:
            image = random_occlusion(image, mask, self.occluders, rng)
        if self.standard:
            image = color_jitter(image, rng)
        return image


def standardize_image_np(image: np.ndarray, rng: Optional[np.random.Generator] = None,
                         noise_prob: float = IMAGE_NOISE_PROB, noise_std: float = IMAGE_NOISE_STD) -> np.ndarray:
    """NumPy twin of the TF pipeline's `standardize_image` (no TensorFlow needed).

    image (H, W, 3) float -> float32 with zero mean and unit variance, as
    `tf.image.per_image_standardization`: (x - mean) / max(std, 1 / sqrt(H*W*3)).
    With `rng` (a numpy Generator), adds N(0, noise_std) noise with
    probability `noise_prob` (augmentation modes 1 and 3).
    """
    image = np.asarray(image, np.float32)
    mean = image.mean(dtype=np.float64)
    std = max(float(image.std(dtype=np.float64)), 1.0 / np.sqrt(image.size))
    out = ((image - mean) / std).astype(np.float32)
    if rng is not None and rng.random() < noise_prob:
        out += rng.normal(0.0, noise_std, out.shape).astype(np.float32)
    return out
