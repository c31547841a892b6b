"""A small z-buffered triangle rasteriser in NumPy, with diffuse shading and
procedural cloth patterns.

Used by `DataReader.synthesize` to draw posed body meshes into CLOTH3D-style
RGBA frames, or straight into the crop around the root. Everything works in
OpenCV camera coordinates (x right, y down, z forward, metres) and pixel
coordinates as `DataReader.camera.project` gives them: pixel (row i, column
j) covers [j, j+1) x [i, i+1), and is sampled at its centre (j + 0.5, i +
0.5), which is how Blender renders (the principal point (320, 240) is the
image centre). So a point projected to (u, v) lies in pixel (floor(v),
floor(u)). Any 2D affine map of these coordinates (a crop window) may be
applied to the projected vertices first (`render_projected`).

Rasterisation is fully vectorised (`Triangles`): each triangle becomes
planes over the screen (its barycentrics and 1/z), triangles are grouped by
the size of their pixel bounding box (1, 2, 4, ... px), every candidate
pixel of a group is tested at once, and a per-pixel depth test keeps the
nearest surface (`np.maximum.at` on a 1/z buffer, a real z-buffer: the
result does not depend on triangle order). Depth and attributes are
interpolated perspective-correctly (linear in 1/z on the screen). Faces seen
from behind can be dropped first (back-face culling, `outward`).
`render_mesh` anti-aliases the silhouette: pixels along it are resampled on a
4x4 grid, using only the triangles that touch them, so alpha is the covered
fraction there, like Blender's.

Shading (`shade`, `lambert`) is per vertex; cloth patterns (`Material`,
`material_albedo`) are functions of 3D points, so no UV map is needed.
"""
from dataclasses import dataclass

import cv2
import numpy as np

#: Triangles with a vertex nearer than this (metres) are dropped (no clipping).
NEAR_PLANE_M = 1e-3
#: Candidate pixels processed per chunk (bounds peak memory to ~100 MB).
_CHUNK_PIXELS = 1 << 20


def rasterize(points_px, depth, faces, height, width):
    """Nearest triangle and its barycentric coordinates at every pixel centre.

    points_px: (V, 2) float pixel coordinates (x right, y down) of the vertices.
    depth: (V,) float camera-space depth z of the vertices, metres (> 0 in front).
    faces: (F, 3) int vertex indices.
    height, width: image size in pixels.
    Returns face_index (H, W) int32 (-1 where no triangle covers the pixel
    centre), barycentric (H, W, 3) float32 perspective-correct weights of the
    face's three vertices (zeros where empty), and depth (H, W) float32 metres
    (inf where empty).
    """
    triangles = Triangles(points_px, depth, faces, height, width)
    pix, tri, inv_z = triangles.nearest(*triangles.fragments())
    num_pixels = height * width
    face_index = np.full(num_pixels, -1, np.int32)
    barycentric = np.zeros((num_pixels, 3), np.float32)
    zbuffer = np.full(num_pixels, np.inf, np.float32)
    face_index[pix] = triangles.face_ids[tri]
    barycentric[pix] = triangles.barycentric(pix, tri)
    zbuffer[pix] = 1.0 / inv_z
    return (face_index.reshape(height, width), barycentric.reshape(height, width, 3),
            zbuffer.reshape(height, width))


def fragments(points_px, depth, faces, height, width):
    """Every (pixel centre, triangle) pair where the triangle covers the centre.

    Arguments as for `rasterize`. Returns flat pixel index (N,) int64
    (row * width + column), face index (N,) int64, depth (N,) float64 metres
    and perspective-correct barycentrics (N, 3) float32; no depth test.
    """
    triangles = Triangles(points_px, depth, faces, height, width)
    pix, tri, inv_z = triangles.fragments()
    return pix, triangles.face_ids[tri], 1.0 / inv_z, triangles.barycentric(pix, tri)


class Triangles:
    """The triangles of a mesh set up for rasterising at pixel centres.

    Each kept triangle (in front of the near plane, finite, not degenerate,
    covering at least one pixel centre's bounding box, and facing the camera
    when `outward` is given) is stored as three planes over the screen: its
    screen-space barycentrics b_i(x, y) = a_i x + b_i y + c_i (normalised so
    they sum to 1, whatever the winding) and, from them, the inverse depth
    1/z(x, y) = sum_i b_i / z_i, which is linear on the screen (the basis of
    perspective-correct interpolation).

    `fragments` tests the candidate pixels of every triangle's bounding box:
    triangles are grouped by the box's longer side rounded up to a power of
    two, so each group is one dense (triangles x candidates) array evaluated
    by broadcasting, without a per-candidate gather.

    outward: None (keep both sides), or the sign (scalar or (F,)) that makes
    each face's winding normal point out of its closed mesh; then faces seen
    from behind are dropped (back-face culling: on a closed mesh they are
    always hidden). Screen coordinates that are a mirror image of the
    camera's (an affine with negative determinant) need the sign negated.
    Attributes: face_ids (n,) the kept faces' indices into `faces`; arrays of
    per-triangle values are laid out (3, n), one row per corner.
    """

    def __init__(self, points_px, depth, faces, height, width, outward=None):
        points_px = np.asarray(points_px, np.float64)
        depth = np.asarray(depth, np.float64)
        faces = np.asarray(faces, np.int64)
        if points_px.ndim != 2 or points_px.shape[1] != 2 or depth.shape != points_px.shape[:1]:
            raise ValueError(f"rasterize: points_px must be (V, 2) and depth (V,), got "
                             f"{points_px.shape} and {depth.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"rasterize: faces must be (F, 3), got {faces.shape}")
        self.height, self.width = int(height), int(width)
        self.points_px, self.depth, self.faces = points_px, depth, faces
        corners = faces.T  # (3, F)
        x, y = points_px[:, 0][corners], points_px[:, 1][corners]
        area = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])  # twice the signed area
        self.x_min, self.x_max = np.minimum(np.minimum(x[0], x[1]), x[2]), np.maximum(np.maximum(x[0], x[1]), x[2])
        self.y_min, self.y_max = np.minimum(np.minimum(y[0], y[1]), y[2]), np.maximum(np.maximum(y[0], y[1]), y[2])
        with np.errstate(invalid="ignore"):
            col_lo = np.maximum(np.ceil(self.x_min - 0.5), 0)
            col_hi = np.minimum(np.floor(self.x_max - 0.5), width - 1)
            row_lo = np.maximum(np.ceil(self.y_min - 0.5), 0)
            row_hi = np.minimum(np.floor(self.y_max - 0.5), height - 1)
            in_front = (depth > NEAR_PLANE_M)[corners]
            self.usable = in_front[0] & in_front[1] & in_front[2] & np.isfinite(area) & (np.abs(area) > 1e-12)
            if outward is not None:
                # Positive screen area: the right-hand normal points away from the camera.
                self.usable &= np.asarray(outward) * area < 0.0
            keep = self.usable & (col_hi >= col_lo) & (row_hi >= row_lo)
        keep = np.flatnonzero(keep)
        self.face_ids = keep
        # Barycentric planes of the kept triangles: corner i's edge function
        # (signed area of the point and the other two corners j, k) over the area.
        x, y, area = x[:, keep], y[:, keep], area[keep]
        xj, yj, xk, yk = x[[1, 2, 0]], y[[1, 2, 0]], x[[2, 0, 1]], y[[2, 0, 1]]
        self.a, self.b, self.c = (yj - yk) / area, (xk - xj) / area, (xj * yk - xk * yj) / area
        self.col_lo, self.row_lo = col_lo[keep].astype(np.int64), row_lo[keep].astype(np.int64)
        self.box_w = col_hi[keep].astype(np.int64) - self.col_lo + 1
        self.box_h = row_hi[keep].astype(np.int64) - self.row_lo + 1
        self.inv_z = 1.0 / depth[corners[:, keep]]
        self.iz_a, self.iz_b, self.iz_c = ((self.a * self.inv_z).sum(0), (self.b * self.inv_z).sum(0),
                                           (self.c * self.inv_z).sum(0))

    def __len__(self):
        return len(self.face_ids)

    def fragments(self):
        """(pixel (N,) int64 flat index, triangle (N,) int64 index into the kept
        triangles, inverse depth (N,) float64 1/metres) of every covered centre."""
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        group = np.ceil(np.log2(np.maximum(self.box_w, self.box_h))).astype(np.int64)  # box side <= 2**group
        order = np.argsort(group, kind="stable")
        bounds = np.flatnonzero(np.diff(group[order])) + 1
        pieces = []
        for members in np.split(order, bounds):
            side = 1 << int(group[members[0]])
            dj, di = _box_offsets(side)
            per_chunk = max(1, _CHUNK_PIXELS // (side * side))
            for start in range(0, members.size, per_chunk):
                pieces.append(self._test_box(members[start:start + per_chunk], dj, di))
        return tuple(np.concatenate([p[i] for p in pieces]) for i in range(3))

    def _test_box(self, m, dj, di):
        """Inside test of the candidate pixels (offsets dj, di from the box corner) of triangles m."""
        px0, py0 = self.col_lo[m] + 0.5, self.row_lo[m] + 0.5
        a0, a1, b0, b1 = self.a[0, m], self.a[1, m], self.b[0, m], self.b[1, m]
        w0 = (a0 * px0 + b0 * py0 + self.c[0, m])[:, None] + a0[:, None] * dj + b0[:, None] * di
        w1 = (a1 * px0 + b1 * py0 + self.c[1, m])[:, None] + a1[:, None] * dj + b1[:, None] * di
        inside = (w0 >= 0.0) & (w1 >= 0.0) & (w0 + w1 <= 1.0)
        if dj.size > 1:
            inside &= (dj < self.box_w[m, None]) & (di < self.box_h[m, None])
        rows, cols = np.nonzero(inside)
        tri = m[rows]
        col = self.col_lo[tri] + dj[cols].astype(np.int64)
        row = self.row_lo[tri] + di[cols].astype(np.int64)
        inv_z = (self.iz_a[tri] * (col + 0.5) + self.iz_b[tri] * (row + 0.5) + self.iz_c[tri])
        return row * self.width + col, tri, inv_z

    def nearest(self, pix, tri, inv_z, num_pixels=None):
        """The z-buffer: of the fragments (pix, tri, inv_z), the nearest one per
        pixel (largest 1/z; one of them on an exact tie). Returns the same three
        arrays, one entry per covered pixel."""
        num_pixels = self.height * self.width if num_pixels is None else num_pixels
        buffer = np.zeros(num_pixels)
        np.maximum.at(buffer, pix, inv_z)
        winner = inv_z == buffer[pix]
        pix, tri, inv_z = pix[winner], tri[winner], inv_z[winner]
        if pix.size:
            last = np.zeros(num_pixels, np.int64)
            last[pix] = np.arange(pix.size)  # one fragment per pixel on an exact tie
            keep = last[pix] == np.arange(pix.size)
            pix, tri, inv_z = pix[keep], tri[keep], inv_z[keep]
        return pix, tri, inv_z

    def barycentric(self, pix, tri, scale=1):
        """Perspective-correct barycentrics (N, 3) float32 of triangles `tri` at
        pixel centres `pix` (flat indices on a grid `scale` times finer)."""
        return self._weights(pix, tri, scale).T.astype(np.float32)

    def _weights(self, pix, tri, scale=1):
        width = self.width * scale
        px = (pix % width + 0.5) / scale
        py = (pix // width + 0.5) / scale
        weighted = (self.a[:, tri] * px + self.b[:, tri] * py + self.c[:, tri]) * self.inv_z[:, tri]  # (3, N)
        return weighted / (weighted[0] + weighted[1] + weighted[2])

    def interpolate(self, pix, tri, vertex_values):
        """Vertex values (V, C) interpolated perspective-correctly at pixel
        centres `pix` of triangles `tri`: (N, C) float64."""
        weights = self._weights(pix, tri)[..., None]  # (3, N, 1)
        corners = self.faces[self.face_ids[tri]].T  # (3, N)
        return (weights[0] * vertex_values[corners[0]] + weights[1] * vertex_values[corners[1]]
                + weights[2] * vertex_values[corners[2]])


_OFFSETS = {}


def _box_offsets(side):
    """Column and row offsets (side * side,) float64 of the pixels of a square box, cached."""
    if side not in _OFFSETS:
        dj, di = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64))
        _OFFSETS[side] = (dj.ravel(), di.ravel())
    return _OFFSETS[side]


def vertex_normals(vertices, faces):
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh.

    vertices: (V, 3) float; faces: (F, 3) int. The normals follow the faces'
    winding (right-hand rule); vertices on no face get a zero normal.
    """
    return MeshNormals(faces, len(vertices))(vertices)


class MeshNormals:
    """`vertex_normals` of one mesh topology, for many vertex positions: the
    sum of the faces' normals at each vertex is one sparse matrix product
    (the face-vertex incidence, built once)."""

    def __init__(self, faces, num_vertices):
        import scipy.sparse

        self.corners = np.ascontiguousarray(np.asarray(faces, np.int64).T)  # (3, F)
        num_faces = self.corners.shape[1]
        self.incidence = scipy.sparse.csr_matrix(
            (np.ones(3 * num_faces), (self.corners.ravel(), np.tile(np.arange(num_faces), 3))),
            shape=(num_vertices, num_faces))

    def __call__(self, vertices):
        vertices = np.asarray(vertices, np.float64)
        x, y, z = (vertices[:, axis][self.corners] for axis in range(3))  # (3, F) each
        ux, uy, uz = x[1] - x[0], y[1] - y[0], z[1] - z[0]
        vx, vy, vz = x[2] - x[0], y[2] - y[0], z[2] - z[0]
        face_normal = np.stack([uy * vz - uz * vy, uz * vx - ux * vz, ux * vy - uy * vx], axis=1)  # |n| = 2 area
        normals = self.incidence @ face_normal
        length = np.sqrt(np.einsum("vi,vi->v", normals, normals))[:, None]
        return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def outward_sign(vertices, faces):
    """+1 if the faces wind outward (positive enclosed volume), else -1.

    vertices: (V, 3); faces: (F, 3). Uses the signed volume of the mesh
    (sum of v0 . (v1 x v2) / 6), which is positive for outward winding of a
    closed or nearly closed surface.
    """
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64)]
    volume = np.einsum("fi,fi->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    return 1.0 if volume >= 0 else -1.0


def lambert(normals, albedo, light_dir, ambient=0.3):
    """Lambert shading per vertex: albedo * (ambient + (1 - ambient) * max(0, n . l)).

    normals: (V, 3) unit outward normals; albedo: (V, 3) or (3,) RGB in [0, 1];
    light_dir: (3,) direction *towards* the light (normalised here), in the
    same frame as the normals. Returns (V, 3) RGB in [0, 1].
    """
    light_dir = np.asarray(light_dir, np.float64)
    light_dir = light_dir / np.linalg.norm(light_dir)
    diffuse = np.clip(np.asarray(normals, np.float64) @ light_dir, 0.0, None)
    return np.asarray(albedo, np.float64) * (ambient + (1.0 - ambient) * diffuse)[:, None]


#: Display gamma: colours are given and written in display values, light
#: adds up in linear values (as a renderer such as Blender's does). 2 is
#: close to sRGB's ~2.2 and makes the conversions a square and a square root.
GAMMA = 2.0


def shade(normals, albedo, lights, ambient):
    """Diffuse shading in linear light, per vertex: for display-valued albedo a,
    sqrt(a^2 * (ambient + sum_k max(0, n . l_k))), clipped to [0, 1] (`GAMMA` 2).

    normals: (V, 3) unit outward normals; albedo: (V, 3) RGB in [0, 1];
    lights: (K, 3) directions towards each light, scaled by its intensity
    (a unit vector of intensity 1 lights a surface facing it to its albedo);
    ambient: uniform light from everywhere, same units. Returns (V, 3).
    Shading in linear light gives the soft falloff of real renders (a
    surface at 60 degrees to a light is 71%, not 50%, as bright on screen).
    """
    lights = np.asarray(lights, np.float64).reshape(-1, 3)
    irradiance = ambient + np.maximum(np.asarray(normals, np.float64) @ lights.T, 0.0).sum(axis=1)
    albedo = np.asarray(albedo, np.float64)
    return np.sqrt(np.minimum(albedo * albedo * irradiance[:, None], 1.0))


# ----------------------------------------------------------------------------
# Procedural cloth patterns, evaluated at 3D points (no UV maps needed)
# ----------------------------------------------------------------------------

#: Pattern kinds of a `Material`.
PATTERNS = ("solid", "stripes", "checks", "noise", "cells", "dots")


@dataclass
class Material:
    """A procedural cloth pattern in body coordinates (metres).

    pattern: one of `PATTERNS`; colours (K, 3) RGB in [0, 1] (the pattern
    picks or mixes them; `solid` uses the first); scale: the pattern's period
    or feature size, metres; axes (3, 3): orthonormal rows, the pattern's own
    directions (stripes run across axes[0]); seed: int for the pattern's
    random parts (noise lattice, cell centres); grain: amplitude of a fine
    luminance noise on top (the weave of the fabric), 0..1.
    """
    pattern: str
    colours: np.ndarray
    scale: float
    axes: np.ndarray
    seed: int
    grain: float = 0.05


def material_albedo(material, points):
    """Colours (N, 3) in [0, 1] of `material` at points (N, 3) (metres, the
    body's rest coordinates, so the pattern moves with the cloth)."""
    points = np.asarray(points, np.float64)
    local = points @ np.asarray(material.axes, np.float64).T / material.scale  # (N, 3) in periods
    colours = np.asarray(material.colours, np.float64)
    kind = material.pattern
    if kind == "solid":
        albedo = np.broadcast_to(colours[0], points.shape).copy()
    elif kind == "stripes":  # bands across axes[0]; the second colour covers 20-60% of a period
        duty = 0.2 + 0.4 * ((material.seed % 97) / 96.0)
        albedo = colours[(np.mod(local[:, 0], 1.0) < duty).astype(np.int64) % len(colours)]
    elif kind == "checks":  # two crossing stripe sets: colours 0, 1 and their overlap 2
        band_u = np.mod(local[:, 0], 1.0) < 0.5
        band_v = np.mod(local[:, 1], 1.0) < 0.5
        albedo = colours[np.where(band_u & band_v, 2, (band_u ^ band_v).astype(np.int64)) % len(colours)]
    elif kind == "noise":  # smooth blotches between colours 0 and 1 (camouflage, tie-dye, heather)
        t = 0.65 * value_noise(local, material.seed) + 0.35 * value_noise(2.3 * local, material.seed + 1)
        t = np.clip((t - 0.5) * 3.0 + 0.5, 0.0, 1.0)[:, None]
        albedo = (1.0 - t) * colours[0] + t * colours[1]
    elif kind == "cells":  # coloured cells with dark seams (patchwork, stained glass)
        cell, seam = voronoi_cells(local, material.seed)
        albedo = colours[(1 + cell % max(len(colours) - 1, 1)) % len(colours)]
        albedo = albedo * np.where(seam < 0.08, 0.25, 1.0)[:, None]
    elif kind == "dots":  # dots of colour 1 on a square lattice
        offset = local[:, :2] - np.floor(local[:, :2]) - 0.5
        albedo = colours[(np.hypot(offset[:, 0], offset[:, 1]) < 0.3).astype(np.int64) % len(colours)]
    else:
        raise ValueError(f"unknown pattern {kind!r} (expected one of {PATTERNS})")
    if material.grain:  # independent per 4 mm cell: finer than the mesh, so per vertex
        cell = np.floor(points / 0.004).astype(np.int64)
        fine = _lattice_hash(cell[:, 0], cell[:, 1], cell[:, 2], material.seed + 7) - 0.5
        albedo = albedo * (1.0 + material.grain * 2.0 * fine)[:, None]
    return np.clip(albedo, 0.0, 1.0)


def _lattice_hash(ix, iy, iz, seed):
    """A pseudo-random value in [0, 1) per integer lattice point (any shapes)."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def value_noise(points, seed=0):
    """Smooth noise in [0, 1] at points (N, 3), one feature per unit length:
    random values on the integer lattice, blended with a smoothstep."""
    base = np.floor(points)
    frac = points - base
    base = base.astype(np.int64)
    w = frac * frac * (3.0 - 2.0 * frac)
    out = np.zeros(len(points))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = ((w[:, 0] if dx else 1.0 - w[:, 0]) * (w[:, 1] if dy else 1.0 - w[:, 1])
                          * (w[:, 2] if dz else 1.0 - w[:, 2]))
                out += weight * _lattice_hash(base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz, seed)
    return out


def voronoi_cells(points, seed=0):
    """Cell id (N,) int64 and seam distance (N,) of points (N, 3) in a
    Voronoi diagram with one jittered centre per unit lattice cell; the seam
    distance is (second nearest - nearest centre distance), 0 on a seam."""
    base = np.floor(points).astype(np.int64)
    best = np.full(len(points), np.inf)
    second = np.full(len(points), np.inf)
    cell = np.zeros(len(points), np.int64)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dz in (-1, 0, 1):
                ix, iy, iz = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
                centre = np.stack([ix + _lattice_hash(ix, iy, iz, seed), iy + _lattice_hash(ix, iy, iz, seed + 1),
                                   iz + _lattice_hash(ix, iy, iz, seed + 2)], axis=1)
                d = np.linalg.norm(points - centre, axis=1)
                nearer = d < best
                second = np.where(nearer, best, np.minimum(second, d))
                cell = np.where(nearer, (ix * 7 + iy * 13 + iz * 17) & 0xFFFF, cell)
                best = np.where(nearer, d, best)
    return cell, second - best


def render_mesh(vertices_cam, faces, vertex_rgb, focal_px, principal_point, height, width,
                background_rgb=None, antialias=4, outward=None):
    """RGBA image (H, W, 4) uint8 of a mesh with per-vertex colours; alpha = coverage.

    vertices_cam: (V, 3) OpenCV camera coordinates, metres.
    faces: (F, 3) int; vertex_rgb: (V, 3) shaded colours in [0, 1] (e.g. from
    `lambert`), interpolated perspective-correctly over each triangle.
    focal_px: focal length in pixels; principal_point: (2,) pixels.
    background_rgb: (H, W, 3) uint8 shown where alpha is 0 (black if None).
    antialias: pixels on the silhouette are resampled with antialias x
    antialias samples each (1 = off): alpha is the covered fraction and the
    colour the mean of the covered samples (straight, not premultiplied,
    alpha, as Blender writes PNGs). Inside the silhouette alpha is 255.
    outward: None draws both sides of every face; the mesh's `outward_sign`
    (scalar or per face) draws only faces seen from outside (back-face
    culling, exact for closed meshes and about twice as fast).
    Channels are in RGB order.
    """
    vertices_cam = np.asarray(vertices_cam, np.float64)
    z = vertices_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        points_px = focal_px * vertices_cam[:, :2] / z[:, None] + np.asarray(principal_point)
    return render_projected(points_px, z, faces, vertex_rgb, height, width, background_rgb, antialias, outward)


def render_projected(points_px, depth, faces, vertex_rgb, height, width, background_rgb=None, antialias=4,
                     outward=None):
    """`render_mesh` of vertices already projected: points_px (V, 2) pixel
    coordinates (pixel centres at j + 0.5), depth (V,) camera z in metres.

    Any 2D affine map of the projection may be folded into points_px (a crop,
    a rotation, a mirror): barycentrics on the screen and 1/z stay linear, so
    the image is the same as warping a full render, up to anti-aliasing.
    outward: see `Triangles` (back-face culling; None draws both sides).
    Returns RGBA (height, width, 4) uint8, RGB order.
    """
    rgb, alpha = _draw(points_px, depth, np.asarray(faces, np.int64), np.asarray(vertex_rgb, np.float64),
                       height, width, antialias, outward)
    rgba = np.zeros((height, width, 4), np.uint8)
    if background_rgb is not None:
        rgba[..., :3] = background_rgb
    alpha_u8 = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    shown = np.flatnonzero(alpha_u8)
    flat = rgba.reshape(-1, 4)
    flat[shown, :3] = np.clip(np.rint(rgb[shown] * 255.0), 0, 255).astype(np.uint8)
    flat[:, 3] = alpha_u8
    return rgba


def _draw(points_px, depth, faces, vertex_rgb, height, width, antialias, outward):
    """Flat colour (H*W, 3) and coverage (H*W,) float64 of a mesh, the
    silhouette supersampled `antialias` x `antialias` times."""
    triangles = Triangles(points_px, depth, faces, height, width, outward)
    pix, tri, _ = triangles.nearest(*triangles.fragments())
    num_pixels = height * width
    rgb = np.zeros((num_pixels, 3))
    rgb[pix] = triangles.interpolate(pix, tri, vertex_rgb)
    alpha = np.zeros(num_pixels)
    alpha[pix] = 1.0
    if antialias > 1 and pix.size:
        _antialias_silhouette(triangles, vertex_rgb, antialias, rgb, alpha)
    return rgb, alpha


def _antialias_silhouette(triangles, vertex_rgb, factor, rgb, alpha):
    """Supersamples the pixels along the silhouette (in place on the flat
    rgb (H*W, 3) and alpha (H*W,) of `triangles`' image).

    Silhouette pixels are those within one pixel of the covered region's
    border. Only triangles whose bounding box touches one are rasterised
    again, on a grid `factor` times finer, with a depth test per sample.
    """
    height, width = triangles.height, triangles.width
    covered = (alpha > 0).reshape(height, width).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(covered, kernel) > 0) & ~(cv2.erode(covered, kernel) > 0)
    # Triangles whose (pixel) bounding box holds an edge pixel: summed-area table.
    # Every usable face counts: one covering no pixel centre still covers samples.
    table = cv2.integral(edge.astype(np.uint8))  # (H + 1, W + 1), zero first row and column
    usable = triangles.usable
    with np.errstate(invalid="ignore"):
        c0 = np.clip(np.floor(np.where(usable, triangles.x_min, 0)), 0, width - 1).astype(np.int64)
        c1 = np.clip(np.floor(np.where(usable, triangles.x_max, 0)), 0, width - 1).astype(np.int64) + 1
        r0 = np.clip(np.floor(np.where(usable, triangles.y_min, 0)), 0, height - 1).astype(np.int64)
        r1 = np.clip(np.floor(np.where(usable, triangles.y_max, 0)), 0, height - 1).astype(np.int64) + 1
    touches = usable & ((table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]) > 0)
    selected = triangles.faces[touches]
    if selected.size == 0:
        return
    # The same triangles on a grid `factor` times finer (its pixel centres at (j + 0.5) / factor).
    fine = Triangles(triangles.points_px * factor, triangles.depth, selected, height * factor, width * factor)
    pix, tri, inv_z = fine.fragments()
    fine_w = width * factor
    parent = (pix // fine_w // factor) * width + (pix % fine_w) // factor
    edge_flat = np.flatnonzero(edge)
    edge_id = np.full(height * width, -1, np.int64)
    edge_id[edge_flat] = np.arange(edge_flat.size)
    keep = edge_id[parent] >= 0
    pix, tri, inv_z, parent = pix[keep], tri[keep], inv_z[keep], parent[keep]
    # Compact sample index: edge pixel id * factor^2 + position inside the pixel.
    sample = edge_id[parent] * (factor * factor) + ((pix // fine_w) % factor) * factor + (pix % fine_w) % factor
    num_samples = edge_flat.size * factor * factor
    sample, tri, _ = fine.nearest(sample, tri, inv_z, num_pixels=num_samples)
    owner, sub = sample // (factor * factor), sample % (factor * factor)
    fine_pix = ((edge_flat[owner] // width) * factor + sub // factor) * fine_w \
        + (edge_flat[owner] % width) * factor + sub % factor
    sample_rgb = fine.interpolate(fine_pix, tri, vertex_rgb)
    count = np.bincount(owner, minlength=edge_flat.size)
    sums = np.stack([np.bincount(owner, weights=sample_rgb[:, ch], minlength=edge_flat.size)
                     for ch in range(3)], axis=1)
    hit = count > 0
    alpha[edge_flat] = count / float(factor * factor)
    rgb[edge_flat[hit]] = sums[hit] / count[hit, None]
