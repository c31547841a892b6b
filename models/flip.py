"""Test-time flip averaging of the SHN's points (``--flip-test``).

The SHN also sees the crop flipped left-right; its points for the flipped
crop are mirrored back (`mirror_points`) and averaged with its points for the
crop itself. A horizontal flip of the crop about its centre column is, in the
image's OpenCV camera, a reflection in the plane through the camera centre
holding the root's ray and the camera's vertical axis, with the body's left
and right swapped: the keras.ops form of `DataReader.augment.flip`'s points.
"""
from typing import Any, Optional

from keras import ops

from smpl.constants import MIRROR_POINTS

from .heatmaps import from_grid_axes, soft_argmax, to_grid_axes

#: A backend tensor, or anything `keras.ops` converts to one (NumPy arrays).
Tensor = Any


def mirror_points(points: Tensor, root_camera: Tensor) -> Tensor:
    """Points of a flipped crop -> the points of the crop itself (its own inverse).

    points (B, 41, 3): root-relative, world axes, metres, predicted on the
    crop flipped about its centre column; root_camera (B, 3): the root in
    the camera, (rx, ry, rz) metres (only its direction matters). In camera
    axes each point is reflected in the plane of normal n ~ (rz, 0, -rx)
    (= normalize(1, 0, -rx / rz)), p' = p - 2 (p . n) n, and the points swap
    left and right (`MIRROR_POINTS`). Returns (B, 41, 3) float32, world axes.
    """
    camera = to_grid_axes(points, "camera")
    root = ops.convert_to_tensor(root_camera, dtype="float32")
    normal = ops.stack([root[:, 2], ops.zeros_like(root[:, 0]), -root[:, 0]], axis=-1)
    normal = (normal / ops.norm(normal, axis=-1, keepdims=True))[:, None, :]
    reflected = camera - 2.0 * ops.sum(camera * normal, axis=-1, keepdims=True) * normal
    return ops.take(from_grid_axes(reflected, "camera"), MIRROR_POINTS, axis=1)


def shn_points(shn: Any, images: Tensor, root_camera: Optional[Tensor] = None, flip_test: bool = False,
               training: bool = False) -> Tensor:
    """The SHN's points: soft-argmax of its last stack on its grid axes, world axes.

    images (B, 256, 256, 3) standardised crops -> (B, N, 3) root-relative,
    metres. With `flip_test` the SHN runs once on the batch and its
    left-right flipped copy (2B images) and the result is the mean of the
    plain points and `mirror_points` of the flipped ones; that needs
    root_camera (B, 3), metres (ValueError without it).
    """
    if not flip_test:
        return soft_argmax(shn(images, training=training)[-1], num_points=shn.num_points, axes=shn.grid_axes)
    if root_camera is None:
        raise ValueError("flip_test needs root_camera (B, 3), the root in the camera in metres, to mirror "
                         "the flipped crop's points back")
    both = ops.concatenate([images, ops.flip(images, axis=2)], axis=0)
    points = soft_argmax(shn(both, training=training)[-1], num_points=shn.num_points, axes=shn.grid_axes)
    plain, flipped = ops.split(points, 2, axis=0)
    return 0.5 * (plain + mirror_points(flipped, root_camera))
