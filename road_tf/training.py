"""The training engine shared by every stage: strategy, optimizer, datasets, fit with resume.

A stage is killed-and-restarted safe: it checkpoints model and optimizer (whose step counter is
the data position: the dataset is a seeded, repeated shuffle that is fast-forwarded by the
number of finished steps) every `checkpoint_every` steps, and a rerun of the same command
restores the newest checkpoint and continues to the same final weights.
"""

import logging
import math
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from road_tf.errors import ConfigError, RoadError

_STRATEGY = {}


def get_strategy(train_config):
    """The `tf.distribute` strategy named by `train.strategy` (created once per process)."""
    kind = train_config.strategy
    if kind in _STRATEGY:
        return _STRATEGY[kind]
    if kind == "default":
        strategy = tf.distribute.get_strategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=train_config.tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    _STRATEGY[kind] = strategy
    return strategy


def set_precision(train_config):
    """Applies `train.mixed_precision` as the global Keras dtype policy."""
    keras.mixed_precision.set_global_policy(train_config.mixed_precision)


def make_optimizer(learning_rate, total_steps, warmup_fraction, weight_decay):
    """AdamW with linear warm-up then linear decay to 0 over `total_steps`.

    No gradient clipping: Keras clips each replica's partial gradient before the cross-replica
    sum, which would make results depend on the number of replicas.
    """
    warmup = int(total_steps * warmup_fraction)
    decay = keras.optimizers.schedules.PolynomialDecay(learning_rate, max(total_steps - warmup, 1), 0.0)
    schedule = WarmupThen(learning_rate, warmup, decay) if warmup else decay
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=1e-6)


@keras.saving.register_keras_serializable(package="road_tf")
class WarmupThen(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then `after(step - warmup_steps)`."""

    def __init__(self, peak, warmup_steps, after):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.after = after

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * step / float(self.warmup_steps)
        return tf.where(step < self.warmup_steps, warm, self.after(step - self.warmup_steps))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "after": keras.saving.serialize_keras_object(self.after)}


def dense_gradients(gradients):
    """Converts `tf.IndexedSlices` gradients (embeddings) to dense tensors.

    Keras' Adam updates a sparse gradient's rows differently from a dense one, and under
    MirroredStrategy the cross-replica all-gathers of sparse gradients were seen to pair up out
    of order between replicas ("Shape mismatch in the collective instance"). Dense gradients give
    the same update on any number of replicas.
    """
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]


def train_dataset(features, batch_size, seed, skip_batches=0):
    """Seeded, reshuffled-every-epoch batches of in-memory features, starting at batch `skip_batches`.

    Batch b is a pure function of (seed, b): epoch e = b // (N // batch_size) uses the stateless
    permutation of seed [seed, e]. So the order does not depend on TF's global seed, and a
    resumed run continues exactly where the killed one stopped.

    Args:
        features: dict of arrays with the same first dimension N.
    Returns:
        tf.data.Dataset of dicts of [batch_size, ...] tensors, infinite.
    """
    rows = len(next(iter(features.values())))
    if rows < batch_size:
        raise ConfigError(f"train.batch_size: {batch_size} is larger than the {rows} training rows")
    per_epoch = rows // batch_size
    tensors = {key: tf.constant(value) for key, value in features.items()}

    def batch_at(index):
        epoch, position = index // per_epoch, index % per_epoch
        order = tf.random.experimental.stateless_shuffle(tf.range(rows, dtype=tf.int64),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        chosen = order[position * batch_size:(position + 1) * batch_size]
        return {key: tf.gather(value, chosen) for key, value in tensors.items()}

    return tf.data.Dataset.range(skip_batches, 2**62).map(batch_at).prefetch(2)


def eval_dataset(features, batch_size):
    """In-order batches of features (last batch kept)."""
    return tf.data.Dataset.from_tensor_slices(features).batch(batch_size).prefetch(2)


class _Checkpointer(keras.callbacks.Callback):
    """Saves model + optimizer at each epoch end (every `checkpoint_every` steps) and stops at `steps`."""

    def __init__(self, manager, steps):
        super().__init__()
        self.manager = manager
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=int(self.model.optimizer.iterations.numpy()))


def seed_states(model):
    """The state variables of `model`'s random seed generators (dropout masks), in a fixed order.

    Keras keeps them out of `tf.train.Checkpoint(model=...)`; without them a resumed run would
    draw its dropout masks from the start of the random sequence again.
    """
    return [variable for variable in model.non_trainable_variables if variable.path.endswith("seed_generator_state")]


def fit(model, features, train_config, steps, stage_dir, extra_callbacks=(), make_dataset=None):
    """Trains `model` (already built and compiled in the strategy scope) for `steps` steps.

    The data is a seeded shuffle of `features` in `train.batch_size` batches or, when given,
    `make_dataset(finished_steps)`: a dataset whose first element is the batch of step
    `finished_steps` (e.g. the multi-task stage's per-step task slots).

    Resumes from the newest checkpoint in `stage_dir/checkpoints` (weights, optimizer and the
    dropout seed states, so a resumed run equals an uninterrupted one). Logs to TensorBoard under
    `stage_dir/logs`. Returns the Keras History (empty when the stage had already finished).
    """
    stage_dir = pathlib.Path(stage_dir)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, seed_states=seed_states(model))
    manager = tf.train.CheckpointManager(checkpoint, str(stage_dir / "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        logging.info("resumed %s from %s", stage_dir.name, manager.latest_checkpoint)
    done = int(model.optimizer.iterations.numpy())
    if done >= steps:
        return None
    every = train_config.checkpoint_every
    dataset = (make_dataset(done) if make_dataset
               else train_dataset(features, train_config.batch_size, train_config.seed, skip_batches=done))
    callbacks = [
        _Checkpointer(manager, steps),
        keras.callbacks.TensorBoard(str(stage_dir / "logs"), update_freq=max(every // 4, 1)),
        *extra_callbacks,
        StopOnNonFinite(stage_dir.name),
    ]
    return model.fit(
        dataset,
        initial_epoch=done // every,
        epochs=math.ceil(steps / every),
        steps_per_epoch=every,
        callbacks=callbacks,
        verbose=1 if os.environ.get("ROAD_TF_QUIET") is None else 2,
    )


def predict_outputs(model, features, keys, batch_size):
    """Runs `model` (a task model) over features; returns {key: np.ndarray} for `keys`."""
    from road_tf.data.features import MODEL_INPUTS

    inputs = {key: features[key] for key in MODEL_INPUTS}
    results = {key: [] for key in keys}
    infer = tf.function(lambda x: {key: model(x, training=False)[key] for key in keys})
    for batch in eval_dataset(inputs, batch_size):
        out = infer(batch)
        for key in keys:
            results[key].append(out[key].numpy())
    return {key: np.concatenate(values) if values else np.zeros((0,)) for key, values in results.items()}


def first_non_finite(variables):
    """The path of the first variable holding a NaN or an infinity, or None when all are finite."""
    for variable in variables:
        if not np.isfinite(np.asarray(variable.numpy(), dtype=np.float64)).all():
            return variable.path
    return None


def check_finite_weights(model):
    """Raises RoadError when a weight of `model` holds a NaN or an infinity (such a model must not be exported)."""
    bad = first_non_finite(model.weights)
    if bad is not None:
        raise RoadError(f"model {model.name}: weight {bad} holds NaN or infinite values; the model is not usable "
                        "(its training diverged: lower the learning rate)")


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training with a one-line RoadError at the first step whose loss or trained weights are not finite.

    A non-finite gradient puts NaN or infinity into the weights the optimizer updates, so checking
    the trainable weights after each step catches it even when that step's loss was finite. The
    check runs before the epoch-end checkpoint, so no non-finite weights are saved.

    Args:
        stage: the stage's name ("student", "multitask", ...), for the message and to name the
            learning-rate setting that applies to it.
    """

    def __init__(self, stage):
        super().__init__()
        self.stage = stage
        self.all_finite = None

    def on_train_begin(self, logs=None):
        variables = self.model.trainable_variables
        self.all_finite = tf.function(lambda: tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if math.isfinite(loss) and bool(self.all_finite()):
            return
        what = (f"the loss is {loss}" if not math.isfinite(loss) else
                f"weight {first_non_finite(self.model.trainable_variables)} is not finite (a non-finite gradient)")
        setting = "multitask.learning_rate" if self.stage == "multitask" else "train.learning_rate"
        optimizer = self.model.optimizer
        raise RoadError(f"stage {self.stage}: training diverged at step {int(optimizer.iterations.numpy())}: {what}; "
                        f"the learning rate there was {float(optimizer.learning_rate):.3g}: lower {setting} "
                        "(or check train.mixed_precision and the data)")
