"""A small z-buffered triangle rasteriser in NumPy, with Lambert shading.

Used by `DataReader.synthesize` to draw posed body meshes into CLOTH3D-style
RGBA frames. Everything works in OpenCV camera coordinates (x right, y down,
z forward, metres) and pixel coordinates as `DataReader.camera.project` gives
them: pixel (row i, column j) covers [j, j+1) x [i, i+1), and is sampled at its
centre (j + 0.5, i + 0.5), which is how Blender renders (the principal point
(320, 240) is the image centre). So a point projected to (u, v) lies in pixel
(floor(v), floor(u)).

Rasterisation is fully vectorised: triangles are grouped by the size of their
pixel bounding box (1, 2, 4, ... px), every candidate pixel of a group is
tested at once with edge functions, and a per-pixel depth test keeps the
nearest surface (`np.minimum.at` on a depth buffer, a real z-buffer: the
result does not depend on triangle order). Depth and attributes are
interpolated perspective-correctly (linear in 1/z on the screen).
`render_mesh` anti-aliases the silhouette: pixels along it are resampled on a
4x4 grid, using only the triangles that touch them, so alpha is the covered
fraction there, like Blender's.
"""
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
    pix, face, z, bary = fragments(points_px, depth, faces, height, width)
    num_pixels = height * width
    zbuffer = np.full(num_pixels, np.inf)
    face_index = np.full(num_pixels, -1, np.int32)
    barycentric = np.zeros((num_pixels, 3), np.float32)
    # The z-buffer: nearest depth per pixel, then the fragment that reached it.
    np.minimum.at(zbuffer, pix, z)
    winner = z == zbuffer[pix]
    face_index[pix[winner]] = face[winner]
    barycentric[pix[winner]] = bary[winner]
    return (face_index.reshape(height, width), barycentric.reshape(height, width, 3),
            zbuffer.astype(np.float32).reshape(height, width))


def fragments(points_px, depth, faces, height, width):
    """Every (pixel centre, triangle) pair where the triangle covers the centre.

    Arguments as for `rasterize`. Returns flat pixel index (N,) int64
    (row * width + column), face index (N,) int64, depth (N,) float64 metres
    and perspective-correct barycentrics (N, 3) float32; no depth test.
    """
    points_px = np.asarray(points_px, np.float64)
    depth = np.asarray(depth, np.float64)
    faces = np.asarray(faces, np.int64)
    if points_px.ndim != 2 or points_px.shape[1] != 2 or depth.shape != points_px.shape[:1]:
        raise ValueError(f"rasterize: points_px must be (V, 2) and depth (V,), got "
                         f"{points_px.shape} and {depth.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"rasterize: faces must be (F, 3), got {faces.shape}")

    tri_xy = points_px[faces]  # (F, 3, 2)
    tri_z = depth[faces]       # (F, 3)
    with np.errstate(invalid="ignore"):
        keep = np.all(tri_z > NEAR_PLANE_M, axis=1) & np.all(np.isfinite(tri_xy), axis=(1, 2))
        # Pixel centres (j + 0.5) inside the bounding box: j in [ceil(min - 0.5), floor(max - 0.5)].
        col_lo = np.maximum(np.ceil(tri_xy[..., 0].min(1) - 0.5), 0)
        col_hi = np.minimum(np.floor(tri_xy[..., 0].max(1) - 0.5), width - 1)
        row_lo = np.maximum(np.ceil(tri_xy[..., 1].min(1) - 0.5), 0)
        row_hi = np.minimum(np.floor(tri_xy[..., 1].max(1) - 0.5), height - 1)
        keep &= (col_hi >= col_lo) & (row_hi >= row_lo)
    ids = np.nonzero(keep)[0]
    if ids.size == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 3), np.float32))
    col_lo, row_lo = col_lo[ids].astype(np.int64), row_lo[ids].astype(np.int64)
    box_w = col_hi[ids].astype(np.int64) - col_lo + 1
    box_h = row_hi[ids].astype(np.int64) - row_lo + 1

    # Bucket triangles by bounding-box side: side <= 1, 2, 4, 8, ...
    side = np.maximum(box_w, box_h)
    bucket = np.ceil(np.log2(side)).astype(np.int64)
    candidates = []
    for b in np.unique(bucket):
        k = 1 << int(b)
        members = np.nonzero(bucket == b)[0]
        per_chunk = max(1, _CHUNK_PIXELS // (k * k))
        dj, di = np.meshgrid(np.arange(k), np.arange(k))
        dj, di = dj.ravel(), di.ravel()
        for start in range(0, members.size, per_chunk):
            m = members[start:start + per_chunk]
            candidates.append(_test_pixels(
                ids[m], col_lo[m], row_lo[m], box_w[m], box_h[m], dj, di, tri_xy, tri_z, width))
    return tuple(np.concatenate([c[i] for c in candidates]) for i in range(4))


def _test_pixels(face_ids, col_lo, row_lo, box_w, box_h, dj, di, tri_xy, tri_z, width):
    """Inside-test of the k*k candidate pixels of each triangle in a group.

    Returns flat pixel index (N,), face id (N,), depth (N,) and
    perspective-correct barycentrics (N, 3) of the covered candidates.
    """
    n, kk = face_ids.size, dj.size
    valid = (dj[None, :] < box_w[:, None]) & (di[None, :] < box_h[:, None])  # (n, kk)
    rows = np.broadcast_to(np.arange(n)[:, None], (n, kk))[valid]
    col = (col_lo[:, None] + dj[None, :])[valid]
    row = (row_lo[:, None] + di[None, :])[valid]
    f = face_ids[rows]
    px, py = col + 0.5, row + 0.5
    a, b, c = tri_xy[f, 0], tri_xy[f, 1], tri_xy[f, 2]  # (N, 2) each
    # Edge functions: w_a is the signed area of (b, c, p), etc.
    w_a = (c[:, 0] - b[:, 0]) * (py - b[:, 1]) - (c[:, 1] - b[:, 1]) * (px - b[:, 0])
    w_b = (a[:, 0] - c[:, 0]) * (py - c[:, 1]) - (a[:, 1] - c[:, 1]) * (px - c[:, 0])
    w_c = (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])
    area = w_a + w_b + w_c
    inside = (((w_a >= 0) & (w_b >= 0) & (w_c >= 0)) | ((w_a <= 0) & (w_b <= 0) & (w_c <= 0))) \
        & (np.abs(area) > 1e-12)
    w = np.stack([w_a, w_b, w_c], axis=1)[inside] / area[inside, None]  # screen-space barycentrics
    f = f[inside]
    inv_z = w / tri_z[f]  # perspective correction: 1/z is linear on the screen
    inv_depth = inv_z.sum(1)
    bary = (inv_z / inv_depth[:, None]).astype(np.float32)
    return (row[inside] * width + col[inside]), f, 1.0 / inv_depth, bary


def vertex_normals(vertices, faces):
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh.

    vertices: (V, 3) float; faces: (F, 3) int. The normals follow the faces'
    winding (right-hand rule); vertices on no face get a zero normal.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    tri = vertices[faces]
    face_normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |n| = 2 * area
    normals = np.zeros_like(vertices)
    for corner in range(3):
        for axis in range(3):
            normals[:, axis] += np.bincount(faces[:, corner], weights=face_normal[:, axis],
                                            minlength=len(vertices))
    length = np.linalg.norm(normals, axis=1, keepdims=True)
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


def render_mesh(vertices_cam, faces, vertex_rgb, focal_px, principal_point, height, width,
                background_rgb=None, antialias=4):
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
    Channels are in RGB order.
    """
    vertices_cam = np.asarray(vertices_cam, np.float64)
    faces = np.asarray(faces, np.int64)
    vertex_rgb = np.asarray(vertex_rgb, np.float64)
    z = vertices_cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        points_px = focal_px * vertices_cam[:, :2] / z[:, None] + np.asarray(principal_point)
    face_index, bary, _ = rasterize(points_px, z, faces, height, width)
    covered = face_index >= 0
    rgb = np.zeros((height, width, 3))
    colour = np.einsum("nk,nkc->nc", bary[covered].astype(np.float64), vertex_rgb[faces[face_index[covered]]])
    rgb[covered] = colour
    alpha = covered.astype(np.float64)
    if antialias > 1 and covered.any():
        _antialias_silhouette(points_px, z, faces, vertex_rgb, covered, antialias, rgb, alpha)
    rgba = np.zeros((height, width, 4), np.uint8)
    if background_rgb is not None:
        rgba[..., :3] = background_rgb
    alpha_u8 = np.clip(np.rint(alpha * 255.0), 0, 255).astype(np.uint8)
    shown = alpha_u8 > 0
    rgba[shown, :3] = np.clip(np.rint(rgb[shown] * 255.0), 0, 255).astype(np.uint8)
    rgba[..., 3] = alpha_u8
    return rgba


def _antialias_silhouette(points_px, depth, faces, vertex_rgb, covered, factor, rgb, alpha):
    """Supersamples the pixels along the silhouette (in place on rgb (H, W, 3), alpha (H, W)).

    Silhouette pixels are those within one pixel of the covered region's
    border. Only triangles whose bounding box touches one are rasterised
    again, on a grid `factor` times finer, with a depth test per sample.
    """
    height, width = covered.shape
    kernel = np.ones((3, 3), np.uint8)
    mask = covered.astype(np.uint8)
    edge = (cv2.dilate(mask, kernel) > 0) & ~(cv2.erode(mask, kernel) > 0)
    # Triangles whose (pixel) bounding box holds an edge pixel: summed-area table.
    table = np.pad(np.cumsum(np.cumsum(edge, 0), 1), ((1, 0), (1, 0)))
    tri = points_px[faces]
    with np.errstate(invalid="ignore"):
        valid = np.all(np.isfinite(tri), axis=(1, 2)) & np.all(depth[faces] > NEAR_PLANE_M, axis=1)
    tri = np.where(valid[:, None, None], tri, 0.0)
    c0 = np.clip(np.floor(tri[..., 0].min(1)), 0, width - 1).astype(np.int64)
    c1 = np.clip(np.floor(tri[..., 0].max(1)), 0, width - 1).astype(np.int64) + 1
    r0 = np.clip(np.floor(tri[..., 1].min(1)), 0, height - 1).astype(np.int64)
    r1 = np.clip(np.floor(tri[..., 1].max(1)), 0, height - 1).astype(np.int64) + 1
    touches = valid & ((table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]) > 0)
    selected = faces[touches]
    if selected.size == 0:
        return
    pix, face, z, bary = fragments(points_px * factor, depth, selected, height * factor, width * factor)
    fine_w = width * factor
    parent = (pix // fine_w // factor) * width + (pix % fine_w) // factor
    keep = edge.reshape(-1)[parent]
    pix, face, z, bary, parent = pix[keep], face[keep], z[keep], bary[keep], parent[keep]
    order = np.lexsort((z, pix))  # nearest fragment first within each sample
    first = np.ones(order.size, bool)
    first[1:] = pix[order][1:] != pix[order][:-1]
    order = order[first]
    sample_rgb = np.einsum("nk,nkc->nc", bary[order].astype(np.float64), vertex_rgb[selected[face[order]]])
    count = np.bincount(parent[order], minlength=height * width)
    sums = np.stack([np.bincount(parent[order], weights=sample_rgb[:, c], minlength=height * width)
                     for c in range(3)], axis=1)
    edge_flat = np.nonzero(edge.reshape(-1))[0]
    hit = count[edge_flat] > 0
    flat_rgb, flat_alpha = rgb.reshape(-1, 3), alpha.reshape(-1)
    flat_alpha[edge_flat] = count[edge_flat] / float(factor * factor)
    flat_rgb[edge_flat[hit]] = sums[edge_flat[hit]] / count[edge_flat[hit], None]
