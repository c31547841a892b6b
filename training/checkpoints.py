"""Checkpoints under ``TMP/checkpoints/NAME/``, written atomically, in one backend-neutral format.

Layout of one run::

    TMP/checkpoints/NAME/
      best/     shn.weights.h5 ..., state.json                 best on validation (weights only)
      latest/   shn.weights.h5 ..., optimizer.weights.h5,      end of the last epoch (weights,
                state.json                                     optimiser, epoch, best so far)

A slot holds one ``OBJECT.weights.h5`` per named object -- ``shn``, ``dae``,
``shape_net``, ``pose_net``, ``optimizer`` -- so that a later stage or
``test.py`` restores just the parts it needs by name (the shape+pose stage
takes ``shape_net`` from the "shape" checkpoint and ``pose_net`` from the
"pose" one, as the original did):

- a model (any Keras layer) is written by Keras itself (``keras.saving.save_weights``):
  anyone with Keras, on any backend, loads it with ``model.load_weights(path)``;
- an optimiser is an HDF5 file with its variables as datasets ``vars/0 .. vars/N-1``
  in ``optimizer.variables`` order (Keras' own layout for an optimiser: the
  iteration counter, the learning rate, then Adam's moments per trained
  variable; a ``LossScaleOptimizer`` lists its own and then its inner
  optimiser's variables), so a resumed run continues exactly;
- ``state.json`` (written last): the training state plus ``objects`` (the names)
  and ``format``.

The files depend on the model classes only, not on the Keras backend: a
checkpoint written under JAX loads under TensorFlow and vice versa. Slots
written by earlier versions as a TensorFlow object checkpoint (``ckpt.index``,
``ckpt.data-*``) still load when Keras runs on TensorFlow.

Writes go to ``NAME/.SLOT.partial`` and are renamed into place only when
complete, so a run killed mid-save leaves the previous slot loadable. A slot
is complete iff its ``state.json`` and every object file it lists exist.

``--overwrite`` (and a restart, below) never deletes a run before its
replacement exists: the old ``NAME/`` and its logs are renamed to
``.NAME.replaced`` when the new run starts writing (after its data and
fine-tune checkpoints loaded), deleted once the new run's first ``latest``
is in place, and renamed back if the new run ends before that -- by an
error, or by a kill (then the next command on the name puts them back).

``--resume`` continues from ``latest``. A run killed while its first
``latest`` was being written has ``best`` only: it restarts from epoch 1
(one epoch lost; the same seed gives the same run), or, where ``best`` is
from a later epoch, resumes from ``best`` with a fresh optimiser.

Faults are one :class:`training.TrainingError` line naming the path: an
output folder that cannot be written (found by :meth:`CheckpointStore.prepare`,
before a stage builds anything), a save that fails (a full disk: the
``.partial`` folder is removed and the previous slot kept), a truncated
weights file, a ``state.json`` that is not JSON or of the wrong shape.
"""
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import numpy as np

from training import TrainingError

SLOTS = ("best", "latest")
FORMAT = "keras-weights-h5"
_STATE = "state.json"
_LEGACY_INDEX = "ckpt.index"

PathLike = Union[str, os.PathLike]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_object_name(name: Any) -> bool:
    """Object names are file names: letters, digits, '_' or '-'."""
    return isinstance(name, str) and bool(name) and name.replace("_", "").replace("-", "").isalnum()


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


#: The state.json keys the readers use, each with its check and the words of the error.
_STATE_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "objects": (lambda v: isinstance(v, list) and all(map(_is_object_name, v)), "a list of object names"),
    "kind": (lambda v: isinstance(v, str), "a stage kind"),
    "config": (lambda v: isinstance(v, dict), "a JSON object"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(h, dict) for h in v), "a list of JSON objects"),
    "epochs_done": (_is_int, "an integer >= 0"),
    "global_step": (_is_int, "an integer >= 0"),
    "best_epoch": (lambda v: v is None or _is_int(v), "an integer or null"),
    "best": (_is_number_or_none, "a number or null"),
}


def check_state(state: Any, path: PathLike) -> dict:
    """``state`` (a parsed ``state.json``) when it has the shape the readers expect;
    otherwise a one-line TrainingError naming ``path``."""
    if not isinstance(state, dict):
        raise TrainingError(f"corrupt checkpoint state {path}: expected a JSON object with an 'objects' "
                            f"list, got {type(state).__name__}")
    for key, (valid, expected) in _STATE_KEYS.items():
        if key in state and not valid(state[key]):
            shown = repr(state[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise TrainingError(f"corrupt checkpoint state {path}: {key!r} is {shown}, expected {expected}")
    return state


def _os_reason(exc: BaseException) -> str:
    """An OSError's reason ("No space left on device"), else its one-line message."""
    return getattr(exc, "strerror", None) or _one_line(exc)


def check_writable(folder: PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and write (and remove) a probe file in it.

    Found before any work starts: a folder that cannot be created or written
    (read-only, a file in the way, no permission) is one TrainingError line.
    Returns the folder.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TrainingError(f"cannot write to the {what} {folder}: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise TrainingError(f"cannot write to the {what} {folder}: {_os_reason(exc)}") from None
    return folder


def checkpoints_root(tmp: PathLike) -> Path:
    """``TMP/checkpoints``."""
    return Path(tmp) / "checkpoints"


def available_checkpoints(tmp: PathLike) -> list[str]:
    """Sorted names of the checkpoints under ``TMP/checkpoints`` with a complete slot."""
    root = checkpoints_root(tmp)
    if not root.is_dir():
        return []
    names = []
    for sub in sorted(root.iterdir()):
        if sub.name.startswith("."):
            continue  # .NAME.replaced: a run being replaced by --overwrite
        if sub.is_dir() and any(_complete(sub / s) or _complete(sub / f".{s}.old") for s in SLOTS):
            names.append(sub.name)
    return names


def weights_file(name: str) -> str:
    """File name of object ``name`` in a slot: ``NAME.weights.h5`` (the suffix Keras requires)."""
    return f"{name}.weights.h5"


def _missing_files(slot_dir):
    """Files of ``slot_dir`` that a complete slot has and it lacks ([] when complete).

    A ``state.json`` that cannot be read counts as complete: reading the slot
    then reports it, instead of the slot silently looking absent.
    """
    if not (slot_dir / _STATE).is_file():
        return [_STATE]
    if (slot_dir / _LEGACY_INDEX).is_file():
        return []
    try:
        names = json.loads((slot_dir / _STATE).read_text())["objects"]
        if not isinstance(names, list) or not all(map(_is_object_name, names)):
            return []  # corrupt: read_state says so
        return [weights_file(n) for n in names if not (slot_dir / weights_file(n)).is_file()]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _complete(slot_dir):
    return not _missing_files(slot_dir)


def _is_legacy(slot_dir):
    return (slot_dir / _LEGACY_INDEX).is_file()


def _one_line(exc):
    """An exception's message on one line (Keras' loading errors span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _fsync(path):
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_optimizer(obj):
    import keras

    return isinstance(obj, keras.optimizers.Optimizer)


# ------------------------------------------------------------- object files
def _cast_weights_file(source, target, dtype):
    """Copy the HDF5 file ``source`` to ``target`` with its floating-point arrays stored as
    ``dtype``, except arrays whose values overflow ``dtype`` (kept as they are)."""
    import h5py

    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        dst.attrs.update(src.attrs)

        def copy(name, item):
            if isinstance(item, h5py.Group):
                out = dst.require_group(name)
            else:
                data = item[()]
                if data.dtype.kind == "f" and "dtype" not in item.attrs:  # "dtype" marks Keras' bfloat16
                    with np.errstate(over="ignore"):
                        cast = np.asarray(data, dtype=dtype)
                    # An array the smaller type cannot hold stays as it is: the SHN's
                    # batch-norm moving variances reach 1e5-1e7, past float16's 65504,
                    # and an infinite variance would silence its channels.
                    if np.all(np.isfinite(cast) | ~np.isfinite(data)):
                        data = cast
                out = dst.create_dataset(name, data=data)
            out.attrs.update(item.attrs)

        src.visititems(copy)


def _save_model(model, path, weights_dtype):
    import keras

    if weights_dtype is None:
        keras.saving.save_weights(model, path)
        return
    full = path.with_name(".full." + path.name)
    keras.saving.save_weights(model, full)
    _cast_weights_file(full, path, weights_dtype)
    full.unlink()


def _save_optimizer(optimizer, path):
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["class_name"] = type(optimizer).__name__
        group = f.create_group("vars")
        for i, variable in enumerate(optimizer.variables):
            group.create_dataset(str(i), data=np.asarray(variable.numpy())).attrs["path"] = variable.path


def _load_model(model, path, require_all):
    import keras

    if not model.built:
        raise ValueError(f"build {type(model).__name__} (call it once) before restoring it from {path}")
    try:
        keras.saving.load_weights(model, path, skip_mismatch=not require_all)  # warns what it skips
    except Exception as exc:  # h5py, Keras: truncated file, wrong architecture
        reason = _one_line(exc).split(" List of objects that could not be loaded")[0]
        raise TrainingError(f"checkpoint file {path} does not load into {type(model).__name__} "
                            f"({reason})") from None


def _load_optimizer(optimizer, path, models, require_all):
    """Assign the optimiser's variables from ``path``; builds it on ``models``' trainable
    variables (in dict order, as the stages do) when it is not built yet."""
    import h5py

    if not optimizer.built:
        optimizer.build([v for model in models for v in model.trainable_variables])
    try:
        with h5py.File(path, "r") as f:
            group = f["vars"]
            values = [np.asarray(group[str(i)][()]) for i in range(len(group))]
    except Exception as exc:  # truncated file, missing datasets
        raise TrainingError(f"corrupt optimizer checkpoint {path} ({_one_line(exc)})") from None
    variables = optimizer.variables
    problem = None
    if len(values) != len(variables):
        problem = (f"the checkpoint has {len(values)} optimizer variables, this "
                   f"{type(optimizer).__name__} has {len(variables)}")
    else:
        for i, (variable, value) in enumerate(zip(variables, values)):
            if tuple(value.shape) != tuple(variable.shape):
                problem = (f"optimizer variable {i} ({variable.path}) is {tuple(variable.shape)}, "
                           f"the checkpoint's is {tuple(value.shape)}")
                break
    if problem is not None:
        if require_all:
            raise TrainingError(f"checkpoint {path} does not match the optimizer: {problem}")
        warnings.warn(f"optimizer not restored from {path}: {problem}", stacklevel=3)
        return
    for variable, value in zip(variables, values):
        variable.assign(value.astype(variable.dtype))  # int64 (TensorFlow) <-> int32 (JAX) counters


def _restore_legacy(slot_dir, objects, require_all):
    """Read a slot written as a ``tf.train.Checkpoint`` (``ckpt.index``) by earlier versions."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise TrainingError(f"checkpoint {slot_dir} was written in the old TensorFlow checkpoint format; "
                            "load it once with the TensorFlow backend (KERAS_BACKEND=tensorflow, e.g. a "
                            "--resume run, whose next save writes the current format)")
    import tensorflow as tf

    try:
        status = tf.train.Checkpoint(**objects).read(str(slot_dir / "ckpt"))
    except Exception as exc:  # tf.errors: truncated ckpt.index / ckpt.data-*, not a checkpoint
        raise TrainingError(f"corrupt checkpoint {slot_dir} ({_one_line(exc)})") from None
    if require_all:
        try:
            status.assert_existing_objects_matched()
        except AssertionError as exc:
            raise TrainingError(f"checkpoint {slot_dir} does not match the model "
                                f"({str(exc).splitlines()[0][:200]})") from None
    status.expect_partial()


class CheckpointStore:
    """The ``best`` and ``latest`` slots of one named run.

    Args:
      tmp: root of ``checkpoints/`` (``--tmp``).
      name: run name (``--name``).
    """

    def __init__(self, tmp: PathLike, name: str) -> None:
        self.tmp = Path(tmp)
        self.name = name
        self.dir = checkpoints_root(tmp) / name

    # ----------------------------------------------------------------- slots
    def slot_dir(self, slot: str) -> Optional[Path]:
        """Directory of a complete ``slot``, recovering from a save killed
        between its two renames; None when the slot does not exist."""
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        final = self.dir / slot
        if _complete(final):
            return final
        old = self.dir / f".{slot}.old"
        if not final.exists() and _complete(old):
            os.rename(old, final)  # the new copy never landed: the old one is current
            return final
        return None

    def has(self, slot: str) -> bool:
        """Whether ``slot`` is complete (see :meth:`slot_dir`)."""
        return self.slot_dir(slot) is not None

    def incomplete(self) -> Optional[str]:
        """'incomplete checkpoint DIR: missing FILES' for a slot folder that lacks files, else None."""
        for slot in SLOTS:
            folder = self.dir / slot
            if folder.is_dir() and _missing_files(folder):
                return f"incomplete checkpoint {folder}: missing {', '.join(_missing_files(folder))}"
        return None

    def read_state(self, slot: str) -> Optional[dict]:
        """The ``state.json`` dict of ``slot``, or None; a corrupt one is a TrainingError."""
        path = self.slot_dir(slot)
        if path is None:
            return None
        try:
            state = json.loads((path / _STATE).read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"corrupt checkpoint state {path / _STATE}: {_one_line(exc)}") from None
        return check_state(state, path / _STATE)

    # ------------------------------------------------------------- lifecycle
    def prepare(self, resume: bool = False, overwrite: bool = False,
                log_dir: Optional[PathLike] = None) -> Optional[dict]:
        """Check the name before anything is built or written; returns the state to resume or None.

        - new name (or a folder without any complete slot): nothing to do;
        - ``resume``: the ``latest`` state; without ``latest`` but with
          ``best`` (a run killed while its first ``latest`` was written) the
          ``best`` state, or None -- a clean restart -- where ``best`` is from
          epoch 1 (one line says which); an error when there is neither;
        - ``overwrite``: allowed; the old run stays until the new one replaces
          it (:meth:`set_aside`, :meth:`drop_replaced`);
        - otherwise an existing name is an error suggesting --resume / --overwrite.
        The checkpoints and logs folders must be writable (checked first), and
        a run left half-replaced by a killed ``--overwrite`` run is recovered.
        """
        check_writable(self.dir.parent, "checkpoints folder")
        if log_dir is not None:
            check_writable(Path(log_dir).parent, "logs folder")
        self.recover_replaced(log_dir)
        exists = self.has("best") or self.has("latest")
        if resume:
            state = self.read_state("latest")
            if state is not None:
                if "epochs_done" not in state:
                    raise TrainingError(f"corrupt checkpoint state {self.dir / 'latest' / _STATE}: "
                                        "no 'epochs_done' to resume from")
                return state
            best = self.read_state("best")
            if best is None:
                raise TrainingError(f"nothing to resume: no latest checkpoint in {self.dir} "
                                    "(drop --resume to start this name from scratch)")
            done = int(best.get("epochs_done") or 0)
            if done <= 1:
                print(f"--resume: {self.name!r} has no latest checkpoint (stopped while writing its first "
                      f"one), only best from epoch {done}: restarting it from epoch 1")
                return None
            print(f"--resume: {self.name!r} has no latest checkpoint: resuming from its best checkpoint "
                  f"(epoch {done}) with a fresh optimizer")
            return best
        if exists and not overwrite:
            raise TrainingError(f"checkpoint {self.name!r} already exists in {self.dir}; "
                                "use --resume to continue it, --overwrite to replace it, "
                                "or --name NEW")
        if exists:
            print(f"--overwrite: the earlier checkpoints of {self.name!r} are replaced once the new run "
                  "has written its first checkpoint")
        self.dir.mkdir(parents=True, exist_ok=True)
        return None

    def _replaced(self, log_dir: Optional[PathLike]) -> tuple[Path, Optional[Path]]:
        """(checkpoints, logs) folders of the run being replaced: ``.NAME.replaced`` beside each."""
        logs = None if log_dir is None else Path(log_dir).parent / f".{Path(log_dir).name}.replaced"
        return self.dir.parent / f".{self.name}.replaced", logs

    def set_aside(self, log_dir: Optional[PathLike] = None) -> None:
        """Rename the existing run (checkpoints and ``log_dir``) to ``.NAME.replaced``; the
        new run then writes into empty folders. Undone by :meth:`restore_replaced`."""
        old_dir, old_logs = self._replaced(log_dir)
        for path, aside in ((self.dir, old_dir), (None if log_dir is None else Path(log_dir), old_logs)):
            if path is not None and path.exists():
                if aside.exists():
                    shutil.rmtree(aside)
                os.rename(path, aside)
        self.dir.mkdir(parents=True, exist_ok=True)

    def drop_replaced(self, log_dir: Optional[PathLike] = None) -> None:
        """Delete the run set aside (the new run's first checkpoint exists)."""
        removed = False
        for aside in self._replaced(log_dir):
            if aside is not None and aside.exists():
                shutil.rmtree(aside)
                removed = True
        if removed:
            print(f"--overwrite: the new run of {self.name!r} has its first checkpoint; "
                  "the earlier checkpoints and logs are removed")

    def restore_replaced(self, log_dir: Optional[PathLike] = None) -> None:
        """Put the run set aside back in place of the new, checkpoint-less one."""
        old_dir, old_logs = self._replaced(log_dir)
        if not old_dir.exists():
            return
        for path, aside in ((self.dir, old_dir), (None if log_dir is None else Path(log_dir), old_logs)):
            if path is not None and path.exists():
                shutil.rmtree(path)  # what the new run wrote before it ended
            if aside is not None and aside.exists():
                os.rename(aside, path)
        print(f"the new run of {self.name!r} ended before its first checkpoint: the earlier checkpoints "
              f"are back in {self.dir}", file=sys.stderr)

    def recover_replaced(self, log_dir: Optional[PathLike] = None) -> None:
        """Finish what a killed replacing run left: drop the old run when the new one has
        a checkpoint, else put the old one back."""
        if not self._replaced(log_dir)[0].exists():
            return
        if self.has("latest"):
            self.drop_replaced(log_dir)
        else:
            self.restore_replaced(log_dir)

    def save(self, slot: str, objects: Mapping[str, Any], state: Mapping[str, Any],
             weights_dtype: Optional[str] = None) -> Path:
        """Write ``objects`` and ``state`` (JSON dict) to ``slot``.

        Args:
          objects: dict name -> built Keras layer / model or Keras optimizer.
          state: JSON-serialisable dict (``objects`` and ``format`` are added).
          weights_dtype: e.g. "float16" to store the models' floating-point
            weights at that precision (small files to ship; loading casts them
            back to the variables' dtype). Optimizers are always stored as they are.
        Atomic: the slot is replaced only once the new copy is complete. A
        write that fails (a full disk, an I/O error) removes the incomplete
        copy, keeps the previous slot and raises a one-line TrainingError.
        Returns the slot directory.
        """
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        if weights_dtype is not None and np.dtype(weights_dtype).kind != "f":
            raise ValueError(f"weights_dtype must be a floating-point dtype, got {weights_dtype!r}")
        for name in objects:
            if not _is_object_name(name):
                raise ValueError(f"object names must be letters, digits, '_' or '-', got {name!r}")
        state = dict(state, objects=sorted(objects), format=FORMAT,
                     weights_dtype=None if weights_dtype is None else np.dtype(weights_dtype).name)
        staging = self.dir / f".{slot}.partial"
        final = self.dir / slot
        old = self.dir / f".{slot}.old"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            for name, obj in objects.items():
                path = staging / weights_file(name)
                if _is_optimizer(obj):
                    _save_optimizer(obj, path)
                else:
                    _save_model(obj, path, weights_dtype)
                _fsync(path)
            with open(staging / _STATE, "w") as f:
                json.dump(state, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            _fsync(staging)
            if old.exists() and final.exists():
                shutil.rmtree(old)
            if final.exists():
                os.rename(final, old)
            os.rename(staging, final)
        except BaseException as exc:
            # Nothing half-written stays: the incomplete copy goes, the previous slot is current.
            shutil.rmtree(staging, ignore_errors=True)
            if not final.exists() and old.exists():
                os.rename(old, final)
            if isinstance(exc, OSError):
                raise TrainingError(f"cannot write the {slot} checkpoint {final}: {_os_reason(exc)} "
                                    f"(the incomplete copy is removed; the previous {slot} is kept)") from None
            raise
        _fsync(self.dir)
        if old.exists():
            shutil.rmtree(old)
        return final

    def restore(self, slot: str, objects: Mapping[str, Any], require_all: bool = True) -> dict:
        """Load ``objects`` (dict name -> built Keras model / layer or optimizer) from ``slot``.

        ``require_all``: every variable of ``objects`` must be found in the
        checkpoint (extra checkpoint entries, e.g. another model, are fine);
        otherwise mismatching parts are skipped with a warning. An optimizer
        that is not built yet is built on the trainable variables of the
        models in ``objects``, in their order. Returns the slot's state.
        """
        path = self.slot_dir(slot)
        if path is None:
            folder = self.dir / slot
            if folder.is_dir():
                raise TrainingError(f"incomplete {slot} checkpoint {folder}: missing "
                                    f"{', '.join(_missing_files(folder))}")
            raise TrainingError(f"no {slot} checkpoint in {self.dir}")
        state = self.read_state(slot)
        missing = sorted(set(objects) - set(state.get("objects", objects)))
        if missing:
            raise TrainingError(f"checkpoint {self.name!r} ({state.get('kind', '?')}) holds "
                                f"{', '.join(map(str, state.get('objects', [])))}, not {', '.join(missing)}")
        if _is_legacy(path) and not all((path / weights_file(n)).is_file() for n in objects):
            _restore_legacy(path, objects, require_all)
            return state
        models = [obj for obj in objects.values() if not _is_optimizer(obj)]
        for name, obj in objects.items():
            if _is_optimizer(obj):
                _load_optimizer(obj, path / weights_file(name), models, require_all)
            else:
                _load_model(obj, path / weights_file(name), require_all)
        return state


def load_named(tmp: PathLike, name: str, objects: Mapping[str, Any], kinds: Optional[Iterable[str]] = None,
               purpose: str = "load") -> dict:
    """Restore ``objects`` from the best slot of checkpoint ``name`` (latest if no best).

    Args:
      tmp: ``--tmp`` root.
      name: checkpoint name.
      objects: dict name -> built Keras model, e.g. ``{"shape_net": net}``.
      kinds: accepted stage kinds of that checkpoint (None: any).
      purpose: words for error messages ("fine-tune from", "evaluate").
    Raises:
      TrainingError: unknown name (the message lists the existing ones), wrong kind,
        an incomplete or corrupt checkpoint.
    """
    store = CheckpointStore(tmp, name)
    slot = "best" if store.has("best") else ("latest" if store.has("latest") else None)
    if slot is None:
        incomplete = store.incomplete()
        if incomplete is not None:
            raise TrainingError(f"cannot {purpose} checkpoint {name!r}: {incomplete}")
        found = available_checkpoints(tmp)
        listing = ", ".join(found) if found else "none"
        raise TrainingError(f"cannot {purpose} checkpoint {name!r}: not found in "
                            f"{checkpoints_root(tmp)} (checkpoints found: {listing})")
    state = store.read_state(slot)
    kinds = None if kinds is None else tuple(kinds)
    if kinds is not None and state.get("kind") not in kinds:
        raise TrainingError(f"cannot {purpose} checkpoint {name!r}: it is a "
                            f"{state.get('kind')!r} checkpoint, expected {' or '.join(kinds)}")
    return store.restore(slot, objects)
