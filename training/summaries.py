"""TensorBoard event files under ``TMP/logs/NAME/`` (scalars and images).

Written with the ``tensorboard`` package's own event writer and protocol
buffers (no TensorFlow needed, so the JAX backend logs the same files); the
records are the same as ``tf.summary.scalar`` / ``tf.summary.image`` write.
View them with ``tensorboard --logdir tmp/logs``.

Also draws the images logged during validation: the input crop with the
predicted (red) and true (green) skeleton projected onto it.
"""
import os
import time
from typing import Mapping, Sequence, Union

import numpy as np

from training.metrics import NUM_JOINTS

_PLUGIN_SCALARS = "scalars"
_PLUGIN_IMAGES = "images"
_DATA_CLASS_SCALAR = 1
_DATA_CLASS_BLOB_SEQUENCE = 3


def _metadata(plugin, data_class):
    from tensorboard.compat.proto import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = plugin
    meta.data_class = data_class
    return meta


class SummaryLogger:
    """Scalars and images of one run; ``step`` is the global training step.

    Args:
      log_dir: ``TMP/logs/NAME`` (created).
    """

    def __init__(self, log_dir: Union[str, os.PathLike]) -> None:
        from pathlib import Path

        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.util import tensor_util

        # Kept here: a step logs several scalars, and these are looked up for each.
        self._event_pb2, self._summary_pb2, self._tensor_util = event_pb2, summary_pb2, tensor_util
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = EventFileWriter(str(log_dir))
        self._scalar_meta = _metadata(_PLUGIN_SCALARS, _DATA_CLASS_SCALAR)
        self._image_meta = _metadata(_PLUGIN_IMAGES, _DATA_CLASS_BLOB_SEQUENCE)

    def _write(self, tag, array, step, metadata):
        value = self._summary_pb2.Summary.Value(tag=tag, metadata=metadata,
                                                tensor=self._tensor_util.make_tensor_proto(array))
        self.writer.add_event(self._event_pb2.Event(wall_time=time.time(), step=int(step),
                                                    summary=self._summary_pb2.Summary(value=[value])))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One float under ``tag`` at ``step``."""
        self._write(tag, np.float32(value), step, self._scalar_meta)

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Every ``name: value`` of a dict, as ``prefix + name``."""
        for key, value in values.items():
            self.scalar(prefix + key, value, step)

    def images(self, tag: str, images: np.ndarray, step: int) -> None:
        """uint8 images (N, H, W, 3) as one PNG sequence under ``tag``."""
        import cv2

        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got {images.shape}")
        pngs = [cv2.imencode(".png", im[..., ::-1])[1].tobytes() for im in images.astype(np.uint8)]
        height, width = images.shape[1:3]
        blobs = np.array([str(width).encode(), str(height).encode()] + pngs, dtype=object)
        self._write(tag, blobs, step, self._image_meta)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _events(log_dir):
    """Every ``Event`` record of the event files in ``log_dir``, file by file."""
    import glob
    import os

    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for path in sorted(glob.glob(os.path.join(str(log_dir), "events.out.tfevents.*"))):
        yield from EventFileLoader(path).Load()


def read_scalars(log_dir: Union[str, os.PathLike]) -> dict[str, list[tuple[int, float]]]:
    """All scalars in the event files of ``log_dir``: dict tag -> [(step, value)].

    Used by the tests and handy in notebooks.
    """
    from tensorboard.util import tensor_util

    out = {}
    for event in _events(log_dir):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == _PLUGIN_SCALARS:
                out.setdefault(value.tag, []).append((int(event.step), float(tensor_util.make_ndarray(value.tensor))))
    return out


def read_image_tags(log_dir: Union[str, os.PathLike]) -> set[str]:
    """Tags of the image summaries in ``log_dir`` (set)."""
    tags = set()
    for event in _events(log_dir):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == _PLUGIN_IMAGES:
                tags.add(value.tag)
    return tags


# --------------------------------------------------------------------- drawing
def to_uint8(image: np.ndarray) -> np.ndarray:
    """A standardised (zero mean, unit variance) or [0, 1] image (H, W, 3) -> uint8 for display."""
    image = np.asarray(image, np.float64)
    lo, hi = np.percentile(image, 1), np.percentile(image, 99)
    if hi - lo < 1e-6:
        return np.zeros(image.shape, np.uint8)
    return np.clip(255.0 * (image - lo) / (hi - lo), 0, 255).astype(np.uint8)


def project_to_crop(points: np.ndarray, root_camera: np.ndarray, size: int = 256) -> np.ndarray:
    """Crop pixel coordinates (N, 2) of root-relative points (N, 3) in metres.

    Points are in the targets' world axes (SPEC "Data": z up, after zRot) and
    ``root_camera`` (3,) is the root in OpenCV camera coordinates; the crop is
    the unaugmented SPEC crop (centred on the root, side f * 2.5 / z_root),
    as used for validation and testing. Pixel centres at integer coordinates.
    """
    from DataReader import camera
    from DataReader.cloth3d import apply_affine, crop_from_image_affine

    points = np.asarray(points, np.float64)
    root_camera = np.asarray(root_camera, np.float64).reshape(3)
    image_px = camera.project(points @ camera.R_WORLD_TO_CAMERA.T + root_camera)
    affine = crop_from_image_affine(camera.project(root_camera), camera.crop_side_px(root_camera[2]), size)
    return apply_affine(affine, image_px)


def draw_skeleton(image: np.ndarray, points: np.ndarray, root_camera: np.ndarray, parents: Sequence[int],
                  colour: tuple[int, int, int], radius: int = 2, thickness: int = 1) -> np.ndarray:
    """Draw root-relative points (41, 3) and their bones (tree ``parents``, 42
    nodes with the root) on a uint8 crop (H, W, 3), in place."""
    import cv2

    size = image.shape[0]
    with_root = np.concatenate([np.zeros((1, 3)), np.asarray(points, np.float64)])
    pixels = project_to_crop(with_root, root_camera, size)
    finite = np.all(np.isfinite(pixels), axis=1)
    pixels = np.clip(np.nan_to_num(pixels), -10 * size, 10 * size).round().astype(int)
    for child in range(1, len(with_root)):
        parent = int(parents[child])
        if finite[child] and finite[parent]:
            width = thickness if child <= NUM_JOINTS else max(1, thickness - 1)
            cv2.line(image, tuple(map(int, pixels[parent])), tuple(map(int, pixels[child])), colour,
                     width, cv2.LINE_AA)
    for k in range(len(with_root)):
        if finite[k]:
            cv2.circle(image, tuple(map(int, pixels[k])), radius, colour, -1, cv2.LINE_AA)
    return image


def skeleton_overlays(images: np.ndarray, pred_points: np.ndarray, true_points: np.ndarray,
                      root_camera: np.ndarray, parents: Sequence[int], max_images: int = 4) -> np.ndarray:
    """uint8 (N, H, W, 3): crops (B, H, W, 3) with the true (green) and
    predicted (red) skeletons; points (B, 41, 3), root_camera (B, 3)."""
    out = []
    for k in range(min(max_images, len(images))):
        canvas = np.ascontiguousarray(to_uint8(images[k]))
        draw_skeleton(canvas, true_points[k], root_camera[k], parents, (0, 200, 0))
        draw_skeleton(canvas, pred_points[k], root_camera[k], parents, (230, 30, 30))
        out.append(canvas)
    return np.stack(out) if out else np.zeros((0, 8, 8, 3), np.uint8)
