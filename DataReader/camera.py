"""The CLOTH3D++ camera: Blender defaults, as fixed in SPEC "Data".

World is z-up, in metres. Cameras are 640x480 pixels with a 50 mm lens on a
36 mm sensor, so fx = fy = 50 / 36 * 640 = 888.89 px and the principal point is
the image centre. A camera at `camLoc` looks along world -x; its OpenCV axes
(x right, y down, z forward) are

    p_cam = R_WORLD_TO_CAMERA @ (p_world - camLoc)

with R_WORLD_TO_CAMERA = diag(1, -1, -1) @ [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
(Blender's world-to-camera axes, then the flip of y and z to OpenCV's).
"""
import numpy as np

IMAGE_WIDTH = 640
IMAGE_HEIGHT = 480
FOCAL_MM = 50.0
SENSOR_WIDTH_MM = 36.0
FOCAL_PX = FOCAL_MM / SENSOR_WIDTH_MM * IMAGE_WIDTH  # 888.89 px
PRINCIPAL_POINT = np.array([IMAGE_WIDTH / 2.0, IMAGE_HEIGHT / 2.0])

#: Side of the crop around the root, in metres at the root's depth (SPEC).
CROP_SIZE_M = 2.5

R_WORLD_TO_CAMERA = np.diag([1.0, -1.0, -1.0]) @ np.array(
    [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])

INTRINSICS = np.array([[FOCAL_PX, 0.0, PRINCIPAL_POINT[0]],
                       [0.0, FOCAL_PX, PRINCIPAL_POINT[1]],
                       [0.0, 0.0, 1.0]])


def z_rotation(angle: float) -> np.ndarray:
    """Rotation matrix (3,3) about world z by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def world_to_camera(points_world: np.ndarray, cam_loc: np.ndarray) -> np.ndarray:
    """World points (..., 3) in metres -> OpenCV camera coordinates (..., 3)."""
    points_world = np.asarray(points_world, dtype=np.float64)
    cam_loc = np.asarray(cam_loc, dtype=np.float64).reshape(3)
    return (points_world - cam_loc) @ R_WORLD_TO_CAMERA.T


def project(points_camera: np.ndarray) -> np.ndarray:
    """OpenCV camera points (..., 3) -> pixel coordinates (..., 2) (x right, y down)."""
    points_camera = np.asarray(points_camera, dtype=np.float64)
    return FOCAL_PX * points_camera[..., :2] / points_camera[..., 2:3] + PRINCIPAL_POINT


def crop_side_px(root_depth: float) -> float:
    """Side in pixels of the square crop around a root at `root_depth` metres."""
    return FOCAL_PX * CROP_SIZE_M / root_depth
