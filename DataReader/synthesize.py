"""Synthetic CLOTH3D++-format sequences from a body model, so everything runs on a fresh machine.

    python -m DataReader.synthesize --out Data/frames --sequences 8 --frames 25 --seed 0 \
        [--smpl-dir DIR] [--poses FILE] [--garments tight|loose] [--cameras cloth3d|varied] [--overwrite]

writes, under --out, one folder per sequence (`00000`, `00001`, ...) holding
`NNNN.png` frames, `info.mat` and `info_body.mat`, plus the data lists
`train.txt` and `val.txt` (lines `SEQ/NNNN.png`, split by sequence; the last
~10% of sequences, at least one when there are two or more, are validation).
The same `DataReader.CLOTH3DReader` reads this and real CLOTH3D++ data.
`DataReader.stream` draws and renders the same scenes in memory, straight
into the reader's crop, for an endless training stream.

Files (checked against the real samples; names, dtypes and orientation match):
- info.mat: `poses` (72, T) float64 axis-angle, `shape` (1, 10) float64 betas,
  `gender` (1, 1) int64 (0 female, 1 male), `trans` (3, T) float64 root
  position (metres, world axes before zRot), `zrot` (1, 1) float64 radians,
  `camLoc` (1, 3) float64 metres. (The real files' outfit, lights, tightness,
  seq fields have no synthetic counterpart and are not written.)
- info_body.mat: `joints` (T, 24, 3), `lmarks` (T, 18, 3) (the model's 18
  landmark vertices), `rotations` (T, 24, 3, 3) = Rodrigues(poses), all
  float32, from linear blend skinning of the body model: root-centred
  (joints[:, 0] = 0). (The real files also carry `B`, a (14475, 3) array not
  described by SPEC and unused by the reader; it is not written.)
- NNNN.png: 640x480 RGBA, row NNNN of the arrays; alpha 255 on the person,
  anti-aliased along the silhouette (the covered fraction of 4x4 samples,
  straight colour, as Blender writes), 0 elsewhere; where alpha is 0 the RGB
  is a random 0/1 grey dither, as Blender leaves it in the real frames.

World/body convention (the same as CLOTH3D++; verified on its samples). The
world is z-up, metres. The SMPL body frame is y-up; the +90 degree rotation
about x that stands it up in the world is folded into the global rotation
pose[0:3], so `info_body` joints are already z-up (head above root along +z)
and root-centred. A body point p (from `joints`, `lmarks` or the mesh) of
frame t lies in the world at

    p_world = zRot @ (p - joints[t, 0]) + zRot @ trans[:, t],   zRot = Rz(zrot)

which `DataReader.camera` projects into the frame (camera at camLoc looking
along world -x). Frames are rendered from exactly these world points; the
rasteriser samples pixel (i, j) at the centre (j + 0.5, i + 0.5) of
`camera.project` coordinates, as Blender does. On the real samples this
projection of the 41 ground-truth points lands on the alpha mask (alpha > 0)
for 95-100% of points per frame, 100% over all sampled frames.

Per sequence (all drawn from numpy's Generator seeded by (seed, sequence
index), so a seed reproduces every array and every PNG byte for byte):
gender 50/50; betas ~ N(0, 1) clipped to +-2.5; poses from
`DataReader.pose_prior` (or a window of the --poses file); zrot ~ U(-pi, pi);
trans: x, y a slow random walk, z = the height that puts the lowest vertex
on the floor (z = 0); the camera from a `Placement`: `CLOTH3D_PLACEMENT`
(--cameras cloth3d, the default: camLoc = (U(4.2, 5.0), 0, 1), the walk near
(1, 0), as the real data) or `VARIED_PLACEMENT` (--cameras varied: camera
3.6-6.5 m away and 0.8-1.25 m high, the body anywhere within ~1.5 m of the
origin). zrot and the walk are redrawn until the whole body stays in the
frame in every frame.

Appearance (aimed at the real CLOTH3D++ renders; `sample_outfit`,
`sample_lighting`): skin tones from pale to dark, bald or with hair, barefoot
or shod; a top (T-shirt, long sleeves or sleeveless, with a neckline) and a
bottom (trousers, shorts, skirt) or a dress, each of a procedural cloth
`render.Material` (solid, stripes, checks, noise blotches, patchwork cells,
dots, with a fine weave) evaluated in the body's rest coordinates so it moves
with the body; regions come from each vertex's skinning joint and its
position along the limb. `--garments loose` (the stream's default) also
gives clothes their own shape: tops and trousers stand off the body along its
normals (wide trousers flare towards the ankle), and skirts and dresses are a
separate shell hanging from the waist around both legs, widening downwards
with folds (`skirt_shell`). `--garments tight` (the default for files)
paints the clothes on the body, so the silhouette is the body's. Shading:
diffuse, in linear light (`render.shade`), under a key light and an
optional fill light at random directions and strengths, plus ambient.

Library: `synthesize(out_dir, num_sequences, num_frames, seed, smpl_dir=None,
poses_file=None, models=None, overwrite=False, progress=True, garments="tight",
cameras="cloth3d")` does what the CLI does and returns the data lists;
`draw_sequence` draws one sequence in memory (`DrawnSequence`), `frame_scene`
gives the mesh of one of its frames, `render_frame` renders it as a full
640x480 frame and `render_crop` straight into a crop window; `write_sequence`
writes one sequence; `load_pose_file` reads --poses files. The body model
(`BodyModel`, NumPy linear blend skinning, no deep-learning framework) is the
official SMPL when `smpl.find_models` finds it, else the project's open body.
"""
import argparse
import io
import os
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import cv2
import numpy as np
import scipy.io
from scipy.spatial.transform import Rotation

from smpl.constants import NUM_BETAS, NUM_JOINTS

from . import camera, pose_prior, render
from .cloth3d import apply_affine
from .render import Material

log = logging.getLogger(__name__)

#: Fraction of sequences written to val.txt (at least one when there are >= 2).
VAL_FRACTION = 0.1
#: The whole body must project at least this far (pixels) inside the image.
FRAME_MARGIN_PX = 2.0
MAX_PLACEMENT_TRIES = 200
#: Probability of a 1 (else 0) in the grey dither outside the person (real frames: ~0.61).
BACKGROUND_ONE_PROBABILITY = 0.6
GARMENT_MODES = ("tight", "loose")

# SMPL joint ids of the body parts (the skinning weights' dominant joint of each vertex).
_TORSO_JOINTS = (0, 3, 6, 9, 13, 14)          # pelvis, spine, collars
_NECK, _HEAD = 12, 15
_ARMS = {"left": (16, 18, 20, 22), "right": (17, 19, 21, 23)}    # shoulder, elbow, wrist, hand
_LEGS = {"left": (1, 4, 7, 10), "right": (2, 5, 8, 11)}          # hip, knee, ankle, foot


class PoseFileError(ValueError):
    """A --poses file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Placement:
    """Where the camera and the body may stand (metres, world axes before zRot).

    The camera stands at (x, 0, height) looking along world -x (CLOTH3D's
    camera, fixed orientation): x ~ U(camera_x), height ~ U(camera_height).
    The root starts at start_centre + N(0, start_spread) per axis and walks
    slowly, staying within walk_bound of start_centre (per axis).
    """
    camera_x: tuple = (4.2, 5.0)
    camera_height: tuple = (1.0, 1.0)
    start_centre: tuple = (1.0, 0.0)
    start_spread: float = 0.1
    walk_bound: float = 0.5


#: The real data's set-up (camLoc = (4.2..5.0, 0, 1); the files' default).
CLOTH3D_PLACEMENT = Placement()
#: Wider variety for training: nearer and farther cameras, higher and lower,
#: the body anywhere near the origin (the real 05325 stands at it).
VARIED_PLACEMENT = Placement(camera_x=(3.6, 6.5), camera_height=(0.8, 1.25), start_centre=(0.3, 0.0),
                             start_spread=0.6, walk_bound=1.5)
PLACEMENTS = {"cloth3d": CLOTH3D_PLACEMENT, "varied": VARIED_PLACEMENT}


@dataclass
class Lighting:
    """lights (K, 3): world directions towards each light times its intensity;
    ambient: uniform light (see `render.shade`)."""
    lights: np.ndarray
    ambient: float


@dataclass
class Outfit:
    """Skin and clothes of one sequence (see `sample_outfit`).

    skin (3,) RGB; hair (3,) or None (bald, as CLOTH3D's bodies); shoes (3,)
    or None (barefoot). top: 'tshirt' | 'longsleeve' | 'tank' | 'dress'
    (the dress's bodice); sleeve: arm coordinate where the sleeves end (0 at
    the shoulder joint, 1 at the wrist; below 0 none); neckline: metres below
    the neck joint at the front. bottom: 'trousers' | 'shorts' | 'skirt' |
    'dress'; hem: leg coordinate (0 hip, 1 ankle) where trousers and shorts
    end; length: metres below the waist where skirts and dresses end; waist:
    metres above the pelvis joint where top and bottom meet. loose_top,
    loose_bottom: metres the cloth stands off the body at its widest
    (garments "loose" only); flare: widening of a skirt per metre down; folds:
    relative amplitude of its folds. top_material, bottom_material:
    `render.Material` (the same one for a dress).
    """
    skin: np.ndarray
    hair: Optional[np.ndarray]
    shoes: Optional[np.ndarray]
    top: str
    sleeve: float
    neckline: float
    bottom: str
    hem: float
    length: float
    waist: float
    loose_top: float
    loose_bottom: float
    flare: float
    folds: float
    top_material: Material
    bottom_material: Material


@dataclass
class SequenceParams:
    """Everything drawn for one sequence (T frames). Arrays are float64.

    gender 0/1; betas (10,); poses (T, 72) axis-angle radians; trans (3, T)
    metres; zrot radians; cam_loc (3,) metres; lighting: `Lighting`;
    outfit: `Outfit`.
    """
    gender: int
    betas: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    zrot: float
    cam_loc: np.ndarray
    lighting: Lighting
    outfit: Outfit


# ----------------------------------------------------------------------------
# Poses from a file
# ----------------------------------------------------------------------------

def load_pose_file(path):
    """Axis-angle poses (T, 72) float64 from a CLOTH3D `info.mat` or an `.npz`.

    info.mat: its `poses` field (72, T). .npz: a `poses` array (T, 72) or
    (72, T) (a square (72, 72) array is read as (T, 72)). The global rotation
    must follow CLOTH3D (body standing along world +z); a warning is logged
    when it does not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--poses file not found: {path}")
    try:
        if path.suffix.lower() == ".mat":
            data = scipy.io.loadmat(str(path), variable_names=["poses"])
        elif path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                data = {key: npz[key] for key in npz.files}
        else:
            raise PoseFileError(f"{path}: unknown pose file type (expected a CLOTH3D info.mat or an .npz)")
    except PoseFileError:
        raise
    except Exception as error:
        raise PoseFileError(f"{path}: cannot be read ({type(error).__name__}: {error})") from None
    if "poses" not in data:
        raise PoseFileError(f"{path}: has no 'poses' array")
    poses = np.asarray(data["poses"], np.float64)
    if poses.ndim != 2 or 72 not in poses.shape:
        raise PoseFileError(f"{path}: 'poses' has shape {poses.shape}, expected (72, T) or (T, 72)")
    if poses.shape[1] != 72:
        poses = poses.T
    if not np.all(np.isfinite(poses)):
        raise PoseFileError(f"{path}: 'poses' contains NaN or Inf")
    body_up = Rotation.from_rotvec(poses[:, :3]).apply([0.0, 1.0, 0.0])
    if np.mean(body_up[:, 2]) < 0.5:
        log.warning("%s: the bodies do not stand along world +z (mean up . z = %.2f); CLOTH3D folds "
                    "a +90 deg rotation about x into pose[0:3]", path, np.mean(body_up[:, 2]))
    return poses


def pose_window(rng, pose_stream, num_frames, source="--poses"):
    """A random window of `num_frames` consecutive rows of `pose_stream` (L, 72)."""
    available = len(pose_stream)
    if available < num_frames:
        raise PoseFileError(f"{source}: has {available} frames, fewer than --frames {num_frames}")
    start = int(rng.integers(0, available - num_frames + 1))
    return pose_stream[start:start + num_frames].copy()


# ----------------------------------------------------------------------------
# The body model, in NumPy
# ----------------------------------------------------------------------------

def linear_blend_skinning(rotations, v_shaped, rest_joints, weights_t, parents, posedirs=None):
    """SMPL's skinning (Loper et al. 2015) of one body shape in T poses.

    rotations (T, 24, 3, 3): each joint's rotation relative to its parent
    (joint 0: global); v_shaped (V, 3) and rest_joints (24, 3): the shaped
    body at rest (`BodyModel.shaped`); weights_t (24, V): the skinning
    weights, transposed (float32 is enough: 1e-7 relative); parents (24,); posedirs (207, 3 V): the pose blend
    shapes, coordinate-major (x of every vertex, then y, then z), or None.
    Returns vertices (T, V, 3) and joints (T, 24, 3), float64 metres, in the
    model's frame (not root-centred):

        v_posed = v_shaped + posedirs . (R[1:] - I)
        G_k     = G_parent(k) . [R_k | J_k - J_parent(k)]
        v       = sum_k weights[:, k] * (G_k - [0 | G_k^R J_k]) . v_posed
    """
    rotations = np.asarray(rotations, np.float64)
    num_frames, num_vertices = len(rotations), len(v_shaped)
    v_posed = np.broadcast_to(v_shaped.T, (num_frames, 3, num_vertices))  # coordinate-major rows
    if posedirs is not None:
        feature = (rotations[:, 1:] - np.eye(3)).reshape(num_frames, -1)
        v_posed = v_shaped.T + (feature @ posedirs).reshape(num_frames, 3, num_vertices)
    local = np.zeros((num_frames, NUM_JOINTS, 4, 4))
    local[:, :, :3, :3] = rotations
    local[:, :, :3, 3] = rest_joints - np.where(np.asarray(parents)[:, None] >= 0, rest_joints[parents], 0.0)
    local[:, :, 3, 3] = 1.0
    world = np.empty_like(local)
    world[:, 0] = local[:, 0]
    for k in range(1, NUM_JOINTS):
        world[:, k] = world[:, parents[k]] @ local[:, k]
    skin = world[:, :, :3, :].copy()  # G_k with the rest joint taken out: [R | t - R J_k]
    skin[..., 3] -= np.einsum("tkij,kj->tki", world[:, :, :3, :3], rest_joints)
    # The blend of the joints' transforms per vertex, in the weights' precision (float32 halves its cost).
    per_vertex = (skin.reshape(num_frames, NUM_JOINTS, 12).transpose(0, 2, 1).reshape(num_frames * 12, NUM_JOINTS)
                  .astype(weights_t.dtype) @ weights_t).reshape(num_frames, 12, num_vertices)
    x, y, z = v_posed[:, 0], v_posed[:, 1], v_posed[:, 2]
    vertices = np.stack([per_vertex[:, 4 * i] * x + per_vertex[:, 4 * i + 1] * y + per_vertex[:, 4 * i + 2] * z
                         + per_vertex[:, 4 * i + 3] for i in range(3)], axis=-1)
    return vertices, world[:, :, :3, 3].copy()


@dataclass
class BodyModel:
    """The two body models (female, male) and what rendering needs from them.

    female, male: `smpl.SMPLModel` (NumPy arrays; no deep-learning framework
    is needed, so worker processes can pose bodies); faces (F, 3) int64;
    landmark_ids (18,) int64; outward: {gender: +1 or -1}, the sign that
    makes each model's vertex normals point out of the body.
    """
    female: object
    male: object
    faces: np.ndarray
    landmark_ids: np.ndarray
    outward: dict
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, models=None, smpl_dir=None):
        """From (female, male) models or paths, else from `smpl.find_models(smpl_dir)`."""
        import smpl  # NumPy only (smpl's Keras layer is not imported)

        female, male = models if models is not None else smpl.find_models(smpl_dir)
        female = female if isinstance(female, smpl.SMPLModel) else smpl.load_model(female)
        male = male if isinstance(male, smpl.SMPLModel) else smpl.load_model(male)
        if female.num_vertices != male.num_vertices or not np.array_equal(female.faces, male.faces) \
                or not np.array_equal(female.landmark_ids, male.landmark_ids):
            raise ValueError(f"body model: {female.path} and {male.path} do not share one mesh "
                             "(vertex count, faces and landmark ids must match)")
        faces = np.asarray(female.faces, np.int64)
        outward = {0: render.outward_sign(female.v_template, faces), 1: render.outward_sign(male.v_template, faces)}
        return cls(female=female, male=male, faces=faces,
                   landmark_ids=np.asarray(female.landmark_ids, np.int64), outward=outward)

    def model(self, gender):
        return self.male if gender == 1 else self.female

    def normals(self, vertices):
        """Unit vertex normals (V, 3) of posed vertices (V, 3), following the faces' winding."""
        if "normals" not in self._cache:
            self._cache["normals"] = render.MeshNormals(self.faces, self.female.num_vertices)
        return self._cache["normals"](vertices)

    def arrays(self, gender):
        """The model's arrays in float64, pose blend shapes flattened (None when all zero); cached."""
        if ("arrays", gender) not in self._cache:
            model = self.model(gender)
            posedirs = np.asarray(model.posedirs, np.float64)  # (V, 3, 207)
            shapedirs = np.asarray(model.shapedirs, np.float64)  # (V, 3, 10)
            self._cache[("arrays", gender)] = {
                "v_template": np.asarray(model.v_template, np.float64),
                "shapedirs": shapedirs.reshape(-1, shapedirs.shape[2]),
                "J_regressor": np.asarray(model.J_regressor, np.float64),
                "weights": np.asarray(model.weights, np.float64),
                "weights_t": np.ascontiguousarray(np.asarray(model.weights, np.float32).T),
                "parents": np.asarray(model.parents, np.int64),
                "posedirs": (np.ascontiguousarray(posedirs.transpose(1, 0, 2).reshape(-1, posedirs.shape[2]).T)
                             if np.any(posedirs) else None)}
        return self._cache[("arrays", gender)]

    def shaped(self, gender, betas):
        """The body of `betas` (10,) at rest: vertices (V, 3) and joints (24, 3), float64 metres
        (the last body asked for is kept: a sequence asks twice)."""
        betas = np.asarray(betas, np.float64)
        key = (gender, betas.tobytes())
        if self._cache.get("shaped", (None,))[0] != key:
            arrays = self.arrays(gender)
            v_shaped = arrays["v_template"] + (arrays["shapedirs"] @ betas).reshape(-1, 3)
            self._cache["shaped"] = (key, (v_shaped, arrays["J_regressor"] @ v_shaped))
        return self._cache["shaped"][1]

    def pose(self, rotations, shape):
        """rotations (T, 24, 3, 3), shape (11,) = betas + gender value (male where >= 0) ->
        vertices (T, V, 3), joints (T, 24, 3), float64, root-centred, metres."""
        gender = 1 if shape[10] >= 0 else 0
        arrays = self.arrays(gender)
        v_shaped, rest_joints = self.shaped(gender, shape[:NUM_BETAS])
        vertices, joints = linear_blend_skinning(rotations, v_shaped, rest_joints, arrays["weights_t"],
                                                 arrays["parents"], arrays["posedirs"])
        root = joints[:, :1]
        return vertices - root, joints - root

    def __getstate__(self):  # the float64 cache is rebuilt where needed, not sent to workers
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state


# ----------------------------------------------------------------------------
# Placing the body in front of the camera
# ----------------------------------------------------------------------------

def random_walk(rng, num_frames, placement=CLOTH3D_PLACEMENT, stride=1):
    """Root x, y (2, T) metres: a smooth random walk near the placement's start
    (`stride` walk steps per frame, for sequences of frames far apart)."""
    centre = np.asarray(placement.start_centre, np.float64)
    low, high = centre - placement.walk_bound, centre + placement.walk_bound
    position = np.clip(centre + rng.normal(0.0, placement.start_spread, 2), low, high)
    velocity = np.zeros(2)
    walk = np.empty((2, num_frames))
    for t in range(num_frames):
        for _ in range(stride):
            velocity = 0.9 * velocity + rng.normal(0.0, 0.0015, 2)
            position = np.clip(position + velocity, low, high)
        walk[:, t] = position
    return walk


def body_in_frame(vertices, trans, zrot, cam_loc):
    """True when every vertex (T, V, 3) of every frame projects inside the image."""
    z_rot = camera.z_rotation(zrot)
    world = (vertices + trans.T[:, None, :]) @ z_rot.T
    cam = camera.world_to_camera(world, cam_loc)
    if np.any(cam[..., 2] < 0.5):
        return False
    px = camera.project(cam)
    return bool(np.all(px >= FRAME_MARGIN_PX)
                and np.all(px[..., 0] <= camera.IMAGE_WIDTH - FRAME_MARGIN_PX)
                and np.all(px[..., 1] <= camera.IMAGE_HEIGHT - FRAME_MARGIN_PX))


def place_in_world(rng, vertices, name="sequence", placement=CLOTH3D_PLACEMENT, stride=1):
    """Draws (trans (3, T), zrot, cam_loc (3,)) that keep the whole body in view.

    vertices: (T, V, 3) root-centred posed vertices in the body frame before
    zRot (z up). trans z puts the lowest vertex of each frame on the floor.
    Only every 8th vertex is tested until a placement passes, then all are.
    """
    num_frames = len(vertices)
    height = -vertices[..., 2].min(axis=1)  # (T,) root height with feet on z = 0
    for _ in range(MAX_PLACEMENT_TRIES):
        zrot = rng.uniform(-np.pi, np.pi)
        cam_loc = np.array([rng.uniform(*placement.camera_x), 0.0, rng.uniform(*placement.camera_height)])
        trans = np.vstack([random_walk(rng, num_frames, placement, stride), height[None]])
        if body_in_frame(vertices[:, ::8], trans, zrot, cam_loc) and body_in_frame(vertices, trans, zrot, cam_loc):
            return trans, zrot, cam_loc
    raise RuntimeError(f"{name}: could not place the body fully inside the frame in "
                       f"{MAX_PLACEMENT_TRIES} tries (is the body model in metres?)")


# ----------------------------------------------------------------------------
# Appearance: lights, skin and clothes
# ----------------------------------------------------------------------------

#: Skin tones from pale to dark (display RGB); a tone is drawn between them.
SKIN_PALE = np.array([0.95, 0.80, 0.70])
SKIN_DARK = np.array([0.33, 0.21, 0.14])
HAIR_COLOURS = np.array([[0.06, 0.05, 0.04], [0.20, 0.13, 0.08], [0.42, 0.28, 0.16], [0.80, 0.68, 0.45],
                         [0.55, 0.54, 0.52], [0.55, 0.22, 0.10]])
#: Probabilities of (pattern) in `render.PATTERNS` order.
PATTERN_PROBABILITIES = (0.35, 0.15, 0.1, 0.15, 0.15, 0.1)
BOTTOMS = ("trousers", "shorts", "skirt", "dress")
BOTTOM_PROBABILITIES = (0.4, 0.15, 0.15, 0.3)
TOPS = ("tshirt", "longsleeve", "tank")
TOP_PROBABILITIES = (0.45, 0.3, 0.25)


def sample_lighting(rng):
    """A key light from a random direction 10-75 degrees above the horizon,
    half the time a weaker fill light, and ambient light."""
    def direction(elevation_range):
        azimuth, elevation = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(*elevation_range))
        return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])

    lights = [direction((10, 75)) * rng.uniform(0.6, 1.2)]
    if rng.random() < 0.5:
        lights.append(direction((-10, 60)) * rng.uniform(0.15, 0.45))
    return Lighting(lights=np.array(lights), ambient=float(rng.uniform(0.15, 0.45)))


def random_colours(rng, count):
    """`count` cloth colours (count, 3) RGB in [0, 1]: any hue, from greys to
    saturated, from dark to light."""
    hue = rng.uniform(0.0, 180.0, count)
    saturation = np.where(rng.random(count) < 0.2, rng.uniform(0, 40, count), rng.uniform(60, 255, count))
    value = rng.uniform(40, 245, count)
    hsv = np.stack([hue, saturation, value], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float64) / 255.0


def sample_material(rng):
    """A random `render.Material`: pattern, 2-5 colours, a period of 3-25 cm,
    a random orientation (stripes mostly horizontal or vertical)."""
    pattern = render.PATTERNS[rng.choice(len(render.PATTERNS), p=PATTERN_PROBABILITIES)]
    colours = random_colours(rng, int(rng.integers(2, 6)))
    if rng.random() < 0.5:  # a second colour close to the first: subtle patterns
        colours[1] = np.clip(colours[0] * rng.uniform(0.6, 1.4) + rng.normal(0, 0.05, 3), 0, 1)
    if rng.random() < 0.7:  # along the body's axes (horizontal / vertical stripes), else oblique
        axes = np.eye(3)[rng.permutation(3)]
    else:
        axes = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    scale = {"cells": rng.uniform(0.08, 0.25), "noise": rng.uniform(0.05, 0.3)}.get(pattern, rng.uniform(0.03, 0.15))
    return Material(pattern=pattern, colours=colours, scale=float(scale), axes=axes,
                    seed=int(rng.integers(2**31)), grain=float(rng.uniform(0.0, 0.12)))


def sample_outfit(rng):
    """One sequence's skin and clothes (`Outfit`), aimed at CLOTH3D++'s renders:
    bald and barefoot most of the time, dresses, skirts, trousers and shorts
    with T-shirts, long-sleeved or sleeveless tops."""
    tone = rng.uniform(0.0, 1.0)
    skin = np.clip((1.0 - tone) * SKIN_PALE + tone * SKIN_DARK + rng.normal(0.0, 0.02, 3), 0.0, 1.0)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.8, 1.2) if rng.random() < 0.3 else None
    shoes = random_colours(rng, 1)[0] * 0.5 if rng.random() < 0.3 else None
    bottom = BOTTOMS[rng.choice(len(BOTTOMS), p=BOTTOM_PROBABILITIES)]
    top = "dress" if bottom == "dress" else TOPS[rng.choice(len(TOPS), p=TOP_PROBABILITIES)]
    sleeve = {"tshirt": rng.uniform(0.15, 0.5), "longsleeve": rng.uniform(0.8, 1.0), "tank": -1.0,
              "dress": rng.choice([-1.0, rng.uniform(0.1, 0.4), rng.uniform(0.7, 1.0)], p=[0.5, 0.3, 0.2])}[top]
    top_material = sample_material(rng)
    bottom_material = top_material if bottom == "dress" else sample_material(rng)
    return Outfit(
        skin=skin, hair=None if hair is None else np.clip(hair, 0, 1), shoes=shoes, top=top, sleeve=float(sleeve),
        neckline=float(rng.uniform(0.0, 0.12) if top in ("tank", "dress") else rng.uniform(0.0, 0.06)),
        bottom=bottom, hem=float(rng.uniform(0.9, 1.0) if bottom == "trousers" else rng.uniform(0.15, 0.5)),
        length=float(rng.uniform(0.35, 0.95) if bottom == "dress" else rng.uniform(0.3, 0.8)),
        waist=float(rng.uniform(-0.02, 0.12)), loose_top=float(rng.uniform(0.0, 0.03)),
        loose_bottom=float(rng.uniform(0.0, 0.09)), flare=float(rng.uniform(0.05, 0.45)),
        folds=float(rng.uniform(0.0, 0.08)), top_material=top_material, bottom_material=bottom_material)


@dataclass
class BodyRegions:
    """Where each vertex lies on one shaped body at rest (body frame: x to the
    body's left, y up, z forward; metres).

    rest (V, 3) vertices; joints (24, 3); part (V,) the dominant skinning
    joint; arm (V,): position along the arm, 0 at the shoulder joint and 1
    at the wrist (NaN off the arms); leg (V,): 0 at the hip joint and 1 at
    the ankle (NaN off the legs).
    """
    rest: np.ndarray
    joints: np.ndarray
    part: np.ndarray
    arm: np.ndarray
    leg: np.ndarray

    @classmethod
    def of(cls, v_shaped, rest_joints, weights):
        part = np.argmax(weights, axis=1)
        arm, leg = np.full(len(part), np.nan), np.full(len(part), np.nan)
        for chains, coordinate in ((_ARMS, arm), (_LEGS, leg)):
            for chain in chains.values():
                members = np.isin(part, chain)
                start, end = rest_joints[chain[0]], rest_joints[chain[2]]
                axis = end - start
                coordinate[members] = (v_shaped[members] - start) @ axis / (axis @ axis)
        return cls(rest=v_shaped, joints=rest_joints, part=part, arm=arm, leg=leg)

    def masks(self, outfit):
        """Boolean (V,) masks: top, bottom, skin parts (hands, feet, hair)."""
        y, joints, part = self.rest[:, 1], self.joints, self.part
        on_arm, on_leg = ~np.isnan(self.arm), ~np.isnan(self.leg)
        hand = np.isin(part, (22, 23)) | (on_arm & (np.nan_to_num(self.arm) > 1.0))
        foot = np.isin(part, (10, 11)) | (on_leg & (np.nan_to_num(self.leg) > 0.97))
        trunk = np.isin(part, _TORSO_JOINTS) | (part == _NECK)
        waist_y = joints[0, 1] + outfit.waist
        front = self.rest[:, 2] > joints[_NECK, 2]
        neck_y = joints[_NECK, 1] - np.where(front, outfit.neckline, outfit.neckline / 3.0)
        sleeve = on_arm & ~hand & (np.nan_to_num(self.arm, nan=9) < outfit.sleeve)
        top = (trunk & (y >= waist_y) & (y < neck_y)) | sleeve
        if outfit.bottom in ("skirt", "dress"):  # painted down the legs to the hem (under the shell when loose)
            leg_length = np.linalg.norm(joints[7] - joints[1])
            leg_end = (outfit.length - (waist_y - joints[1, 1])) / leg_length
        else:
            leg_end = outfit.hem
        bottom = (trunk & (y < waist_y)) | (on_leg & ~foot & (np.nan_to_num(self.leg, nan=9) < leg_end))
        head = part == _HEAD
        hair = head & ((y > joints[_HEAD, 1] + 0.07) | ((y > joints[_HEAD, 1] - 0.03)
                                                       & (self.rest[:, 2] < joints[_HEAD, 2] - 0.01)))
        return {"top": top & ~bottom, "bottom": bottom, "foot": foot, "hair": hair}


def outfit_albedo(outfit, regions):
    """Per-vertex albedo (V, 3) RGB in [0, 1] and cloth offset (V,) metres
    (how far loose cloth stands off the body along its normal)."""
    masks = regions.masks(outfit)
    albedo = np.broadcast_to(outfit.skin, regions.rest.shape).copy()
    offset = np.zeros(len(albedo))
    for name, material in (("top", outfit.top_material), ("bottom", outfit.bottom_material)):
        albedo[masks[name]] = render.material_albedo(material, regions.rest[masks[name]])
    if outfit.shoes is not None:
        albedo[masks["foot"]] = outfit.shoes
    if outfit.hair is not None:
        albedo[masks["hair"]] = outfit.hair
    on_arm = np.nan_to_num(regions.arm)
    offset[masks["top"]] = 0.004 + outfit.loose_top * (1.0 + 0.5 * np.clip(on_arm[masks["top"]], 0, 1))
    if outfit.bottom in ("trousers", "shorts"):  # wide legs flare towards the hem
        down = np.clip(np.nan_to_num(regions.leg[masks["bottom"]]), 0.0, 1.0)
        offset[masks["bottom"]] = 0.005 + outfit.loose_bottom * down ** 2
    return albedo, offset


@dataclass
class SkirtPlan:
    """What `skirt_shell` needs from one body and outfit: waist (indices of
    the vertices on the waist line), lower (indices of the vertices a skirt
    must cover: hips and legs), and the shell's texture points at rest
    (rings * around, 3)."""
    waist: np.ndarray
    lower: np.ndarray
    texture_points: np.ndarray
    rings: int
    around: int


def plan_skirt(outfit, regions, rings=10, around=40):
    """The `SkirtPlan` of a skirt or dress (None for other bottoms)."""
    if outfit.bottom not in ("skirt", "dress"):
        return None
    y = regions.rest[:, 1]
    waist_y = regions.joints[0, 1] + outfit.waist
    trunk = np.isin(regions.part, _TORSO_JOINTS)
    on_leg = ~np.isnan(regions.leg)
    waist = np.flatnonzero(trunk & (np.abs(y - waist_y) < 0.02))
    lower = np.flatnonzero((trunk & (y < waist_y + 0.02)) | (on_leg & ~np.isin(regions.part, (10, 11))))
    theta = 2.0 * np.pi * np.arange(around) / around
    depth = outfit.length * np.arange(rings) / (rings - 1)
    radius = 0.17
    texture_points = np.stack(np.broadcast_arrays(radius * np.cos(theta)[None, :], waist_y - depth[:, None],
                                                  radius * np.sin(theta)[None, :]), axis=-1).reshape(-1, 3)
    return SkirtPlan(waist=waist, lower=lower, texture_points=texture_points, rings=rings, around=around)


def skirt_shell(vertices, global_rotation, plan, outfit, seed=0):
    """A skirt or dress hanging from the waist around both legs, for one frame.

    vertices (V, 3): the posed body, root-centred, z up (before zRot);
    global_rotation (3, 3): the body's global rotation (pose joint 0).
    Rings of `plan.around` points hang straight down (world -z) from the
    waist to `outfit.length` below it (above the floor); each ring encloses
    the hips and legs at its height (their support in each direction, plus
    1.5 cm), is at least as wide as the ring above plus the flare, and waves
    by `outfit.folds`. Returns vertices (rings * around, 3) and faces
    (F, 3) wound outward (right-hand rule).
    """
    rings, around = plan.rings, plan.around
    waist = vertices[plan.waist]
    centre, top_z = waist[:, :2].mean(axis=0), waist[:, 2].mean()
    left, forward = global_rotation[:2, 0], global_rotation[:2, 2]  # the body's x and z axes, seen from above
    left = left / max(np.linalg.norm(left), 1e-9)
    forward = forward - (forward @ left) * left
    forward = forward / max(np.linalg.norm(forward), 1e-9)
    theta = 2.0 * np.pi * np.arange(around) / around
    directions = np.cos(theta)[:, None] * left + np.sin(theta)[:, None] * forward  # (around, 2)
    floor = vertices[:, 2].min() + 0.03
    length = min(outfit.length, max(top_z - floor, 0.05))
    heights = top_z - length * np.arange(rings) / (rings - 1)
    lower = vertices[plan.lower]
    support = (lower[:, :2] - centre) @ directions.T  # (n, around)
    band = 0.6 * length / (rings - 1) + 0.02
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 2)
    count = 5 + seed % 5
    radius = np.zeros((rings, around))
    for k, z in enumerate(heights):
        near = np.abs(lower[:, 2] - z) < band
        reach = support[near].max(axis=0) + 0.015 if near.any() else np.zeros(around)
        radius[k] = np.maximum(reach, 0.06)
        if k:
            radius[k] = np.maximum(radius[k], radius[k - 1] + outfit.flare * (heights[k - 1] - z))
    down = np.arange(rings)[:, None] / (rings - 1)
    radius *= 1.0 + outfit.folds * down * np.sin(count * theta[None, :] + phase[0] + phase[1] * down)
    points = np.concatenate([centre + radius[..., None] * directions[None], np.broadcast_to(
        heights[:, None, None], (rings, around, 1))], axis=-1).reshape(-1, 3)
    a = np.arange(rings - 1)[:, None] * around + np.arange(around)[None, :]
    b = np.arange(rings - 1)[:, None] * around + (np.arange(around)[None, :] + 1) % around
    faces = np.concatenate([np.stack([a, a + around, b], -1).reshape(-1, 3),
                            np.stack([b, a + around, b + around], -1).reshape(-1, 3)])
    tri = points[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.einsum("fi,fi->", normal[:, :2], tri.mean(axis=1)[:, :2] - centre) < 0:
        faces = faces[:, ::-1]  # wind outward
    return points, faces


# ----------------------------------------------------------------------------
# One sequence in memory, and its frames
# ----------------------------------------------------------------------------

@dataclass
class DrawnSequence:
    """One sequence drawn in memory (T frames).

    params: `SequenceParams`; rotations (T, 24, 3, 3); vertices (T, V, 3) and
    joints (T, 24, 3): the posed body, root-centred, z up, before zRot,
    float64 metres; albedo (V, 3) in [0, 1]; offset (V,) metres the cloth
    stands off the body (zeros for tight garments); skirt: `SkirtPlan` of a
    loose skirt or dress, else None; skirt_albedo (rings * around, 3) or None.
    """
    params: SequenceParams
    rotations: np.ndarray
    vertices: np.ndarray
    joints: np.ndarray
    albedo: np.ndarray
    offset: np.ndarray
    skirt: Optional[SkirtPlan] = None
    skirt_albedo: Optional[np.ndarray] = None


def draw_sequence(rng, body, num_frames, pose_stream=None, pose_source="--poses", name="sequence",
                  placement=CLOTH3D_PLACEMENT, garments="tight", frame_stride=1):
    """Draws one sequence with `rng`: body, motion, placement, lights and outfit.

    body: `BodyModel`; pose_stream: (L, 72) poses to take a window from (None:
    `pose_prior`); placement: a `Placement`; garments: "tight" (painted on
    the body) or "loose" (own geometry, see `outfit_albedo` and
    `skirt_shell`); frame_stride: the frames are every frame_stride-th of a
    longer motion (more different poses per sequence). Returns a
    `DrawnSequence`.
    """
    if garments not in GARMENT_MODES:
        raise ValueError(f"garments {garments!r} is not one of {GARMENT_MODES}")
    gender = int(rng.integers(0, 2))
    betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -2.5, 2.5)
    span = (num_frames - 1) * frame_stride + 1
    if pose_stream is None:
        poses = pose_prior.sample_pose_sequence(rng, span)
    else:
        poses = pose_window(rng, pose_stream, span, pose_source)
    poses = poses[::frame_stride]
    rotations = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(num_frames, NUM_JOINTS, 3, 3)
    vertices, joints = body.pose(rotations, np.concatenate([betas, [2.0 * (gender - 0.5)]]))
    trans, zrot, cam_loc = place_in_world(rng, vertices, name, placement, stride=frame_stride)
    params = SequenceParams(gender=gender, betas=betas, poses=poses, trans=trans, zrot=zrot, cam_loc=cam_loc,
                            lighting=sample_lighting(rng), outfit=sample_outfit(rng))
    v_shaped, rest_joints = body.shaped(gender, betas)
    regions = BodyRegions.of(v_shaped, rest_joints, body.arrays(gender)["weights"])
    albedo, offset = outfit_albedo(params.outfit, regions)
    drawn = DrawnSequence(params=params, rotations=rotations, vertices=vertices, joints=joints, albedo=albedo,
                          offset=offset if garments == "loose" else np.zeros_like(offset))
    if garments == "loose":
        drawn.skirt = plan_skirt(params.outfit, regions)
        if drawn.skirt is not None:
            drawn.skirt_albedo = render.material_albedo(params.outfit.bottom_material, drawn.skirt.texture_points)
    return drawn


@dataclass
class FrameScene:
    """One frame's meshes in the world: vertices (N, 3) metres, faces (F, 3),
    rgb (N, 3) shaded colours in [0, 1], outward (F,) the sign that makes
    each face's winding normal point outward (for back-face culling)."""
    vertices: np.ndarray
    faces: np.ndarray
    rgb: np.ndarray
    outward: np.ndarray


def frame_scene(drawn, body, t):
    """The `FrameScene` of frame t of a `DrawnSequence`: the body (cloth
    offsets applied) and any skirt shell, in world coordinates, shaded."""
    params = drawn.params
    z_rot = camera.z_rotation(params.zrot)
    world = (drawn.vertices[t] + params.trans[:, t]) @ z_rot.T
    sign = body.outward[params.gender]
    normals = sign * body.normals(world)
    if drawn.offset.any():
        world = world + normals * drawn.offset[:, None]
    vertices, faces, all_normals, albedo = [world], [body.faces], [normals], [drawn.albedo]
    outward = [np.full(len(body.faces), sign)]
    if drawn.skirt is not None:
        points, shell_faces = skirt_shell(drawn.vertices[t], drawn.rotations[t, 0], drawn.skirt, params.outfit,
                                          seed=params.outfit.bottom_material.seed)
        shell = (points + params.trans[:, t]) @ z_rot.T
        vertices.append(shell)
        faces.append(shell_faces + len(world))
        all_normals.append(render.vertex_normals(shell, shell_faces))
        albedo.append(drawn.skirt_albedo)
        outward.append(np.ones(len(shell_faces)))
    rgb = render.shade(np.concatenate(all_normals), np.concatenate(albedo), params.lighting.lights,
                       params.lighting.ambient)
    return FrameScene(vertices=np.concatenate(vertices), faces=np.concatenate(faces), rgb=rgb,
                      outward=np.concatenate(outward))


def _dither(rng, height, width):
    """The grey 0/1 dither Blender leaves where alpha is 0, (H, W, 3) uint8."""
    background = (rng.random((height, width)) < BACKGROUND_ONE_PROBABILITY).astype(np.uint8)
    return np.repeat(background[..., None], 3, axis=2)


_DITHER_TILES = {}


def _dither_window(rng, size):
    """A random size x size window of a fixed 4 size x 4 size dither: the
    same look as `_dither` at a fraction of its cost (for crops)."""
    if size not in _DITHER_TILES:
        _DITHER_TILES[size] = _dither(np.random.default_rng(0), 4 * size, 4 * size)
    row, col = rng.integers(0, 3 * size, 2)
    return _DITHER_TILES[size][row:row + size, col:col + size]


def render_frame(scene, cam_loc, rng):
    """RGBA frame (480, 640, 4) uint8, RGB order, of a `FrameScene` seen from cam_loc (3,)."""
    cam = camera.world_to_camera(scene.vertices, cam_loc)
    return render.render_mesh(cam, scene.faces, scene.rgb, camera.FOCAL_PX, camera.PRINCIPAL_POINT,
                              camera.IMAGE_HEIGHT, camera.IMAGE_WIDTH,
                              background_rgb=_dither(rng, camera.IMAGE_HEIGHT, camera.IMAGE_WIDTH),
                              outward=scene.outward)


def render_crop(scene, cam_loc, crop_from_image, size, rng, antialias=4):
    """The crop window of a frame, rendered directly: BGRA (size, size, 4) uint8.

    crop_from_image (2, 3): the affine from image coordinates to crop pixels
    (`cloth3d.FrameTargets.crop_from_image`). It is folded into the
    projection, so this equals `cloth3d.crop_rgba` of `render_frame`'s frame
    up to resampling: the person is drawn at the crop's resolution instead
    of warped bilinearly from the frame's, and where the crop reaches past
    the frame the 0/1 dither continues instead of black. BGRA, as
    `cloth3d.read_rgba` gives frames.
    antialias: n x n samples in each silhouette pixel (1: one sample at the
    centre; see `render.render_mesh`).
    """
    cam = camera.world_to_camera(scene.vertices, cam_loc)
    points = apply_affine(crop_from_image, camera.project(cam)) + 0.5  # crop pixel centres are at j + 0.5 here
    mirrored = np.linalg.det(np.asarray(crop_from_image)[:, :2]) < 0  # a flip reverses the screen winding
    return render.render_projected(points, cam[:, 2], scene.faces, scene.rgb[:, ::-1], size, size,
                                   background_rgb=_dither_window(rng, size), antialias=antialias,
                                   outward=-scene.outward if mirrored else scene.outward)


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

#: Fixed text of the 116-byte MAT-file header (scipy writes the current time there),
#: so that a seed reproduces the .mat files byte for byte.
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file Platform: posix, Created by: DataReader.synthesize"


def save_mat(path, arrays):
    """scipy.io.savemat (MATLAB 5 format, as the real files) with a fixed header text."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, arrays)
    data = bytearray(buffer.getvalue())
    data[:116] = MAT_HEADER_TEXT.ljust(116, b" ")
    Path(path).write_bytes(bytes(data))


def write_info(folder, params):
    """info.mat with the real files' field names, shapes and dtypes."""
    save_mat(folder / "info.mat", {
        "poses": np.ascontiguousarray(params.poses.T, np.float64),           # (72, T)
        "shape": params.betas.reshape(1, NUM_BETAS).astype(np.float64),     # (1, 10)
        "gender": np.array([[params.gender]], np.int64),                     # (1, 1)
        "trans": np.ascontiguousarray(params.trans, np.float64),            # (3, T)
        "zrot": np.array([[params.zrot]], np.float64),                       # (1, 1)
        "camLoc": params.cam_loc.reshape(1, 3).astype(np.float64),           # (1, 3)
    })


def write_info_body(folder, joints, landmarks, rotations):
    """info_body.mat: joints (T, 24, 3), lmarks (T, 18, 3), rotations (T, 24, 3, 3), float32."""
    save_mat(folder / "info_body.mat", {
        "joints": joints.astype(np.float32), "lmarks": landmarks.astype(np.float32),
        "rotations": rotations.astype(np.float32)})


def write_sequence(folder, rng, body, num_frames, pose_stream=None, pose_source="--poses", on_frame=None,
                   garments="tight", placement=CLOTH3D_PLACEMENT):
    """Draws one sequence with `rng` and writes its frames, info.mat and info_body.mat.

    folder: sequence folder (created); rng: numpy Generator; body: `BodyModel`;
    pose_stream: (L, 72) poses to take a window from (None: `pose_prior`);
    on_frame: called after each frame is written (progress); garments,
    placement: see `draw_sequence`. Returns the `SequenceParams`.
    """
    folder = Path(folder)
    drawn = draw_sequence(rng, body, num_frames, pose_stream, pose_source, folder.name, placement, garments)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        rgba = render_frame(frame_scene(drawn, body, t), drawn.params.cam_loc, rng)
        path = folder / f"{t:04d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
            raise OSError(f"{path}: could not write the frame")
        if on_frame is not None:
            on_frame()
    write_info(folder, drawn.params)
    write_info_body(folder, drawn.joints, drawn.vertices[:, body.landmark_ids], drawn.rotations)
    return drawn.params


def split_sequences(num_sequences):
    """(train indices, val indices): the last ~10% (>= 1 when N >= 2) are validation."""
    num_val = 0 if num_sequences < 2 else max(1, int(round(VAL_FRACTION * num_sequences)))
    indices = list(range(num_sequences))
    return indices[:num_sequences - num_val], indices[num_sequences - num_val:]


def _check_output(out_dir, num_sequences, overwrite):
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} exists and is not a folder")
    clashing = [p for p in (out_dir / "train.txt", out_dir / "val.txt") if p.exists()]
    clashing += [out_dir / f"{i:05d}" for i in range(num_sequences) if (out_dir / f"{i:05d}").exists()]
    if clashing and not overwrite:
        more = f" and {len(clashing) - 1} more" if len(clashing) > 1 else ""
        raise FileExistsError(f"--out {out_dir} already holds {clashing[0].name}{more}; "
                              "pass --overwrite to replace them")


def synthesize(out_dir: Union[str, os.PathLike], num_sequences: int, num_frames: int, seed: int = 0,
               smpl_dir: Optional[Union[str, os.PathLike]] = None, poses_file: Optional[Union[str, os.PathLike]] = None,
               models: Optional[tuple] = None, overwrite: bool = False, progress: bool = True, garments: str = "tight",
               cameras: str = "cloth3d") -> dict[str, list[str]]:
    """Writes `num_sequences` synthetic sequences of `num_frames` frames under `out_dir`.

    out_dir: frames root to write (created); seed: int, the only source of
    randomness; smpl_dir: folder with official SMPL files (else `smpl.find_models`
    decides: official SMPL if found, else the open body); poses_file: CLOTH3D
    info.mat or .npz of poses (else the built-in `pose_prior`); models:
    optional (female, male) `smpl.SMPLModel`s or paths, overriding smpl_dir;
    overwrite: replace existing sequences / lists; progress: tqdm bar;
    garments: "tight" or "loose" (see `draw_sequence`); cameras: "cloth3d"
    or "varied" (`PLACEMENTS`).
    Returns {"train": [lines], "val": [lines]} as written to train.txt / val.txt.
    """
    if num_sequences < 1 or num_frames < 1:
        raise ValueError(f"need at least one sequence and one frame, got --sequences {num_sequences} "
                         f"--frames {num_frames}")
    if num_frames > 10000:
        raise ValueError(f"--frames {num_frames}: frame names have 4 digits (at most 10000 frames)")
    if garments not in GARMENT_MODES:
        raise ValueError(f"--garments {garments!r}: expected one of {', '.join(GARMENT_MODES)}")
    if cameras not in PLACEMENTS:
        raise ValueError(f"--cameras {cameras!r}: expected one of {', '.join(PLACEMENTS)}")
    out_dir = Path(out_dir)
    _check_output(out_dir, num_sequences, overwrite)
    pose_stream = load_pose_file(poses_file) if poses_file is not None else None
    if pose_stream is not None and len(pose_stream) < num_frames:
        raise PoseFileError(f"{poses_file}: has {len(pose_stream)} frames, fewer than --frames {num_frames}")
    body = BodyModel.load(models, smpl_dir)
    log.info("body model: %s, %s (%d vertices, %d faces)", body.female.path, body.male.path,
             body.female.num_vertices, len(body.faces))

    from tqdm import tqdm
    out_dir.mkdir(parents=True, exist_ok=True)
    with tqdm(total=num_sequences * num_frames, unit="frame", desc="synthesising", disable=not progress) as bar:
        for index in range(num_sequences):
            write_sequence(out_dir / f"{index:05d}", np.random.default_rng([seed, index]), body, num_frames,
                           pose_stream, str(poses_file), on_frame=lambda: bar.update(1), garments=garments,
                           placement=PLACEMENTS[cameras])

    train, val = split_sequences(num_sequences)
    lists = {}
    for split, indices in (("train", train), ("val", val)):
        lines = [f"{i:05d}/{t:04d}.png" for i in indices for t in range(num_frames)]
        (out_dir / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
        lists[split] = lines
    return lists


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m DataReader.synthesize",
        description="Write synthetic CLOTH3D++-format sequences (frames, info.mat, info_body.mat, "
                    "train.txt, val.txt) rendered from the SMPL body model.")
    parser.add_argument("--out", required=True, help="frames root to write, e.g. Data/frames")
    parser.add_argument("--sequences", type=int, default=8, help="number of sequences (default 8)")
    parser.add_argument("--frames", type=int, default=25, help="frames per sequence (default 25)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--smpl-dir", default=None,
                        help="folder with the official SMPL files (default: smpl/models or "
                             "$SMPLR_SMPL_DIR, else the open body)")
    parser.add_argument("--poses", default=None,
                        help="CLOTH3D info.mat or .npz with 'poses' (T, 72) / (72, T) to use "
                             "instead of the built-in pose sampler")
    parser.add_argument("--garments", choices=GARMENT_MODES, default="tight",
                        help="tight: clothes painted on the body (its silhouette); loose: clothes with their "
                             "own shape (wide trousers, skirt and dress shells), as the training stream "
                             "(default tight)")
    parser.add_argument("--cameras", choices=tuple(PLACEMENTS), default="cloth3d",
                        help="cloth3d: the real data's camera (4.2-5 m away, 1 m high); varied: 3.6-6.5 m, "
                             "0.8-1.25 m high, as the training stream (default cloth3d)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing sequences and lists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.time()
    try:
        lists = synthesize(args.out, args.sequences, args.frames, seed=args.seed, smpl_dir=args.smpl_dir,
                           poses_file=args.poses, overwrite=args.overwrite, progress=not args.quiet,
                           garments=args.garments, cameras=args.cameras)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(lists['train'])} train and {len(lists['val'])} val frames to {args.out} "
          f"in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
