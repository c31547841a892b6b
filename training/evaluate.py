"""Evaluation of the three trained stages together (``python test.py GPU_ID SHN DAE SMPLR``).

image (standardised 256x256 crop) -> SHN -> soft-argmax of the last stack ->
DAE -> SMPLR (shape and pose nets) -> SMPL. Reports, in mm (SPEC "Evaluation"):
the SHN error and the SMPLR error (SMPL joints 1..23 and landmark vertices)
over joints, landmarks and all 41 points, the DAE error, and the per-group
errors of both ("All" included).

Writes ``TMP/results/SMPLR/``:
- ``batch_NNNNN.npz`` per batch: shn_points, dae_points (B, 41, 3), shape
  (B, 11), pose (B, 24, 3, 3) as regressed, smpl_joints (B, 24, 3), vertices
  (B, V, 3), smpl_points (B, 41, 3), the ground truth (points, rotations,
  shape, root_camera) and paths; metres, root-relative.
- ``summary.json``: every printed figure, the checkpoints, the data list and
  ``flip_test`` (``--flip-test``: the SHN's points averaged over each crop and
  its left-right mirror image, ``models.flip``).
- ``group_errors.png``: bar chart of the per-group errors (SHN vs SMPLR).
- ``overlay_NN.png``: a few crops with the projected predicted mesh and
  skeleton (red) and the true skeleton (green).
The results are written into ``TMP/results/.SMPLR.partial/`` and renamed into
place when complete (``summary.json`` last), so a killed run leaves no half
results and a rerun starts afresh. An existing results folder is an error
unless ``--overwrite``, which replaces it only once the new one is complete.
A results folder that cannot be written is found before anything loads; a
write that fails (a full disk) removes the incomplete folder and is one line.

Runs on either Keras backend (TensorFlow: tf.data + ``tf.function``; JAX: the
NumPy loader + ``jax.jit``); nothing backend-specific is imported at module
level, so ``test.py`` picks the GPU first. The checkpoint name ``pretrained``
is reserved: it loads the shipped weights from ``pretrained/`` (see
``pretrained/README.md``).
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from training import TrainingError
from training.config import DEFAULT_DATA, DEFAULT_TMP
from training.metrics import JOINT_GROUPS, group_errors, point_errors_mm, summarize_point_errors

RESULT_FILES = ("summary.json", "group_errors.png")
#: The shipped weights: ``pretrained/checkpoints/{shn,dae,smplr}``, loaded by the name ``pretrained``.
PRETRAINED_ROOT = Path(__file__).resolve().parents[1] / "pretrained"
PRETRAINED = "pretrained"
#: ``--flip-test`` of test.py, predict.py and tools/shn_accuracy.py.
FLIP_TEST_HELP = ("average the SHN's points over the crop and its mirror image: about 2x the SHN's time; "
                  "on the demo's validation frames (Data/frames val.txt) the shipped SHN's all-points error "
                  "goes from 141.5 to 131.4 mm")

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def _writing(path: PathLike) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (a full disk, an I/O error) into one TrainingError line."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or " ".join(str(exc).split())
        raise TrainingError(f"cannot write {path}: {reason}") from None


def checkpoint_location(tmp: PathLike, name: str, stage: str) -> tuple[Path, str]:
    """(root, name) of a checkpoint: ``pretrained`` maps to the shipped weights of ``stage``."""
    if name == PRETRAINED:
        return PRETRAINED_ROOT, stage
    return Path(tmp), name


# ------------------------------------------------------------------ loading
def load_shn(tmp: PathLike, name: str, purpose: str = "score") -> tuple[Any, dict]:
    """(SHN with the weights of checkpoint ``name``, its state dict); ``pretrained`` loads the shipped one.

    The SHN's size and grid axes come from the checkpoint's settings
    (checkpoints from before ``--grid-axes``: world); settings that cannot
    build an SHN are one TrainingError line naming the state file.
    """
    from models import SHN
    from models.heatmaps import GRID_AXES
    from training.checkpoints import CheckpointStore, load_named

    root, name = checkpoint_location(tmp, name, "shn")
    store = CheckpointStore(root, name)
    slot = "best" if store.has("best") else ("latest" if store.has("latest") else None)
    if slot is None:
        raise TrainingError(f"checkpoint {name!r} not found in {Path(root) / 'checkpoints'}")
    config = store.read_state(slot).get("config", {})
    state_path = store.dir / slot / "state.json"
    grid_axes = config.get("grid_axes", "world")
    if grid_axes not in GRID_AXES:
        raise TrainingError(f"{state_path}: unknown grid_axes {grid_axes!r} (expected one of "
                            f"{', '.join(GRID_AXES)})")
    sizes = {key: config.get(key, default) for key, default in (("num_stacks", 5), ("num_features", 256))}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()):
        raise TrainingError(f"corrupt checkpoint state {state_path}: num_stacks and num_features must be "
                            f"integers >= 1, got {sizes['num_stacks']!r} and {sizes['num_features']!r}")
    shn = SHN(num_stacks=sizes["num_stacks"], num_features=sizes["num_features"], grid_axes=grid_axes)
    shn.build((1, 256, 256, 3))  # the variables, as a call would create them, without a full-size pass
    state = load_named(root, name, {"shn": shn}, kinds=("shn",), purpose=purpose)
    return shn, state


def load_stages(tmp: PathLike, shn_name: str, dae_name: str, smplr_name: str,
                smpl_dir: Optional[PathLike] = None, flip_test: bool = False) -> tuple[Any, Any, dict]:
    """Build the three stages and load their best checkpoints by name.

    Returns (pipeline, smpl_layer, states) with states a dict stage -> checkpoint state.
    `flip_test`: the pipeline averages the SHN's points over the crop and its
    mirror image (``Pipeline(flip_test=True)``; its call then takes root_camera).
    """
    from models import DAE, SMPLR, Pipeline
    from training.checkpoints import CheckpointStore, available_checkpoints, load_named
    from training.smplr_loop import load_body_model

    where = {stage: checkpoint_location(tmp, name, stage)
             for stage, name in (("shn", shn_name), ("dae", dae_name), ("smplr", smplr_name))}
    for root, name in where.values():
        store = CheckpointStore(root, name)
        if not (store.has("best") or store.has("latest")):
            if store.incomplete() is not None:
                raise TrainingError(store.incomplete())
            if root == PRETRAINED_ROOT:
                raise TrainingError(f"the pretrained {name} weights are missing from {root / 'checkpoints' / name}")
            found = available_checkpoints(tmp)
            raise TrainingError(f"checkpoint {name!r} not found in {Path(tmp) / 'checkpoints'} "
                                f"(checkpoints found: {', '.join(found) if found else 'none'})")
    shn, shn_state = load_shn(tmp, shn_name, purpose="evaluate SHN")
    dae = DAE()
    dae(np.zeros((1, 123), np.float32))
    smpl_layer = load_body_model(smpl_dir)
    smplr = SMPLR(smpl_layer)
    smplr.shape_net(np.zeros((1, 41), np.float32))
    smplr.pose_net(np.zeros((1, 123), np.float32))
    states = {
        "shn": shn_state,
        "dae": load_named(*where["dae"], {"dae": dae}, kinds=("dae",), purpose="evaluate DAE"),
        "smplr": load_named(*where["smplr"], {"shape_net": smplr.shape_net, "pose_net": smplr.pose_net},
                            kinds=("shapepose",), purpose="evaluate SMPLR"),
    }
    return Pipeline(shn, dae, smplr, flip_test=flip_test), smpl_layer, states


def _results_aside(path: Path) -> tuple[Path, Path]:
    """(partial, replaced) folders beside the results folder ``path``: ``.NAME.partial``, ``.NAME.replaced``."""
    return path.parent / f".{path.name}.partial", path.parent / f".{path.name}.replaced"


def prepare_results_dir(path: PathLike, overwrite: bool) -> Path:
    """Check the results folder ``path`` and create the folder the new results go into.

    An existing non-empty ``path`` is an error unless ``overwrite``; even then
    it stays until :func:`finish_results_dir` replaces it with the complete new
    results. What a killed run left beside it is cleaned up first. Returns the
    (empty) partial folder ``.NAME.partial``.
    """
    path = Path(path)
    partial, replaced = _results_aside(path)
    if replaced.exists():  # killed between finish_results_dir's renames
        if path.exists():
            shutil.rmtree(replaced)
        else:
            os.rename(replaced, path)
    if path.exists() and any(path.iterdir()):
        refuse_earlier_results(path, overwrite)
        print(f"--overwrite: the earlier results in {path} are replaced once the new ones are complete")
    with _writing(partial):
        if partial.exists():
            shutil.rmtree(partial)  # a killed or failed run's incomplete results
        partial.mkdir(parents=True)
    return partial


def refuse_earlier_results(path: PathLike, overwrite: bool) -> None:
    """TrainingError when the results folder ``path`` (or what a killed run set aside of it) holds
    earlier results and ``overwrite`` is off; checked before any model loads, and again by
    :func:`prepare_results_dir`."""
    path = Path(path)
    earlier = (path.exists() and any(path.iterdir())) or _results_aside(path)[1].exists()
    if earlier and not overwrite:
        raise TrainingError(f"results folder {path} already holds earlier results; use --overwrite "
                            "to replace them or --out NAME for a new folder")


def finish_results_dir(partial: PathLike, path: PathLike) -> Path:
    """Rename the complete results folder ``partial`` to ``path``, replacing an earlier one."""
    path = Path(path)
    _, replaced = _results_aside(path)
    if path.exists():
        os.rename(path, replaced)
    try:
        os.rename(partial, path)
    except OSError:
        if replaced.exists():
            os.rename(replaced, path)
        raise
    if replaced.exists():
        shutil.rmtree(replaced)
    return path


# ------------------------------------------------------------------ figures
def summarize(shn_errors: np.ndarray, dae_errors: np.ndarray, smplr_errors: np.ndarray) -> dict:
    """Every reported figure from per-sample, per-point errors (N, 41) in mm."""
    return {"num_samples": int(len(shn_errors)),
            "shn_error_mm": summarize_point_errors(shn_errors),
            "dae_error_mm": summarize_point_errors(dae_errors),
            "smplr_error_mm": summarize_point_errors(smplr_errors),
            "shn_group_error_mm": group_errors(shn_errors),
            "smplr_group_error_mm": group_errors(smplr_errors)}


def format_summary(summary: Mapping[str, Any]) -> str:
    """The printed report (str)."""
    lines = [f"samples: {summary['num_samples']}", "error (mm)      joints  landmarks      all"]
    for label, key in (("SHN", "shn_error_mm"), ("DAE", "dae_error_mm"), ("SMPLR", "smplr_error_mm")):
        e = summary[key]
        lines.append(f"  {label:<12}{e['joints']:8.1f}{e['landmarks']:11.1f}{e['all']:9.1f}")
    lines.append("per-group error (mm)     SHN    SMPLR")
    for group in JOINT_GROUPS:
        lines.append(f"  {group:<18}{summary['shn_group_error_mm'][group]:8.1f}"
                     f"{summary['smplr_group_error_mm'][group]:9.1f}")
    return "\n".join(lines)


def plot_group_errors(summary: Mapping[str, Any], path: PathLike) -> None:
    """Bar chart PNG of the per-group errors, SHN and SMPLR side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(JOINT_GROUPS)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.bar(x - 0.2, [summary["shn_group_error_mm"][g] for g in groups], 0.4, label="SHN")
    ax.bar(x + 0.2, [summary["smplr_group_error_mm"][g] for g in groups], 0.4, label="SMPLR")
    ax.set_xticks(x, groups)
    ax.set_ylabel("mean error (mm)")
    ax.set_title(f"Per-group error, {summary['num_samples']} samples")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_mesh(image: np.ndarray, vertices: np.ndarray, faces: np.ndarray, root_camera: np.ndarray,
              colour: tuple[int, int, int] = (90, 140, 255), alpha: float = 0.5) -> np.ndarray:
    """Blend the mesh (V, 3) root-relative metres, faces (F, 3), projected into a uint8
    crop (H, W, 3) with flat shading, far faces first; returns a new image."""
    import cv2

    from DataReader import camera
    from training.summaries import project_to_crop

    vertices = np.asarray(vertices, np.float64)
    if not np.all(np.isfinite(vertices)):
        return image.copy()
    cam = vertices @ camera.R_WORLD_TO_CAMERA.T + np.asarray(root_camera, np.float64)
    pixels = project_to_crop(vertices, root_camera, image.shape[0])
    tri_cam = cam[faces]
    normals = np.cross(tri_cam[:, 1] - tri_cam[:, 0], tri_cam[:, 2] - tri_cam[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    shade = 0.35 + 0.65 * np.abs(normals[:, 2])
    order = np.argsort(-tri_cam[:, :, 2].mean(axis=1))  # far to near
    layer = image.copy()
    mask = np.zeros(image.shape[:2], np.uint8)
    tri_px = np.round(pixels[faces] * 4).astype(np.int32)  # 2 fractional bits
    for f in order:
        c = tuple(int(v * shade[f]) for v in colour)
        cv2.fillConvexPoly(layer, tri_px[f], c, cv2.LINE_AA, 2)
        cv2.fillConvexPoly(mask, tri_px[f], 255, cv2.LINE_8, 2)
    out = image.copy()
    on = mask > 0
    out[on] = (alpha * layer[on] + (1 - alpha) * image[on]).astype(np.uint8)
    return out


def overlay(image: np.ndarray, result: Mapping[str, np.ndarray], k: int, faces: np.ndarray,
            parents: Sequence[int]) -> np.ndarray:
    """uint8 crop of sample ``k`` with the predicted mesh + skeleton (red) and the true skeleton (green)."""
    from training.summaries import draw_skeleton, to_uint8

    canvas = np.ascontiguousarray(to_uint8(image))
    canvas = draw_mesh(canvas, result["vertices"][k], faces, result["root_camera"][k])
    draw_skeleton(canvas, result["points"][k], result["root_camera"][k], parents, (0, 200, 0))
    draw_skeleton(canvas, result["smpl_points"][k], result["root_camera"][k], parents, (230, 30, 30))
    return canvas


# ------------------------------------------------------------------ run
def evaluate(tmp: PathLike, shn_name: str, dae_name: str, smplr_name: str, data: PathLike = DEFAULT_DATA,
             list_name: str = "val.txt", batch_size: int = 12, smpl_dir: Optional[PathLike] = None,
             out: Optional[str] = None, overwrite: bool = False, max_batches: Optional[int] = None,
             num_overlays: int = 4, flip_test: bool = False) -> dict:
    """Run the pipeline over a data list; write the results; return the summary dict.

    `flip_test`: average the SHN's points over each crop and its mirror image
    (the batches' root_camera (B, 3) places the mirror plane); recorded in summary.json.
    """
    import cv2
    from keras import ops
    from tqdm import tqdm

    import DataReader
    from smpl import kinematics
    from training.checkpoints import check_writable
    from training.steps import backend, make_steps

    data = Path(data)
    list_file = data / list_name
    if not list_file.is_file():
        raise TrainingError(f"data list not found: {list_file} (give --data DIR and --list FILE)")
    results_dir = Path(tmp) / "results" / (out or smplr_name)
    check_writable(results_dir.parent, "results folder")  # before anything loads
    refuse_earlier_results(results_dir, overwrite)
    pipeline, smpl_layer, states = load_stages(tmp, shn_name, dae_name, smplr_name, smpl_dir, flip_test)
    if backend() == "tensorflow":
        dataset = DataReader.shn_dataset(data, list_file, batch_size, training=False)
        num_frames = len(dataset.loader)
    else:
        dataset = DataReader.shn_batches(data, list_file, batch_size, training=False)
        num_frames = len(dataset)
    total = -(-num_frames // batch_size)
    if max_batches is not None:
        total = min(total, max_batches)
    steps = make_steps([pipeline], None, lambda batch, training: pipeline(
        batch["image"], batch["root_camera"] if flip_test else None, training=training))

    faces = np.asarray(smpl_layer.faces)
    num_samples = min(num_frames, total * batch_size)
    # Overlays of samples spread over the list (consecutive frames look alike).
    overlay_indices = set(np.linspace(0, num_samples - 1, min(num_overlays, num_samples)).round().astype(int)
                          .tolist()) if num_overlays > 0 else set()
    errors = {"shn": [], "dae": [], "smplr": []}
    overlays_written = 0
    started = time.time()
    # Checked by now: the data list, .mat files, frames' headers and checkpoints.
    partial = prepare_results_dir(results_dir, overwrite)
    try:
        for k, batch in enumerate(tqdm(dataset, total=total, desc="test", unit="batch", file=sys.stdout)):
            if max_batches is not None and k >= max_batches:
                break
            outputs = {key: np.asarray(ops.convert_to_numpy(value)) for key, value in steps.evaluate(batch).items()}
            batch = {key: np.asarray(value) for key, value in batch.items()}
            result = {"shn_points": outputs["shn_points"], "dae_points": outputs["dae_points"],
                      "shape": outputs["shape"], "pose": outputs["rotations"],
                      "smpl_joints": outputs["joints"], "vertices": outputs["vertices"],
                      "smpl_points": outputs["points"],
                      "points": batch["points"], "rotations": batch["rotations"],
                      "target_shape": batch["shape"], "root_camera": batch["root_camera"],
                      "paths": np.array([p.decode() if isinstance(p, bytes) else str(p) for p in batch["path"]])}
            with _writing(partial / f"batch_{k:05d}.npz"):
                np.savez_compressed(partial / f"batch_{k:05d}.npz", **result)
            errors["shn"].append(point_errors_mm(result["shn_points"], result["points"]))
            errors["dae"].append(point_errors_mm(result["dae_points"], result["points"]))
            errors["smplr"].append(point_errors_mm(result["smpl_points"], result["points"]))
            images = batch["image"]
            for i in range(len(images)):
                if k * batch_size + i in overlay_indices:
                    picture = overlay(images[i], result, i, faces, kinematics.PARENTS)
                    path = partial / f"overlay_{overlays_written:02d}.png"
                    if not cv2.imwrite(str(path), picture[..., ::-1]):  # OpenCV says False, raises nothing
                        raise TrainingError(f"cannot write {path}")
                    overlays_written += 1
        if not errors["shn"]:
            raise TrainingError(f"{list_file}: no test sample")
        summary = summarize(*(np.concatenate(errors[key]) for key in ("shn", "dae", "smplr")))
        summary.update(checkpoints={"shn": shn_name, "dae": dae_name, "smplr": smplr_name},
                       checkpoint_epochs={key: state.get("best_epoch") for key, state in states.items()},
                       data=str(data), list=list_name, batch_size=batch_size, flip_test=bool(flip_test),
                       seconds=round(time.time() - started, 1))
        report = format_summary(summary)
        print(report)
        with _writing(partial / "group_errors.png"):
            plot_group_errors(summary, partial / "group_errors.png")
        with _writing(partial / "summary.json"), open(partial / "summary.json", "w") as f:
            json.dump(summary, f, indent=1)  # last: a folder with summary.json is complete
        with _writing(results_dir):
            finish_results_dir(partial, results_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a kill (SIGKILL) leaves it: the next run removes it
        raise
    print(f"results: {results_dir} ({len(errors['shn'])} batch files, "
          f"summary.json, group_errors.png, {overlays_written} overlays)")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python test.py",
        description="Evaluate trained SHN, DAE and SMPLR checkpoints together: image -> SHN -> "
                    "soft-argmax -> DAE -> SMPLR -> SMPL. Prints SHN and SMPLR errors in mm (joints, "
                    "landmarks, all) and the per-group errors; writes TMP/results/SMPLR/ (per-batch "
                    ".npz, summary.json, group_errors.png, overlay PNGs).")
    parser.add_argument("gpu_id", metavar="GPU_ID", help="GPU index as nvidia-smi lists it; -1 runs on the CPU")
    parser.add_argument("shn", metavar="SHN", help="SHN checkpoint name (TMP/checkpoints/SHN)")
    parser.add_argument("dae", metavar="DAE", help="DAE checkpoint name")
    parser.add_argument("smplr", metavar="SMPLR", help="shape+pose checkpoint name (holds both nets)")
    parser.add_argument("--data", metavar="DIR", default=str(DEFAULT_DATA),
                        help="frames root with the data list (default: %(default)s)")
    parser.add_argument("--list", metavar="FILE", default="val.txt",
                        help="data list inside --data (default: %(default)s)")
    parser.add_argument("--batch-size", metavar="N", type=int, default=12, help="batch size (default: %(default)s)")
    parser.add_argument("--smpl-dir", metavar="DIR", default=None,
                        help="folder with the official SMPL files (default: as for training)")
    parser.add_argument("--tmp", metavar="DIR", default=str(DEFAULT_TMP),
                        help="root of checkpoints/ and results/ (default: %(default)s)")
    parser.add_argument("--out", metavar="NAME", default=None,
                        help="results folder name under TMP/results (default: the SMPLR name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing results folder")
    parser.add_argument("--max-batches", metavar="N", type=int, default=None,
                        help="evaluate at most N batches (default: the whole list)")
    parser.add_argument("--overlays", metavar="N", type=int, default=4,
                        help="overlay PNGs to write (default: %(default)s)")
    parser.add_argument("--flip-test", action="store_true", help=FLIP_TEST_HELP)
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up log lines (oneDNN, CUDA stubs; hidden by default)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from training.cli import report_user_error
    try:
        if args.batch_size < 1 or (args.max_batches is not None and args.max_batches < 1):
            raise TrainingError("--batch-size and --max-batches must be >= 1")
        from training.device import select_device

        device = select_device(args.gpu_id, verbose=args.verbose)
        print(f"evaluating SHN {args.shn!r}, DAE {args.dae!r}, SMPLR {args.smplr!r} on {device}"
              + (" (--flip-test: SHN points averaged with the mirror image's)" if args.flip_test else ""))
        evaluate(Path(args.tmp).expanduser().resolve(), args.shn, args.dae, args.smplr,
                 data=Path(args.data).expanduser().resolve(), list_name=args.list, batch_size=args.batch_size,
                 smpl_dir=args.smpl_dir, out=args.out, overwrite=args.overwrite,
                 max_batches=args.max_batches, num_overlays=args.overlays, flip_test=args.flip_test)
    except Exception as error:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        return report_user_error(error)
    return 0
