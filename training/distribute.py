"""Data-parallel training over several devices of one host (``GPU_ID`` lists such as ``0,1,2,3``).

The engines are the backends' own; this module only sets them up for the
whole process (``training.device.select_device`` calls :func:`activate`
before any model exists) and places each global batch on the devices:

- JAX: ``keras.distribution.DataParallel`` over a 1-D ``DeviceMesh`` (axis
  ``"batch"``), set globally with ``keras.distribution.set_distribution``.
  Every variable created afterwards is replicated on every device; a batch
  is placed sharded along its first axis (``keras.distribution.distribute_tensor``
  with the distribution's data layout). The one jitted stateless step
  (``training.steps.JaxDataParallelSteps``) is then partitioned by XLA
  (GSPMD): the program means what it means on one device, so gradients are
  all-reduced, batch-norm means and variances are over the global batch and
  dropout masks are drawn for the global batch.
- TensorFlow: ``tf.distribute.MirroredStrategy``, set globally with
  ``tf.distribute.experimental_set_strategy`` (the same as entering its
  ``scope()`` for the rest of the process, so the stages create their models
  and optimiser as mirrored variables without a ``with``). A batch is cut
  into equal per-replica slices on the host; ``training.steps.TensorFlowMirroredSteps``
  runs the step with ``strategy.run`` (gradients summed by Keras' optimiser
  over replicas of a loss divided by the replica count = the mean over the
  global batch) and turns the batch-norm layers' ``synchronized`` on, so
  their statistics are over the global batch too (Keras' default under
  ``tf.distribute`` would be per-replica statistics).

Validation, checkpoints and TensorBoard do not go through this module: they
read the (replicated / mirrored) variables once, as on one device.

The batch size is the global batch (``--batch-size``), split evenly:
:func:`check_batch_split` refuses one that does not divide.
"""
from training import TrainingError

_ACTIVE = None


def active():
    """The :class:`DataParallel` set up for this process, or None (one device, the plain path)."""
    return _ACTIVE


def check_batch_split(batch_size, num_devices, gpu_id_text):
    """Raise TrainingError (one line) unless ``batch_size`` splits evenly over ``num_devices``."""
    if batch_size % num_devices:
        raise TrainingError(f"--batch-size {batch_size} does not split evenly over the {num_devices} devices of "
                            f"GPU_ID {gpu_id_text}: the batch size is the global batch, give a multiple of "
                            f"{num_devices}")


def batch_rows(batch):
    """Rows (first-axis length) of a dict of arrays / tensors, all alike."""
    return int(next(iter(batch.values())).shape[0])


class DataParallel:
    """One backend's data-parallel engine over ``devices`` (a list of device names)."""

    backend = None

    def __init__(self, devices):
        self.devices = list(devices)
        self.num_devices = len(self.devices)

    def per_device_rows(self, batch):
        """Rows of ``batch`` per device (TrainingError when they do not split evenly)."""
        rows = batch_rows(batch)
        check_batch_split(rows, self.num_devices, ",".join(self.devices))
        return rows // self.num_devices

    def place(self, batch):
        """A dict of global-batch arrays -> what the backend's data-parallel step takes."""
        raise NotImplementedError

    def describe(self):
        return f"data-parallel over {self.num_devices} devices ({', '.join(self.devices)}, {self.backend})"


class JaxDataParallel(DataParallel):
    """``keras.distribution.DataParallel``: variables replicated, batches sharded on axis 0."""

    backend = "jax"

    def __init__(self, devices):
        super().__init__(devices)
        import keras

        self.distribution = keras.distribution.DataParallel(devices=self.devices)
        keras.distribution.set_distribution(self.distribution)

    def replicated(self):
        """The sharding of a value held whole on every device (the step's state and scalars)."""
        import jax

        return jax.sharding.NamedSharding(self.distribution.device_mesh.backend_mesh,
                                          jax.sharding.PartitionSpec())

    def place(self, batch):
        import keras

        self.per_device_rows(batch)
        return {key: keras.distribution.distribute_tensor(value, self.distribution.get_data_layout(value.shape))
                for key, value in batch.items()}


class MirroredDataParallel(DataParallel):
    """``tf.distribute.MirroredStrategy``, the default strategy of the process."""

    backend = "tensorflow"

    def __init__(self, devices):
        super().__init__(devices)
        import tensorflow as tf

        self.strategy = tf.distribute.MirroredStrategy(devices=self.devices)
        tf.distribute.experimental_set_strategy(self.strategy)

    def place(self, batch):
        """Equal first-axis slices, cut on the host, one per replica (``PerReplica`` values);
        ``strategy.run`` copies each to its device."""
        import tensorflow as tf

        rows = self.per_device_rows(batch)
        with tf.device("/cpu:0"):
            slices = [{key: value[k * rows:(k + 1) * rows] for key, value in batch.items()}
                      for k in range(self.num_devices)]
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: slices[context.replica_id_in_sync_group])


def activate(backend, devices):
    """Set up data parallelism over ``devices`` for the rest of the process (before any model is built).

    ``backend``: "jax" (device names as ``keras.distribution.list_devices`` gives them,
    e.g. ``"gpu:0"``) or "tensorflow" (``"/gpu:0"``, ``"/cpu:1"``). Returns the
    :class:`DataParallel`.
    """
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError(f"data parallelism is already set up ({_ACTIVE.describe()})")
    engines = {"jax": JaxDataParallel, "tensorflow": MirroredDataParallel}
    _ACTIVE = engines[backend](devices)
    return _ACTIVE


def throughput_text(samples, seconds):
    """``"850 samples/s, 425 per device"`` for ``samples`` trained in ``seconds`` (wall time)."""
    rate = samples / max(seconds, 1e-9)
    devices = _ACTIVE.num_devices if _ACTIVE is not None else 1
    return f"{rate:.4g} samples/s, {rate / devices:.4g} per device"
