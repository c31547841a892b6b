"""A body mesh from any image of a person (``python predict.py GPU_ID INPUT...``).

image -> person crop -> SHN -> soft-argmax -> DAE -> SMPLR -> SMPL, the chain
``test.py`` evaluates (``training.evaluate.load_stages``), on image files or
folders of them (PNG, JPEG). Per image, in ``--out`` (default ``tmp/predictions``):

- ``NAME.obj``: the posed mesh, root-centred metres, faces from the body model;
- ``NAME.npz`` and ``NAME.json``: the 41 SHN points, the 41 DAE points, betas,
  gender, the 24 rotation matrices and their axis-angles, the SMPL joints,
  the 41 points read off the mesh and where the crop was taken (the ``.npz``
  also holds the vertices and faces);
- ``NAME_overlay.png``: the crop with the projected mesh and skeleton, and
  the mesh seen from the side.

``--flip-test`` averages the SHN's points over the crop and its mirror image
(``models.flip``; the crop's root camera places the mirror), as ``test.py --flip-test``.

Axes of every 3D output: the targets' world axes (SPEC "Data"): z up, the
camera looking along world -x; a point p is at ``camera_from_world @ p +
root_camera`` in the image's OpenCV camera (x right, y down, z forward), both
saved with the results.

Where the crop is taken (SPEC "Data": a square of side f * 2.5 / z_root
pixels centred on the root's projection, resized to 256 x 256), first rule
that applies:

1. ``--bbox X Y W H`` (image pixels; x right, y down; the box must lie inside
   the image), else ``--mask FILE`` (same size as the image; the person where
   the mask is at least half its full value; a 0/1 mask counts 1 as the person);
2. a CLOTH3D-format frame (``NNNN.png`` with ``info.mat`` and
   ``info_body.mat`` beside it): the exact SPEC crop from its camera and root,
   so the result equals ``test.py``'s for that frame;
3. the alpha channel, when the image has one that is not fully opaque
   (cut-outs, CLOTH3D frames), person where alpha >= 128;
4. the whole image as the person's box (one line says so).

A person's box becomes a crop by ``crop_for_box``: the crop side is the box's
longer side times 2.5 / ``PERSON_EXTENT_M`` (a standing adult spans about
1.7 m), centred on the box's centre raised by ``ROOT_ABOVE_BOX_CENTRE`` of its
height (the pelvis sits a little above the middle of a standing body's box).
On the CLOTH3D++ samples (267 frames) the true crop side is 1.48 (median;
5-95%: 1.38-1.74) times the alpha box's height and the root lies 0.053 box
heights (median) above its centre. The root's depth follows from the crop
side and the focal length (``--focal``, default the training camera's field
of view: 888.89 px at 640 px wide, scaled to the image's width), its
direction from the crop centre's pixel; the 3D outputs do not depend on it.

Bad input (an unreadable or non-image file, an empty mask, a box outside the
image, existing outputs without ``--overwrite``) costs that image only: one
``error:`` line naming it, the others are still processed, and the exit
status is 1. A missing checkpoint stops the run at once (status 2).
"""
import argparse
import os
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from training import TrainingError
from training.config import DEFAULT_TMP
from training.evaluate import FLIP_TEST_HELP

PathLike = Union[str, os.PathLike]

#: The file types read from folders (and accepted as INPUT).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Body extent (metres) taken to fill the longer side of a person's box.
PERSON_EXTENT_M = 1.7
#: How far the root lies above the box centre, as a fraction of the box height.
ROOT_ABOVE_BOX_CENTRE = 0.05
#: Side in pixels of each of the overlay's two panels.
OVERLAY_SIZE = 512
#: Output files of one image, by suffix.
OUTPUT_SUFFIXES = (".obj", ".npz", ".json", "_overlay.png")
DEFAULT_OUT = DEFAULT_TMP / "predictions"


class InputError(ValueError):
    """A problem with one input image (or its --mask / --bbox); the message names the file."""


# ------------------------------------------------------------------ inputs
def list_images(inputs: Iterable[PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The image files of ``inputs`` (files and folders) in order, each once.

    Returns (paths, errors) with errors a list of (path, message naming it) for inputs
    that are neither an image file nor a folder holding one. Folders give their
    PNG / JPEG files (sorted; not recursive; earlier ``_overlay.png`` outputs skipped).
    """
    paths, errors, seen = [], [], set()
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.stem.endswith("_overlay"))
            if not found:
                errors.append((path, f"{path}: folder holds no PNG or JPEG image"))
        elif path.is_file():
            found = [path]
        else:
            errors.append((path, f"{path}: not found"))
            continue
        for p in found:
            if p.resolve() not in seen:
                seen.add(p.resolve())
                paths.append(p)
    return paths, errors


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per image: its stem, or ``FOLDER_STEM`` where stems repeat
    (frames ``00449/0000.png`` and ``00742/0000.png``), with a counter as the last resort."""
    stems = [p.stem for p in paths]
    names = [s if stems.count(s) == 1 else f"{p.parent.name}_{s}" for p, s in zip(paths, stems)]
    taken, out = set(), []
    for name in names:
        unique, k = name, 1
        while unique in taken:
            unique, k = f"{name}_{k}", k + 1
        taken.add(unique)
        out.append(unique)
    return out


def read_image(path: PathLike) -> tuple[np.ndarray, bool]:
    """An image file as BGRA uint8 (H, W, 4) and whether its alpha carries a person mask.

    PNGs keep their alpha (16-bit ones are reduced to 8 bits as the reader
    does); JPEGs are read with their EXIF orientation applied. An image without
    alpha, or with a fully opaque one, gets an opaque alpha and False.
    """
    import cv2

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: not a PNG or JPEG image (by its name)")
    flags = cv2.IMREAD_UNCHANGED if path.suffix.lower() == ".png" else cv2.IMREAD_COLOR
    image = cv2.imread(str(path), flags)
    if image is None or image.size == 0:
        raise InputError(f"{path}: corrupt or unreadable image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.dtype != np.uint8:
        raise InputError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    conversions = {1: cv2.COLOR_GRAY2BGRA, 2: None, 3: cv2.COLOR_BGR2BGRA, 4: None}
    if channels == 2:  # grey + alpha
        image = np.dstack([image[:, :, :1]] * 3 + [image[:, :, 1:]])
    elif conversions.get(channels) is not None:
        image = cv2.cvtColor(image, conversions[channels])
    elif channels != 4:
        raise InputError(f"{path}: {channels} colour channels (expected grey, RGB or RGBA)")
    has_alpha = channels in (2, 4) and bool(np.any(image[:, :, 3] < 255))
    return np.ascontiguousarray(image), has_alpha


def read_mask(path: PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """The person mask in ``path`` as bool (H, W); ``shape`` (H, W) is the image's."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputError(f"--mask {path}: missing, corrupt or not an image")
    if mask.shape != tuple(shape):
        raise InputError(f"--mask {path}: is {mask.shape[1]}x{mask.shape[0]} pixels, the image "
                         f"{shape[1]}x{shape[0]}")
    return mask >= 128 if mask.max() > 1 else mask > 0


def mask_box(mask: np.ndarray, what: str) -> np.ndarray:
    """The box (x, y, w, h) in continuous image coordinates (pixel j spans [j, j + 1])
    of the True pixels of a bool mask (H, W); InputError when there are none."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        raise InputError(f"{what}: empty mask (no person pixel)")
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    return np.array([x0, y0, x1 + 1 - x0, y1 + 1 - y0], np.float64)


def check_box(box: Sequence[float], width: int, height: int) -> np.ndarray:
    """``--bbox X Y W H`` as floats; InputError unless it has positive size and lies inside the image."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise InputError(f"--bbox {x:g} {y:g} {w:g} {h:g}: width and height must be positive")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InputError(f"--bbox {x:g} {y:g} {w:g} {h:g} is not inside the {width}x{height} image")
    return np.array([x, y, w, h])


# ------------------------------------------------------------------ crops
@dataclass(frozen=True)
class Crop:
    """Where a person's crop is taken in one image.

    root_px (2,): the crop centre (the root's projection), continuous image
    pixels; side_px: the crop's side in image pixels; root_camera (3,): the
    root in the image's OpenCV camera, metres; focal_px and principal_point
    (2,): the camera assumed; source: "bbox", "mask", "info.mat", "alpha" or
    "whole image"; box (4,) x, y, w, h of the person in image pixels (None
    for "info.mat").
    """
    root_px: np.ndarray
    side_px: float
    root_camera: np.ndarray
    focal_px: float
    principal_point: np.ndarray
    source: str
    box: np.ndarray = None

    def affine(self, size: int) -> np.ndarray:
        """(2, 3) affine from image pixels to a ``size`` x ``size`` crop."""
        from DataReader.cloth3d import crop_from_image_affine

        return crop_from_image_affine(self.root_px, self.side_px, size)

    def as_dict(self) -> dict:
        return {"source": self.source, "box_xywh": None if self.box is None else self.box.tolist(),
                "root_px": self.root_px.tolist(), "side_px": float(self.side_px),
                "focal_px": float(self.focal_px), "principal_point": self.principal_point.tolist()}


def default_focal_px(width: int) -> float:
    """The training camera's field of view at ``width`` pixels: 888.89 px at 640 px."""
    from DataReader import camera

    return camera.FOCAL_PX * width / camera.IMAGE_WIDTH


def crop_for_box(box: np.ndarray, image_shape: tuple[int, ...], focal_px: Optional[float] = None,
                 source: str = "bbox") -> "Crop":
    """The crop of a person's box (x, y, w, h), by the rule in the module docstring.

    image_shape (H, W); focal_px: None = ``default_focal_px``. The principal
    point is the image centre; the root lies on the ray through the crop
    centre at the depth where the crop spans 2.5 m.
    """
    from DataReader import camera

    height, width = image_shape[:2]
    focal = default_focal_px(width) if focal_px is None else float(focal_px)
    x, y, w, h = np.asarray(box, np.float64)
    side = max(w, h) * camera.CROP_SIZE_M / PERSON_EXTENT_M
    root_px = np.array([x + w / 2.0, y + h / 2.0 - ROOT_ABOVE_BOX_CENTRE * h])
    principal = np.array([width / 2.0, height / 2.0])
    depth = focal * camera.CROP_SIZE_M / side
    root_camera = np.append((root_px - principal) * depth / focal, depth)
    return Crop(root_px=root_px, side_px=float(side), root_camera=root_camera, focal_px=focal,
                principal_point=principal, source=source, box=np.asarray(box, np.float64))


def cloth3d_crop(path: Path, sequences: dict[Path, Any]) -> Optional["Crop"]:
    """The exact SPEC crop of a CLOTH3D-format frame ``SEQ/NNNN.png`` with its
    ``info.mat`` and ``info_body.mat`` beside it, or None for any other image.

    ``sequences``: dict folder -> ``Sequence`` (a cache, filled here). The crop
    is ``FrameTargets.centred``'s, the one ``test.py`` evaluates.
    """
    from DataReader import camera
    from DataReader.cloth3d import CLOTH3DError, Sequence

    path = Path(path)
    folder = path.parent
    if not (path.suffix.lower() == ".png" and path.stem.isdigit() and (folder / "info.mat").is_file()
            and (folder / "info_body.mat").is_file()):
        return None
    try:
        if folder not in sequences:
            sequences[folder] = Sequence.read(folder)
        root_camera = sequences[folder].targets(int(path.stem)).root_camera
    except (CLOTH3DError, OSError) as error:
        raise InputError(str(error)) from None
    return Crop(root_px=camera.project(root_camera), side_px=float(camera.crop_side_px(root_camera[2])),
                root_camera=np.asarray(root_camera, np.float64), focal_px=camera.FOCAL_PX,
                principal_point=camera.PRINCIPAL_POINT.copy(), source="info.mat")


def find_crop(path: Path, rgba: np.ndarray, has_alpha: bool, bbox: Optional[Sequence[float]] = None,
              mask_path: Optional[PathLike] = None, focal_px: Optional[float] = None,
              sequences: Optional[dict[Path, Any]] = None) -> "Crop":
    """The ``Crop`` of one image by the rules of the module docstring (first that applies)."""
    shape = rgba.shape[:2]
    if bbox is not None:
        return crop_for_box(check_box(bbox, shape[1], shape[0]), shape, focal_px, "bbox")
    if mask_path is not None:
        return crop_for_box(mask_box(read_mask(mask_path, shape), f"--mask {mask_path}"), shape, focal_px, "mask")
    crop = cloth3d_crop(path, {} if sequences is None else sequences)
    if crop is not None:
        return crop
    if has_alpha:
        return crop_for_box(mask_box(rgba[:, :, 3] >= 128, f"{path} (alpha channel)"), shape, focal_px, "alpha")
    return crop_for_box(np.array([0.0, 0.0, shape[1], shape[0]]), shape, focal_px, "whole image")


def network_input(rgba: np.ndarray, crop: "Crop") -> np.ndarray:
    """The SHN's input for a crop: (256, 256, 3) float32, standardised as the test pipeline does."""
    from DataReader.augment import standardize_image_np
    from DataReader.cloth3d import CROP_SIZE_PX, crop_rgba

    image, _ = crop_rgba(rgba, crop.affine(CROP_SIZE_PX), CROP_SIZE_PX)
    return standardize_image_np(image)


# ------------------------------------------------------------------ results
def axis_angles(rotations: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3), radians."""
    from scipy.spatial.transform import Rotation

    rotations = np.asarray(rotations, np.float64)
    return Rotation.from_matrix(rotations.reshape(-1, 3, 3)).as_rotvec().reshape(rotations.shape[:-2] + (3,))


def result_arrays(outputs: Mapping[str, np.ndarray], k: int, crop: "Crop", faces: np.ndarray) -> dict:
    """Image ``k`` of the pipeline's outputs (NumPy) as the saved arrays (float32 metres)."""
    from DataReader import camera

    shape = outputs["shape"][k]
    return {"shn_points": outputs["shn_points"][k], "dae_points": outputs["dae_points"][k],
            "smpl_points": outputs["points"][k], "smpl_joints": outputs["joints"][k],
            "betas": shape[:10], "gender_value": shape[10],
            "rotations": outputs["rotations"][k],
            "axis_angles": axis_angles(outputs["rotations"][k]).astype(np.float32),
            "vertices": outputs["vertices"][k], "faces": np.asarray(faces, np.int32),
            "root_camera": crop.root_camera.astype(np.float32),
            "camera_from_world": camera.R_WORLD_TO_CAMERA.astype(np.float32)}


def gender_name(gender_value: float) -> str:
    """The SMPL layer's choice: male where the gender value is >= 0."""
    return "male" if float(gender_value) >= 0 else "female"


def write_obj(path: PathLike, vertices: np.ndarray, faces: np.ndarray, comment: str = "") -> None:
    """A Wavefront .obj of a triangle mesh: vertices (V, 3) metres, faces (F, 3) 0-based."""
    vertices, faces = np.asarray(vertices, np.float64), np.asarray(faces, np.int64) + 1
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    Path(path).write_text(header + ("v %.6f %.6f %.6f\n" * len(vertices)) % tuple(vertices.ravel())
                          + ("f %d %d %d\n" * len(faces)) % tuple(faces.ravel()))


def read_obj(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) float64 and triangle faces (F, 3) 0-based of a .obj (``v`` and ``f`` lines)."""
    vertices, faces = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            vertices.append([float(v) for v in parts[1:4]])
        elif parts and parts[0] == "f":
            faces.append([int(v.split("/")[0]) - 1 for v in parts[1:4]])
    return np.array(vertices, np.float64).reshape(-1, 3), np.array(faces, np.int64).reshape(-1, 3)


def overlay_picture(rgba: np.ndarray, crop: "Crop", arrays: Mapping[str, np.ndarray], parents: Sequence[int],
                    size: int = OVERLAY_SIZE) -> np.ndarray:
    """uint8 RGB (size, 2 * size, 3): the crop with the projected mesh and the SMPL
    skeleton (red), and beside it the mesh turned 90 degrees about the vertical axis."""
    import cv2

    from DataReader import camera
    from DataReader.cloth3d import crop_rgba
    from training.evaluate import draw_mesh
    from training.summaries import draw_skeleton

    image, _ = crop_rgba(rgba, crop.affine(size), size)
    front = draw_mesh(np.clip(image, 0, 255).astype(np.uint8), arrays["vertices"], arrays["faces"], crop.root_camera)
    draw_skeleton(front, arrays["smpl_points"], crop.root_camera, parents, (230, 30, 30), radius=3, thickness=2)
    turned = np.asarray(arrays["vertices"], np.float64) @ camera.z_rotation(np.pi / 2).T
    side = draw_mesh(np.full_like(front, 235), turned, arrays["faces"], (0.0, 0.0, crop.root_camera[2]), alpha=1.0)
    for canvas, label in ((front, f"crop ({crop.source})"), (side, "side view")):
        cv2.putText(canvas, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 3, cv2.LINE_AA)
        cv2.putText(canvas, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([front, side], axis=1)


def write_results(out_dir, name, image_path, arrays, crop, rgba, parents, checkpoints, flip_test=False):
    """NAME.obj, NAME.npz, NAME.json and NAME_overlay.png of one image in ``out_dir``
    (NAME.json records ``flip_test``, whether --flip-test made the SHN points)."""
    import cv2

    out_dir = Path(out_dir)
    gender = gender_name(arrays["gender_value"])
    write_obj(out_dir / f"{name}.obj", arrays["vertices"], arrays["faces"],
              f"SMPLR body of {image_path} ({gender})\nroot-centred, metres; world axes: z up, "
              "the camera looks along -x (see NAME.json)")
    meta = {"image": str(image_path), "gender": gender, "crop": crop.as_dict(), "checkpoints": checkpoints,
            "flip_test": bool(flip_test)}
    np.savez_compressed(out_dir / f"{name}.npz", **arrays, image=str(image_path), gender=gender,
                        crop_source=crop.source)
    document = {**meta,
                "units": "metres and radians; points root-relative in world axes (z up, camera looking "
                         "along -x); camera point = camera_from_world @ p + root_camera",
                **{key: np.asarray(value).tolist() for key, value in arrays.items()
                   if key not in ("vertices", "faces")}}
    with open(out_dir / f"{name}.json", "w") as f:
        json.dump(document, f, indent=1)
    picture = overlay_picture(rgba, crop, arrays, parents)
    if not cv2.imwrite(str(out_dir / f"{name}_overlay.png"), picture[..., ::-1]):  # False, nothing raised
        raise OSError(f"OpenCV could not write {out_dir / f'{name}_overlay.png'}")


# ------------------------------------------------------------------ run
class Predictor:
    """The three stages loaded once (``load_stages``), compiled for inference on the active backend.

    ``__call__(images, root_cameras)``: standardised crops (B, 256, 256, 3)
    and their ``Crop.root_camera`` (B, 3) metres -> dict of NumPy arrays (the
    ``Pipeline``'s outputs), batches padded to ``batch_size`` so the compiled
    step is traced once. ``flip_test``: the SHN's points are averaged over
    each crop and its mirror image (``--flip-test``), which needs the root
    cameras; without it they are not used.
    """

    def __init__(self, tmp: PathLike, shn: str, dae: str, smplr: str, smpl_dir: Optional[PathLike] = None,
                 batch_size: int = 8, flip_test: bool = False) -> None:
        from smpl import kinematics
        from training.evaluate import load_stages
        from training.steps import make_steps

        self.checkpoints = {"shn": shn, "dae": dae, "smplr": smplr}
        self.flip_test = bool(flip_test)
        self.pipeline, smpl_layer, self.states = load_stages(tmp, shn, dae, smplr, smpl_dir, self.flip_test)
        self.faces = np.asarray(smpl_layer.faces)
        self.parents = kinematics.PARENTS
        self.batch_size = int(batch_size)
        self.steps = make_steps([self.pipeline], None, lambda batch, training: self.pipeline(
            batch["image"], batch.get("root_camera"), training=training))

    def __call__(self, images, root_cameras=None):
        from keras import ops

        images = np.asarray(images, np.float32)
        count = len(images)
        padded = np.zeros((self.batch_size,) + images.shape[1:], np.float32)
        padded[:count] = images
        batch = {"image": padded}
        if self.flip_test:
            if root_cameras is None:
                raise ValueError("Predictor(flip_test=True) needs the crops' root cameras (B, 3)")
            batch["root_camera"] = np.tile(np.float32([0.0, 0.0, 1.0]), (self.batch_size, 1))  # padding: on-axis
            batch["root_camera"][:count] = root_cameras
        outputs = self.steps.evaluate(batch)
        return {key: np.asarray(ops.convert_to_numpy(value))[:count] for key, value in outputs.items()}


def save_untrained_checkpoints(tmp: PathLike, names: Sequence[str] = ("shn", "dae", "smplr"), num_stacks: int = 5,
                               num_features: int = 256, seed: int = 0, smpl_dir: Optional[PathLike] = None) -> None:
    """Freshly initialised SHN, DAE and SMPLR checkpoints ``TMP/checkpoints/{names}``, as
    the training runner lays them out: for trying the command (the tests, the bench)
    before any training. Their bodies are valid SMPL bodies but not the person's."""
    import keras

    from models import DAE, SHN, SMPLR
    from training.checkpoints import CheckpointStore
    from training.smplr_loop import load_body_model

    keras.utils.set_random_seed(seed)
    shn = SHN(num_stacks=num_stacks, num_features=num_features)
    shn.build((1, 256, 256, 3))  # the variables, as a call would create them, without a full-size pass
    dae = DAE()
    dae(np.zeros((1, 123), np.float32))
    smplr = SMPLR(load_body_model(smpl_dir))
    smplr.shape_net(np.zeros((1, 41), np.float32))
    smplr.pose_net(np.zeros((1, 123), np.float32))
    config = {"num_stacks": num_stacks, "num_features": num_features}
    for name, kind, objects in zip(names, ("shn", "dae", "shapepose"),
                                   ({"shn": shn}, {"dae": dae},
                                    {"shape_net": smplr.shape_net, "pose_net": smplr.pose_net})):
        CheckpointStore(tmp, name).save("best", objects, {"kind": kind, "config": config, "untrained": True})


def predict(predictor: Predictor, inputs: Iterable[PathLike], out: PathLike = DEFAULT_OUT,
            bbox: Optional[Sequence[float]] = None, mask: Optional[PathLike] = None, focal_px: Optional[float] = None,
            overwrite: bool = False, progress: bool = True) -> dict:
    """Predict a body for every image of ``inputs``; write the results in ``out``.

    Returns a dict: written (list of output names), failed (list of (path,
    message)), images_per_second, seconds (reading and cropping, network,
    writing). Bad inputs are reported as they come (one ``error:`` line
    each) and do not stop the others.
    """
    from tqdm import tqdm

    from training.checkpoints import check_writable

    out = check_writable(Path(out), "output folder")
    paths, failed = list_images(inputs)

    def fail(path, message):
        failed.append((path, message))
        tqdm.write(f"error: {message}", file=sys.stderr)

    for _, message in failed:
        tqdm.write(f"error: {message}", file=sys.stderr)
    total = len(paths) + len(failed)
    names = output_names(paths)
    sequences, written = {}, []
    seconds = {"read_and_crop": 0.0, "network": 0.0, "write": 0.0}
    started = time.perf_counter()
    bar = tqdm(total=len(paths), desc="predict", unit="image", file=sys.stdout, disable=not progress)
    for first in range(0, len(paths), predictor.batch_size):
        batch = []  # (path, name, rgba, crop, network input)
        tick = time.perf_counter()
        for path, name in zip(paths[first:first + predictor.batch_size], names[first:first + predictor.batch_size]):
            try:
                existing = [out / f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES if (out / f"{name}{suffix}").exists()]
                if existing and not overwrite:
                    raise InputError(f"{path}: {existing[0]} already exists (use --overwrite to replace "
                                     "it, or --out DIR)")
                rgba, has_alpha = read_image(path)
                crop = find_crop(path, rgba, has_alpha, bbox, mask, focal_px, sequences)
                if crop.source == "whole image":
                    tqdm.write(f"{path}: no alpha channel, --mask or --bbox: taking the whole image as "
                               "the person's box")
                batch.append((path, name, rgba, crop, network_input(rgba, crop)))
            except InputError as error:
                fail(path, str(error))
                bar.update(1)
        seconds["read_and_crop"] += time.perf_counter() - tick
        if not batch:
            continue
        tick = time.perf_counter()
        outputs = predictor(np.stack([item[4] for item in batch]), np.stack([item[3].root_camera for item in batch]))
        seconds["network"] += time.perf_counter() - tick
        tick = time.perf_counter()
        for k, (path, name, rgba, crop, _) in enumerate(batch):
            arrays = result_arrays(outputs, k, crop, predictor.faces)
            try:
                write_results(out, name, path, arrays, crop, rgba, predictor.parents, predictor.checkpoints,
                              predictor.flip_test)
            except OSError as error:  # a full disk: stop with one line; the images written before are complete
                bar.close()
                reason = error.strerror or " ".join(str(error).split())
                raise TrainingError(f"cannot write the results of {path} in {out}: {reason} ({len(written)} "
                                    f"image{'' if len(written) == 1 else 's'} written before)") from None
            written.append(name)
            bar.update(1)
        seconds["write"] += time.perf_counter() - tick
    bar.close()
    elapsed = time.perf_counter() - started
    rate = len(written) / elapsed if elapsed > 0 else 0.0
    print(f"predicted {len(written)} of {total} images in {elapsed:.1f} s ({rate:.2f} images/s)"
          + (f"; {len(failed)} failed" if failed else "") + f"; results in {out}")
    return {"written": written, "failed": failed, "images_per_second": rate,
            "seconds": {key: round(value, 3) for key, value in seconds.items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python predict.py",
        description="A body mesh from any image of a person: crop -> SHN -> DAE -> SMPLR -> SMPL. Writes, per "
                    "image, NAME.obj (posed mesh, root-centred metres), NAME.npz and NAME.json (SHN and DAE "
                    "points, betas, gender, rotation matrices and axis-angles, SMPL joints) and "
                    "NAME_overlay.png (the crop with the mesh, and a side view). The crop: --bbox, else "
                    "--mask, else the exact SPEC crop of a CLOTH3D frame with its info.mat, else the "
                    "image's alpha channel, else the whole image.")
    parser.add_argument("gpu_id", metavar="GPU_ID", help="GPU index as nvidia-smi lists it; -1 runs on the CPU")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", help="image files (PNG, JPEG) or folders of them")
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    parser.add_argument("--checkpoints", nargs=3, metavar=("SHN", "DAE", "SMPLR"), default=["pretrained"] * 3,
                        help="checkpoint names in TMP/checkpoints, as for test.py; 'pretrained' = the shipped "
                             "weights (default: pretrained pretrained pretrained)")
    parser.add_argument("--bbox", nargs=4, type=float, metavar=("X", "Y", "W", "H"), default=None,
                        help="the person's box in image pixels (left, top, width, height), for every INPUT")
    parser.add_argument("--mask", metavar="FILE", default=None,
                        help="a person mask image of the same size as the images (person >= 128, or 1 in a 0/1 mask)")
    parser.add_argument("--focal", metavar="PX", type=float, default=None,
                        help="focal length in pixels, for the root's depth (default: 888.89 * width / 640, "
                             "the training camera's field of view; CLOTH3D frames use their own camera)")
    parser.add_argument("--batch-size", metavar="N", type=int, default=8,
                        help="images per network call (default: %(default)s)")
    parser.add_argument("--smpl-dir", metavar="DIR", default=None,
                        help="folder with the official SMPL files (default: as for training)")
    parser.add_argument("--tmp", metavar="DIR", default=str(DEFAULT_TMP),
                        help="root of checkpoints/ (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results of the same names in --out")
    parser.add_argument("--flip-test", action="store_true", help=FLIP_TEST_HELP)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from training.cli import report_user_error
    try:
        if args.batch_size < 1:
            raise TrainingError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.focal is not None and args.focal <= 0:
            raise TrainingError(f"--focal must be a positive number of pixels, got {args.focal:g}")
        from training.device import select_device

        from training.checkpoints import check_writable

        check_writable(Path(args.out).expanduser(), "output folder")  # before anything loads
        device = select_device(args.gpu_id)
        shn, dae, smplr = args.checkpoints
        print(f"predicting with SHN {shn!r}, DAE {dae!r}, SMPLR {smplr!r} on {device}")
        predictor = Predictor(Path(args.tmp).expanduser().resolve(), shn, dae, smplr, args.smpl_dir, args.batch_size,
                              flip_test=args.flip_test)
        summary = predict(predictor, args.inputs, Path(args.out).expanduser(), bbox=args.bbox, mask=args.mask,
                          focal_px=args.focal, overwrite=args.overwrite)
    except Exception as error:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        return report_user_error(error)
    return 1 if summary["failed"] else 0
