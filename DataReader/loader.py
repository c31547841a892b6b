"""Batches for Keras on JAX: the TensorFlow-free twins of `DataReader.pipelines`.

    with shn_batches(frames_root, list_file, 64, training=True, seed=0, workers=15) as data:
        for batch in data.batches():            # endless; iter(data) is one pass
            ...                                 # dict of NumPy arrays, as shn_dataset's
    for batch in smplr_batches(arrays, 64, training=True, seed=0, bone_template=t):
        ...

NumPy, OpenCV and `multiprocessing` only: no TensorFlow, no Keras (importing
this module imports neither; `smplr_batches(bone_template=...)` imports
`smpl.kinematics`, hence Keras, when first used).

SHN (`shn_batches`): each sample is `SHNSampleLoader.load` (DataReader.samples,
the very code the tf.data pipeline runs) followed by `standardize_image_np`
(per-image standardisation, plus image noise when augmenting). Worker
processes ('spawn' start method: nothing of the parent's JAX or TensorFlow
state is inherited, and the workers see no GPU) load samples into slots of a
shared-memory block; the calling thread copies each slot into the batch, in
order, and hands the slot back. Receiving a 1 MiB sample (image + mask,
float32) pickled through a multiprocessing Queue costs the parent ~2.4 ms of
CPU (measured on the 2-core development machine: a ceiling near 400 crops/s);
copying it out of shared memory into the batch costs ~0.2 ms.
At most `prefetch_batches` batches of samples (or two per worker) are being
loaded or waiting. The frames' ground truth is read once, by the parent (so
bad files fail at once, named), and shared with the workers the same way.

Randomness, and why it differs from the tf.data pipeline: there, every
sample's seed pair comes from `tf.data.Dataset.random(seed)` and the order
from `Dataset.shuffle(seed=...)`, streams that only TensorFlow can produce.
Here, with `seed` s (None: a random one):
    order of epoch e:          np.random.default_rng([s, e]).permutation(N)
    augmentation of position k of epoch e:  SHNSampleLoader.load(index, (s, e, k))
    image noise of that sample:             np.random.default_rng([s, e, k, 1])
    SMPLR noise of batch b of epoch e:      np.random.default_rng([s, e, b])
so the same seed gives the same batches whatever the number of workers, and
each new iteration (a new epoch) reshuffles and draws new augmentations. Both
pipelines are deterministic; they draw different (equally distributed)
samples. Without augmentation and shuffling they give the same batches.

Shutdown: `close()` (or leaving a `with` block, or garbage collection, or
interpreter exit) stops the workers; workers ignore Ctrl-C (the parent's
KeyboardInterrupt unwinds, then exit stops them) and leave on their own
within a second when the parent dies. With 'spawn', workers import the
parent's main module (not under `if __name__ == "__main__"`), as for any
spawn-based loader.
"""
import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import secrets
import signal
import traceback
import weakref
from contextlib import contextmanager
from multiprocessing import shared_memory

import numpy as np

from .augment import FrameAugmenter, add_point_noise, standardize_image_np
from .cloth3d import CLOTH3DReader, FrameTargets, SMPLRArrays, read_list
from .occlusion import OccluderBank
from .samples import SHNSampleLoader, numpy_rng

log = logging.getLogger(__name__)

#: How often (seconds) a waiting worker checks that its parent is alive, and
#: a waiting parent that its workers are.
POLL_SECONDS = 0.5
#: Environment of the worker processes: CPU only, one thread per library.
WORKER_ENVIRONMENT = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": "1",
                      "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

_SEED_MASK = 0xFFFFFFFFFFFFFFFF
_TARGET_FIELDS = ("points", "rotations", "shape", "root_camera", "crop_from_image", "points2d")
_SHN_KEYS = ("image", "mask", "points", "points2d", "rotations", "shape", "root_camera", "path")


def _base_seed(seed):
    if seed is None:
        return secrets.randbits(63)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return int(seed) & _SEED_MASK


def epoch_order(num_samples, shuffle, seed, epoch):
    """Sample indices (num_samples,) of epoch `epoch`: a permutation drawn
    from (seed, epoch) when shuffling, else 0..num_samples-1."""
    if not shuffle:
        return np.arange(num_samples)
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def load_standardized(sample_loader, index, seeds, image_noise):
    """`sample_loader.load(index, seeds)` with its image standardised (plus
    image noise from (*seeds, 1) when `image_noise`): one SHN sample, as the
    workers and the in-thread loader both make it."""
    sample = sample_loader.load(index, seeds)
    if sample["valid"]:
        noise_rng = numpy_rng(tuple(seeds) + (1,)) if (image_noise and seeds is not None) else None
        sample["image"] = standardize_image_np(sample["image"], noise_rng)
    return sample


def _check_batch_size(batch_size, num_samples, drop_remainder, what):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{what}: batch size must be a positive int, got {batch_size!r}")
    if drop_remainder and num_samples < batch_size:
        raise ValueError(f"{what}: {num_samples} samples make no full batch of {batch_size} "
                         "(the last partial batch is dropped); add samples or lower the batch size")


def shn_options(training, augmentation, flip, voc_dir, occluder_dir, shuffle, drop_remainder):
    """The SHN pipelines' (`shn_batches` here, `shn_dataset` on tf.data) augmenter (None when
    nothing is augmented; the mode is checked) and their shuffle / drop_remainder (`training` when None)."""
    occluders = OccluderBank.from_options(voc_dir, occluder_dir)
    augmenter = FrameAugmenter(augmentation, flip=flip, occluders=occluders)  # checks the mode
    if not training or (augmentation == 0 and not flip):
        augmenter = None
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    return augmenter, shuffle, drop_remainder


def smplr_options(arrays, batch_size, training, noise, shuffle, drop_remainder, what):
    """Checks of the SMPLR pipelines' arguments (`smplr_batches` here, `smplr_dataset` on
    tf.data) and their defaults: (noise, shuffle, drop_remainder), each `training` when None."""
    if not isinstance(arrays, SMPLRArrays):
        raise TypeError(f"{what} needs SMPLRArrays, got {type(arrays).__name__}")
    if len(arrays) == 0:
        raise ValueError(f"{what}: no samples")
    noise = training if noise is None else noise
    shuffle = training if shuffle is None else shuffle
    drop_remainder = training if drop_remainder is None else drop_remainder
    _check_batch_size(batch_size, len(arrays), drop_remainder, what)
    return noise, shuffle, drop_remainder


class _EpochCounter:
    """Epoch numbers: every new iteration of a loader starts a new epoch."""

    def __init__(self):
        self.next = 0

    def epochs(self, count):
        """The epochs of an iteration of `count` epochs (None: endless)."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer))
                                  or count < 1):
            raise ValueError(f"epochs must be a positive int or None, got {count!r}")
        first = self.next
        return self._advance(itertools.count(first) if count is None else range(first, first + int(count)))

    def _advance(self, stream):
        for epoch in stream:
            self.next = max(self.next, epoch + 1)
            yield epoch


# ----------------------------------------------------------------------------
# Shared memory
# ----------------------------------------------------------------------------

class SharedArrays:
    """Named NumPy arrays in one shared-memory block: the parent creates it
    (`SharedArrays(specs)`), workers attach to it (`SharedArrays.attach(handle)`).

    specs: {name: (shape, dtype)}; `arrays[name]` are the views.
    """

    def __init__(self, specs, name=None):
        self.specs = {key: (tuple(shape), np.dtype(dtype).str) for key, (shape, dtype) in specs.items()}
        offsets, total = {}, 0
        for key, (shape, dtype) in self.specs.items():
            offsets[key] = total
            total += -(-int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize // 64) * 64
        self.owner = name is None
        self.memory = shared_memory.SharedMemory(name=name, create=self.owner, size=max(total, 64))
        self.arrays = {key: np.ndarray(shape, dtype, buffer=self.memory.buf, offset=offsets[key])
                       for key, (shape, dtype) in self.specs.items()}

    @property
    def handle(self):
        return self.memory.name, self.specs

    @classmethod
    def attach(cls, handle):
        name, specs = handle
        return cls(specs, name=name)

    @classmethod
    def from_arrays(cls, arrays):
        shared = cls({key: (value.shape, value.dtype) for key, value in arrays.items()})
        for key, value in arrays.items():
            shared.arrays[key][...] = value
        return shared

    def close(self):
        """Drops the views and the mapping; the creator also removes the block."""
        self.arrays = {}
        try:
            self.memory.close()
        except BufferError:  # a view is still referenced somewhere; the mapping goes with the process
            pass
        if self.owner:
            try:
                self.memory.unlink()
            except FileNotFoundError:
                pass
            self.owner = False


class PackedTargets:
    """The `FrameTargets` of a data list as stacked arrays {field: (N, ...)};
    indexing gives one frame's `FrameTargets` (copies)."""

    def __init__(self, arrays, size):
        self.arrays, self.size = arrays, size

    @classmethod
    def pack(cls, targets):
        sizes = {t.size for t in targets}
        if len(sizes) != 1:
            raise ValueError(f"PackedTargets: crops of several sizes {sorted(sizes)}")
        return cls({key: np.stack([getattr(t, key) for t in targets]) for key in _TARGET_FIELDS}, sizes.pop())

    def __len__(self):
        return len(self.arrays["points"])

    def __getitem__(self, index):
        return FrameTargets(**{key: self.arrays[key][index].copy() for key in _TARGET_FIELDS}, size=self.size)


# ----------------------------------------------------------------------------
# Worker processes
# ----------------------------------------------------------------------------

def _portable_error(error):
    """`error` with the worker's traceback as a note, or a RuntimeError saying
    the same when it cannot be pickled."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        error.add_note(f"(in DataReader.loader worker {os.getpid()})\n{text}")
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - anything unpicklable becomes a plain message
        return RuntimeError(f"DataReader.loader worker {os.getpid()}: {type(error).__name__}: {error}\n{text}")


def worker_tasks(tasks, parent_pid):
    """A worker's tasks from `tasks` until it sends None or the parent process is gone
    (checked every `POLL_SECONDS`, so orphaned workers leave on their own)."""
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if task is None:
            return
        yield task


def _worker_main(setup, tasks, results, parent_pid):
    """A worker's loop: (generation, serial, index, seeds, slot) tasks in,
    (generation, serial, slot, small arrays or None, error or None) out; the
    image and mask go to shared-memory slot `slot`. None ends it, so does
    the parent's death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    results.cancel_join_thread()  # never block exit on a parent that stopped reading
    try:
        import cv2
        cv2.setNumThreads(1)
        targets = SharedArrays.attach(setup["targets"])
        slots = SharedArrays.attach(setup["slots"])
        sample_loader = SHNSampleLoader(CLOTH3DReader(setup["frames_root"]), setup["lines"], setup["augmenter"],
                                        targets=PackedTargets(targets.arrays, setup["crop_size"]))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((None, None, None, None, _portable_error(error)))
        return
    for task in worker_tasks(tasks, parent_pid):
        generation, serial, index, seeds, slot = task
        try:
            sample = load_standardized(sample_loader, index, seeds, setup["image_noise"])
            image, mask = sample.pop("image"), sample.pop("mask")
            if sample["valid"]:
                slots.arrays["image"][slot] = image
                slots.arrays["mask"][slot] = mask
            results.put((generation, serial, slot, sample, None))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            results.put((generation, serial, slot, None, _portable_error(error)))


@contextmanager
def _environment(changes):
    """Sets environment variables for the duration (children started inside inherit them)."""
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stop_workers(processes, tasks, results, blocks):
    """Ends the workers (asks, then terminates, then kills) and frees the shared memory."""
    processes = [process for process in processes if process.pid is not None]  # those started
    for _ in processes:
        try:
            tasks.put_nowait(None)
        except Exception:  # noqa: BLE001 - a closed queue: the workers are terminated below
            break
    for process in processes:
        process.join(timeout=2.0)
    for process in processes:
        if process.exitcode is None:
            process.terminate()
            process.join(timeout=1.0)
        if process.exitcode is None:
            process.kill()
            process.join(timeout=1.0)
    for channel in (tasks, results):
        channel.cancel_join_thread()
        channel.close()
    for block in blocks:
        block.close()


def _slots_that_fit(num_slots, num_workers, slot_bytes, other_bytes, folder="/dev/shm"):
    """`num_slots`, or fewer (at least one per worker) if /dev/shm is too small
    for them: writing past its end would kill the workers with SIGBUS."""
    try:
        stats = os.statvfs(folder)
    except OSError:  # no such folder: shared memory lives elsewhere on this system
        return num_slots
    free = stats.f_bavail * stats.f_frsize * 0.9 - other_bytes
    fit = int(free // slot_bytes)
    if fit >= num_slots:
        return num_slots
    if fit < max(num_workers, 1):
        raise MemoryError(f"{folder}: {free / 2**20:.0f} MiB free, too little for {max(num_workers, 1)} "
                          f"samples of {slot_bytes / 2**20:.0f} MiB in shared memory; enlarge it "
                          "(docker run --shm-size=2g) or use fewer workers (workers=0: no shared memory)")
    log.warning("%s: room for %d of %d prefetched samples only (%.0f MiB free); "
                "enlarge it (docker run --shm-size=2g) to prefetch more", folder, fit, num_slots, free / 2**20)
    return fit


class WorkerPool:
    """Worker processes loading SHN samples into shared-memory slots.

    A consumer `begin()`s a generation, `submit()`s tasks while `free_slots`
    has room, `receive()`s results (in completion order) and `release()`s
    slots once it has copied them. Results of an older generation are
    dropped (their slots freed), so an abandoned iteration costs nothing.
    """

    def __init__(self, num_workers, num_slots, frames_root, lines, targets, augmenter, image_noise,
                 start_method="spawn"):
        packed = PackedTargets.pack(targets)
        size = packed.size
        num_slots = _slots_that_fit(num_slots, num_workers, 16 * size * size,
                                    sum(value.nbytes for value in packed.arrays.values()))
        context = multiprocessing.get_context(start_method)
        self._targets = SharedArrays.from_arrays(packed.arrays)
        self._slots = SharedArrays({"image": ((num_slots, size, size, 3), np.float32),
                                    "mask": ((num_slots, size, size, 1), np.float32)})
        self.images, self.masks = self._slots.arrays["image"], self._slots.arrays["mask"]
        self._tasks, self._results = context.Queue(), context.Queue()
        setup = {"frames_root": str(frames_root), "lines": list(lines), "augmenter": augmenter,
                 "image_noise": image_noise, "crop_size": size,
                 "targets": self._targets.handle, "slots": self._slots.handle}
        self.processes = [context.Process(target=_worker_main, name=f"DataReader.loader-{k}", daemon=True,
                                          args=(setup, self._tasks, self._results, os.getpid()))
                          for k in range(num_workers)]
        self._finalizer = weakref.finalize(self, _stop_workers, self.processes, self._tasks, self._results,
                                           (self._targets, self._slots))
        with _environment(WORKER_ENVIRONMENT):
            for process in self.processes:
                process.start()
        self.num_slots = num_slots
        self.generation = 0
        self.free_slots = list(range(num_slots))
        self.in_flight = set()

    @property
    def closed(self):
        return not self._finalizer.alive

    def close(self):
        self.images = self.masks = None
        self._finalizer()

    def begin(self):
        """Starts a new generation (an iteration); returns its id."""
        self.generation += 1
        self.free_slots = [slot for slot in range(self.num_slots) if slot not in self.in_flight]
        return self.generation

    def submit(self, generation, serial, index, seeds):
        slot = self.free_slots.pop()
        self.in_flight.add(slot)
        self._tasks.put((generation, serial, int(index), seeds, slot))

    def release(self, generation, slot):
        if generation == self.generation:
            self.free_slots.append(slot)

    def receive(self, generation):
        """The next result of `generation`: (serial, slot, sample of small arrays)."""
        while True:
            if generation != self.generation or self.closed:
                raise RuntimeError("this DataReader.loader iteration was superseded by a newer one, "
                                   "or the loader was closed")
            try:
                message = self._results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                self._check_alive()
                continue
            result_generation, serial, slot, sample, error = message
            if result_generation is None:  # a worker failed to start
                raise error
            self.in_flight.discard(slot)
            if result_generation != self.generation:
                self.free_slots.append(slot)
                continue
            if error is not None:
                self.free_slots.append(slot)
                raise error
            return serial, slot, sample

    def _check_alive(self):
        for process in self.processes:
            if process.exitcode is not None:
                raise RuntimeError(f"DataReader.loader worker {process.name} (pid {process.pid}) exited with "
                                   f"code {process.exitcode}; see its error above")


# ----------------------------------------------------------------------------
# SHN
# ----------------------------------------------------------------------------

class SHNBatchLoader:
    """Batches of SHN samples as dicts of NumPy arrays (see `shn_batches`).

    `iter(loader)`: one epoch; `loader.batches(epochs=None)`: endless (or
    `epochs` epochs); every iteration is a new epoch (new order and
    augmentation). `len(loader)`: frames in the list. `loader.loader`: the
    `SHNSampleLoader` (as `shn_dataset(...).loader`). `close()` stops the
    workers (also on leaving a `with` block, on garbage collection and at exit).
    """

    def __init__(self, sample_loader, batch_size, shuffle, drop_remainder, seed, image_noise,
                 workers, prefetch_batches):
        _check_batch_size(batch_size, len(sample_loader), drop_remainder, "shn_batches")
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
            raise ValueError(f"shn_batches: workers must be an int >= 0, got {workers!r}")
        if prefetch_batches < 1:
            raise ValueError(f"shn_batches: prefetch_batches must be >= 1, got {prefetch_batches!r}")
        self.loader = sample_loader
        self.batch_size, self.shuffle, self.drop_remainder = int(batch_size), shuffle, drop_remainder
        self.seed = _base_seed(seed)
        self.augmenting = sample_loader.augmenter is not None
        self.image_noise = image_noise
        self.workers, self.prefetch_batches = int(workers), int(prefetch_batches)
        self.empty_masks_skipped = 0
        self._epochs = _EpochCounter()
        self._pool = None

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.batches(epochs=1)

    def batches(self, epochs=None, seed=None):
        """Batches of `epochs` epochs (None: endless), one epoch after the other;
        a batch never spans two epochs.

        seed: None draws order and augmentation from the loader's seed, the
        epochs numbered on from the last iteration; an int draws this iteration
        from `seed` alone, its epochs numbered from 0 (the same batches for the
        same seed, whatever was iterated before: a training run keys each of
        its epochs this way, so a resumed run draws what an uninterrupted one does)."""
        endless = epochs is None
        if seed is None:
            seed, epoch_numbers = self.seed, self._epochs.epochs(epochs)
        else:
            seed, epoch_numbers = _base_seed(seed), _EpochCounter().epochs(epochs)
        tasks = self._tasks(epoch_numbers, seed)
        samples = self._samples_in_thread(tasks) if self.workers == 0 else self._samples_from_workers(tasks)
        return self._batched(samples, endless)

    def close(self):
        """Stops the workers; the loader can be iterated again (workers restart)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- the stream of samples ------------------------------------------------

    def _tasks(self, epochs, seed):
        """(epoch, index, seeds) per sample of `epochs` drawn from `seed`, then (epoch, None, None)
        at each epoch's end."""
        for epoch in epochs:
            for position, index in enumerate(epoch_order(len(self.loader), self.shuffle, seed, epoch)):
                seeds = (seed, epoch, position) if self.augmenting else None
                yield epoch, int(index), seeds
            yield epoch, None, None

    def _samples_in_thread(self, tasks):
        for epoch, index, seeds in tasks:
            yield epoch, None if index is None else load_standardized(self.loader, index, seeds, self.image_noise)

    def _start_pool(self):
        if self._pool is None or self._pool.closed:
            num_slots = max(self.prefetch_batches * self.batch_size, 2 * self.workers)
            self._pool = WorkerPool(self.workers, num_slots, self.loader.reader.frames_root, self.loader.lines,
                                    self.loader.targets, self.loader.augmenter, self.image_noise)
        return self._pool

    def _samples_from_workers(self, tasks):
        """The samples of `tasks`, loaded by the workers, in task order; a
        sample's image and mask are views of its slot until the next one."""
        pool = self._start_pool()
        generation = pool.begin()
        done = {}          # serial -> (epoch, slot, sample); slot None marks an epoch's end
        epoch_of = {}      # serial -> epoch, for submitted tasks
        submitted = consumed = 0
        exhausted = False
        while True:
            while not exhausted and pool.free_slots:
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                epoch, index, seeds = task
                if index is None:
                    done[submitted] = (epoch, None, None)
                else:
                    pool.submit(generation, submitted, index, seeds)
                    epoch_of[submitted] = epoch
                submitted += 1
            if exhausted and consumed == submitted:
                return
            while consumed not in done:
                serial, slot, sample = pool.receive(generation)
                done[serial] = (epoch_of.pop(serial), slot, sample)
            epoch, slot, sample = done.pop(consumed)
            consumed += 1
            if slot is None:
                yield epoch, None
                continue
            if sample["valid"]:
                sample["image"], sample["mask"] = pool.images[slot], pool.masks[slot]
            try:
                yield epoch, sample
            finally:
                pool.release(generation, slot)

    # -- batches ---------------------------------------------------------------

    def _batched(self, samples, endless):
        batch, count, batches_in_epoch = None, 0, 0
        for epoch, sample in samples:
            if sample is None:  # end of epoch
                if count and not self.drop_remainder:
                    yield self._finish(batch, count)
                    batches_in_epoch += 1
                if endless and batches_in_epoch == 0:
                    raise RuntimeError(f"shn_batches: epoch {epoch} gave no batch ({len(self)} frames, "
                                       f"{self.empty_masks_skipped} empty masks skipped so far)")
                batch, count, batches_in_epoch = None, 0, 0
                continue
            if not sample["valid"]:
                self.empty_masks_skipped += 1
                continue
            if count == 0:
                batch = self._empty_batch(sample)
            for key in _SHN_KEYS:
                batch[key][count] = sample[key]
            count += 1
            if count == self.batch_size:
                yield self._finish(batch, count)
                batches_in_epoch += 1
                batch, count = None, 0

    def _empty_batch(self, sample):
        batch = {key: np.empty((self.batch_size,) + np.shape(sample[key]), np.float32)
                 for key in _SHN_KEYS if key != "path"}
        batch["path"] = [None] * self.batch_size
        return batch

    @staticmethod
    def _finish(batch, count):
        out = {key: value[:count] for key, value in batch.items() if key != "path"}
        out["path"] = np.array(batch["path"][:count], dtype=str)
        return out


def _default_workers():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(cores - 1, 0)


def shn_batches(frames_root, list_file, batch_size, training, augmentation=1, seed=None,
                voc_dir=None, occluder_dir=None, flip=False, shuffle=None, drop_remainder=None,
                workers=None, prefetch_batches=2):
    """The SHN's batches without TensorFlow: the NumPy twin of `shn_dataset`.

    Args (as `DataReader.shn_dataset`):
        frames_root: folder of sequence folders (real CLOTH3D, synthetic, or yours).
        list_file: data list, one `SEQ/NNNN.png` per line.
        batch_size: samples per batch.
        training: shuffle and augment (else: list order, no augmentation).
        augmentation: 0 none, 1 standard, 2 synthetic occlusion, 3 both (training only).
        seed: int for reproducible order and augmentation (see the module
            docstring), or None.
        voc_dir / occluder_dir: occluder images for modes 2 and 3.
        flip: random horizontal flips (training only).
        shuffle / drop_remainder: default to `training`.
        workers: worker processes (None: one per core but one); 0 loads in
            the calling thread.
        prefetch_batches: batches of samples loaded ahead (at least two per
            worker); each sample holds 1 MiB of shared memory.

    Returns an `SHNBatchLoader`; its batches are dicts of NumPy arrays:
    image (B, 256, 256, 3) float32 standardised, mask (B, 256, 256, 1) 0..1,
    points (B, 41, 3) metres, points2d (B, 41, 2) crop pixels, rotations
    (B, 24, 3, 3), shape (B, 11), root_camera (B, 3) metres (all float32),
    path (B,) str. Frames with an empty mask are skipped
    (`loader.empty_masks_skipped` counts them).
    """
    augmenter, shuffle, drop_remainder = shn_options(training, augmentation, flip, voc_dir, occluder_dir, shuffle,
                                                     drop_remainder)
    workers = _default_workers() if workers is None else workers
    sample_loader = SHNSampleLoader(CLOTH3DReader(frames_root), read_list(list_file), augmenter)
    image_noise = augmenter is not None and augmenter.image_noise
    return SHNBatchLoader(sample_loader, batch_size, shuffle, drop_remainder, seed, image_noise,
                          workers, prefetch_batches)


# ----------------------------------------------------------------------------
# SMPLR
# ----------------------------------------------------------------------------

class SMPLRBatchLoader:
    """Batches of in-memory `SMPLRArrays` as dicts of NumPy arrays (see `smplr_batches`).

    `iter(loader)`: one epoch; `loader.batches(epochs=None)`: endless (or
    `epochs` epochs); every iteration is a new epoch. `len(loader)`: samples.
    """

    def __init__(self, arrays, batch_size, shuffle, drop_remainder, noise, seed, bone_template, error_bank=None):
        self.points = arrays.points.astype(np.float32)
        self.rotations = arrays.rotations.astype(np.float32)
        self.shape = arrays.shape.astype(np.float32)
        self.batch_size, self.shuffle, self.drop_remainder, self.noise = int(batch_size), shuffle, drop_remainder, noise
        self.seed = _base_seed(seed)
        self.bone_template = None if bone_template is None else np.asarray(bone_template, np.float32)
        self.error_bank = None if error_bank is None else np.asarray(error_bank, np.float32)
        self._epochs = _EpochCounter()

    def __len__(self):
        return len(self.points)

    def __iter__(self):
        return self.batches(epochs=1)

    def batches(self, epochs=None):
        """Batches of `epochs` epochs (None: endless); a batch never spans two epochs."""
        return itertools.chain.from_iterable(map(self._epoch, self._epochs.epochs(epochs)))

    def _epoch(self, epoch):
        order = epoch_order(len(self), self.shuffle, self.seed, epoch)
        for number, start in enumerate(range(0, len(order), self.batch_size)):
            indices = order[start:start + self.batch_size]
            if self.drop_remainder and len(indices) < self.batch_size:
                return
            batch = {"points": self.points[indices], "rotations": self.rotations[indices],
                     "shape": self.shape[indices]}
            if self.noise and self.error_bank is not None:
                rows = np.random.default_rng([self.seed, epoch, number]).integers(0, len(self.error_bank), len(indices))
                batch["noisy_points"] = batch["points"] + self.error_bank[rows]
            elif self.noise:
                draw = np.random.default_rng([self.seed, epoch, number]).uniform(-0.5, 0.5, batch["points"].shape)
                batch["noisy_points"] = add_point_noise(batch["points"], draw.astype(np.float32))
            else:
                batch["noisy_points"] = batch["points"].copy()
            if self.bone_template is not None:
                from smpl import kinematics
                batch["bones"] = np.asarray(kinematics.bone_features(batch["noisy_points"], self.bone_template))
                batch["normals"] = np.asarray(kinematics.normal_features(batch["noisy_points"]))
            yield batch


def smplr_batches(arrays, batch_size, training, noise=None, seed=None, shuffle=None,
                  drop_remainder=None, bone_template=None, error_bank=None):
    """The SMPLR stages' batches without TensorFlow: the NumPy twin of `smplr_dataset`.

    Args (as `DataReader.smplr_dataset`):
        arrays: `SMPLRArrays`.
        batch_size: samples per batch.
        training: shuffle (and, by default, add noise and drop the last partial batch).
        noise: add the SPEC input noise to `noisy_points` (uniform(-0.5, 0.5)
            * 2 * NOISE_SIGMA per coordinate); defaults to `training`.
        seed: int for reproducible order and noise, or None.
        bone_template: optional (42,) bone lengths; batches then also hold
            `bones` (B, 41) and `normals` (B, 123) of the noisy points
            (`smpl.kinematics.bone_features` / `normal_features`).
        error_bank: optional (N, 41, 3) SHN errors, metres (`load_error_bank`):
            the noise is then one row of it per sample, drawn uniformly, in
            place of the SPEC noise (not the same rows as `smplr_dataset`'s).

    Returns an `SMPLRBatchLoader` of dicts of float32 NumPy arrays: points
    (B, 41, 3) clean, noisy_points (B, 41, 3), rotations (B, 24, 3, 3), shape (B, 11).
    """
    noise, shuffle, drop_remainder = smplr_options(arrays, batch_size, training, noise, shuffle, drop_remainder,
                                                   "smplr_batches")
    return SMPLRBatchLoader(arrays, batch_size, shuffle, drop_remainder, noise, seed, bone_template, error_bank)
