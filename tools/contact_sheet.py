"""A contact sheet of CLOTH3D-format frames with their projected ground-truth skeleton.

    python tools/contact_sheet.py <frames_root> <out.png> [--count 8] [--list train.txt]

Each tile is what `DataReader.CLOTH3DReader.load` gives the network: the
256x256 crop around the root, composited over grey by its alpha mask, with
the 41 ground-truth points (`points2d`) drawn as the 42-node SMPLR tree
(bones of the left side in red, right side in blue, centre in green;
landmarks as yellow dots; the crop centre, where the root projects, as a
white cross). Frames are taken evenly spread over the data lists
(train.txt then val.txt), so several sequences show. Works the same on real
CLOTH3D++ samples and on `DataReader.synthesize` output.
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from DataReader.cloth3d import CLOTH3DReader, read_list  # noqa: E402

# The 42-node tree (SPEC): parent of node i, i = 0..41. Kept as plain NumPy
# here so this tool does not import TensorFlow (smpl.kinematics.PARENTS is the same).
TREE_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
                         9, 9, 0, 0, 0, 2, 1, 29, 30, 10, 11, 22, 16, 36, 17, 38, 23, 15])
LEFT_JOINTS = {1, 4, 7, 10, 13, 16, 18, 20, 22}
RIGHT_JOINTS = {2, 5, 8, 11, 14, 17, 19, 21, 23}
GREY_BGR = (110, 110, 110)


def frame_lines(frames_root, count):
    """`count` data-list lines spread evenly over train.txt + val.txt (or all PNGs if no lists)."""
    frames_root = Path(frames_root)
    lines = []
    for name in ("train.txt", "val.txt"):
        if (frames_root / name).is_file():
            lines += read_list(frames_root / name)
    if not lines:
        lines = sorted(str(p.relative_to(frames_root)) for p in frames_root.glob("*/[0-9]*.png"))
    if not lines:
        raise FileNotFoundError(f"{frames_root}: no train.txt / val.txt and no SEQ/NNNN.png frames")
    picks = np.linspace(0, len(lines) - 1, min(count, len(lines))).round().astype(int)
    return [lines[i] for i in picks]


def draw_tile(sample, label):
    """BGR uint8 (256, 256, 3): the crop over grey with the skeleton of `points2d` (41, 2)."""
    rgb, mask = sample["image"], sample["mask"]
    tile = rgb[..., ::-1] * mask + np.array(GREY_BGR, np.float32) * (1.0 - mask)
    tile = np.clip(tile, 0, 255).astype(np.uint8)
    size = tile.shape[0]
    centre = (size - 1) / 2.0
    nodes = np.vstack([[centre, centre], sample["points2d"]])  # node 0 = root at the crop centre
    shift = 4  # sub-pixel drawing: coordinates * 16
    to_int = lambda p: tuple(int(round(v * (1 << shift))) for v in p)  # noqa: E731
    for node in range(1, len(nodes)):
        parent = TREE_PARENTS[node]
        joint = node if node < 24 else parent
        colour = (60, 60, 230) if joint in LEFT_JOINTS else (230, 120, 40) if joint in RIGHT_JOINTS else (60, 200, 60)
        cv2.line(tile, to_int(nodes[parent]), to_int(nodes[node]), colour, 1, cv2.LINE_AA, shift)
    for node in range(24, len(nodes)):
        cv2.circle(tile, to_int(nodes[node]), 2 << shift, (0, 230, 255), -1, cv2.LINE_AA, shift)
    c = int(round(centre))
    cv2.drawMarker(tile, (c, c), (255, 255, 255), cv2.MARKER_CROSS, 9, 1)
    cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(frames_root, count=8, columns=4):
    """BGR uint8 image of `count` tiles (see module docstring), `columns` per row."""
    reader = CLOTH3DReader(frames_root)
    tiles = [draw_tile(reader.load(line), line) for line in frame_lines(frames_root, count)]
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (rows * columns - len(tiles))
    return np.vstack([np.hstack(tiles[r * columns:(r + 1) * columns]) for r in range(rows)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frames_root", help="CLOTH3D-format frames root (with train.txt / val.txt)")
    parser.add_argument("out", help="PNG file to write")
    parser.add_argument("--count", type=int, default=8, help="number of frames (default 8)")
    parser.add_argument("--columns", type=int, default=4, help="tiles per row (default 4)")
    args = parser.parse_args(argv)
    try:
        sheet = contact_sheet(args.frames_root, args.count, args.columns)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), sheet):
        print(f"error: could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
