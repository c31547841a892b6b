"""One SHN training sample from a data list: the NumPy half of both SHN pipelines.

`SHNSampleLoader.load(index, seeds)` reads a frame, applies the augmentation
drawn from `seeds` and crops it; the tf.data pipeline (`DataReader.pipelines`)
calls it from tf.data threads, the TensorFlow-free loader (`DataReader.loader`)
from worker processes. No TensorFlow here.
"""
import numpy as np

from .cloth3d import EmptyMaskError, check_png_header, crop_rgba, read_targets, sample_dict


def numpy_rng(seeds):
    """A NumPy Generator from a sequence of ints (any sign, any count)."""
    return np.random.default_rng([int(s) & 0xFFFFFFFFFFFFFFFF for s in seeds])


class SHNSampleLoader:
    """Loads sample `index` of a data list with the augmentation drawn from
    its seeds.

    Args:
        reader: a `CLOTH3DReader`.
        lines: the data list's lines (`SEQ/NNNN.png`).
        augmenter: a `FrameAugmenter`, or None for no augmentation.
        targets: the lines' `FrameTargets` when already read (a worker process
            gets them from its parent); None reads them here.

    When `targets` is None, the ground truth of all lines is read when this is
    built, so missing sequences, .mat files, out-of-range frames and NaNs fail
    at once with the file named; frame PNGs are checked for presence,
    signature and alpha.
    """

    def __init__(self, reader, lines, augmenter=None, targets=None):
        self.reader, self.lines, self.augmenter = reader, list(lines), augmenter
        if targets is not None:
            if len(targets) != len(self.lines):
                raise ValueError(f"SHNSampleLoader: {len(targets)} targets for {len(self.lines)} lines")
            self.targets = targets
            return
        self.targets = read_targets(reader, self.lines, progress=True)
        for line in self.lines:
            path = reader.frame_path(line)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: frame not found")
            check_png_header(path)

    def __len__(self):
        return len(self.lines)

    def load(self, index, seed_pair=None):
        """Sample `index` as the reader's dict (+ 'valid': False for a skipped empty mask).

        seed_pair: ints (the tf.data pipeline passes 2, the NumPy loader 3)
        seeding this sample's augmentation; None, or no augmenter: none.
        """
        line = self.lines[int(index)]
        targets = self.targets[int(index)]
        rng = numpy_rng(seed_pair) if (self.augmenter is not None and seed_pair is not None) else None
        if rng is not None:
            targets = self.augmenter.geometry(targets, rng)
        try:
            rgba = self.reader.read_frame(line)
        except EmptyMaskError as error:
            self.reader.count_empty_mask(error)
            sample = sample_dict(np.zeros((targets.size, targets.size, 3), np.float32),
                                 np.zeros((targets.size, targets.size, 1), np.float32), targets,
                                 self.reader.frame_path(line))
            sample["valid"] = False
            return sample
        image, mask = crop_rgba(rgba, targets.crop_from_image, targets.size)
        if rng is not None:
            image = self.augmenter.appearance(image, mask, rng)
        sample = sample_dict(image, mask, targets, self.reader.frame_path(line))
        sample["valid"] = True
        return sample
