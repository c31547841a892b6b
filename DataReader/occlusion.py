"""Synthetic occlusion: background replacement through the person mask and
pasted occluders, from Pascal VOC 2012 or from any folder of images.

As in the original: with probability 0.35 the background (outside the person
mask) is replaced by a whole image resized to the crop, and with probability
0.35 an object, resized with its image to half the crop, is pasted at a
random place. VOC occluders are objects of the `SegmentationObject` masks of
images that show no person (label -1 in `person_trainval.txt`). Images of a
plain folder occlude with their alpha channel where they have one, and with
the whole image otherwise.
"""
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

BACKGROUND_PROB = 0.35
OCCLUDER_PROB = 0.35
#: Pasted occluders are resized to this fraction of the crop side.
OCCLUDER_FRACTION = 0.5

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: SegmentationObject colours that are not objects: background and the object outlines.
_VOC_NON_OBJECT_COLOURS = ((0, 0, 0), (192, 224, 224))  # BGR


def _find_voc_root(voc_dir):
    """Accepts VOCdevkit/VOC2012, VOCdevkit, or a folder holding VOCdevkit."""
    voc_dir = Path(voc_dir)
    for candidate in (voc_dir, voc_dir / "VOC2012", voc_dir / "VOCdevkit" / "VOC2012"):
        if (candidate / "ImageSets" / "Main" / "person_trainval.txt").is_file():
            return candidate
    raise FileNotFoundError(f"{voc_dir}: no Pascal VOC 2012 here "
                            "(expected VOC2012/ImageSets/Main/person_trainval.txt)")


def _read_image(path, flags=cv2.IMREAD_COLOR):
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f"{path}: corrupt or unreadable image")
    return image


class OccluderBank:
    """Images to use as backgrounds and occluders.

    backgrounds: image paths; occluders: (image path, mask path or None) pairs,
    where a mask path is a VOC SegmentationObject PNG, and None means "use the
    image's alpha channel, or the whole image".
    """

    def __init__(self, backgrounds, occluders, source):
        if not backgrounds or not occluders:
            raise ValueError(f"{source}: no usable occluder images found")
        self.backgrounds, self.occluders, self.source = list(backgrounds), list(occluders), source

    def __len__(self):
        return len(self.occluders)

    @classmethod
    def from_voc(cls, voc_dir):
        """Pascal VOC 2012 images without persons that have object segmentations."""
        root = _find_voc_root(voc_dir)
        listing = root / "ImageSets" / "Main" / "person_trainval.txt"
        images = []
        for line in listing.read_text().splitlines():
            fields = line.split()
            if len(fields) != 2 or fields[1] != "-1":
                continue
            jpg = root / "JPEGImages" / f"{fields[0]}.jpg"
            png = root / "SegmentationObject" / f"{fields[0]}.png"
            if jpg.is_file() and png.is_file():
                images.append((jpg, png))
        return cls([jpg for jpg, _ in images], images, source=listing)

    @classmethod
    def from_folder(cls, folder):
        """Every image in `folder` (recursively) serves as background and occluder."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: occluder folder not found")
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return cls(paths, [(p, None) for p in paths], source=folder)

    @classmethod
    def from_options(cls, voc_dir: Optional[Union[str, Path]] = None,
                     occluder_dir: Optional[Union[str, Path]] = None) -> Optional["OccluderBank"]:
        """VOC and/or a folder; None when neither is given."""
        banks = [bank for bank in ((cls.from_voc(voc_dir) if voc_dir else None),
                                   (cls.from_folder(occluder_dir) if occluder_dir else None)) if bank]
        if not banks:
            return None
        return cls(sum((b.backgrounds for b in banks), []), sum((b.occluders for b in banks), []),
                   source=", ".join(str(b.source) for b in banks))

    def background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A random background (size, size, 3) float32 RGB 0..255."""
        path = self.backgrounds[rng.integers(len(self.backgrounds))]
        image = _read_image(path)
        resized = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32)

    def occluder(self, rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
        """A random occluder: RGB (side, side, 3) float32 0..255 and mask (side, side, 1) 0..1."""
        image_path, mask_path = self.occluders[rng.integers(len(self.occluders))]
        image = _read_image(image_path, cv2.IMREAD_UNCHANGED)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.dtype != np.uint8:
            image = (image / (np.iinfo(image.dtype).max / 255.0)).astype(np.uint8)
        if mask_path is not None:
            mask = self._voc_object_mask(_read_image(mask_path), rng, mask_path)
        elif image.shape[2] == 4:
            mask = image[:, :, 3].astype(np.float32) / 255.0
        else:
            mask = np.ones(image.shape[:2], np.float32)
        rgb = cv2.cvtColor(cv2.resize(image[:, :, :3], (side, side), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB).astype(np.float32)
        mask = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)
        return rgb, mask[:, :, None]

    @staticmethod
    def _voc_object_mask(segmentation, rng, path):
        colours = np.unique(segmentation.reshape(-1, 3), axis=0)
        objects = [c for c in colours if tuple(int(v) for v in c) not in _VOC_NON_OBJECT_COLOURS]
        if not objects:
            raise ValueError(f"{path}: segmentation holds no object")
        colour = objects[rng.integers(len(objects))]
        return np.all(segmentation == colour, axis=-1).astype(np.float32)


def replace_background(image: np.ndarray, person_mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """image * mask + background * (1 - mask); all (H, W, .) float32."""
    return image * person_mask + background * (1.0 - person_mask)


def paste_occluder(image: np.ndarray, occluder_rgb: np.ndarray, occluder_mask: np.ndarray,
                   top_left: tuple[int, int]) -> np.ndarray:
    """Blends an occluder (h, w, 3) with its mask (h, w, 1) into image at (row, col)."""
    image = image.copy()
    row, col = top_left
    h, w = occluder_mask.shape[:2]
    region = image[row:row + h, col:col + w]
    h, w = region.shape[:2]
    region[:] = region * (1.0 - occluder_mask[:h, :w]) + occluder_rgb[:h, :w] * occluder_mask[:h, :w]
    return image


def random_occlusion(image: np.ndarray, person_mask: np.ndarray, bank: "OccluderBank", rng: np.random.Generator,
                     background_prob: float = BACKGROUND_PROB, occluder_prob: float = OCCLUDER_PROB) -> np.ndarray:
    """Background replacement and one pasted occluder, each at its probability.

    image (S, S, 3) float32 RGB 0..255; person_mask (S, S, 1) 0..1. The
    person mask itself is returned unchanged by the pipeline (it marks the
    person, occluded or not).
    """
    size = image.shape[0]
    if rng.random() < background_prob:
        image = replace_background(image, person_mask, bank.background(rng, size))
    if rng.random() < occluder_prob:
        side = int(round(size * OCCLUDER_FRACTION))
        rgb, mask = bank.occluder(rng, side)
        top_left = rng.integers(0, size - side + 1, size=2)
        image = paste_occluder(image, rgb, mask, top_left)
    return image.astype(np.float32)
