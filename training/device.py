"""GPU_ID handling: choose the device before TensorFlow (or JAX) starts.

The Keras backend is Keras 3's own choice (``KERAS_BACKEND``, else
``~/.keras/keras.json``, else TensorFlow). On JAX, ``select_device`` sets the
same variables before JAX initialises (``-1``: ``JAX_PLATFORMS=cpu``), checks
the GPU with ``jax.devices()``, and ``--mixed-precision`` means bfloat16.

``select_device(gpu_id)`` must run before the first ``import tensorflow`` of
the process: it sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (ids as ``nvidia-smi``
prints them) and ``CUDA_VISIBLE_DEVICES``; ``-1`` means CPU only. It then
imports TensorFlow, checks that the requested GPU is really there (a clear
error listing the devices found otherwise) and turns memory growth on.

A comma-separated GPU_ID (``0,1,2,3``; a training run passes
``data_parallel_batch``) makes all those GPUs visible and sets up data-parallel
training over them (``training.distribute``: ``keras.distribution.DataParallel``
on JAX, ``tf.distribute.MirroredStrategy`` on TensorFlow). With
``SMPLR_DATA_PARALLEL_ON_CPU=1`` the ids of a list name logical CPU devices
instead (XLA's host device count on JAX, the CPU split into logical devices on
TensorFlow), so that the data-parallel code runs without GPUs (tests, benches).

When TensorFlow was already imported (e.g. inside the pytest process) it falls
back to ``tf.config.set_visible_devices``, which works as long as the runtime
has not been initialised yet.

TensorFlow's start-up lines (oneDNN, cudart_stub, cpu_feature_guard, the
``E0000 ... cuInit`` line a newcomer reads as a failure) are hidden unless
``verbose`` (``--verbose``): ``TF_CPP_MIN_LOG_LEVEL`` no longer hides them
(they are written before TensorFlow sets up its logging), so the C-level
stderr is captured while TensorFlow starts and replayed without them.
"""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from training import TrainingError
from training.distribute import activate, check_batch_split


def parse_gpu_id(text):
    """``'-1'`` -> -1 (CPU); ``'0'``, ``'1'`` ... -> that GPU index (int).

    Raises TrainingError for anything else (one line, naming the value).
    """
    try:
        gpu_id = int(str(text).strip())
    except ValueError:
        raise TrainingError(f"GPU_ID must be an integer (-1 for CPU), got {text!r}") from None
    if gpu_id < -1:
        raise TrainingError(f"GPU_ID must be -1 (CPU) or a GPU index >= 0, got {gpu_id}")
    return gpu_id


def parse_gpu_ids(text):
    """A comma-separated GPU_ID list -> its ids: ``'0,1,3'`` -> (0, 1, 3); ``'0,'`` -> (0,)
    (one GPU through the data-parallel code, for comparisons). None for a single id
    (see :func:`parse_gpu_id`), which keeps the plain one-device path.

    Raises TrainingError for a bad list (one line, naming the value).
    """
    text = str(text).strip()
    if "," not in text:
        return None
    parts = [part.strip() for part in text.split(",")]
    if parts[-1] == "":
        parts.pop()
    try:
        ids = tuple(int(part) for part in parts)
    except ValueError:
        raise TrainingError(f"GPU_ID list must be GPU indices separated by commas (e.g. 0,1), got {text!r}") from None
    if not ids or min(ids) < 0:
        raise TrainingError(f"GPU_ID list takes GPU indices >= 0 (-1, the CPU, is not part of a list), got {text!r}")
    if len(set(ids)) != len(ids):
        raise TrainingError(f"GPU_ID {text} names a device twice")
    return ids


def _requested(gpu_id):
    """GPU_ID -> (ids, parallel): ``-1`` -> ((), False); ``'2'`` -> ((2,), False); ``'0,1'`` -> ((0, 1), True)."""
    ids = parse_gpu_ids(gpu_id)
    if ids is not None:
        return ids, True
    gpu_id = parse_gpu_id(gpu_id)
    return (() if gpu_id < 0 else (gpu_id,)), False


#: Environment variable: with 1, GPU_ID lists name logical CPU devices instead of GPUs
#: (data-parallel tests and benchmarks on a machine without GPUs).
CPU_DEVICES_VARIABLE = "SMPLR_DATA_PARALLEL_ON_CPU"


def cpu_stand_ins():
    """Whether GPU_ID lists name logical CPU devices (``SMPLR_DATA_PARALLEL_ON_CPU=1``)."""
    return os.environ.get(CPU_DEVICES_VARIABLE, "") == "1"


def _check_listed(ids, text):
    """Against ``nvidia-smi -L`` (when it answers): every id must be one of its GPUs."""
    listed = _nvidia_smi_gpus()
    missing = [i for i in ids if listed is not None and i >= len(listed)]
    if missing:
        found = "; ".join(listed) if listed else "no GPU"
        raise TrainingError(f"GPU_ID {_missing_text(missing, text)} does not exist; devices found: {found} "
                            "(use -1 for the CPU)")


def _missing_text(missing, text):
    """``'3'`` for a single id, ``'0,3: GPU 3'`` in a list."""
    return text if "," not in text else f"{text}: GPU {', '.join(map(str, missing))}"


def _nvidia_smi_gpus():
    """GPU names listed by ``nvidia-smi -L`` (PCI bus order), or None when unavailable."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("GPU ")]


def keras_backend_name():
    """The Keras backend this process will use, found without importing Keras
    (which would start TensorFlow before the GPU is chosen)."""
    if "keras" in sys.modules:
        import keras
        return keras.backend.backend()
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        config = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "keras.json"
        try:
            name = json.loads(config.read_text()).get("backend")
        except (OSError, ValueError, AttributeError):
            name = None
    return name or "tensorflow"


def select_device(gpu_id, mixed_precision=False, verbose=False, data_parallel_batch=None):
    """Make only the GPU(s) of ``gpu_id`` visible (``-1``: CPU) and configure the Keras backend.

    TensorFlow: see below. JAX: see :func:`select_jax_device`. ``verbose``:
    show TensorFlow's start-up log lines. ``data_parallel_batch``: the global
    batch size of a training run; given, ``gpu_id`` may be a comma-separated
    list (data-parallel training over those devices, ``training.distribute``),
    whose length must divide the batch.
    """
    text = str(gpu_id).strip()
    ids, parallel = _requested(text)
    if parallel:
        if data_parallel_batch is None:
            raise TrainingError(f"GPU_ID {text}: this command runs on one device; give one GPU index "
                                "(or -1 for the CPU)")
        check_batch_split(data_parallel_batch, len(ids), text)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's INFO / WARNING lines after start-up
    if keras_backend_name() == "jax":
        return select_jax_device(text, mixed_precision)
    if keras_backend_name() != "tensorflow":
        raise TrainingError(f"KERAS_BACKEND={keras_backend_name()!r} is not supported; use tensorflow or jax")
    return select_tensorflow_device(text, mixed_precision, verbose=verbose)


def _force_host_devices(count):
    """Let XLA split the host into ``count`` CPU devices (before JAX starts), unless XLA_FLAGS says already."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _refuse_cpu_mixed_precision(mixed_precision, on_cpu, saving):
    if mixed_precision and on_cpu:
        raise TrainingError(f"--mixed-precision needs a GPU (GPU_ID >= 0); {saving} brings no speed-up "
                            "on the CPU")


def select_jax_device(gpu_id, mixed_precision=False):
    """JAX: the GPU(s) of ``gpu_id`` only (``-1``: the CPU); ``mixed_precision`` -> ``mixed_bfloat16``.

    A list sets up ``keras.distribution.DataParallel`` over its GPUs (over
    logical CPU devices with ``SMPLR_DATA_PARALLEL_ON_CPU=1``).
    """
    text = str(gpu_id).strip()
    ids, parallel = _requested(text)
    on_cpu = not ids or (parallel and cpu_stand_ins())
    if not on_cpu:
        _check_listed(ids, text)
    renumbered = "jax" not in sys.modules  # CUDA_VISIBLE_DEVICES shows the chosen GPUs as 0, 1, ...
    if renumbered:
        if on_cpu:
            os.environ["JAX_PLATFORMS"] = "cpu"
            if ids:
                _force_host_devices(max(ids) + 1)
        else:
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids))
    import jax

    chosen = []
    if not on_cpu:
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        chosen = gpus[:len(ids)] if renumbered else [gpus[i] for i in ids if i < len(gpus)]
        if len(chosen) < len(ids):
            found = ", ".join(str(d) for d in jax.devices())
            seen = "no GPU" if not gpus else f"{len(gpus)} GPU(s)"
            raise TrainingError(f"GPU_ID {text} does not exist: JAX sees {seen}; devices found: {found} "
                                "(use -1 for the CPU; a CUDA build of jax is needed, see requirements-jax.txt)")
    elif parallel:
        chosen = [d for d in jax.devices("cpu") if d.id in ids]
        if len(chosen) < len(ids):
            raise TrainingError(f"GPU_ID {text} with {CPU_DEVICES_VARIABLE}=1 names logical CPU devices, and JAX "
                                f"has {len(jax.devices('cpu'))} (set XLA_FLAGS=--xla_force_host_platform_device_count"
                                f"={max(ids) + 1} before JAX starts)")
    _refuse_cpu_mixed_precision(mixed_precision, on_cpu, "bfloat16")
    if mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if parallel:
        activate("jax", [f"{d.platform}:{d.id}" for d in chosen])
        kind = "CPU devices" if on_cpu else "GPUs"
        return f"{kind} {text} (JAX, data-parallel{'' if on_cpu else ', ' + chosen[0].device_kind})"
    return "CPU (JAX)" if on_cpu else f"GPU {ids[0]} (JAX, {jax.devices()[0].device_kind})"


#: TensorFlow's start-up lines that report nothing wrong (hidden unless --verbose).
_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|cudart_stub\.cc|"
    r"cpu_feature_guard\.cc|To enable the following instructions:|failed call to cuInit|"
    r"Unable to register cu(FFT|DNN|BLAS) factory|computation placer already registered|"
    r"TF-TRT Warning: Could not find TensorRT")


@contextlib.contextmanager
def _quiet_startup(verbose):
    """Capture the process's stderr (file descriptor 2, where TensorFlow's C++ code writes)
    for the block; then write it back without the `_STARTUP_NOISE` lines."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
                    if not _STARTUP_NOISE.search(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def select_tensorflow_device(gpu_id, mixed_precision=False, verbose=False):
    """Make only the GPU(s) of ``gpu_id`` visible (``-1``: CPU) and configure TensorFlow.

    Args:
      gpu_id: int or str, as given on the command line; a comma-separated list
        sets up ``tf.distribute.MirroredStrategy`` over those GPUs (over
        logical CPU devices, the CPU split in as many, with
        ``SMPLR_DATA_PARALLEL_ON_CPU=1``).
      mixed_precision: set Keras' global policy to ``mixed_float16`` (GPU only;
        on CPU it is refused with a message, float16 matmuls are slower there).
      verbose: show TensorFlow's start-up lines (hidden otherwise).
    Returns:
      A short description of the device used, e.g. ``"CPU"`` or ``"GPU 0 (...)"``.
    Raises:
      TrainingError: the GPU does not exist (the message lists the devices found).
    """
    text = str(gpu_id).strip()
    ids, parallel = _requested(text)
    on_cpu = not ids or (parallel and cpu_stand_ins())
    already_imported = "tensorflow" in sys.modules
    if not on_cpu:
        _check_listed(ids, text)
    if not already_imported:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1" if on_cpu else ",".join(map(str, ids))
    with _quiet_startup(verbose):
        import tensorflow as tf  # noqa: E402  (deliberately after the environment is set)

        gpus = tf.config.list_physical_devices("GPU")  # loads the device plugins (their lines too)
    if already_imported:
        # The environment variable is read once, at TensorFlow's start; here we
        # can only narrow what is visible.
        chosen = [] if on_cpu else [gpus[i] for i in ids if i < len(gpus)]
        if len(chosen) < len(ids) and not on_cpu:
            raise TrainingError(_no_gpu_message(text, tf))
        try:
            tf.config.set_visible_devices(chosen, "GPU")
        except RuntimeError:
            pass  # runtime already initialised: keep what the process has
        gpus = chosen
    elif not on_cpu and len(gpus) < len(ids):
        raise TrainingError(_no_gpu_message(text, tf))
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised; growth must be set before first use
    if parallel and on_cpu:
        _split_cpu(tf, max(ids) + 1, text)
    _refuse_cpu_mixed_precision(mixed_precision, on_cpu, "float16")
    if mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
    if parallel:
        activate("tensorflow", [f"/cpu:{i}" for i in ids] if on_cpu else [f"/gpu:{k}" for k in range(len(ids))])
        return f"{'CPU devices' if on_cpu else 'GPUs'} {text} (data-parallel, MirroredStrategy)"
    if on_cpu:
        return "CPU"
    return f"GPU {ids[0]}"


def _split_cpu(tf, count, text):
    """At least ``count`` logical CPU devices (``tf.config.set_logical_device_configuration``)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) >= count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) < count:
            raise TrainingError(f"GPU_ID {text} with {CPU_DEVICES_VARIABLE}=1 needs {count} logical CPU devices, "
                                "and TensorFlow has started with fewer") from None


def _no_gpu_message(text, tf):
    cpus = ", ".join(d.name for d in tf.config.list_physical_devices())
    what = "no GPU with that id" if "," not in text else "fewer GPUs than the list names"
    return (f"GPU_ID {text} does not exist: TensorFlow sees {what}; "
            f"devices found: {cpus or 'none'} (use -1 for the CPU)")
