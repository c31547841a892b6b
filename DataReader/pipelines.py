"""tf.data input pipelines: images for the SHN, in-memory arrays for the SMPLR stages.

SHN: list file -> ground truth of every line read once (each sequence's .mat
files once) -> parallel load of the frames (decode, crop with any geometric
augmentation folded into the one warp, appearance augmentation) -> per-image
standardisation (+ image noise) -> batch -> prefetch.

SMPLR: all points / rotations / shapes in memory -> shuffle -> batch -> the
SPEC input noise on the fly.

Randomness: every sample gets its own seed pair from
`tf.data.Dataset.random(seed)`, zipped with the (seeded) shuffled indices,
so the same `seed` gives the same batches however many threads load them,
and every epoch of a repeated dataset draws new augmentations.
"""
import atexit
import os
import threading
import time
import weakref
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from .augment import IMAGE_NOISE_PROB, IMAGE_NOISE_STD, add_point_noise
from .cloth3d import CROP_SIZE_PX, NUM_JOINTS, NUM_POINTS, CLOTH3DReader, SMPLRArrays, read_list
from .loader import shn_options, smplr_options
from .samples import SHNSampleLoader  # noqa: F401  (re-exported: DataReader.pipelines.SHNSampleLoader)

PathLike = Union[str, os.PathLike]

AUTOTUNE = tf.data.AUTOTUNE

_SHN_SPEC = (("image", tf.float32, (CROP_SIZE_PX, CROP_SIZE_PX, 3)),
             ("mask", tf.float32, (CROP_SIZE_PX, CROP_SIZE_PX, 1)),
             ("points", tf.float32, (NUM_POINTS, 3)),
             ("points2d", tf.float32, (NUM_POINTS, 2)),
             ("rotations", tf.float32, (NUM_JOINTS, 3, 3)),
             ("shape", tf.float32, (11,)),
             ("root_camera", tf.float32, (3,)),
             ("path", tf.string, ()),
             ("valid", tf.bool, ()))


def _seed_pairs(seed):
    """An endless dataset of int64 (2,) seed pairs; a new stream every iteration."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


#: Loaders whose Python calls tf.data may still be running; see `_quiesce_loaders_at_exit`.
_LIVE_LOADERS = weakref.WeakSet()


class LoaderClosedError(RuntimeError):
    """Raised by a loader's tf.data calls once the interpreter is exiting."""


class TFSampleLoader(SHNSampleLoader):
    """`SHNSampleLoader` (DataReader.samples) called from tf.data threads:
    `tf_load` wraps `load` in the graph, and calls are counted so that the
    interpreter can wait for them at exit."""

    def __init__(self, reader, lines, augmenter=None, targets=None):
        super().__init__(reader, lines, augmenter, targets)
        self.closed = False
        self._calls_lock = threading.Lock()
        self._calls_in_flight = 0
        self._last_call_end = time.monotonic()

    def _load_tuple(self, index, seed_pair):
        if self.closed:
            raise LoaderClosedError("the interpreter is exiting")
        with self._calls_lock:
            self._calls_in_flight += 1
        try:
            sample = self.load(index, seed_pair)
        finally:
            with self._calls_lock:
                self._calls_in_flight -= 1
                self._last_call_end = time.monotonic()
        return tuple(np.asarray(sample[key], dtype=np.bool_ if key == "valid" else None)
                     if key != "path" else np.bytes_(str(sample[key]).encode())
                     for key, _, _ in _SHN_SPEC)

    def is_idle(self, quiet_seconds):
        """No call running and none ended within `quiet_seconds`."""
        with self._calls_lock:
            return self._calls_in_flight == 0 and time.monotonic() - self._last_call_end > quiet_seconds

    def tf_load(self, index, seed_pair):
        """Graph wrapper: (index, seed pair) -> dict of tensors with static shapes."""
        _LIVE_LOADERS.add(self)
        outputs = tf.numpy_function(self._load_tuple, [index, seed_pair],
                                    [dtype for _, dtype, _ in _SHN_SPEC], name="load_cloth3d_frame")
        return {key: tf.ensure_shape(value, shape)
                for (key, _, shape), value in zip(_SHN_SPEC, outputs)}


@atexit.register
def _quiesce_loaders_at_exit(quiet_seconds=0.25, timeout_seconds=20.0):
    """Lets tf.data threads leave Python before the interpreter shuts down.

    An iterator still alive at exit (e.g. a module-level `iter(dataset)`)
    keeps prefetching; a Python call running while the interpreter finalises
    makes the process abort ("terminate called without an active exception")
    or hang. Here, before finalisation, loaders refuse new calls (they fail
    at once, filling the prefetch buffers, after which tf.data stops calling)
    and we wait until no call has run for `quiet_seconds`.
    """
    loaders = list(_LIVE_LOADERS)
    for loader in loaders:
        loader.closed = True
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and not all(loader.is_idle(quiet_seconds) for loader in loaders):
        time.sleep(0.02)


def standardize_image(image: tf.Tensor, noise_seed: Optional[tf.Tensor] = None, noise_prob: float = IMAGE_NOISE_PROB,
                      noise_std: float = IMAGE_NOISE_STD) -> tf.Tensor:
    """Per-image standardisation (zero mean, unit variance) of image (H, W, 3);
    with `noise_seed` (2,), adds N(0, noise_std) noise with probability noise_prob."""
    image = tf.image.per_image_standardization(image)
    if noise_seed is not None:
        seeds = tf.random.experimental.stateless_split(noise_seed, 2)
        apply = tf.random.stateless_uniform([], seeds[0]) < noise_prob
        image = tf.cond(apply,
                        lambda: image + tf.random.stateless_normal(tf.shape(image), seeds[1], stddev=noise_std),
                        lambda: image)
    return image


def shn_dataset(frames_root: PathLike, list_file: PathLike, batch_size: int,
                training: bool, augmentation: int = 1, seed: Optional[int] = None,
                voc_dir: Optional[PathLike] = None, occluder_dir: Optional[PathLike] = None,
                flip: bool = False, shuffle: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                num_parallel_calls: int = AUTOTUNE, targets: Optional[Sequence] = None) -> tf.data.Dataset:
    """The SHN's tf.data pipeline over a CLOTH3D-format frames root.

    Args:
        frames_root: folder of sequence folders (real CLOTH3D, synthetic, or yours).
        list_file: data list, one `SEQ/NNNN.png` per line.
        batch_size: samples per batch.
        training: shuffle and augment (else: list order, no augmentation).
        augmentation: 0 none, 1 standard (rotation +-0.15 rad, colour, noise),
            2 synthetic occlusion, 3 both (training only).
        seed: int for reproducible shuffling and augmentation, or None.
        voc_dir: Pascal VOC 2012 folder for modes 2/3; occluder_dir: any
            folder of images (either one, or both, is needed for modes 2/3).
        flip: random horizontal flips with mirrored points and pose (training only).
        shuffle / drop_remainder: default to `training`.
        targets: the list's ground truth when already read, one `FrameTargets`
            per line (`dataset.loader.targets` of an earlier dataset of the same
            list): nothing is read now, so a dataset rebuilt with a new `seed`
            (e.g. every epoch) costs no pass over the files. None: read here
            (each sequence's .mat files once) and every frame's PNG header checked.

    Returns a finite dataset (one pass over the list; `.repeat()` it for more)
    of dicts: image (B, 256, 256, 3) float32 standardised, mask (B, 256, 256, 1)
    0..1, points (B, 41, 3) metres, points2d (B, 41, 2) crop pixels,
    rotations (B, 24, 3, 3), shape (B, 11), root_camera (B, 3) metres, path (B,).
    Frames with an empty mask are skipped with a counted warning.
    """
    augmenter, shuffle, drop_remainder = shn_options(training, augmentation, flip, voc_dir, occluder_dir, shuffle,
                                                     drop_remainder)
    loader = TFSampleLoader(CLOTH3DReader(frames_root), read_list(list_file), augmenter, targets)

    indices = tf.data.Dataset.range(len(loader))
    if shuffle:
        indices = indices.shuffle(len(loader), seed=seed, reshuffle_each_iteration=True)
    image_noise = augmenter is not None and augmenter.image_noise

    def load(index, seed_pair):
        sample = loader.tf_load(index, seed_pair)
        sample["seed"] = seed_pair
        return sample

    def standardize(sample):
        sample = dict(sample)
        del sample["valid"]
        seed_pair = sample.pop("seed")
        noise_seed = tf.random.experimental.stateless_fold_in(seed_pair, 1) if image_noise else None
        sample["image"] = standardize_image(sample["image"], noise_seed)
        return sample

    dataset = tf.data.Dataset.zip(indices, _seed_pairs(seed))
    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    dataset = dataset.filter(lambda sample: sample["valid"])
    dataset = dataset.map(standardize, num_parallel_calls=num_parallel_calls, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.prefetch(AUTOTUNE)
    dataset.loader = loader  # for inspection (e.g. loader.reader.empty_masks_skipped)
    return dataset


def smplr_dataset(arrays: SMPLRArrays, batch_size: int, training: bool, noise: Optional[bool] = None,
                  seed: Optional[int] = None, shuffle: Optional[bool] = None, drop_remainder: Optional[bool] = None,
                  bone_template: Optional[np.ndarray] = None,
                  error_bank: Optional[np.ndarray] = None) -> tf.data.Dataset:
    """The SMPLR stages' pipeline over in-memory `SMPLRArrays`.

    Args:
        arrays: `SMPLRArrays` (e.g. `SMPLRArrays.from_list(...)`, concatenated
            with the synthetic generator's samples).
        batch_size: samples per batch.
        training: shuffle (and, by default, add noise and drop the last partial batch).
        noise: add the SPEC input noise to `noisy_points`; defaults to `training`.
        seed: int for reproducible shuffling and noise, or None.
        bone_template: optional (42,) bone lengths; when given, batches also hold
            `bones` (B, 41) and `normals` (B, 123) of the noisy points
            (`smpl.kinematics.bone_features` / `normal_features`).
        error_bank: optional (N, 41, 3) SHN errors, metres (`load_error_bank`):
            the noise is then one row of it per sample, drawn uniformly, in
            place of the SPEC noise.

    Returns a finite dataset of dicts: points (B, 41, 3) clean, noisy_points
    (B, 41, 3), rotations (B, 24, 3, 3), shape (B, 11). Arrays are embedded in
    the graph, so they must stay under 2 GB (about 1.4 M samples).
    """
    noise, shuffle, drop_remainder = smplr_options(arrays, batch_size, training, noise, shuffle, drop_remainder,
                                                   "smplr_dataset")
    dataset = tf.data.Dataset.from_tensor_slices(
        {"points": arrays.points.astype(np.float32), "rotations": arrays.rotations.astype(np.float32),
         "shape": arrays.shape.astype(np.float32)})
    if shuffle:
        dataset = dataset.shuffle(len(arrays), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    bank = None if error_bank is None else tf.constant(np.asarray(error_bank, np.float32))

    def add_noise(batch, seed_pair):
        batch = dict(batch)
        if bank is None:
            draw = tf.random.stateless_uniform(tf.shape(batch["points"]), seed_pair, -0.5, 0.5)
            batch["noisy_points"] = add_point_noise(batch["points"], draw)
        else:
            rows = tf.random.stateless_uniform(tf.shape(batch["points"])[:1], seed_pair, 0, tf.shape(bank)[0],
                                               dtype=tf.int32)
            batch["noisy_points"] = batch["points"] + tf.gather(bank, rows)
        return batch

    def without_noise(batch):
        return dict(batch, noisy_points=batch["points"])

    if noise:
        dataset = tf.data.Dataset.zip(dataset, _seed_pairs(seed)).map(add_noise, num_parallel_calls=AUTOTUNE)
    else:
        dataset = dataset.map(without_noise)
    if bone_template is not None:
        from smpl import kinematics
        template = np.asarray(bone_template, np.float32)

        def add_features(batch):
            return dict(batch, bones=kinematics.bone_features(batch["noisy_points"], template),
                        normals=kinematics.normal_features(batch["noisy_points"]))
        dataset = dataset.map(add_features, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
