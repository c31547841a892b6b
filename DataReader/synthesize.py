"""Synthetic CLOTH3D++-format sequences from a body model, so everything runs on a fresh machine.

    python -m DataReader.synthesize --out Data/frames --sequences 8 --frames 25 --seed 0 \
        [--smpl-dir DIR] [--poses FILE] [--overwrite]

writes, under --out, one folder per sequence (`00000`, `00001`, ...) holding
`NNNN.png` frames, `info.mat` and `info_body.mat`, plus the data lists
`train.txt` and `val.txt` (lines `SEQ/NNNN.png`, split by sequence; the last
~10% of sequences, at least one when there are two or more, are validation).
The same `DataReader.CLOTH3DReader` reads this and real CLOTH3D++ data.

Files (checked against the real samples; names, dtypes and orientation match):
- info.mat: `poses` (72, T) float64 axis-angle, `shape` (1, 10) float64 betas,
  `gender` (1, 1) int64 (0 female, 1 male), `trans` (3, T) float64 root
  position (metres, world axes before zRot), `zrot` (1, 1) float64 radians,
  `camLoc` (1, 3) float64 metres. (The real files' outfit, lights, tightness,
  seq fields have no synthetic counterpart and are not written.)
- info_body.mat: `joints` (T, 24, 3), `lmarks` (T, 18, 3) (the model's 18
  landmark vertices), `rotations` (T, 24, 3, 3) = Rodrigues(poses), all
  float32, from the SMPL layer: root-centred (joints[:, 0] = 0). (The real
  files also carry `B`, a (14475, 3) array not described by SPEC and unused by
  the reader; it is not written.)
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
camLoc = (U(4.2, 5.0), 0, 1); trans: x, y a slow random walk near (1, 0),
z = the height that puts the lowest vertex on the floor (z = 0). zrot and the
walk are redrawn until the whole body stays in the frame in every frame.
Appearance: skin, top, bottom and shoe colours per body part (from each
vertex's dominant skinning joint), Lambert shading under a random directional
light plus ambient light.

Library: `synthesize(out_dir, num_sequences, num_frames, seed, smpl_dir=None,
poses_file=None, models=None, overwrite=False, progress=True)` does what the
CLI does and returns the data lists; `write_sequence` writes one sequence;
`load_pose_file` reads --poses files. The body model is the official SMPL when
`smpl.find_models` finds it, else the project's open body.
"""
import argparse
import io
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.io
from scipy.spatial.transform import Rotation

from smpl.constants import NUM_BETAS, NUM_JOINTS

from . import camera, pose_prior, render

log = logging.getLogger(__name__)

#: Fraction of sequences written to val.txt (at least one when there are >= 2).
VAL_FRACTION = 0.1
#: Range of the camera's distance along world x (metres); it stands at (x, 0, 1).
CAMERA_X_RANGE = (4.2, 5.0)
CAMERA_HEIGHT = 1.0
#: Mean start of the root translation (metres, before zRot), and the walk's bound around it.
TRANS_CENTRE = np.array([1.0, 0.0])
TRANS_MAX_OFFSET = 0.5
#: The whole body must project at least this far (pixels) inside the image.
FRAME_MARGIN_PX = 2.0
MAX_PLACEMENT_TRIES = 200
#: Probability of a 1 (else 0) in the grey dither outside the person (real frames: ~0.61).
BACKGROUND_ONE_PROBABILITY = 0.6
SMPL_BATCH = 64

# Body parts by dominant skinning joint (SMPL joint ids).
_SKIN_JOINTS = (12, 15, 20, 21, 22, 23)      # neck, head, wrists, hands
_FOREARM_JOINTS = (18, 19)                    # elbows: skin with short sleeves
_BOTTOM_JOINTS = (0, 1, 2, 4, 5)              # pelvis, thighs, shins
_SHOE_JOINTS = (7, 8, 10, 11)                 # ankles, toes


class PoseFileError(ValueError):
    """A --poses file that cannot be used; the message names the file."""


@dataclass
class SequenceParams:
    """Everything drawn for one sequence (T frames). Arrays are float64.

    gender 0/1; betas (10,); poses (T, 72) axis-angle radians; trans (3, T)
    metres; zrot radians; cam_loc (3,) metres; light_dir (3,) unit world
    vector towards the light; ambient in [0, 1]; part_rgb (4, 3) colours in
    [0, 1] of skin, top, bottom, shoes; short_sleeves bool.
    """
    gender: int
    betas: np.ndarray
    poses: np.ndarray
    trans: np.ndarray
    zrot: float
    cam_loc: np.ndarray
    light_dir: np.ndarray
    ambient: float
    part_rgb: np.ndarray
    short_sleeves: bool


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
# Drawing one sequence
# ----------------------------------------------------------------------------

def sample_appearance(rng):
    """(light_dir (3,), ambient, part_rgb (4, 3), short_sleeves) for one sequence."""
    azimuth = rng.uniform(-np.pi, np.pi)
    elevation = rng.uniform(np.radians(20), np.radians(70))
    light_dir = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                          np.sin(elevation)])
    ambient = rng.uniform(0.25, 0.4)
    skin_tone = rng.uniform(0.25, 1.0)
    skin = np.array([0.95, 0.75, 0.6]) * skin_tone + np.array([0.04, 0.03, 0.02])
    hsv = np.stack([rng.uniform(0, 180, 3), rng.uniform(40, 230, 3), rng.uniform(60, 240, 3)], 1)
    clothes = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0] / 255.0  # top, bottom, shoes
    clothes[2] *= 0.4  # shoes darker
    return light_dir, ambient, np.vstack([skin[None], clothes]), bool(rng.integers(0, 2))


def part_albedo(weights, part_rgb, short_sleeves):
    """Per-vertex colour (V, 3) from the dominant skinning joint of each vertex.

    weights: (V, 24) skinning weights; part_rgb (4, 3): skin, top, bottom, shoes.
    """
    dominant = np.argmax(weights, axis=1)
    part = np.ones(len(dominant), np.int64)  # top by default (torso, collars, arms)
    skin = _SKIN_JOINTS + (_FOREARM_JOINTS if short_sleeves else ())
    part[np.isin(dominant, skin)] = 0
    part[np.isin(dominant, _BOTTOM_JOINTS)] = 2
    part[np.isin(dominant, _SHOE_JOINTS)] = 3
    return part_rgb[part]


def random_walk(rng, num_frames):
    """Root x, y (2, T) metres: a smooth random walk near TRANS_CENTRE."""
    start = TRANS_CENTRE + rng.normal(0.0, 0.1, 2)
    velocity = np.zeros(2)
    walk = np.empty((2, num_frames))
    position = start.copy()
    for t in range(num_frames):
        velocity = 0.9 * velocity + rng.normal(0.0, 0.0015, 2)
        position = np.clip(position + velocity, TRANS_CENTRE - TRANS_MAX_OFFSET, TRANS_CENTRE + TRANS_MAX_OFFSET)
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


def place_in_world(rng, vertices, name="sequence"):
    """Draws (trans (3, T), zrot, cam_loc (3,)) that keep the whole body in view.

    vertices: (T, V, 3) root-centred posed vertices in the body frame before
    zRot (z up). trans z puts the lowest vertex of each frame on the floor.
    """
    num_frames = len(vertices)
    height = -vertices[..., 2].min(axis=1)  # (T,) root height with feet on z = 0
    for _ in range(MAX_PLACEMENT_TRIES):
        zrot = rng.uniform(-np.pi, np.pi)
        cam_loc = np.array([rng.uniform(*CAMERA_X_RANGE), 0.0, CAMERA_HEIGHT])
        trans = np.vstack([random_walk(rng, num_frames), height[None]])
        if body_in_frame(vertices, trans, zrot, cam_loc):
            return trans, zrot, cam_loc
    raise RuntimeError(f"{name}: could not place the body fully inside the frame in "
                       f"{MAX_PLACEMENT_TRIES} tries (is the body model in metres?)")


# ----------------------------------------------------------------------------
# Rendering and writing
# ----------------------------------------------------------------------------

def render_frame(vertices_body, faces, albedo, outward, params, t, rng):
    """RGBA frame (480, 640, 4) uint8, RGB order, of root-centred body vertices (V, 3) at frame t."""
    z_rot = camera.z_rotation(params.zrot)
    world = (vertices_body + params.trans[:, t]) @ z_rot.T
    normals = outward * render.vertex_normals(world, faces)
    rgb = render.lambert(normals, albedo, params.light_dir, params.ambient)
    background = (rng.random((camera.IMAGE_HEIGHT, camera.IMAGE_WIDTH)) < BACKGROUND_ONE_PROBABILITY)
    background = np.repeat(background.astype(np.uint8)[..., None], 3, axis=2)
    return render.render_mesh(camera.world_to_camera(world, params.cam_loc), faces, rgb,
                              camera.FOCAL_PX, camera.PRINCIPAL_POINT, camera.IMAGE_HEIGHT,
                              camera.IMAGE_WIDTH, background_rgb=background)


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


@dataclass
class BodyModel:
    """The SMPL layer and what rendering needs from the two models.

    layer: `smpl.SMPL`; female, male: `smpl.SMPLModel`; faces (F, 3) int64;
    landmark_ids (18,) int64; outward: {gender: +1 or -1}, the sign that makes
    each model's vertex normals point out of the body.
    """
    layer: object
    female: object
    male: object
    faces: np.ndarray
    landmark_ids: np.ndarray
    outward: dict

    @classmethod
    def load(cls, models=None, smpl_dir=None):
        """From (female, male) models or paths, else from `smpl.find_models(smpl_dir)`."""
        import smpl  # imports TensorFlow; kept here so `--help` is instant

        female, male = models if models is not None else smpl.find_models(smpl_dir)
        female = female if isinstance(female, smpl.SMPLModel) else smpl.load_model(female)
        male = male if isinstance(male, smpl.SMPLModel) else smpl.load_model(male)
        layer = smpl.SMPL(female, male)
        faces = np.asarray(layer.faces, np.int64)
        outward = {0: render.outward_sign(female.v_template, faces), 1: render.outward_sign(male.v_template, faces)}
        return cls(layer=layer, female=female, male=male, faces=faces,
                   landmark_ids=np.asarray(layer.landmark_ids, np.int64), outward=outward)

    def model(self, gender):
        return self.male if gender == 1 else self.female

    def pose(self, rotations, shape):
        """Runs the SMPL layer in batches: rotations (T, 24, 3, 3), shape (11,) ->
        vertices (T, V, 3), joints (T, 24, 3), float64, root-centred, metres."""
        vertices, joints = [], []
        for start in range(0, len(rotations), SMPL_BATCH):
            batch = rotations[start:start + SMPL_BATCH].astype(np.float32)
            shapes = np.repeat(shape[None].astype(np.float32), len(batch), axis=0)
            v, j = self.layer(batch, shapes)
            vertices.append(np.asarray(v, np.float64))
            joints.append(np.asarray(j, np.float64))
        return np.concatenate(vertices), np.concatenate(joints)


def write_sequence(folder, rng, body, num_frames, pose_stream=None, pose_source="--poses", on_frame=None):
    """Draws one sequence with `rng` and writes its frames, info.mat and info_body.mat.

    folder: sequence folder (created); rng: numpy Generator; body: `BodyModel`;
    pose_stream: (L, 72) poses to take a window from (None: `pose_prior`);
    on_frame: called after each frame is written (progress). Returns the
    `SequenceParams`.
    """
    folder = Path(folder)
    gender = int(rng.integers(0, 2))
    betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -2.5, 2.5)
    if pose_stream is None:
        poses = pose_prior.sample_pose_sequence(rng, num_frames)
    else:
        poses = pose_window(rng, pose_stream, num_frames, pose_source)
    rotations = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(num_frames, NUM_JOINTS, 3, 3)
    vertices, joints = body.pose(rotations, np.concatenate([betas, [2.0 * (gender - 0.5)]]))
    trans, zrot, cam_loc = place_in_world(rng, vertices, folder.name)
    light_dir, ambient, part_rgb, short_sleeves = sample_appearance(rng)
    params = SequenceParams(gender=gender, betas=betas, poses=poses, trans=trans, zrot=zrot,
                            cam_loc=cam_loc, light_dir=light_dir, ambient=ambient,
                            part_rgb=part_rgb, short_sleeves=short_sleeves)
    albedo = part_albedo(body.model(gender).weights, part_rgb, short_sleeves)

    folder.mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        rgba = render_frame(vertices[t], body.faces, albedo, body.outward[gender], params, t, rng)
        path = folder / f"{t:04d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
            raise OSError(f"{path}: could not write the frame")
        if on_frame is not None:
            on_frame()
    write_info(folder, params)
    write_info_body(folder, joints, vertices[:, body.landmark_ids], rotations)
    return params


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


def synthesize(out_dir, num_sequences, num_frames, seed=0, smpl_dir=None, poses_file=None,
               models=None, overwrite=False, progress=True):
    """Writes `num_sequences` synthetic sequences of `num_frames` frames under `out_dir`.

    out_dir: frames root to write (created); seed: int, the only source of
    randomness; smpl_dir: folder with official SMPL files (else `smpl.find_models`
    decides: official SMPL if found, else the open body); poses_file: CLOTH3D
    info.mat or .npz of poses (else the built-in `pose_prior`); models:
    optional (female, male) `smpl.SMPLModel`s or paths, overriding smpl_dir;
    overwrite: replace existing sequences / lists; progress: tqdm bar.
    Returns {"train": [lines], "val": [lines]} as written to train.txt / val.txt.
    """
    if num_sequences < 1 or num_frames < 1:
        raise ValueError(f"need at least one sequence and one frame, got --sequences {num_sequences} "
                         f"--frames {num_frames}")
    if num_frames > 10000:
        raise ValueError(f"--frames {num_frames}: frame names have 4 digits (at most 10000 frames)")
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
                           pose_stream, str(poses_file), on_frame=lambda: bar.update(1))

    train, val = split_sequences(num_sequences)
    lists = {}
    for split, indices in (("train", train), ("val", val)):
        lines = [f"{i:05d}/{t:04d}.png" for i in indices for t in range(num_frames)]
        (out_dir / f"{split}.txt").write_text("".join(line + "\n" for line in lines))
        lists[split] = lines
    return lists


def main(argv=None):
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
    parser.add_argument("--overwrite", action="store_true", help="replace existing sequences and lists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.time()
    try:
        lists = synthesize(args.out, args.sequences, args.frames, seed=args.seed, smpl_dir=args.smpl_dir,
                           poses_file=args.poses, overwrite=args.overwrite, progress=not args.quiet)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(lists['train'])} train and {len(lists['val'])} val frames to {args.out} "
          f"in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
