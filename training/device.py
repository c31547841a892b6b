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


def select_device(gpu_id, mixed_precision=False, verbose=False):
    """Make only GPU ``gpu_id`` visible (``-1``: CPU) and configure the Keras backend.

    TensorFlow: see below. JAX: see :func:`select_jax_device`. ``verbose``:
    show TensorFlow's start-up log lines.
    """
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's INFO / WARNING lines after start-up
    if keras_backend_name() == "jax":
        return select_jax_device(gpu_id, mixed_precision)
    if keras_backend_name() != "tensorflow":
        raise TrainingError(f"KERAS_BACKEND={keras_backend_name()!r} is not supported; use tensorflow or jax")
    return select_tensorflow_device(gpu_id, mixed_precision, verbose=verbose)


def select_jax_device(gpu_id, mixed_precision=False):
    """JAX: GPU ``gpu_id`` only (``-1``: the CPU); ``mixed_precision`` -> ``mixed_bfloat16``."""
    gpu_id = parse_gpu_id(gpu_id)
    listed = _nvidia_smi_gpus() if gpu_id >= 0 else None
    if listed is not None and gpu_id >= len(listed):
        found = "; ".join(listed) if listed else "no GPU"
        raise TrainingError(f"GPU_ID {gpu_id} does not exist; devices found: {found} (use -1 for the CPU)")
    if "jax" not in sys.modules:
        if gpu_id < 0:
            os.environ["JAX_PLATFORMS"] = "cpu"
        else:
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_id)
    import jax

    if gpu_id >= 0:
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        if not gpus:
            found = ", ".join(str(d) for d in jax.devices())
            raise TrainingError(f"GPU_ID {gpu_id} does not exist: JAX sees no GPU; devices found: {found} "
                                "(use -1 for the CPU; a CUDA build of jax is needed, see requirements-jax.txt)")
    if mixed_precision:
        if gpu_id < 0:
            raise TrainingError("--mixed-precision needs a GPU (GPU_ID >= 0); bfloat16 brings no speed-up "
                                "on the CPU")
        import keras
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return "CPU (JAX)" if gpu_id < 0 else f"GPU {gpu_id} (JAX, {jax.devices()[0].device_kind})"


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
    """Make only GPU ``gpu_id`` visible (``-1``: CPU) and configure TensorFlow.

    Args:
      gpu_id: int or str, as given on the command line.
      mixed_precision: set Keras' global policy to ``mixed_float16`` (GPU only;
        on CPU it is refused with a message, float16 matmuls are slower there).
      verbose: show TensorFlow's start-up lines (hidden otherwise).
    Returns:
      A short description of the device used, e.g. ``"CPU"`` or ``"GPU 0 (...)"``.
    Raises:
      TrainingError: the GPU does not exist (the message lists the devices found).
    """
    gpu_id = parse_gpu_id(gpu_id)
    already_imported = "tensorflow" in sys.modules
    listed = _nvidia_smi_gpus() if gpu_id >= 0 else None
    if listed is not None and gpu_id >= len(listed):
        found = "; ".join(listed) if listed else "no GPU"
        raise TrainingError(f"GPU_ID {gpu_id} does not exist; devices found: {found} "
                            "(use -1 for the CPU)")
    if not already_imported:
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_id)
    with _quiet_startup(verbose):
        import tensorflow as tf  # noqa: E402  (deliberately after the environment is set)

        gpus = tf.config.list_physical_devices("GPU")  # loads the device plugins (their lines too)
    if already_imported:
        # The environment variable is read once, at TensorFlow's start; here we
        # can only narrow what is visible.
        chosen = [] if gpu_id < 0 else gpus[gpu_id:gpu_id + 1]
        if gpu_id >= 0 and not chosen:
            raise TrainingError(_no_gpu_message(gpu_id, tf))
        try:
            tf.config.set_visible_devices(chosen, "GPU")
        except RuntimeError:
            pass  # runtime already initialised: keep what the process has
        gpus = chosen
    elif gpu_id >= 0 and not gpus:
        raise TrainingError(_no_gpu_message(gpu_id, tf))
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised; growth must be set before first use
    if mixed_precision:
        if gpu_id < 0:
            raise TrainingError("--mixed-precision needs a GPU (GPU_ID >= 0); "
                                "float16 brings no speed-up on the CPU")
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
    if gpu_id < 0:
        return "CPU"
    return f"GPU {gpu_id}"


def _no_gpu_message(gpu_id, tf):
    cpus = ", ".join(d.name for d in tf.config.list_physical_devices())
    return (f"GPU_ID {gpu_id} does not exist: TensorFlow sees no GPU with that id; "
            f"devices found: {cpus or 'none'} (use -1 for the CPU)")
