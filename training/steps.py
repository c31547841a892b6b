"""Training and evaluation steps, one implementation per Keras backend, one interface.

A stage describes its maths once, as ``forward(batch, training) -> dict`` that
calls its Keras models (``out["loss"]`` is what is minimised; other entries
are metrics or predictions). ``make_steps`` turns that into compiled steps:

- TensorFlow: ``tf.function`` + ``GradientTape`` + ``optimizer.apply_gradients``
  (loss scaling for ``mixed_float16``), the variables updated in place.
- JAX: one ``jax.jit`` step over the stateless API: the model variables'
  values are mapped in with ``keras.StatelessScope`` (batch-norm statistics
  and dropout seeds come back out of the scope), gradients by
  ``jax.value_and_grad``, the update by ``optimizer.stateless_apply``. The
  values live on the device between steps and are written back into the
  Keras objects only by ``sync()`` (before validation and checkpoints).

Both return the scalars of ``forward`` as backend arrays, without a host
sync; ``to_host`` reads a list of them at once (the runner does so once per
logging interval).

    steps = make_steps([model], optimizer, forward)
    values = steps.train(batch)          # dict of backend scalars
    outputs = steps.evaluate(batch)      # dict of backend arrays (training=False)
    steps.set_learning_rate(lr); steps.sync(); steps.iterations

With a GPU_ID list (``training.distribute``) ``make_steps`` returns the
data-parallel variants, ``TensorFlowMirroredSteps`` and ``JaxDataParallelSteps``:
the same interface, a global batch in, global-batch means out.
"""
import keras
import numpy as np

from training import distribute


def backend():
    """The Keras backend name ("tensorflow" or "jax")."""
    return keras.backend.backend()


def _unique(variables):
    seen, out = set(), []
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            out.append(variable)
    return out


def _is_text(value):
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return True
    if hasattr(dtype, "is_floating"):  # a tf.DType
        return dtype.name == "string"
    return np.dtype(dtype).kind in "USO"


def numeric_inputs(batch):
    """The entries of a batch dict a compiled step can take (drops strings, e.g. paths)."""
    return {key: value for key, value in batch.items() if not _is_text(value)}


def to_host(values):
    """A list of dicts of backend scalars -> a list of dicts of Python floats (one sync)."""
    if not values:
        return []
    keys = list(values[0])
    stacked = {k: np.asarray(keras.ops.convert_to_numpy(keras.ops.stack([v[k] for v in values])))
               for k in keys}
    return [{k: float(stacked[k][i]) for k in keys} for i in range(len(values))]


class Steps:
    """What a stage's loop calls; see the module docstring."""

    #: Devices one training step runs on (data-parallel steps: more).
    num_devices = 1

    def __init__(self, models, optimizer, train_forward, eval_forward=None):
        self.models = list(models)
        self.optimizer = optimizer
        self.train_forward = train_forward
        self.eval_forward = eval_forward or train_forward
        self.trainable = _unique([v for m in self.models for v in m.trainable_variables])
        self.non_trainable = _unique([v for m in self.models for v in m.non_trainable_variables])
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.trainable)
        self.iterations = int(keras.ops.convert_to_numpy(optimizer.iterations)) if optimizer is not None else 0

    def train(self, batch):
        raise NotImplementedError

    def evaluate(self, batch):
        raise NotImplementedError

    def evaluate_batch_stats(self, batch):
        """``evaluate`` with batch-norm batch statistics (and dropout), leaving no trace (JAX only)."""
        raise NotImplementedError(f"batch-statistics evaluation needs the JAX backend, not {backend()}")

    def batch_norm_layers(self):
        return [layer for model in self.models for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.BatchNormalization)]

    def recalibrate_batch_norm(self, batches, num_batches):
        """Re-estimate every batch-norm layer's moving statistics with the current weights.

        The moving averages (momentum 0.9) mix statistics of weights from the
        last few dozen steps; here each layer's mean and variance are averaged
        over ``num_batches`` batches of ``batches`` (one pass of a finite
        iterable), computed in training mode with the weights as they are now
        ("precise batch norm", Wu and Johnson 2021). Returns the batches used.
        """
        layers = self.batch_norm_layers()
        momenta = [layer.momentum for layer in layers]
        sums, count = None, 0
        self.sync()
        statistic_variables = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
        previous = [np.asarray(keras.ops.convert_to_numpy(v)) for v in statistic_variables]
        # Finite starting values: with momentum 0 the old statistics are multiplied
        # by 0, and inf * 0 (a statistic lost to an overflow) would stay NaN.
        self._set_batch_norm_statistics(layers, [np.full(v.shape, float(k % 2), np.float32)
                                                 for k, v in enumerate(statistic_variables)])
        try:
            for layer in layers:
                layer.momentum = 0.0  # moving statistics := this batch's statistics
            statistics = self._batch_statistics_fn(layers)
            for k, batch in enumerate(batches):
                if k >= num_batches:
                    break
                values = [np.asarray(keras.ops.convert_to_numpy(v), np.float64)
                          for v in statistics(numeric_inputs(batch))]
                sums = values if sums is None else [a + b for a, b in zip(sums, values)]
                count += 1
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
            # No batch (or an error): the statistics stay what they were.
            self._set_batch_norm_statistics(layers, [value / count for value in sums] if count else previous)
        return count

    def set_learning_rate(self, lr):
        self.optimizer.learning_rate = float(lr)

    def sync(self):
        """Write the current values into the Keras variables (no-op where they live there)."""

    def reload(self):
        """Re-read the Keras variables (after a checkpoint restore into them)."""
        if self.optimizer is not None:
            self.iterations = int(keras.ops.convert_to_numpy(self.optimizer.iterations))


class TensorFlowSteps(Steps):
    """``tf.function`` steps updating the Keras variables in place."""

    def __init__(self, models, optimizer, train_forward, eval_forward=None, loss_scale=False):
        super().__init__(models, optimizer, train_forward, eval_forward)
        import tensorflow as tf

        self.loss_scale = loss_scale
        self._train = tf.function(self._train_eager, reduce_retracing=True)
        self._eval = tf.function(self._eval_eager, reduce_retracing=True)

    def _train_eager(self, batch):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = self.train_forward(batch, training=True)
            loss = self._gradient_loss(out["loss"])
            loss = self.optimizer.scale_loss(loss) if self.loss_scale else loss
        gradients = tape.gradient(loss, self.trainable)
        self.optimizer.apply_gradients(zip(gradients, self.trainable))
        return {k: v for k, v in out.items() if len(v.shape) == 0}

    def _gradient_loss(self, loss):
        """The loss whose gradients the optimiser applies (here: the loss itself)."""
        return loss

    def _eval_eager(self, batch):
        return self.eval_forward(batch, training=False)

    def train(self, batch):
        values = self._train(numeric_inputs(batch))
        self.iterations += 1
        return values

    def _batch_statistics_fn(self, layers):
        import tensorflow as tf

        @tf.function
        def statistics(batch):
            self.eval_forward(batch, training=True)
            return [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
        return lambda batch: [t.numpy() for t in statistics(batch)]

    def _set_batch_norm_statistics(self, layers, values):
        variables = [v for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
        for variable, value in zip(variables, values):
            variable.assign(value.astype(np.float32))

    def evaluate(self, batch):
        return self._eval(numeric_inputs(batch))


class JaxSteps(Steps):
    """``jax.jit`` steps over values held on the device; ``sync()`` writes them back."""

    def __init__(self, models, optimizer, train_forward, eval_forward=None):
        super().__init__(models, optimizer, train_forward, eval_forward)
        import jax

        self.optimizer_variables = list(optimizer.variables) if optimizer is not None else []
        self._state = None
        self._train = jax.jit(self._train_pure, donate_argnums=0)
        self._eval = jax.jit(self._eval_pure)

    # ------------------------------------------------------------- state
    def _current(self):
        if self._state is None:
            self._state = ([v.value for v in self.trainable], [v.value for v in self.non_trainable],
                           [v.value for v in self.optimizer_variables])
        return self._state

    def sync(self):
        if self._state is None:
            return
        for variables, values in zip((self.trainable, self.non_trainable, self.optimizer_variables), self._state):
            for variable, value in zip(variables, values):
                variable.assign(value)

    def reload(self):
        self._state = None
        super().reload()

    def set_learning_rate(self, lr):
        super().set_learning_rate(lr)
        if self._state is not None:
            rate = self.optimizer._learning_rate  # a Keras Variable when set from a float
            for i, variable in enumerate(self.optimizer_variables):
                if variable is rate:
                    self._state[2][i] = variable.value

    # -------------------------------------------------------------- pure
    def _forward(self, trainable, non_trainable, batch, training, forward):
        mapping = list(zip(self.trainable, trainable)) + list(zip(self.non_trainable, non_trainable))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = forward(batch, training=training)
        updated = []
        for variable, old in zip(self.non_trainable, non_trainable):
            new = scope.get_current_value(variable)
            updated.append(old if new is None else new)
        return out, updated

    def _train_pure(self, state, batch):
        import jax

        trainable, non_trainable, optimizer_values = state

        def loss_fn(values):
            out, updated = self._forward(values, non_trainable, batch, True, self.train_forward)
            return out["loss"], (out, updated)

        (_, (out, non_trainable)), gradients = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        trainable, optimizer_values = self.optimizer.stateless_apply(optimizer_values, gradients, trainable)
        scalars = {k: v for k, v in out.items() if getattr(v, "ndim", 1) == 0}
        return (list(trainable), list(non_trainable), list(optimizer_values)), scalars

    def _eval_pure(self, trainable, non_trainable, batch):
        out, _ = self._forward(trainable, non_trainable, batch, False, self.eval_forward)
        return out

    # ------------------------------------------------------------ public
    def train(self, batch):
        self._state, scalars = self._train(self._current(), numeric_inputs(batch))
        self.iterations += 1
        return scalars

    def evaluate(self, batch):
        trainable, non_trainable, _ = self._current()
        return self._eval(trainable, non_trainable, numeric_inputs(batch))

    def evaluate_batch_stats(self, batch):
        if not hasattr(self, "_eval_batch_stats"):
            import jax

            self._eval_batch_stats = jax.jit(
                lambda t, n, b: self._forward(t, n, b, True, self.eval_forward)[0])
        trainable, non_trainable, _ = self._current()
        return self._eval_batch_stats(trainable, non_trainable, numeric_inputs(batch))

    def _statistics_indices(self, layers):
        index = {id(v): i for i, v in enumerate(self.non_trainable)}
        return [index[id(v)] for layer in layers for v in (layer.moving_mean, layer.moving_variance)]

    def _batch_statistics_fn(self, layers):
        import jax

        if getattr(self, "_statistics_cache", None) is not None:
            return self._statistics_cache
        indices = self._statistics_indices(layers)

        def statistics(trainable, non_trainable, batch):  # traced now, with momentum 0
            _, updated = self._forward(trainable, non_trainable, batch, True, self.eval_forward)
            return [updated[i] for i in indices]
        compiled = jax.jit(statistics)
        self._statistics_cache = lambda batch: compiled(self._current()[0], self._current()[1], batch)
        return self._statistics_cache

    def _set_batch_norm_statistics(self, layers, values):
        state = self._current()
        for i, value in zip(self._statistics_indices(layers), values):
            state[1][i] = keras.ops.convert_to_tensor(value.astype(np.float32))
        self.sync()


class TensorFlowMirroredSteps(TensorFlowSteps):
    """``TensorFlowSteps`` over the replicas of a ``MirroredStrategy`` (``training.distribute``).

    Each replica runs the step on its slice of the global batch (``strategy.run``);
    Keras' optimiser sums the replicas' gradients, so each replica's loss (a
    mean over its slice) is divided by the replica count: the gradient is
    that of the mean over the global batch. The scalars returned are the
    replicas' means (= global-batch means, the slices being equal). Batch-norm
    layers are switched to ``synchronized`` statistics (over the global batch,
    as on one device; Keras' default under ``tf.distribute`` is per replica).
    Dropout: every replica draws its slice's mask from the same (mirrored)
    seed state, so the replicas' masks repeat each other.
    """

    def __init__(self, models, optimizer, train_forward, eval_forward=None, loss_scale=False, parallel=None):
        super().__init__(models, optimizer, train_forward, eval_forward, loss_scale=loss_scale)
        import tensorflow as tf

        self.parallel = parallel
        self.num_devices = parallel.num_devices
        for layer in self.batch_norm_layers():
            layer.synchronized = True
        self._train = tf.function(self._train_replicas, reduce_retracing=True)

    def _gradient_loss(self, loss):
        return loss / self.num_devices

    def _train_replicas(self, batch):
        import tensorflow as tf

        strategy = self.parallel.strategy
        per_replica = strategy.run(self._train_eager, args=(batch,))
        return {key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for key, value in per_replica.items()}

    def train(self, batch):
        values = self._train(self.parallel.place(numeric_inputs(batch)))
        self.iterations += 1
        return values


class JaxDataParallelSteps(JaxSteps):
    """``JaxSteps`` under ``keras.distribution.DataParallel`` (``training.distribute``).

    The state (weights, batch-norm statistics, optimiser) is replicated on
    every device and kept so by the step's output sharding; each batch is
    sharded along its first axis. XLA partitions the same jitted program, so a
    step computes what it computes on one device: gradients all-reduced,
    batch-norm statistics and dropout masks over the global batch.
    """

    def __init__(self, models, optimizer, train_forward, eval_forward=None, parallel=None):
        super().__init__(models, optimizer, train_forward, eval_forward)
        import jax

        self.parallel = parallel
        self.num_devices = parallel.num_devices
        self._train = jax.jit(self._train_pure, donate_argnums=0, out_shardings=parallel.replicated())

    def train(self, batch):
        return super().train(self.parallel.place(numeric_inputs(batch)))

    def _set_batch_norm_statistics(self, layers, values):
        super()._set_batch_norm_statistics(layers, values)
        self._state = None  # re-read from the variables, which keep their replicated layout


def make_steps(models, optimizer, train_forward, eval_forward=None, loss_scale=False):
    """The steps of the active Keras backend (see the module docstring); data-parallel
    ones when ``training.distribute`` is set up (a GPU_ID list)."""
    parallel = distribute.active()
    if backend() == "jax":
        if parallel is not None:
            return JaxDataParallelSteps(models, optimizer, train_forward, eval_forward, parallel=parallel)
        return JaxSteps(models, optimizer, train_forward, eval_forward)
    if backend() == "tensorflow":
        if parallel is not None:
            return TensorFlowMirroredSteps(models, optimizer, train_forward, eval_forward, loss_scale=loss_scale,
                                           parallel=parallel)
        return TensorFlowSteps(models, optimizer, train_forward, eval_forward, loss_scale=loss_scale)
    raise RuntimeError(f"Keras backend {backend()!r} is not supported; use KERAS_BACKEND=tensorflow or jax")
