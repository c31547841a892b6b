"""An endless stream of new synthetic SHN training batches, rendered while training runs.

    with SyntheticStream(batch_size=64, seed=0, workers=15) as stream:
        for batch in stream.batches():          # endless
            ...                                 # dict of NumPy arrays, as shn_dataset's

Every frame is new: worker processes draw new sequences (body shape and
gender, a motion from `pose_prior` or a --poses file, camera and placement,
lights, outfit; `DataReader.synthesize.draw_sequence`), render each frame's
crop in memory (`synthesize.render_crop`: the crop window is folded into the
projection, so no 640x480 frame is drawn, no file is written) and turn it
into a training sample with the file pipeline's own code: the ground truth
and the SPEC crop from `cloth3d.Sequence.targets` (as `CLOTH3DReader` reads
them from info.mat / info_body.mat), the augmentation of
`augment.FrameAugmenter` (geometry before the crop, appearance after it),
the crop by `cloth3d.crop_rgba`, then `augment.standardize_image_np`.

Batches: image (B, 256, 256, 3) float32 standardised, mask (B, 256, 256, 1)
0..1, points (B, 41, 3) metres root-relative, points2d (B, 41, 2) crop
pixels, rotations (B, 24, 3, 3), shape (B, 11), root_camera (B, 3) metres,
all float32, and path (B,) str "stream/SEED/SEQUENCE/FRAME" naming where a
frame came from; the keys, shapes and dtypes of `shn_dataset` and
`shn_batches` batches.

Order and seeds (workers do not change them): batch b holds the frames of
sequences b * S ... (b + 1) * S - 1, S = ceil(B / frames_per_sequence), in
order; sequence s is drawn and rendered from numpy's Generator seeded by
(seed, s), the augmentation of its frame t from (seed, s, t, 1). So the same
seed gives the same batches whatever the number of workers (and 0 workers,
in the calling thread, gives them too). A stream started at batch s0
(`start`, or `seek` before the first batch) hands out batches s0, s0 + 1,
...: without reuse, those of a stream started at 0, from its batch s0 on
(a resumed training run starts at the batches it has trained on so far).

How the rendered crop relates to the file pipeline's: the crop window of the
frame is rendered directly (`render_crop`), once per frame, un-augmented
(the SPEC crop centred on the root). The augmentation's rotation or flip of
the crop is then a warp of that crop by `crop_rgba` (the same call the file
pipeline makes on the full frame), so corners that a rotation brings in from
outside the crop are black where the file pipeline shows the frame's
background (a 0/1 dither, black to the eye). `synthesize.render_crop` says
how the crop itself differs from a crop of a rendered frame (it is drawn at
the crop's resolution; by default one sample per pixel, `antialias=1`: on
the reader's standardised image that is as close to the file pipeline as
4 x 4 silhouette supersampling, which costs more than the rest of the
rasterising; the mask is then 0 or 1, where the file's is soft along ~1
pixel of the silhouette).

Reuse when workers fall behind (`pool_size` > 0): each worker keeps its last
pool_size / workers crops (uint8, with their ground truth); a batch then
holds `fresh` new frames and B - fresh frames drawn from the pool, each with
a new augmentation (rotation, flip, colour, noise); a pooled frame costs a
worker the augmentation only (~2.5 ms instead of ~14). The stream sets the
fresh fraction itself: it falls (x0.9, not below `min_fresh`) each time the
consumer waited for a batch for more than 2% of its own step, and rises
(+0.02, up to 1) each time not. `stats()` reports the fraction of fresh
frames served. Batches with pooled frames depend on timing; the first batch
is always all fresh.

Transfer: a batch of 64 float32 crops is 64 MiB with masks, too much for
pipes (a pickle round trip costs the consumer 65-85 ms per batch on the
H200 machine, copying it out of shared memory 15-19 ms). Workers write each
batch into a slot of one shared-memory block (`loader.SharedArrays`), only
the paths and timings travel through a queue, and the consumer gets views
of the slot: no copy. A slot goes back to the workers when the last array of
its batch (and every view of them) has been freed, so a batch stays valid as
long as anything holds it; a consumer that keeps batches keeps their slots
(`copy=True` hands out copies instead and frees the slot at once).

Speed (`bench/synthetic_stream.py`, the H200 machine's 16 cores, open body,
batch 64, loose garments): one worker makes ~71 new frames/s (14 ms a
frame: pose 2.9, scene 2.9, raster 5.8, augment 2.5), 8 workers ~480/s,
15 workers ~740/s (each then ~49/s: the cores slow each other down); the
SHN trains at ~860 frames/s, so `pool_size` makes up the difference.

Processes: 'spawn' workers (nothing of the parent's JAX or GPU state is
inherited; with `loader.WORKER_ENVIRONMENT`: no GPU, one thread per numeric
library), importing NumPy, SciPy, OpenCV and this package only (no
TensorFlow, no Keras; as with any spawn-based loader they also import the
parent's main module when it is a script, not under `python -m`). Workers
ignore Ctrl-C (the consumer's KeyboardInterrupt unwinds and `close()` stops
them), leave within a second when the parent dies, and are stopped by
`close()`, leaving a `with` block, garbage collection or interpreter exit.
"""
import gc
import math
import os
import queue
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import synthesize
from .augment import FrameAugmenter, standardize_image_np
from .cloth3d import (CROP_SIZE_PX, NUM_JOINTS, NUM_POINTS, Sequence, compose_affine, crop_rgba,
                      sample_dict)
from .loader import (POLL_SECONDS, WORKER_ENVIRONMENT, SharedArrays, _environment, _portable_error, worker_tasks,
                     _stop_workers)
from .occlusion import OccluderBank

#: The arrays of a batch (all float32), per sample.
BATCH_FIELDS = {"image": (CROP_SIZE_PX, CROP_SIZE_PX, 3), "mask": (CROP_SIZE_PX, CROP_SIZE_PX, 1),
                "points": (NUM_POINTS, 3), "points2d": (NUM_POINTS, 2), "rotations": (NUM_JOINTS, 3, 3),
                "shape": (11,), "root_camera": (3,)}
#: Steps of the fresh-frame fraction when frames are reused (see the module docstring).
FRESH_DECREASE, FRESH_INCREASE = 0.9, 0.02
#: Crop pixels (integer centres) -> the continuous coordinates `crop_rgba` expects (centres at j + 0.5).
_CENTRES_TO_CONTINUOUS = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]])
_TIMING_KEYS = ("pose", "scene", "raster", "augment")
#: Frameworks the workers should never import (reported by `stats()["worker_modules"]`).
FRAMEWORKS = ("tensorflow", "keras", "jax", "torch")


class StreamError(RuntimeError):
    """A stream worker failed or died; the message says which and why."""


@dataclass
class StreamConfig:
    """What every worker needs to make batches (see `SyntheticStream` for the meaning)."""
    batch_size: int
    seed: int
    frames_per_sequence: int = 4
    frame_stride: tuple = (4, 12)
    augmentation: int = 1
    flip: bool = False
    voc_dir: Optional[str] = None
    occluder_dir: Optional[str] = None
    smpl_dir: Optional[str] = None
    models: Optional[tuple] = None
    poses_file: Optional[str] = None
    garments: str = "loose"
    cameras: str = "varied"
    antialias: int = 1
    size: int = CROP_SIZE_PX

    @property
    def sequences_per_batch(self):
        return math.ceil(self.batch_size / self.frames_per_sequence)


@dataclass
class PooledFrame:
    """A rendered crop kept for reuse: crop (size, size, 4) uint8 BGRA, its
    `cloth3d.FrameTargets` (un-augmented) and path."""
    crop: np.ndarray
    targets: object
    path: str


@dataclass
class FramePool:
    """A ring buffer of the last `capacity` `PooledFrame`s."""
    capacity: int
    frames: list = field(default_factory=list)
    next: int = 0

    def add(self, frame):
        if self.capacity <= 0:
            return
        if len(self.frames) < self.capacity:
            self.frames.append(frame)
        else:
            self.frames[self.next] = frame
        self.next = (self.next + 1) % self.capacity

    def __len__(self):
        return len(self.frames)


def _invert_affine(affine):
    """The inverse of a (2, 3) affine map."""
    inverse = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))
    return inverse[:2]


def stream_sequence(config, body, sequence_index, pose_stream=None):
    """Sequence `sequence_index` of a stream: (`synthesize.DrawnSequence`,
    `cloth3d.Sequence` holding its ground truth as the reader would read it
    from info.mat / info_body.mat (float32 body arrays), numpy Generator
    that renders it)."""
    rng = np.random.default_rng([config.seed, sequence_index])
    stride = int(rng.integers(config.frame_stride[0], config.frame_stride[1] + 1))
    drawn = synthesize.draw_sequence(rng, body, config.frames_per_sequence, pose_stream=pose_stream,
                                     pose_source=str(config.poses_file), name=f"stream sequence {sequence_index}",
                                     placement=synthesize.PLACEMENTS[config.cameras], garments=config.garments,
                                     frame_stride=stride)
    params = drawn.params
    sequence = Sequence(folder=Path("stream") / str(config.seed) / f"{sequence_index:08d}", zrot=params.zrot,
                        cam_loc=params.cam_loc, trans=params.trans, betas=params.betas, gender=float(params.gender),
                        joints=drawn.joints.astype(np.float32),
                        landmarks=drawn.vertices[:, body.landmark_ids].astype(np.float32),
                        rotations=drawn.rotations.astype(np.float32))
    return drawn, sequence, rng


class BatchMaker:
    """Makes the stream's batches in one process (a worker, or the consumer
    with workers=0): renders new frames, augments, standardises.

    timings: seconds spent, summed over frames: pose (drawing sequences:
    poses, skinning, placement, outfit), scene (normals, cloth, shading),
    raster (rendering the crop), augment (augmentation, crop warp,
    standardisation, copy into the batch); frames: frames made fresh.
    """

    def __init__(self, config, pool_capacity=0):
        self.config = config
        self.body = synthesize.BodyModel.load(config.models, config.smpl_dir)
        occluders = OccluderBank.from_options(config.voc_dir, config.occluder_dir)
        augmenter = FrameAugmenter(config.augmentation, flip=config.flip, occluders=occluders)
        self.augmenter = None if (config.augmentation == 0 and not config.flip) else augmenter
        self.pose_stream = synthesize.load_pose_file(config.poses_file) if config.poses_file else None
        self.pool = FramePool(pool_capacity)
        self.timings = dict.fromkeys(_TIMING_KEYS, 0.0)
        self.frames = 0

    def render_sequence(self, sequence_index):
        """The frames of one sequence: a list of `PooledFrame` (un-augmented crops)."""
        started = time.perf_counter()
        drawn, sequence, rng = stream_sequence(self.config, self.body, sequence_index, self.pose_stream)
        self.timings["pose"] += time.perf_counter() - started
        frames = []
        for t in range(self.config.frames_per_sequence):
            started = time.perf_counter()
            scene = synthesize.frame_scene(drawn, self.body, t)
            targets = sequence.targets(t)
            rendered = time.perf_counter()
            crop = synthesize.render_crop(scene, drawn.params.cam_loc, targets.crop_from_image, self.config.size,
                                          rng, antialias=self.config.antialias)
            done = time.perf_counter()
            self.timings["scene"] += rendered - started
            self.timings["raster"] += done - rendered
            frames.append(PooledFrame(crop=crop, targets=targets, path=f"{sequence.folder.as_posix()}/{t:04d}"))
        self.frames += len(frames)
        return frames

    def sample(self, frame, rng):
        """A training sample (the reader's dict, image standardised) of a
        rendered crop, with the augmentation drawn from `rng` (None: none)."""
        targets = frame.targets
        if self.augmenter is not None:
            targets = self.augmenter.geometry(targets, rng)
        # The augmentation's warp, from the un-augmented crop to the augmented one.
        crop_to_crop = compose_affine(targets.crop_from_image, _invert_affine(frame.targets.crop_from_image))
        image, mask = crop_rgba(frame.crop, compose_affine(crop_to_crop, _CENTRES_TO_CONTINUOUS), targets.size)
        noise_rng = None
        if self.augmenter is not None:
            image = self.augmenter.appearance(image, mask, rng)
            noise_rng = rng if self.augmenter.image_noise else None
        sample = sample_dict(image, mask, targets, frame.path)
        sample["image"] = standardize_image_np(image, noise_rng)
        return sample

    def make(self, batch_index, fresh, out):
        """Fills `out` ({field: (B, ...) array}) with batch `batch_index`:
        `fresh` new frames (more when the pool holds too few frames for the
        rest), then frames of the pool (each at most once, drawn before this
        batch's new frames join it) with a new augmentation.
        Returns (paths (B,) list of str, number of new frames)."""
        config = self.config
        batch_size, per_sequence = config.batch_size, config.frames_per_sequence
        pooled_count = min(batch_size - min(max(int(fresh), 0), batch_size), len(self.pool))
        fresh = batch_size - pooled_count
        pool_rng = np.random.default_rng([config.seed, batch_index, 2])
        pooled = [self.pool.frames[i] for i in pool_rng.choice(len(self.pool), pooled_count, replace=False)]
        first_sequence = batch_index * config.sequences_per_batch
        paths, rendered = [], []
        for k in range(fresh):
            sequence_index, t = first_sequence + k // per_sequence, k % per_sequence
            if t == 0:
                frames = self.render_sequence(sequence_index)
                rendered += frames
            started = time.perf_counter()
            self._store(out, k, self.sample(frames[t], np.random.default_rng([config.seed, sequence_index, t, 1])))
            self.timings["augment"] += time.perf_counter() - started
            paths.append(frames[t].path)
        for k, frame in enumerate(pooled, start=fresh):
            self._store(out, k, self.sample(frame, pool_rng))
            paths.append(frame.path)
        for frame in rendered:
            self.pool.add(frame)
        return paths, fresh

    @staticmethod
    def _store(out, k, sample):
        for key in BATCH_FIELDS:
            out[key][k] = sample[key]


class _SlotLease:
    """Gives a batch's shared-memory slot back (appends it to `free`) once
    the last of its `count` arrays has been freed."""

    def __init__(self, free, slot, count):
        self.free, self.slot, self.count = free, slot, count
        self.lock = threading.Lock()

    def release_one(self):
        with self.lock:
            self.count -= 1
            last = self.count == 0
        if last:
            self.free.append(self.slot)


def _batch_specs(num_slots, batch_size):
    return {key: ((num_slots, batch_size) + shape, np.float32) for key, shape in BATCH_FIELDS.items()}


def _die_with_parent():
    """Asks Linux to send this process SIGTERM when its parent exits (no-op elsewhere)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_main(config, pool_capacity, slots_handle, tasks, results, parent_pid):
    """A worker's loop: (slot, batch index, fresh frames) tasks in, (slot,
    batch index, paths, fresh, timings, error) out; the arrays go to the
    shared-memory slot. None ends it, so does the parent's death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _die_with_parent()
    results.cancel_join_thread()  # never block exit on a parent that stopped reading
    try:
        import cv2
        cv2.setNumThreads(1)
        slots = SharedArrays.attach(slots_handle)
        maker = BatchMaker(config, pool_capacity)
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((None, None, None, None, None, _portable_error(error)))
        return
    for task in worker_tasks(tasks, parent_pid):
        slot, batch_index, fresh = task
        try:
            out = {key: array[slot] for key, array in slots.arrays.items()}
            paths, made = maker.make(batch_index, fresh, out)
            timings = dict(maker.timings, frames=maker.frames, pid=os.getpid(),
                           modules=[name for name in FRAMEWORKS if name in sys.modules])
            results.put((slot, batch_index, paths, made, timings, None))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            results.put((slot, batch_index, None, None, None, _portable_error(error)))


class SyntheticStream:
    """Endless batches of new synthetic frames (see the module docstring).

    Args:
        batch_size: frames per batch.
        seed: int; the same seed gives the same batches (first batch always;
            all of them when pool_size is 0).
        workers: worker processes (None: one per core but one; 0 makes the
            batches in the calling thread).
        frames_per_sequence: frames drawn from each new sequence (its body,
            outfit, camera and motion); fewer means more variety per batch.
        frame_stride: (low, high) the frames of a sequence are this many
            frames of motion apart (drawn per sequence).
        augmentation: 0 none, 1 standard, 2 synthetic occlusion, 3 both
            (modes 2, 3 need voc_dir or occluder_dir), as `shn_dataset`.
        flip: random horizontal flips with mirrored points and pose.
        smpl_dir / models: the body model (`synthesize.BodyModel.load`).
        poses_file: CLOTH3D info.mat or .npz of poses (default: `pose_prior`).
        garments: "loose" (own geometry: wide trousers, skirts, dresses) or
            "tight" (painted on the body); cameras: "varied" or "cloth3d".
        antialias: n x n samples in each silhouette pixel of the rendered
            crops (1: one at its centre, the fastest; see the module docstring).
        pool_size: frames kept (over all workers) for reuse when the workers
            fall behind; 0 (default): every frame is new. With reuse, which
            batches hold pooled frames depends on timing, so the batches after
            the first are not repeatable (not even with the same seed and start).
        min_fresh: the smallest fraction of new frames in a batch when reusing.
        prefetch: batches made ahead beyond one per worker.
        copy: hand out copies (the slot is reused at once) instead of views
            of shared memory (the slot is reused once the batch is freed).
        hold: batches the consumer may hold at a time without slowing the
            workers down (extra slots).
        start: the index of the first batch handed out (see the module
            docstring; `seek` moves it before the first batch).

    The workers start at once and render from the first request on.
    """

    def __init__(self, batch_size, seed=0, workers=None, frames_per_sequence=4, frame_stride=(4, 12),
                 augmentation=1, flip=False, voc_dir=None, occluder_dir=None, smpl_dir=None, models=None,
                 poses_file=None, garments="loose", cameras="varied", antialias=1, pool_size=0, min_fresh=0.25,
                 prefetch=2, copy=False, hold=2, start=0):
        for name, value, low in (("batch_size", batch_size, 1), ("frames_per_sequence", frames_per_sequence, 1),
                                 ("pool_size", pool_size, 0), ("prefetch", prefetch, 0), ("hold", hold, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"SyntheticStream: {name} must be an int >= {low}, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"SyntheticStream: seed must be an int >= 0, got {seed!r}")
        if garments not in synthesize.GARMENT_MODES:
            raise ValueError(f"SyntheticStream: garments {garments!r} is not one of {synthesize.GARMENT_MODES}")
        if cameras not in synthesize.PLACEMENTS:
            raise ValueError(f"SyntheticStream: cameras {cameras!r} is not one of {tuple(synthesize.PLACEMENTS)}")
        if not 0.0 < min_fresh <= 1.0:
            raise ValueError(f"SyntheticStream: min_fresh must be in (0, 1], got {min_fresh!r}")
        if workers is None:
            workers = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                              else (os.cpu_count() or 2)) - 1)
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
            raise ValueError(f"SyntheticStream: workers must be an int >= 0, got {workers!r}")
        low, high = frame_stride
        if not 1 <= int(low) <= int(high):
            raise ValueError(f"SyntheticStream: frame_stride must be (low, high) with 1 <= low <= high, "
                             f"got {frame_stride!r}")
        FrameAugmenter(augmentation, flip=flip, occluders=OccluderBank.from_options(voc_dir, occluder_dir)
                       if augmentation >= 2 else None)  # checks the mode and its occluders here, once
        if models is None:  # found once here: a bad smpl_dir fails here, named, not in every worker
            import smpl
            models = tuple(str(path) for path in smpl.find_models(smpl_dir))
        if poses_file is not None:
            poses = synthesize.load_pose_file(poses_file)  # a bad file fails here, named
            span = (frames_per_sequence - 1) * int(high) + 1
            if len(poses) < span:
                raise synthesize.PoseFileError(f"{poses_file}: has {len(poses)} frames, fewer than the "
                                               f"{span} a sequence spans (frames_per_sequence x frame_stride)")
        self.config = StreamConfig(batch_size=int(batch_size), seed=int(seed),
                                   frames_per_sequence=int(frames_per_sequence), frame_stride=(int(low), int(high)),
                                   augmentation=augmentation, flip=bool(flip),
                                   voc_dir=None if voc_dir is None else str(voc_dir),
                                   occluder_dir=None if occluder_dir is None else str(occluder_dir),
                                   smpl_dir=None if smpl_dir is None else str(smpl_dir), models=models,
                                   poses_file=None if poses_file is None else str(poses_file),
                                   garments=garments, cameras=cameras, antialias=int(antialias))
        self.workers, self.pool_size, self.min_fresh = int(workers), int(pool_size), float(min_fresh)
        self.copy, self.hold = bool(copy), int(hold)
        self.fresh_fraction = 1.0
        self._served = {"batches": 0, "frames": 0, "fresh": 0, "wait_s": 0.0, "handout_s": 0.0}
        self._timings = {}
        self._maker = None
        self._processes = []
        self._closed = False
        self.seek(start)
        if self.workers == 0:
            self._maker = BatchMaker(self.config)
            return
        import multiprocessing
        context = multiprocessing.get_context("spawn")
        self.num_slots = self.workers + int(prefetch) + (0 if self.copy else self.hold)
        self._last_handout = None  # when the consumer last got a batch (its step time is the gap)
        self._slots = SharedArrays(_batch_specs(self.num_slots, self.config.batch_size))
        self._tasks, self._results = context.Queue(), context.Queue()
        capacity = -(-self.pool_size // self.workers) if self.pool_size else 0
        self._processes = [context.Process(target=_worker_main, name=f"DataReader.stream-{k}", daemon=True,
                                           args=(self.config, capacity, self._slots.handle, self._tasks,
                                                 self._results, os.getpid()))
                           for k in range(self.workers)]
        self._finalizer = weakref.finalize(self, _stop_workers, self._processes, self._tasks, self._results,
                                           (self._slots,))
        with _environment(WORKER_ENVIRONMENT):
            for process in self._processes:
                process.start()
        self._free = list(range(self.num_slots))  # appended to by `_SlotLease`, possibly from other threads
        self._done = {}          # batch index -> (slot, paths, fresh)

    # -- public -----------------------------------------------------------------

    def batches(self):
        """The endless iterator of batches (one shared sequence of batch
        indices: several iterators take turns in it)."""
        while True:
            yield self.next_batch()

    def __iter__(self):
        return self.batches()

    @property
    def position(self) -> int:
        """The index of the next batch handed out (start + batches handed out so far)."""
        return self._next_yield

    def seek(self, batch_index: int) -> None:
        """Start at batch `batch_index` (int >= 0) instead: the batches before it are never made.
        Only before the first batch is handed out."""
        if isinstance(batch_index, bool) or not isinstance(batch_index, (int, np.integer)) or batch_index < 0:
            raise ValueError(f"SyntheticStream: the start batch must be an int >= 0, got {batch_index!r}")
        if self._served["batches"]:
            raise StreamError(f"SyntheticStream.seek: {self._served['batches']} batches were handed out already")
        self._start = self._next_submit = self._next_yield = int(batch_index)

    def next_batch(self):
        """The next batch (dict of NumPy arrays, see the module docstring)."""
        if self._closed:
            raise StreamError("this SyntheticStream is closed")
        if self._maker is not None:
            return self._batch_in_thread()
        return self._batch_from_workers()

    def stats(self) -> dict:
        """Frames served and made: batches, frames, fresh (new frames),
        fresh_fraction (fresh / frames), wait_s (consumer time spent waiting
        for workers), handout_s (consumer time handing batches out: making
        views, or copies with copy=True), and
        per_frame_ms {pose, scene, raster, augment} summed over workers,
        per new frame, made (new frames made so far), and worker_modules
        (any of `FRAMEWORKS` the workers imported: none is expected)."""
        served = dict(self._served)
        served["fresh_fraction"] = served["fresh"] / served["frames"] if served["frames"] else 1.0
        timings = [self._maker.timings | {"frames": self._maker.frames}] if self._maker else \
            list(self._timings.values())
        made = sum(t["frames"] for t in timings)
        served["made"] = made
        served["worker_modules"] = sorted({name for t in timings for name in t.get("modules", ())})
        served["per_frame_ms"] = {key: 1000.0 * sum(t[key] for t in timings) / made if made else 0.0
                                  for key in _TIMING_KEYS}
        return served

    def close(self) -> None:
        """Stops the workers and frees the shared memory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._processes:
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- making batches -----------------------------------------------------------

    def _batch_in_thread(self):
        started = time.perf_counter()
        batch = {key: np.empty((self.config.batch_size,) + shape, np.float32) for key, shape in BATCH_FIELDS.items()}
        paths, fresh = self._maker.make(self._next_yield, self.config.batch_size, batch)
        self._next_yield += 1
        self._served["wait_s"] += time.perf_counter() - started
        return self._finish(batch, paths, fresh)

    def _submit(self):
        while self._free:
            slot = self._free.pop(0)
            fresh = self.config.batch_size
            if self.pool_size:
                fresh = max(1, int(round(self.fresh_fraction * self.config.batch_size)))
            self._tasks.put((slot, self._next_submit, fresh))
            self._next_submit += 1

    def _batch_from_workers(self):
        arrived = time.perf_counter()
        self._submit()
        index = self._next_yield
        if index >= self._next_submit:  # every slot is held by batches the consumer still has
            gc.collect()  # batches in reference cycles
            self._submit()
            if index >= self._next_submit:
                raise StreamError(f"the consumer holds all {self.num_slots} batches of shared memory: keep "
                                  "fewer batches, or make the stream with a larger `hold`, or with copy=True")
        while index not in self._done:
            self._receive()
        waited = time.perf_counter() - arrived
        self._served["wait_s"] += waited
        if self.pool_size and index - self._start >= self.num_slots:  # the first batches wait for the workers
            step = arrived - self._last_handout
            behind = waited > max(0.001, 0.02 * step)  # the consumer waited for more than 2% of its step
            self.fresh_fraction = (max(self.min_fresh, self.fresh_fraction * FRESH_DECREASE) if behind
                                   else min(1.0, self.fresh_fraction + FRESH_INCREASE))
        slot, paths, fresh = self._done.pop(index)
        self._next_yield += 1
        started = time.perf_counter()
        arrays = {key: self._slot_array(key, slot) for key in self._slots.arrays}
        if self.copy:
            arrays = {key: value.copy() for key, value in arrays.items()}
            self._free.append(slot)
        else:
            lease = _SlotLease(self._free, slot, len(arrays))
            for value in arrays.values():
                weakref.finalize(value, lease.release_one)
        self._served["handout_s"] += time.perf_counter() - started
        batch = self._finish(arrays, paths, fresh)
        self._submit()
        self._last_handout = time.perf_counter()
        return batch

    def _slot_array(self, key, slot):
        """Array `key` of slot `slot`, a view whose base is the shared memory
        itself (not the array of all slots), so that every view taken of it
        keeps it, and with it the slot's lease, alive."""
        whole = self._slots.arrays[key]
        memory = self._slots.memory.buf
        offset = whole.ctypes.data - np.frombuffer(memory, np.uint8, count=1).ctypes.data + slot * whole.strides[0]
        return np.ndarray(whole.shape[1:], whole.dtype, buffer=memory, offset=offset)

    def _receive(self):
        try:
            message = self._results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            for process in self._processes:
                if process.exitcode is not None:
                    self.close()
                    raise StreamError(f"DataReader.stream worker {process.name} (pid {process.pid}) exited with "
                                      f"code {process.exitcode}; see its error above") from None
            return
        slot, index, paths, fresh, timings, error = message
        if error is not None:
            self.close()
            raise StreamError(f"DataReader.stream worker failed: {type(error).__name__}: {error}") from error
        self._timings[timings["pid"]] = timings
        self._done[index] = (slot, paths, fresh)

    def _finish(self, arrays, paths, fresh):
        self._served["batches"] += 1
        self._served["frames"] += len(paths)
        self._served["fresh"] += fresh
        batch = dict(arrays)
        batch["path"] = np.array(paths, dtype=str)
        return batch

