"""The epoch driver shared by every stage: schedule, progress, validation,
checkpoints, TensorBoard, resume.

A stage (``shn_loop.SHNStage``, ``smplr_loop.SMPLRStage``) knows its models,
data and steps; this module only runs epochs over it::

    for epoch in start..epochs-1:
        lr = learning_rate(epoch)          -> optimizer, TensorBoard
        steps of stage.train_step(batch)   -> tqdm bar with running loss, per-step scalars
        stage.validate(...)                -> metrics (score: lower is better)
        best/ when the score improved; latest/ always (atomic)
        one summary line

Epochs are 0-based inside (the schedule's ``epoch``) and printed 1-based.
The ``latest`` state stores ``epochs_done`` and the dropout layers' seed
states (``Stage.random_state``); a resumed run starts at epoch ``epochs_done``
with the optimiser (Adam moments, step counter) and those seeds restored. A
stage that draws each epoch's data from ``epoch_seed(seed, epoch)`` (the SMPLR
stages, the SHN on a list) or saves its data's position in ``random_state`` (the
SHN's ``--stream``) then repeats, from the resumed epoch on, what an uninterrupted run does.
"""
import contextlib
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from training import TrainingError
from training.checkpoints import CheckpointStore
from training.distribute import throughput_text
from training.lineage import parent_lineage, resumed_lineage, resumed_minutes, with_this_run
from training.steps import to_host

if TYPE_CHECKING:
    from training.config import StageConfig

#: Test hook (not a user option): when this environment variable holds N, the
#: process ends abruptly (``os._exit(3)``, no clean-up) right after the
#: checkpoints of epoch N (1-based) are written, to simulate a crash.
EXIT_AFTER_EPOCH_VARIABLE = "SMPLR_TEST_EXIT_AFTER_EPOCH"


def _exit_after_epoch():
    """The epoch after which the test hook ends the process, or None."""
    value = os.environ.get(EXIT_AFTER_EPOCH_VARIABLE, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise TrainingError(f"{EXIT_AFTER_EPOCH_VARIABLE} must be an epoch number, got {value!r}") from None


class Stage:
    """What the driver needs from a stage. Subclasses fill in the methods.

    Attributes set by subclasses: ``config`` (StageConfig), ``optimizer``
    (a built Keras optimizer), ``steps_impl`` (``training.steps.Steps``: the
    compiled steps of the active backend), ``logger`` (set by the driver).
    """
    config = None
    optimizer = None
    steps_impl = None
    logger = None

    def model_objects(self) -> Dict[str, Any]:
        """dict name -> trackable of the trained model parts (what ``best`` holds)."""
        raise NotImplementedError

    def finetune(self) -> None:
        """Load the ``--finetune`` checkpoints into the models (fresh runs only)."""

    def steps(self, epoch: int) -> int:
        """Training steps in 0-based ``epoch``."""
        raise NotImplementedError

    def train_batches(self, epoch: int) -> Iterator[Dict[str, Any]]:
        """An iterator with at least ``steps(epoch)`` more training batches."""
        raise NotImplementedError

    def train_step(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """One optimisation step; dict of backend scalars ('loss' among them), not yet
        read to the host (the driver reads them once per ``--log-every`` steps)."""
        raise NotImplementedError

    def validate(self, epoch: int, step: int) -> Dict[str, float]:
        """Validation metrics dict (floats) with 'score' (lower is better)."""
        raise NotImplementedError

    def summary_fields(self) -> Tuple[str, ...]:
        """Validation metric names shown on the summary line."""
        return ("score",)

    def seed_generators(self) -> List[Any]:
        """The Keras SeedGenerators of the model parts (the dropout layers' streams), in layer order."""
        import keras

        generators = []
        for part in self.model_objects().values():
            if isinstance(part, keras.layers.Layer):
                for layer in part._flatten_layers(include_self=True):
                    generators.extend(layer._seed_generators)
        return generators

    def random_state(self) -> Dict[str, Any]:
        """What the model parts' random streams need to continue (JSON-friendly): each seed
        generator's state (seed, draws so far). Read after ``steps_impl.sync()``."""
        import keras

        return {"seed_generators": [np.asarray(keras.ops.convert_to_numpy(generator.state)).tolist()
                                    for generator in self.seed_generators()]}

    def restore_random_state(self, state: Optional[Dict[str, Any]]) -> None:
        """Put back what :meth:`random_state` returned (before ``steps_impl.reload()``); a state
        saved without it (older checkpoints) leaves the streams as they are."""
        saved = (state or {}).get("seed_generators")
        if saved is None:
            return
        generators = self.seed_generators()
        if len(saved) != len(generators):
            raise TrainingError(f"{self.config.run.name}: the checkpoint holds {len(saved)} dropout seed "
                                f"states, the model has {len(generators)}")
        for generator, value in zip(generators, saved):
            generator.state.assign(np.asarray(value, dtype=generator.state.dtype))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed (int in [0, 2**31)) of 0-based ``epoch``'s own random streams, drawn from
    (``seed``, ``epoch``): a stage whose epochs draw their data from it draws the same
    batches in an epoch whether the run went through or was resumed before it."""
    return int(np.random.SeedSequence([int(seed) % 2 ** 32, int(epoch)]).generate_state(1)[0] >> 1)


@contextlib.contextmanager
def tensorflow_left_out() -> Iterator[None]:
    """On Keras backends other than TensorFlow, a block in which ``import tensorflow`` fails,
    so that libraries that use TensorFlow whenever it is installed take their paths without it:
    Keras' seeding, TensorBoard's event file writer (its file-system stub, kept for the process).
    TensorFlow's start-up (log lines, seconds, memory) is then never paid on JAX. No-op on
    TensorFlow or where TensorFlow is imported (or blocked) already."""
    import keras

    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None
    try:
        yield
    finally:
        del sys.modules["tensorflow"]


def set_seeds(seed: int) -> None:
    """Python, NumPy and Keras seeds (``--seed``), and TensorFlow's on the TensorFlow backend."""
    import keras

    with tensorflow_left_out():
        keras.utils.set_random_seed(int(seed))


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else None


def prepare(config: "StageConfig") -> Optional[Dict[str, Any]]:
    """Check the run name before anything is built; returns the state to resume or None.

    A new name is created; an existing one needs ``--resume`` (its latest
    state is returned, and must be a run of the same kind) or ``--overwrite``.
    """
    store = CheckpointStore(config.run.tmp, config.run.name)
    state = store.prepare(resume=config.run.resume, overwrite=config.run.overwrite, log_dir=config.log_dir)
    if state is not None and state.get("kind") != config.kind:
        raise TrainingError(f"cannot resume {config.run.name!r}: it is a {state.get('kind')!r} "
                            f"run, not {config.kind!r}")
    return state


def run(stage: Stage, resume_state: Optional[Dict[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """Train ``stage`` to ``config.schedule.epochs`` epochs; returns the final state dict.

    ``resume_state``: what :func:`prepare` returned (None for a fresh run).
    A fresh run on an existing name (``--overwrite``, or a restart) sets the
    old run aside and deletes it after its own first checkpoint; a run that
    ends before that puts the old one back (``CheckpointStore.set_aside``).
    """
    try:
        return _run(stage, resume_state)
    except BaseException:
        CheckpointStore(stage.config.run.tmp, stage.config.run.name).recover_replaced(stage.config.log_dir)
        raise


def _run(stage, resume_state):
    from tqdm import tqdm

    from training.summaries import SummaryLogger

    config = stage.config
    store = CheckpointStore(config.run.tmp, config.run.name)
    objects = stage.model_objects()
    with_optimizer = dict(objects, optimizer=stage.optimizer)
    if resume_state is not None:
        if store.has("latest"):
            store.restore("latest", with_optimizer)
        else:  # killed while the first latest was written: best, fresh optimizer (see CheckpointStore.prepare)
            store.restore("best", objects)
        stage.restore_random_state(resume_state.get("random_state"))
        stage.steps_impl.reload()
        start = int(resume_state["epochs_done"])
        best = resume_state.get("best")
        best = math.inf if best is None else float(best)
        best_epoch = resume_state.get("best_epoch")
        history = list(resume_state.get("history", []))
        before, minutes = resumed_lineage(resume_state), resumed_minutes(resume_state)
        print(f"resuming {config.run.name!r} after epoch {start} of {config.schedule.epochs} "
              f"(best score {best:.4g} at epoch {best_epoch}); next learning rate "
              f"{config.schedule.learning_rate(start):.6g}")
    else:
        stage.finetune()
        start, best, best_epoch, history = 0, math.inf, None, []
        before, minutes = parent_lineage(config.run.tmp, config.run.finetune), 0.0
    if start >= config.schedule.epochs:
        print(f"{config.run.name!r} has already trained {start} epochs (--epochs {config.schedule.epochs}): "
              "nothing to do")
        return resume_state
    replacing = resume_state is None and (store.has("best") or store.has("latest"))
    if replacing:  # data and fine-tune checkpoints are loaded: now the old run makes way
        store.set_aside(config.log_dir)

    with tensorflow_left_out():
        stage.logger = logger = SummaryLogger(config.log_dir)
    print(f"checkpoints: {store.dir}\nTensorBoard: {config.log_dir}")
    state = resume_state or {}
    exit_after_epoch = _exit_after_epoch()
    for epoch in range(start, config.schedule.epochs):
        started = time.time()
        lr = config.schedule.learning_rate(epoch)
        stage.steps_impl.set_learning_rate(lr)
        steps = stage.steps(epoch)
        bar = tqdm(total=steps, desc=f"{config.run.name} {epoch + 1}/{config.schedule.epochs}", unit="step",
                   leave=False, dynamic_ncols=True, file=sys.stdout, mininterval=1.0)
        sums, count, pending = {}, 0, []
        first_step = stage.steps_impl.iterations + 1

        def read_pending():
            # One host sync per interval: the steps ran ahead asynchronously.
            nonlocal pending
            for offset, values in enumerate(to_host(pending)):
                step = first_step + count - len(pending) + offset
                for key, value in values.items():
                    if not math.isfinite(value):
                        bar.close()
                        raise TrainingError(f"{config.run.name}: training {key} became {value} at epoch "
                                            f"{epoch + 1}, step {step - first_step + 1} (try a lower --lr)")
                    sums[key] = sums.get(key, 0.0) + value
                    logger.scalar(f"train/{key}", value, step)
                logger.scalar("train/learning_rate", lr, step)
            pending = []
            if "loss" in sums:
                bar.set_postfix(loss=f"{sums['loss'] / count:.4g}", refresh=False)

        batches = stage.train_batches(epoch)
        for batch in batches:
            pending.append(stage.train_step(batch))
            count += 1
            if len(pending) >= config.run.log_every or count >= steps:
                read_pending()
            bar.update(1)
            if count >= steps:
                break  # checked after the step, so no batch is drawn and dropped
        read_pending()
        bar.close()
        stage.steps_impl.sync()
        throughput = throughput_text(count * config.schedule.batch_size, time.time() - started)
        if count == 0:
            raise TrainingError(f"{config.run.name}: no training batch in epoch {epoch + 1} "
                                f"({config.data.train_path} gives fewer samples than a batch?)")
        train = {key: value / count for key, value in sums.items()}
        step = stage.steps_impl.iterations
        metrics = stage.validate(epoch, step)
        logger.scalars({k: v for k, v in metrics.items() if k != "score"}, step, "val/")
        logger.scalar("epoch/learning_rate", lr, epoch + 1)
        improved = metrics["score"] < best
        if improved:
            best, best_epoch = float(metrics["score"]), epoch + 1
        history.append({"epoch": epoch + 1, "lr": lr, "steps": count,
                        "train": {k: _json_float(v) for k, v in train.items()},
                        "val": {k: _json_float(v) for k, v in metrics.items()}})
        state = {"kind": config.kind, "name": config.run.name, "epochs_done": epoch + 1,
                 "global_step": step, "best": _json_float(best), "best_epoch": best_epoch,
                 "lr_last": lr, "lr_next": config.schedule.learning_rate(epoch + 1),
                 "config": config.to_json(), "history": history, "random_state": stage.random_state()}
        minutes += (time.time() - started) / 60.0
        state["lineage"] = with_this_run(before, config.run.name, state, minutes, config.run.finetune)
        if improved:
            store.save("best", objects, state)
        store.save("latest", with_optimizer, state)
        if replacing:
            store.drop_replaced(config.log_dir)
            replacing = False
        logger.flush()
        shown = " ".join(f"{k}={metrics[k]:.4g}" for k in stage.summary_fields() if k in metrics)
        print(f"{config.run.name} epoch {epoch + 1}/{config.schedule.epochs}: lr={lr:.3g} steps={count} "
              f"loss={train['loss']:.4g} | val {shown}{' *best*' if improved else ''} "
              f"| {throughput} | {time.time() - started:.1f}s", flush=True)
        if exit_after_epoch is not None and epoch + 1 >= exit_after_epoch:
            logger.flush()
            sys.stdout.flush()
            os._exit(3)  # simulated crash for the resume test: no clean-up at all
    logger.close()
    print(f"{config.run.name}: done, best score {best:.4g} at epoch {best_epoch} -> {store.dir / 'best'}")
    return state

