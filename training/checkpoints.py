"""Checkpoints under ``TMP/checkpoints/NAME/``, written atomically.

Layout of one run::

    TMP/checkpoints/NAME/
      best/     ckpt.index, ckpt.data-*, state.json   best on validation (weights only)
      latest/   ckpt.index, ckpt.data-*, state.json   end of the last epoch (weights,
                                                      optimiser, epoch, best so far)

Each slot is a TensorFlow object checkpoint (``tf.train.Checkpoint``) of named
objects -- ``shn``, ``dae``, ``shape_net``, ``pose_net``, ``optimizer`` -- so
that a later stage or ``test.py`` restores just the parts it needs by name
(the shape+pose stage takes ``shape_net`` from the "shape" checkpoint and
``pose_net`` from the "pose" one, as the original did).

Writes go to ``NAME/.SLOT.partial`` and are renamed into place only when
complete (``state.json`` written last), so a run killed mid-save leaves the
previous slot loadable. A slot is complete iff its ``state.json`` exists.
"""
import json
import os
import shutil
from pathlib import Path

from training import TrainingError

SLOTS = ("best", "latest")
_STATE = "state.json"
_PREFIX = "ckpt"


def checkpoints_root(tmp):
    return Path(tmp) / "checkpoints"


def available_checkpoints(tmp):
    """Sorted names of the checkpoints under ``TMP/checkpoints`` with a complete slot."""
    root = checkpoints_root(tmp)
    if not root.is_dir():
        return []
    names = []
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and any(_complete(sub / s) or _complete(sub / f".{s}.old") for s in SLOTS):
            names.append(sub.name)
    return names


def _complete(slot_dir):
    return (slot_dir / _STATE).is_file() and (slot_dir / f"{_PREFIX}.index").is_file()


def _fsync_dir(path):
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


class CheckpointStore:
    """The ``best`` and ``latest`` slots of one named run.

    Args:
      tmp: root of ``checkpoints/`` (``--tmp``).
      name: run name (``--name``).
    """

    def __init__(self, tmp, name):
        self.tmp = Path(tmp)
        self.name = name
        self.dir = checkpoints_root(tmp) / name

    # ----------------------------------------------------------------- slots
    def slot_dir(self, slot):
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

    def has(self, slot):
        return self.slot_dir(slot) is not None

    def read_state(self, slot):
        """The ``state.json`` dict of ``slot``, or None."""
        path = self.slot_dir(slot)
        if path is None:
            return None
        try:
            return json.loads((path / _STATE).read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"corrupt checkpoint state {path / _STATE}: {exc}") from None

    # ------------------------------------------------------------- lifecycle
    def prepare(self, resume=False, overwrite=False, log_dir=None):
        """Check the name before training starts.

        - new name (or a folder without any complete slot): nothing to do;
        - ``resume``: returns the ``latest`` state (error when there is none);
        - ``overwrite``: removes the old checkpoints (and ``log_dir``), says so;
        - otherwise an existing name is an error suggesting --resume / --overwrite.
        Returns the state to resume from, or None.
        """
        exists = self.has("best") or self.has("latest")
        if resume:
            state = self.read_state("latest")
            if state is None:
                raise TrainingError(f"nothing to resume: no latest checkpoint in {self.dir} "
                                    "(drop --resume to start this name from scratch)")
            return state
        if exists and not overwrite:
            raise TrainingError(f"checkpoint {self.name!r} already exists in {self.dir}; "
                                "use --resume to continue it, --overwrite to replace it, "
                                "or --name NEW")
        if exists and overwrite:
            print(f"--overwrite: removing the earlier checkpoints of {self.name!r} in {self.dir}")
            shutil.rmtree(self.dir)
            if log_dir is not None and Path(log_dir).is_dir():
                print(f"--overwrite: removing the earlier TensorBoard logs in {log_dir}")
                shutil.rmtree(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        return None

    def save(self, slot, objects, state):
        """Write ``objects`` (dict name -> trackable) and ``state`` (JSON dict) to ``slot``.

        Atomic: the slot is replaced only once the new copy is complete.
        Returns the slot directory.
        """
        import tensorflow as tf

        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = self.dir / f".{slot}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        tf.train.Checkpoint(**objects).write(str(staging / _PREFIX))
        state = dict(state, objects=sorted(objects))
        with open(staging / _STATE, "w") as f:
            json.dump(state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(staging)
        final = self.dir / slot
        old = self.dir / f".{slot}.old"
        if old.exists() and final.exists():
            shutil.rmtree(old)
        if final.exists():
            os.rename(final, old)
        os.rename(staging, final)
        _fsync_dir(self.dir)
        if old.exists():
            shutil.rmtree(old)
        return final

    def restore(self, slot, objects, require_all=True):
        """Load ``objects`` (dict name -> built trackable) from ``slot``; returns its state.

        ``require_all``: every variable of ``objects`` must be found in the
        checkpoint (extra checkpoint entries, e.g. another model, are fine).
        """
        import tensorflow as tf

        path = self.slot_dir(slot)
        if path is None:
            raise TrainingError(f"no {slot} checkpoint in {self.dir}")
        state = self.read_state(slot)
        missing = sorted(set(objects) - set(state.get("objects", objects)))
        if missing:
            raise TrainingError(f"checkpoint {self.name!r} ({state.get('kind', '?')}) holds "
                                f"{', '.join(state.get('objects', []))}, not {', '.join(missing)}")
        status = tf.train.Checkpoint(**objects).read(str(path / _PREFIX))
        if require_all:
            try:
                status.assert_existing_objects_matched()
            except AssertionError as exc:
                raise TrainingError(f"checkpoint {path} does not match the model "
                                    f"({str(exc).splitlines()[0][:200]})") from None
        status.expect_partial()
        return state


def load_named(tmp, name, objects, kinds=None, purpose="load"):
    """Restore ``objects`` from the best slot of checkpoint ``name`` (latest if no best).

    Args:
      tmp: ``--tmp`` root.
      name: checkpoint name.
      objects: dict name -> built trackable, e.g. ``{"shape_net": net}``.
      kinds: accepted stage kinds of that checkpoint (None: any).
      purpose: words for error messages ("fine-tune from", "evaluate").
    Raises:
      TrainingError: unknown name (the message lists the existing ones), wrong kind.
    """
    store = CheckpointStore(tmp, name)
    slot = "best" if store.has("best") else ("latest" if store.has("latest") else None)
    if slot is None:
        found = available_checkpoints(tmp)
        listing = ", ".join(found) if found else "none"
        raise TrainingError(f"cannot {purpose} checkpoint {name!r}: not found in "
                            f"{checkpoints_root(tmp)} (checkpoints found: {listing})")
    state = store.read_state(slot)
    if kinds is not None and state.get("kind") not in kinds:
        raise TrainingError(f"cannot {purpose} checkpoint {name!r}: it is a "
                            f"{state.get('kind')!r} checkpoint, expected {' or '.join(kinds)}")
    return store.restore(slot, objects)
