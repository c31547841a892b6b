"""Reading CLOTH3D-format sequences: ground truth from `info.mat` /
`info_body.mat`, frames cropped around the root by f * 2.5 / z_root.

A frames root holds one folder per sequence, each with `NNNN.png` frames
(RGBA; alpha is the person mask), `info.mat` and `info_body.mat` (SPEC "Data").
A data-list line `SEQ/NNNN.png` names one frame; `NNNN` is the row of the
sequence's arrays. This works the same for real CLOTH3D++, the synthetic
generator's output and any dataset written in that format.

Conventions of everything returned here:
- points (41, 3): SMPL joints 1..23 then the 18 landmarks, minus the root
  joint, rotated by the sequence's zRot; metres, world axes (z up).
  (Checked on the CLOTH3D++ samples: `info_body` joints are already z-up and
  root-centred, so only zRot is needed; projected back they land on the alpha
  mask for ~97% of points, the misses being extremities on the silhouette.)
- rotations (24, 3, 3): SMPL's per-joint rotation matrices, R[0] <- zRot R[0].
- shape (11,): 10 betas and 2 * (gender - 0.5) (-1 female, +1 male).
- root_camera (3,): the root joint in OpenCV camera coordinates, metres.
- crop pixels: (x right, y down), pixel centres at integer coordinates; the
  root projects to the crop centre ((size - 1) / 2, (size - 1) / 2).

`info.mat` / `info_body.mat` are read once per sequence and kept in a bounded
cache (the original re-read them for every frame).
"""
import collections
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import scipy.io

from smpl.constants import NUM_JOINTS, NUM_LANDMARKS, NUM_POINTS

from . import camera

PathLike = Union[str, os.PathLike]

log = logging.getLogger(__name__)

CROP_SIZE_PX = 256

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES_WITH_ALPHA = (4, 6)  # grey + alpha, RGB + alpha


class CLOTH3DError(ValueError):
    """Bad CLOTH3D-format input; the message names the file (and frame)."""


class EmptyMaskError(CLOTH3DError):
    """A frame whose alpha mask is empty (no person visible): skipped by pipelines."""


# ----------------------------------------------------------------------------
# Data lists
# ----------------------------------------------------------------------------

def parse_line(line: str) -> tuple[str, int]:
    """`SEQ/NNNN.png` -> (sequence name, frame index). Raises CLOTH3DError on other forms."""
    text = str(line).strip()
    sequence, sep, frame_file = text.rpartition("/")
    stem, dot, ext = frame_file.rpartition(".")
    if not sep or not sequence or not dot or ext.lower() != "png" or not stem.isdigit():
        raise CLOTH3DError(f"data-list line {text!r} is not of the form SEQ/NNNN.png")
    return sequence, int(stem)


def read_list(list_file: PathLike) -> list[str]:
    """The non-empty lines of a data list (train.txt / val.txt), each checked by `parse_line`."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: data list not found")
    lines = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    if not lines:
        raise CLOTH3DError(f"{list_file}: data list is empty")
    for line in lines:
        try:
            parse_line(line)
        except CLOTH3DError as error:
            raise CLOTH3DError(f"{list_file}: {error}") from None
    return lines


# ----------------------------------------------------------------------------
# Sequences (.mat files)
# ----------------------------------------------------------------------------

def _load_mat(path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (every sequence needs info.mat and info_body.mat)")
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for corrupt files
        raise CLOTH3DError(f"{path}: cannot be read as a .mat file ({error})") from None


def _field(mat, key, path, shape=None, ndim=None):
    if key not in mat:
        raise CLOTH3DError(f"{path}: has no '{key}' field")
    value = np.asarray(mat[key])
    if not np.issubdtype(value.dtype, np.number):
        raise CLOTH3DError(f"{path}: field '{key}' is not numeric ({value.dtype})")
    if shape is not None:
        if value.size != int(np.prod(shape)):
            raise CLOTH3DError(f"{path}: field '{key}' has shape {value.shape}, expected {shape}")
        value = value.reshape(shape)
    if ndim is not None and value.ndim != ndim:
        raise CLOTH3DError(f"{path}: field '{key}' has shape {value.shape}, expected {ndim} dimensions")
    return value


@dataclass(frozen=True)
class Sequence:
    """Ground truth of one CLOTH3D-format sequence (arrays as stored; T frames).

    zrot: radians about world z; cam_loc (3,) metres; trans (3, T) root
    positions before zRot; betas (10,); gender 0 female / 1 male;
    joints (T, 24, 3), landmarks (T, 18, 3), rotations (T, 24, 3, 3) in the
    body frame before zRot.
    """
    folder: Path
    zrot: float
    cam_loc: np.ndarray
    trans: np.ndarray
    betas: np.ndarray
    gender: float
    joints: np.ndarray
    landmarks: np.ndarray
    rotations: np.ndarray

    @property
    def info_path(self) -> Path:
        return self.folder / "info.mat"

    @property
    def info_body_path(self) -> Path:
        return self.folder / "info_body.mat"

    @classmethod
    def read(cls, folder):
        """Reads and checks `folder/info.mat` and `folder/info_body.mat`."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: sequence folder not found")
        info_path, body_path = folder / "info.mat", folder / "info_body.mat"
        info, body = _load_mat(info_path), _load_mat(body_path)
        gender = float(_field(info, "gender", info_path, shape=(1,))[0])
        if gender not in (0.0, 1.0):
            raise CLOTH3DError(f"{info_path}: unknown gender {gender} (expected 0 female or 1 male)")
        trans = _field(info, "trans", info_path, ndim=2)
        if trans.shape[0] != 3:
            raise CLOTH3DError(f"{info_path}: field 'trans' has shape {trans.shape}, expected (3, T)")
        joints = _field(body, "joints", body_path, ndim=3)
        landmarks = _field(body, "lmarks", body_path, ndim=3)
        rotations = _field(body, "rotations", body_path, ndim=4)
        for key, value, tail in (("joints", joints, (NUM_JOINTS, 3)), ("lmarks", landmarks, (NUM_LANDMARKS, 3)),
                                 ("rotations", rotations, (NUM_JOINTS, 3, 3))):
            if value.shape[1:] != tail:
                raise CLOTH3DError(f"{body_path}: field '{key}' has shape {value.shape}, "
                                   f"expected (T, {', '.join(map(str, tail))})")
        return cls(folder=folder,
                   zrot=float(_field(info, "zrot", info_path, shape=(1,))[0]),
                   cam_loc=_field(info, "camLoc", info_path, shape=(3,)).astype(np.float64),
                   trans=trans.astype(np.float64),
                   betas=_field(info, "shape", info_path, shape=(10,)).astype(np.float64),
                   gender=gender, joints=joints, landmarks=landmarks, rotations=rotations)

    def _check_frame(self, frame):
        for path, key, length in ((self.info_path, "trans", self.trans.shape[1]),
                                  (self.info_body_path, "joints", len(self.joints)),
                                  (self.info_body_path, "lmarks", len(self.landmarks)),
                                  (self.info_body_path, "rotations", len(self.rotations))):
            if not 0 <= frame < length:
                raise CLOTH3DError(f"{path}: frame {frame} is beyond '{key}' ({length} frames)")

    def targets(self, frame: int) -> "FrameTargets":
        """Ground truth and crop geometry of one frame, as a `FrameTargets`."""
        self._check_frame(frame)
        joints = self.joints[frame].astype(np.float64)
        landmarks = self.landmarks[frame].astype(np.float64)
        rotations = self.rotations[frame].astype(np.float64)
        for path, key, value in ((self.info_body_path, "joints", joints), (self.info_body_path, "lmarks", landmarks),
                                 (self.info_body_path, "rotations", rotations),
                                 (self.info_path, "trans", self.trans[:, frame]),
                                 (self.info_path, "zrot/camLoc/shape", np.r_[self.zrot, self.cam_loc, self.betas])):
            if not np.all(np.isfinite(value)):
                raise CLOTH3DError(f"{path}: NaN or infinite value in '{key}' at frame {frame}")
        z_rot = camera.z_rotation(self.zrot)
        points = (np.concatenate([joints[1:], landmarks]) - joints[0]) @ z_rot.T
        rotations[0] = z_rot @ rotations[0]
        root_world = z_rot @ self.trans[:, frame]
        root_camera = camera.world_to_camera(root_world, self.cam_loc)
        if root_camera[2] <= 0.1:
            raise CLOTH3DError(f"{self.info_path}: root at frame {frame} is not in front of the camera "
                               f"(depth {root_camera[2]:.3f} m)")
        shape = np.concatenate([self.betas, [2.0 * (self.gender - 0.5)]])
        return FrameTargets.centred(points, rotations, shape, root_camera)


# ----------------------------------------------------------------------------
# One frame's targets and crop
# ----------------------------------------------------------------------------

def crop_from_image_affine(root_px: np.ndarray, side_px: float, size: int = CROP_SIZE_PX) -> np.ndarray:
    """The (2, 3) affine taking image coordinates (continuous, as
    `camera.project` gives them) to crop pixel coordinates (pixel centres at
    integers, as arrays are indexed): a square of `side_px` image pixels
    centred on `root_px` (2,) becomes `size` x `size` with the root at the crop
    centre ((size - 1) / 2)."""
    scale = size / side_px
    centre = (size - 1) / 2.0
    return np.array([[scale, 0.0, centre - scale * root_px[0]],
                     [0.0, scale, centre - scale * root_px[1]]])


def apply_affine(affine: np.ndarray, points2d: np.ndarray) -> np.ndarray:
    """Applies a (2, 3) affine to pixel coordinates (..., 2)."""
    return points2d @ affine[:, :2].T + affine[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The (2, 3) affine of `outer` after `inner`."""
    outer3 = np.vstack([outer, [0.0, 0.0, 1.0]])
    inner3 = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (outer3 @ inner3)[:2]


@dataclass(frozen=True)
class FrameTargets:
    """Ground truth of one frame together with where its crop is taken.

    points (41, 3) root-relative metres, world axes; rotations (24, 3, 3);
    shape (11,); root_camera (3,) metres, camera axes; crop_from_image (2, 3)
    affine from image to crop pixels (crop, then any augmentation's rotation
    or flip); points2d (41, 2): the points in crop pixels, moved with the crop.
    Augmentations (`DataReader.augment`) return changed copies.
    """
    points: np.ndarray
    rotations: np.ndarray
    shape: np.ndarray
    root_camera: np.ndarray
    crop_from_image: np.ndarray
    points2d: np.ndarray
    size: int = CROP_SIZE_PX

    @classmethod
    def centred(cls, points, rotations, shape, root_camera, size=CROP_SIZE_PX):
        """Targets with the SPEC crop: centred on the root, side f * 2.5 / z_root."""
        root_px = camera.project(root_camera)
        affine = crop_from_image_affine(root_px, camera.crop_side_px(root_camera[2]), size)
        image_px = camera.project(points @ camera.R_WORLD_TO_CAMERA.T + root_camera)
        return cls(points=points, rotations=rotations, shape=shape, root_camera=root_camera,
                   crop_from_image=affine, points2d=apply_affine(affine, image_px), size=size)

    def replace(self, **changes: Any) -> "FrameTargets":
        return replace(self, **changes)


def read_rgba(path: PathLike) -> np.ndarray:
    """The RGBA frame at `path` as uint8 (H, W, 4) in OpenCV's BGRA order.

    Raises FileNotFoundError if absent and CLOTH3DError if it is not a
    readable PNG with an alpha channel.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: frame not found")
    check_png_header(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CLOTH3DError(f"{path}: corrupt or unreadable PNG")
    if image.ndim != 3 or image.shape[2] != 4:
        raise CLOTH3DError(f"{path}: PNG has no alpha channel (the alpha is the person mask)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    return image


def check_png_header(path: PathLike) -> None:
    """Checks the PNG signature and that the colour type carries alpha (reads 26 bytes)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    if len(header) < 26 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise CLOTH3DError(f"{path}: corrupt or not a PNG file")
    if header[25] not in _PNG_COLOUR_TYPES_WITH_ALPHA:
        raise CLOTH3DError(f"{path}: PNG has no alpha channel (the alpha is the person mask)")


def crop_rgba(rgba: np.ndarray, crop_from_image: np.ndarray,
              size: int = CROP_SIZE_PX) -> tuple[np.ndarray, np.ndarray]:
    """Warps a BGRA uint8 frame (H, W, 4) into the crop: bilinear, zero outside
    the frame. Returns image (size, size, 3) float32 RGB 0..255 and mask
    (size, size, 1) float32 0..1."""
    # `crop_from_image` takes the camera's continuous image coordinates
    # (Blender's: pixel j spans [j, j + 1], so its centre is j + 0.5); OpenCV
    # puts pixel centres at integers, half a pixel less. Without this shift
    # the crop would sit half an image pixel off its points2d.
    opencv_affine = crop_from_image.copy()
    opencv_affine[:, 2] += crop_from_image[:, :2] @ np.array([0.5, 0.5])
    crop = cv2.warpAffine(rgba, opencv_affine, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    image = cv2.cvtColor(crop, cv2.COLOR_BGRA2RGB).astype(np.float32)  # far faster than crop[..., 2::-1]
    mask = crop[:, :, 3:4].astype(np.float32) * np.float32(1.0 / 255.0)
    return image, mask


def sample_dict(image: np.ndarray, mask: np.ndarray, targets: "FrameTargets", path: PathLike) -> dict:
    """The reader's output dict (see `CLOTH3DReader.load`)."""
    return {"image": image, "mask": mask,
            "points": targets.points.astype(np.float32),
            "points2d": targets.points2d.astype(np.float32),
            "rotations": targets.rotations.astype(np.float32),
            "shape": targets.shape.astype(np.float32),
            "root_camera": targets.root_camera.astype(np.float32),
            "path": str(path)}


class CLOTH3DReader:
    """Reads frames of a CLOTH3D-format frames root.

    >>> reader = CLOTH3DReader("../shared/cloth3d")
    >>> sample = reader.load("00449/0003.png")

    Sequences' .mat files are read once and kept in an LRU cache of
    `max_cached_sequences` (thread-safe, as tf.data calls in parallel).
    `cache_sequences=False` re-reads them for every frame, as the original did
    (for benchmarks only).
    """

    def __init__(self, frames_root: PathLike, max_cached_sequences: int = 256, cache_sequences: bool = True) -> None:
        self.frames_root = Path(frames_root)
        if not self.frames_root.is_dir():
            raise FileNotFoundError(f"{self.frames_root}: frames root not found")
        self.max_cached_sequences = max_cached_sequences if cache_sequences else 0
        self._sequences = collections.OrderedDict()
        self._lock = threading.Lock()
        self.empty_masks_skipped = 0

    def sequence(self, name: str) -> Sequence:
        """The `Sequence` of folder `name` (cached)."""
        with self._lock:
            if name in self._sequences:
                self._sequences.move_to_end(name)
                return self._sequences[name]
        sequence = Sequence.read(self.frames_root / name)
        if self.max_cached_sequences > 0:
            with self._lock:
                self._sequences[name] = sequence
                while len(self._sequences) > self.max_cached_sequences:
                    self._sequences.popitem(last=False)
        return sequence

    def frame_path(self, line: str) -> Path:
        parse_line(line)
        return self.frames_root / str(line).strip()

    def targets(self, line: str) -> "FrameTargets":
        """`FrameTargets` of a data-list line, from the .mat files only (no image)."""
        sequence, frame = parse_line(line)
        return self.sequence(sequence).targets(frame)

    def read_frame(self, line: str) -> np.ndarray:
        """The frame's BGRA uint8 image; EmptyMaskError when its alpha is all zero."""
        path = self.frame_path(line)
        rgba = read_rgba(path)
        if cv2.countNonZero(cv2.extractChannel(rgba, 3)) == 0:
            raise EmptyMaskError(f"{path}: empty alpha mask (no person in the frame)")
        return rgba

    def load(self, line: str) -> dict:
        """One sample of data-list line `SEQ/NNNN.png`, as a dict of NumPy arrays:

        image (256, 256, 3) float32 RGB 0..255 (cropped, before standardisation),
        mask (256, 256, 1) float32 0..1, points (41, 3) float32 metres,
        points2d (41, 2) float32 crop pixels, rotations (24, 3, 3) float32,
        shape (11,) float32, root_camera (3,) float32 metres, path (str).
        """
        targets = self.targets(line)
        image, mask = crop_rgba(self.read_frame(line), targets.crop_from_image, targets.size)
        return sample_dict(image, mask, targets, self.frame_path(line))

    def count_empty_mask(self, error: Exception) -> None:
        """Records a skipped empty-mask frame and logs a counted warning."""
        with self._lock:
            self.empty_masks_skipped += 1
            count = self.empty_masks_skipped
        log.warning("%s (skipped; %d empty-mask frame%s so far)", error, count, "" if count == 1 else "s")


# ----------------------------------------------------------------------------
# All targets of a list, for the SMPLR stages and the SHN pipeline
# ----------------------------------------------------------------------------

@dataclass
class SMPLRArrays:
    """Ground truth of a whole data list held in memory (the SMPLR stages read no images).

    points (N, 41, 3) float32 metres; rotations (N, 24, 3, 3) float32;
    shape (N, 11) float32; paths (N,) str. Bone and normal features are
    computed from the points with `smpl.kinematics` (in the training graph,
    since the bone template depends on the body model).
    """
    points: np.ndarray
    rotations: np.ndarray
    shape: np.ndarray
    paths: np.ndarray

    def __post_init__(self):
        n = len(self.points)
        for name, value, tail in (("points", self.points, (NUM_POINTS, 3)),
                                  ("rotations", self.rotations, (NUM_JOINTS, 3, 3)),
                                  ("shape", self.shape, (11,)), ("paths", self.paths, ())):
            if len(value) != n or tuple(np.shape(value)[1:]) != tail:
                raise CLOTH3DError(f"SMPLRArrays: '{name}' has shape {np.shape(value)}, expected ({n}, {tail})")

    def __len__(self):
        return len(self.points)

    @classmethod
    def from_list(cls, frames_root: PathLike, list_file: PathLike, progress: bool = False) -> "SMPLRArrays":
        """Reads the .mat files of every line of `list_file` (each sequence once)."""
        lines = read_list(list_file)
        return cls.from_lines(CLOTH3DReader(frames_root), lines, progress=progress)

    @classmethod
    def from_lines(cls, reader: "CLOTH3DReader", lines: list[str], progress: bool = False) -> "SMPLRArrays":
        targets = read_targets(reader, lines, progress=progress)
        return cls(points=np.stack([t.points for t in targets]).astype(np.float32),
                   rotations=np.stack([t.rotations for t in targets]).astype(np.float32),
                   shape=np.stack([t.shape for t in targets]).astype(np.float32),
                   paths=np.array([str(reader.frames_root / line) for line in lines]))

    def concatenate(self, *others: "SMPLRArrays") -> "SMPLRArrays":
        """One SMPLRArrays holding this one's samples followed by the others'."""
        parts = (self,) + others
        return SMPLRArrays(*(np.concatenate([getattr(p, key) for p in parts])
                             for key in ("points", "rotations", "shape", "paths")))


def read_targets(reader: CLOTH3DReader, lines: list[str], progress: bool = False) -> list:
    """`FrameTargets` of every line, reading each sequence's .mat files once
    (lines are grouped by sequence, so even a small cache never re-reads)."""
    order = sorted(range(len(lines)), key=lambda i: parse_line(lines[i]))
    targets = [None] * len(lines)
    iterator = order
    if progress and len(lines) > 1000:
        from tqdm import tqdm
        iterator = tqdm(order, desc="reading ground truth", unit="frame")
    for i in iterator:
        targets[i] = reader.targets(lines[i])
    return targets
