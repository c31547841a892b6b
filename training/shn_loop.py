"""The SHN training loop (SPEC "SHN"): images -> voxel heatmaps of 41 points + 4 limbs.

Per step (``training.steps``: a ``tf.function`` on TensorFlow, a ``jax.jit``
step on JAX): SHN logits of every stack -> ``VoxelHeatmapLoss`` (sum over
stacks of the mean sigmoid cross-entropy) [+ ``coord_loss_weight`` x the L1
error of the last stack's soft-argmax points, metres] -> Adam. Batch-norm
moving statistics update in the forward pass with ``training=True``.

Recipes (``--recipe``, see ``training.config.RECIPES``): ``spec`` is the
original; ``fast`` scales the point targets to a peak of 1 and adds the
soft-argmax L1 loss, which is what makes the SHN learn in minutes instead of
days (README, "SHN recipes").

Mixed precision (``--mixed-precision``): float16 with loss scaling on
TensorFlow, bfloat16 on JAX; the heatmap read-out and the loss stay float32
(the SHN casts its logits).

Data: the list's frames through tf.data (TensorFlow) or the multi-process
NumPy loader (JAX, ``--workers``); ``--stream`` trains on the endless
synthetic stream instead (``DataReader.stream``), validation stays on the
val list.

Resume: each epoch draws the list's batches (order, augmentation) from
``epoch_seed(seed, epoch)`` (a new tf.data pipeline per epoch on the ground
truth read once; on JAX a new iteration of the loader), and the stream's
batch b is a function of (seed, b), with the next b saved in the ``latest``
state (``random_state``: "stream_position", with the dropout seeds). A run
killed and resumed thus repeats an uninterrupted run's epochs from the
resumed one on; with ``--stream-pool`` > 0 only approximately (which frames
are reused depends on timing), but it still asks for the sequences after
those it has seen.

Validation: soft-argmax of the last stack's logits with ``training=False``;
errors in mm (joints, landmarks, all); the best checkpoint is the one with
the lowest mean error over all 41 points, as the original. Diagnostics:
``--train-check-batches N`` also scores N un-augmented training batches;
on JAX both scores are also computed with batch statistics (``*_batch_stats``).
"""
import os
from typing import Optional

import numpy as np
import keras
from keras import ops

import DataReader
from models import SHN, VoxelGrid, VoxelHeatmapLoss, soft_argmax
from smpl import kinematics
from training import TrainingError
from training.checkpoints import load_named
from training.config import StageConfig
from training.metrics import PointErrorMeter
from training.runner import Stage, epoch_seed, prepare, run, set_seeds
from training.schedules import shn_steps
from training.steps import backend, make_steps
from training.summaries import skeleton_overlays


def default_workers() -> int:
    """Loader processes off TensorFlow: all cores but one (at least 1)."""
    return max(1, (os.cpu_count() or 2) - 1)


class SHNStage(Stage):
    """SHN model, optimiser, data and steps of one run (see module docstring)."""

    def __init__(self, config):
        self.config = config
        set_seeds(config.data.seed)
        augmentation = config.data.augmentation
        if augmentation is None:
            augmentation = 3 if config.data.voc is not None else 1
            if config.data.voc is None:
                print("SHN augmentation: 1 (standard); give --voc DIR for the original's mode 3 "
                      "(standard + Pascal VOC occlusion)")
        self.augmentation = augmentation
        self.workers = default_workers() if config.data.workers is None else config.data.workers
        self.stream = None
        if config.data.stream:
            from DataReader.stream import SyntheticStream

            self.stream = SyntheticStream(config.schedule.batch_size, seed=config.data.seed, workers=self.workers,
                                          augmentation=augmentation, flip=config.data.flip,
                                          smpl_dir=config.model.smpl_dir,
                                          pool_size=config.data.stream_pool)
            self.train_data = None
            self.num_train = None
        else:
            self.train_data = self._dataset(config.data.train_list, training=True)
            self.num_train = self._num_frames(self.train_data)
            if self.num_train < config.schedule.batch_size:
                raise TrainingError(f"{config.data.train_path}: {self.num_train} frames, fewer than "
                                    f"one batch of {config.schedule.batch_size} (lower --batch-size)")
        self.val_data = self._dataset(config.data.val_list, training=False)
        self.num_val = self._num_frames(self.val_data)
        self.check_data = (self._dataset(config.data.train_list, training=False)
                           if config.run.train_check_batches or config.run.bn_recalibrate else None)

        self.model = SHN(num_stacks=config.model.num_stacks, num_features=config.model.num_features,
                         grid_axes=config.model.grid_axes)
        self.model.build((1, 256, 256, 3))  # creates the variables (SHN.build: no full-size forward pass)
        self.loss = VoxelHeatmapLoss(VoxelGrid(axes=config.model.grid_axes),
                                     peak_one=config.model.heatmap_peak == "one")
        optimizer = keras.optimizers.Adam(learning_rate=config.schedule.lr0)
        loss_scale = config.model.mixed_precision and backend() == "tensorflow"
        if loss_scale:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        self.steps_impl = make_steps([self.model], optimizer, self._forward, self._predict,
                                     loss_scale=loss_scale)
        source = (f"synthetic stream ({self.workers} workers, reuse pool {config.data.stream_pool})"
                  if self.stream is not None
                  else f"{self.num_train} training frames")
        print(f"SHN: {self.model.count_params() / 1e6:.1f} M parameters, {config.model.num_stacks} stacks, "
              f"{source} / {self.num_val} validation frames, batch {config.schedule.batch_size}, "
              f"augmentation {augmentation}, recipe {config.model.recipe} (heatmap peak {config.model.heatmap_peak}, "
              f"coordinate loss weight {config.model.coord_loss_weight:g}), Keras backend {backend()}")

    # ------------------------------------------------------------------ data
    def _dataset(self, list_name, training, seed=None, targets=None):
        """The frames of a data list: a tf.data dataset (TensorFlow) or a NumPy batch loader (JAX).
        ``seed``: of the order and augmentation (default ``--seed``); ``targets``: the list's ground
        truth already read (``shn_dataset``'s; tf.data only)."""
        data, batch_size = self.config.data, self.config.schedule.batch_size
        common = dict(training=training, augmentation=self.augmentation if training else 0,
                      flip=data.flip and training, seed=data.seed if seed is None else seed,
                      voc_dir=data.voc if training else None)
        if backend() == "tensorflow":
            return DataReader.shn_dataset(data.root, data.root / list_name, batch_size, targets=targets, **common)
        return DataReader.shn_batches(data.root, data.root / list_name, batch_size,
                                      workers=self.workers if training else min(self.workers, 4), **common)

    @staticmethod
    def _num_frames(data):
        return len(data.loader) if hasattr(data, "loader") else len(data)

    def close(self) -> None:
        for data in (self.train_data, self.val_data, self.check_data, self.stream):
            if data is not None and hasattr(data, "close"):
                data.close()

    # ------------------------------------------------------------------ parts
    def model_objects(self):
        return {"shn": self.model}

    def finetune(self):
        if not self.config.run.finetune:
            return
        if len(self.config.run.finetune) != 1:
            raise TrainingError(f"shn --finetune takes one checkpoint name, got {list(self.config.run.finetune)}")
        name = self.config.run.finetune[0]
        load_named(self.config.run.tmp, name, {"shn": self.model}, kinds=("shn",), purpose="fine-tune from")
        self.steps_impl.reload()
        print(f"SHN: starting from checkpoint {name!r}")

    def steps(self, epoch):
        if self.config.schedule.steps is not None:
            return self.config.schedule.steps
        if self.stream is not None:
            return self.config.schedule.max_steps or self.config.schedule.steps_growth or 500
        num_batches = self.num_train // self.config.schedule.batch_size
        return shn_steps(epoch, num_batches, self.config.schedule.steps_growth or 500, self.config.schedule.max_steps)

    def train_batches(self, epoch):
        """Endless batches for 0-based ``epoch``: the list's, shuffled and augmented from
        ``epoch_seed(seed, epoch)`` (reshuffled, newly augmented on every further pass), so that an
        epoch draws the same batches whether the run went through or was resumed before it; or the
        stream's next ones (its position is saved by :meth:`random_state`)."""
        if self.stream is not None:
            return self.stream.batches()
        seed = epoch_seed(self.config.data.seed, epoch)
        if backend() == "tensorflow":
            return iter(self._dataset(self.config.data.train_list, training=True, seed=seed,
                                      targets=self.train_data.loader.targets).repeat())
        return self.train_data.batches(seed=seed)

    def random_state(self):
        """The dropout seeds (``Stage.random_state``) and, with ``--stream``, "stream_position":
        the index of the stream's next batch."""
        state = super().random_state()
        if self.stream is not None:
            state["stream_position"] = self.stream.position
        return state

    def restore_random_state(self, state):
        """Put back :meth:`random_state`; the stream goes on at the saved position (a checkpoint
        saved without it: at the number of steps trained, one batch each)."""
        position = (state or {}).get("stream_position")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int) or position < 0):
            raise TrainingError(f"corrupt checkpoint state {self.config.checkpoint_dir / 'latest' / 'state.json'}: "
                                f"stream_position must be an integer >= 0, got {position!r}")
        super().restore_random_state(state)
        if self.stream is None:
            return
        if position is None:
            position = int(ops.convert_to_numpy(self.optimizer.iterations))
        self.stream.seek(int(position))
        print(f"stream: going on at batch {position} (sequence {position * self.stream.config.sequences_per_batch})")

    # ------------------------------------------------------------------ maths
    def _forward(self, batch, training):
        """Loss terms and the training error of one batch (backend tensors)."""
        images, points = batch["image"], ops.convert_to_tensor(batch["points"], "float32")
        logits = self.model(images, training=training)
        total, per_stack = self.loss(logits, points)
        predicted = soft_argmax(logits[-1], num_points=kinematics.NUM_POINTS, axes=self.loss.grid.axes)
        distances = ops.norm(predicted - points, axis=-1)
        out = {"loss": total, "error_all_mm": ops.mean(distances) * 1000.0}
        if self.config.model.coord_loss_weight:
            coord = ops.mean(ops.abs(predicted - points))
            out.update(heatmap_loss=total, coord_loss=coord, loss=total + self.config.model.coord_loss_weight * coord)
        for s in range(per_stack.shape[0]):
            out[f"loss_stack_{s + 1}"] = per_stack[s]
        return out

    def _predict(self, batch, training):
        """Validation outputs: the heatmap loss and the last stack's points (B, 41, 3)."""
        logits = self.model(batch["image"], training=training)
        total, _ = self.loss(logits, ops.convert_to_tensor(batch["points"], "float32"))
        return {"loss": total, "points": soft_argmax(logits[-1], num_points=kinematics.NUM_POINTS,
                                                     axes=self.loss.grid.axes)}

    def train_step(self, batch):
        return self.steps_impl.train(batch)

    # ------------------------------------------------------------ validation
    def _score(self, data, max_batches, batch_stats=False, keep_first=False):
        meter, losses, first = PointErrorMeter(), [], None
        evaluate = self.steps_impl.evaluate_batch_stats if batch_stats else self.steps_impl.evaluate
        for k, batch in enumerate(data):
            if max_batches is not None and k >= max_batches:
                break
            out = evaluate(batch)
            predicted = np.asarray(ops.convert_to_numpy(out["points"]))
            losses.append(float(ops.convert_to_numpy(out["loss"])))
            meter.update(predicted, np.asarray(batch["points"]))
            if keep_first and first is None:
                first = (batch, predicted)
        return meter, losses, first

    def validate(self, epoch, step):
        config = self.config
        val_steps = config.schedule.val_steps
        metrics = {}
        if config.run.bn_recalibrate:
            # The moving averages as training left them, then re-estimated ones (kept, and saved).
            metrics["error_all_mm_moving_average"] = self._score(self.val_data, val_steps)[0].summary()["all"]
            used = self.steps_impl.recalibrate_batch_norm(self.check_data, config.run.bn_recalibrate)
            print(f"batch norm re-estimated on {used} training batches")
        meter, losses, first = self._score(self.val_data, val_steps, keep_first=True)
        if meter.count == 0:
            raise TrainingError(f"{config.data.val_path}: no validation batch "
                                f"(fewer frames than --batch-size {config.schedule.batch_size}?)")
        if first is not None and config.run.log_images > 0:
            batch, predicted = first
            overlay = skeleton_overlays(np.asarray(batch["image"]), predicted, np.asarray(batch["points"]),
                                        np.asarray(batch["root_camera"]), kinematics.PARENTS,
                                        max_images=config.run.log_images)
            self.logger.images("val/skeleton_pred_red_true_green", overlay, step)
        errors = meter.summary()
        metrics.update({"loss": float(np.mean(losses)), "error_joints_mm": errors["joints"],
                        "error_landmarks_mm": errors["landmarks"], "error_all_mm": errors["all"],
                        "score": errors["all"]})
        if self.stream is not None:
            stats = self.stream.stats()
            metrics["stream_fresh_fraction"] = float(stats["fresh_fraction"])
            print(f"stream: {stats['frames']} frames served, {stats['fresh_fraction']:.0%} new, "
                  f"training waited {stats['wait_s']:.1f} s for batches; per new frame (ms, summed over "
                  "workers): " + ", ".join(f"{k} {v:.1f}" for k, v in stats["per_frame_ms"].items()))
        with_batch_stats = backend() == "jax"  # stateless: batch statistics leave no trace
        if with_batch_stats:
            metrics["error_all_mm_batch_stats"] = self._score(self.val_data, val_steps, True)[0].summary()["all"]
        if config.run.train_check_batches:
            metrics["train_frames_error_all_mm"] = self._score(
                self.check_data, config.run.train_check_batches)[0].summary()["all"]
            if with_batch_stats:
                metrics["train_frames_error_all_mm_batch_stats"] = self._score(
                    self.check_data, config.run.train_check_batches, True)[0].summary()["all"]
        return metrics

    def summary_fields(self):
        return ("loss", "error_joints_mm", "error_landmarks_mm", "error_all_mm", "error_all_mm_moving_average",
                "error_all_mm_batch_stats",
                "train_frames_error_all_mm", "train_frames_error_all_mm_batch_stats")


def train(config: StageConfig) -> Optional[dict]:
    """Train the SHN stage described by ``config`` (a resolved StageConfig)."""
    resume_state = prepare(config)  # name checks first: nothing is built for a refused run
    stage = SHNStage(config)
    try:
        return run(stage, resume_state)
    finally:
        stage.close()
