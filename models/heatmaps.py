"""Voxel heatmaps of the SHN: the grid convention, target maps and soft-argmax.

Grid convention (the one place it is settled; it mirrors the original's
`VoxelLoss`, whose grid was `np.meshgrid(x, y, z)` in NumPy's default 'xy'
indexing):

- A heatmap volume has shape (B, H, W, D, C) = (B, 64, 64, 16, C).
  Array axis 1 (rows, H) runs along the point's **y** axis, array axis 2
  (columns, W) along the point's **x** axis, array axis 3 (D) along its **z**
  axis (depth, the camera axis).
- Voxel coordinates of a root-relative point p = (x, y, z) in metres:
  v = (p / extent + 0.5) * (W, H, D), extent = 2.5 m; so the root sits at
  (32, 32, 8) and a voxel is 2.5/64 m wide in x and y and 2.5/16 m deep.
- Voxel centres are at integer voxel coordinates: the cell at array index
  (row i, column j, slice k) is centred at v = (j, i, k). A point is "in" the
  cell whose centre is nearest, i.e. (round(v_y), round(v_x), round(v_z)).

Grid axes (`GRID_AXES`): the "x, y, z" above are the point's axes *on the
grid*. With `axes="world"` (SPEC, the default) they are the world axes of the
root-relative points (z up), so the body's vertical lies on the 16 coarse
depth slices. With `axes="camera"` a world point p is first turned to the
CLOTH3D camera's axes, q = R p = (y, -z, -x) (`DataReader.camera`'s
R_WORLD_TO_CAMERA): columns follow the image's horizontal (world +y, growing
with image x), rows the image's vertical (world -z, growing downwards like
image y), depth slices the distance along the camera axis (world -x).
`to_grid_axes` / `from_grid_axes` apply and undo that fixed signed
permutation; a grid built with `axes` applies it inside `points_to_voxels`
and undoes it in `voxels_to_points`, so points in and out are always in
world axes.

`VoxelGrid.points_to_voxels` and `VoxelGrid.voxels_to_points` are exact
inverses; `soft_argmax` reads points back through the same grid.
"""
import math
from typing import Any, Optional, Sequence

import numpy as np
from keras import ops

#: A backend tensor, or anything `keras.ops` converts to one (NumPy arrays).
Tensor = Any

#: Side of the cube the grid spans, metres (root-relative points in [-1.25, 1.25)).
GRID_EXTENT = 2.5
#: Voxel grid of the SHN output: 64 x 64 in the image plane, 16 in depth.
GRID_SIZE = 64
GRID_DEPTH = 16

#: Grid axes (`--grid-axes`): the rotation (3, 3) taking a world-axes point to
#: the axes the grid's (columns, rows, depth slices) follow.
GRID_AXES = {
    "world": np.eye(3, dtype=np.float32),
    # The CLOTH3D camera's OpenCV axes: x right = world y, y down = world -z,
    # z forward = world -x (equal to DataReader.camera.R_WORLD_TO_CAMERA).
    "camera": np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]], np.float32),
}


def _axes_rotation(axes):
    if axes not in GRID_AXES:
        raise ValueError(f"grid axes must be one of {', '.join(GRID_AXES)}, got {axes!r}")
    return GRID_AXES[axes]


def to_grid_axes(points: Tensor, axes: str = "world") -> Tensor:
    """World-axes points (..., 3) -> the same points in grid axes `axes` (..., 3) float32.

    "world" returns the points unchanged; "camera" gives (y, -z, -x).
    """
    rotation = _axes_rotation(axes)
    points = ops.convert_to_tensor(points, dtype="float32")
    return points if axes == "world" else ops.matmul(points, ops.convert_to_tensor(rotation.T))


def from_grid_axes(points: Tensor, axes: str = "world") -> Tensor:
    """Grid-axes points (..., 3) of grid axes `axes` -> world-axes points (..., 3) float32.

    The inverse of `to_grid_axes` (the rotation is a signed permutation, so its
    inverse is its transpose).
    """
    rotation = _axes_rotation(axes)
    points = ops.convert_to_tensor(points, dtype="float32")
    return points if axes == "world" else ops.matmul(points, ops.convert_to_tensor(rotation))


class VoxelGrid:
    """The SHN's voxel grid: (H, W, D) = (size, size, depth) cells over `extent` metres.

    `axes` ("world" or "camera", `GRID_AXES`): which axes of a world-axes
    point the columns, rows and depth slices follow. See the module docstring
    for which grid axis maps to which array axis.
    """

    def __init__(self, size=GRID_SIZE, depth=GRID_DEPTH, extent=GRID_EXTENT, axes="world"):
        if int(size) < 1 or int(depth) < 1 or not extent > 0:
            raise ValueError(f"VoxelGrid: size, depth and extent must be positive, got "
                             f"size={size}, depth={depth}, extent={extent}")
        _axes_rotation(axes)
        self.size, self.depth, self.extent, self.axes = int(size), int(depth), float(extent), axes

    @classmethod
    def for_heatmaps(cls, heatmaps: Tensor, extent: float = GRID_EXTENT, axes: str = "world") -> "VoxelGrid":
        """The grid matching heatmaps of shape (..., H, W, D, C) (requires H == W)."""
        height, width, depth = tuple(heatmaps.shape[-4:-1])
        if height != width:
            raise ValueError(f"VoxelGrid: heatmaps must be square in H and W, got shape {tuple(heatmaps.shape)}")
        return cls(size=height, depth=depth, extent=extent, axes=axes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (H, W, D) of one heatmap volume."""
        return (self.size, self.size, self.depth)

    @property
    def num_voxels(self) -> int:
        return self.size * self.size * self.depth

    @property
    def cells_per_axis(self) -> np.ndarray:
        """Voxels across the extent along the grid axes x, y, z: (W, H, D) float32."""
        return np.array([self.size, self.size, self.depth], np.float32)

    @property
    def voxel_size(self) -> np.ndarray:
        """Edge lengths of one voxel along the grid axes x, y, z, metres (3,) float32."""
        return np.float32(self.extent) / self.cells_per_axis

    def points_to_voxels(self, points: Tensor) -> Tensor:
        """Voxel coordinates (..., 3) ((column, row, slice) order, continuous) of
        world-axes points (..., 3) in metres."""
        points = to_grid_axes(points, self.axes)
        return (points / self.extent + 0.5) * self.cells_per_axis

    def voxels_to_points(self, voxels: Tensor) -> Tensor:
        """World-axes points (..., 3) in metres of voxel coordinates (..., 3) ((column, row, slice) order)."""
        voxels = ops.convert_to_tensor(voxels, dtype="float32")
        return from_grid_axes((voxels / self.cells_per_axis - 0.5) * self.extent, self.axes)

    def voxel_centres(self) -> np.ndarray:
        """Voxel coordinates (H*W*D, 3) float32 of every cell centre, (x, y, z) order,
        in the row-major order of a flattened (H, W, D) volume."""
        rows, cols, slices = np.meshgrid(np.arange(self.size), np.arange(self.size),
                                         np.arange(self.depth), indexing="ij")
        return np.stack([cols, rows, slices], axis=-1).reshape(-1, 3).astype(np.float32)

    def axis_centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cell-centre voxel coordinates along x (W,), y (H,) and z (D,), float32."""
        return (np.arange(self.size, dtype=np.float32), np.arange(self.size, dtype=np.float32),
                np.arange(self.depth, dtype=np.float32))


def _check_points(points, name):
    if len(points.shape) != 3 or points.shape[-1] != 3:
        raise ValueError(f"{name}: points must be (B, N, 3) in metres, got shape {tuple(points.shape)}")


def point_heatmaps(points: Tensor, grid: Optional["VoxelGrid"] = None, peak_one: bool = False) -> Tensor:
    """Target heatmaps (B, H, W, D, N) float32 of points (B, N, 3) in metres.

    Each map is the isotropic Gaussian density with unit covariance in voxel
    units centred at the point's voxel coordinates, evaluated at the voxel
    centres: (2 pi)^(-3/2) exp(-|c - v|^2 / 2), peak about 0.0635. The
    original left the rescaling to a peak of 1 out (the line is there,
    commented out); `peak_one=True` applies it: exp(-|c - v|^2 / 2).
    The density factorises over x, y, z, so it is built as an outer product of
    three 1-D Gaussians: no loop over points or samples.
    """
    grid = grid or VoxelGrid()
    points = ops.convert_to_tensor(points, dtype="float32")
    _check_points(points, "point_heatmaps")
    voxels = grid.points_to_voxels(points)  # (B, N, 3)
    centres_x, centres_y, centres_z = grid.axis_centres()

    def gaussian_1d(centres, coordinate):  # (B, N, K)
        return ops.exp(-0.5 * ops.square(centres[None, None, :] - coordinate[:, :, None]))

    along_x = gaussian_1d(centres_x, voxels[..., 0])  # columns, W
    along_y = gaussian_1d(centres_y, voxels[..., 1])  # rows, H
    along_z = gaussian_1d(centres_z, voxels[..., 2])  # depth, D
    density = (along_y[:, :, :, None, None] * along_x[:, :, None, :, None]
               * along_z[:, :, None, None, :])  # (B, N, H, W, D), peak 1
    if not peak_one:
        density = density * (2.0 * math.pi) ** -1.5
    return ops.transpose(density, (0, 2, 3, 4, 1))


def limb_bone_table(limb_end_nodes: Sequence[Sequence[int]],
                    parents: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end node indices (L, K) int32 of the bones of each limb.

    limb_end_nodes: L sequences of bone end nodes (a bone is (parents[i], i));
    limbs with fewer than K = max length bones repeat their last bone, which
    leaves the max over a limb's bones unchanged.
    """
    if not limb_end_nodes:
        raise ValueError("limb_bone_table: at least one limb is needed")
    width = max(len(limb) for limb in limb_end_nodes)
    ends = np.array([list(limb) + [limb[-1]] * (width - len(limb)) for limb in limb_end_nodes], np.int32)
    parents = np.asarray(parents)
    if ends.min() < 1 or ends.max() >= len(parents):
        raise ValueError(f"limb_bone_table: bone end nodes must lie in 1..{len(parents) - 1}, got {ends.tolist()}")
    return parents[ends].astype(np.int32), ends


def limb_heatmaps(points: Tensor, bone_starts: np.ndarray, bone_ends: np.ndarray,
                  grid: Optional["VoxelGrid"] = None) -> Tensor:
    """Target limb maps (B, H, W, D, L) float32 of the limbs' bone segments.

    points: (B, N, 3) root-relative points in metres (nodes 1..N; node 0, the
    root, is the origin). bone_starts, bone_ends: (L, K) node indices of each
    limb's bones (see `limb_bone_table`). Per bone, every voxel centre c gets
    1 / (d^2 + 1), d its distance in voxel units to the bone segment; that map
    goes through a softmax over the whole grid; a limb's map is the maximum
    over its bones. All bones, samples and voxels are computed at once.
    """
    grid = grid or VoxelGrid()
    points = ops.convert_to_tensor(points, dtype="float32")
    _check_points(points, "limb_heatmaps")
    bone_starts, bone_ends = np.asarray(bone_starts, np.int32), np.asarray(bone_ends, np.int32)
    if bone_starts.shape != bone_ends.shape or bone_starts.ndim != 2:
        raise ValueError(f"limb_heatmaps: bone_starts and bone_ends must both be (L, K), got "
                         f"{bone_starts.shape} and {bone_ends.shape}")
    if max(bone_starts.max(), bone_ends.max()) > points.shape[1]:
        raise ValueError(f"limb_heatmaps: bone nodes go up to {max(bone_starts.max(), bone_ends.max())} "
                         f"but only nodes 0..{points.shape[1]} exist")
    num_limbs, bones_per_limb = bone_starts.shape
    with_root = ops.concatenate([ops.zeros_like(points[:, :1]), points], axis=1)
    nodes = grid.points_to_voxels(with_root)  # (B, N+1, 3)
    starts = ops.take(nodes, bone_starts.reshape(-1), axis=1)[:, :, None, :]  # (B, LK, 1, 3)
    bone = ops.take(nodes, bone_ends.reshape(-1), axis=1)[:, :, None, :] - starts
    centres = ops.convert_to_tensor(grid.voxel_centres())[None, None]  # (1, 1, V, 3)
    to_centre = centres - starts  # (B, LK, V, 3)
    # Position along the bone of each centre's projection, clipped to the segment;
    # the 1e-5 keeps zero-length bones finite, as in the original.
    along = ops.sum(to_centre * bone, axis=-1, keepdims=True) / (ops.sum(ops.square(bone), axis=-1,
                                                                         keepdims=True) + 1e-5)
    along = ops.clip(along, 0.0, 1.0)
    distance_sq = ops.sum(ops.square(to_centre - along * bone), axis=-1)  # (B, LK, V)
    per_bone = ops.softmax(1.0 / (distance_sq + 1.0), axis=-1)
    per_bone = ops.reshape(per_bone, (-1, num_limbs, bones_per_limb, grid.num_voxels))
    limbs = ops.max(per_bone, axis=2)  # (B, L, V)
    limbs = ops.reshape(limbs, (-1, num_limbs) + grid.shape)
    return ops.transpose(limbs, (0, 2, 3, 4, 1))


def soft_argmax(heatmaps: Tensor, num_points: int = 41, extent: float = GRID_EXTENT, axes: str = "world") -> Tensor:
    """World-axes points (B, num_points, 3) in metres read from heatmap logits (B, H, W, D, C).

    Per channel: softmax over all H*W*D voxels, then the expected voxel centre,
    mapped back to metres through the grid convention of this module; `axes`
    are the grid axes the heatmaps were trained with (`GRID_AXES`). The
    first `num_points` channels are read (the SHN's limb maps follow them);
    `num_points=None` reads every channel. Computed in float32.
    """
    heatmaps = ops.convert_to_tensor(heatmaps)
    if len(heatmaps.shape) != 5:
        raise ValueError(f"soft_argmax: heatmaps must be (B, H, W, D, C), got shape {tuple(heatmaps.shape)}")
    channels = heatmaps.shape[-1]
    if num_points is not None:
        if channels is not None and num_points > channels:
            raise ValueError(f"soft_argmax: asked for {num_points} points but heatmaps have {channels} channels")
        heatmaps = heatmaps[..., :num_points]
        channels = num_points
    grid = VoxelGrid.for_heatmaps(heatmaps, extent=extent, axes=axes)
    logits = ops.reshape(ops.cast(heatmaps, "float32"), (-1, grid.num_voxels, channels))
    weights = ops.softmax(logits, axis=1)  # (B, V, C)
    voxels = ops.einsum("bvc,vk->bck", weights, ops.convert_to_tensor(grid.voxel_centres()))
    return grid.voxels_to_points(voxels)
