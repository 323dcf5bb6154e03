"""The training engine shared by every stage: strategy, optimizer, datasets, fit with resume.

A stage is killed-and-restarted safe: it checkpoints model and optimizer (whose step counter is
the data position: the dataset is a seeded, repeated shuffle that is fast-forwarded by the
number of finished steps) every `checkpoint_every` steps, and a rerun of the same command
restores the newest checkpoint (an older one, with a warning, when the newest is damaged) and
continues to the same final weights.
"""

import hashlib
import json
import logging
import math
import os
import pathlib
import platform
import re
import shutil
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from road_tf.cluster import cluster_task, is_chief, usable_cores, worker_path
from road_tf.data.features import PADDING_MASK
from road_tf.data.json_files import read_json
from road_tf.errors import (ConfigError, DataError, RoadError, decimal_integer, error_reason, first_line,
                            is_finite_number)
from road_tf.files import save_weights, write_atomic

EVALS_FILE = "evals.json"
# With train.trim_padding, rows are grouped by length within runs of this many batches.
LENGTH_POOL_BATCHES = 50
BEST_WEIGHTS = "best.weights.h5"
CHECKPOINT_STATE = "checkpoint"
"""The file in which `tf.train.CheckpointManager` records a stage's checkpoints, the newest first."""
CHECKPOINT_FILE = re.compile(r"ckpt-([0-9]+)\.(index|data-[0-9]{5}-of-[0-9]{5})")
"""The name of a file of checkpoint n (the manager saves them as `ckpt-<n>.index` and data shards)."""
RESTORE_ERRORS = (tf.errors.OpError, IndexError)
"""What restoring a damaged checkpoint raises: TensorFlow's errors (a truncated or garbage index, a
checksum that does not match, a missing file), or IndexError from its reader for a truncated data
shard ("Read less bytes than requested")."""

_STRATEGY = {}
# A TPU address that does not answer within this many seconds fails the run instead of hanging it.
TPU_CONNECT_TIMEOUT = 30
# Errors TensorFlow raises in a worker when a peer of its cluster stops answering.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)


def get_strategy(train_config):
    """The `tf.distribute` strategy named by `train.strategy` (created once per process).

    multi_worker reads the cluster from TF_CONFIG; tpu connects to `train.tpu_address`.

    Raises:
        ConfigError: multi_worker without a valid TF_CONFIG, or a TPU that does not answer within
            TPU_CONNECT_TIMEOUT seconds.
    """
    kind = train_config.strategy
    if kind not in _STRATEGY:
        if kind == "default":
            _STRATEGY[kind] = tf.distribute.get_strategy()
        elif kind == "mirrored":
            _STRATEGY[kind] = tf.distribute.MirroredStrategy()
        elif kind == "multi_worker":
            cluster_task()
            _STRATEGY[kind] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            _STRATEGY[kind] = tpu_strategy(train_config.tpu_address)
    return _STRATEGY[kind]


def tpu_strategy(address):
    """TPUStrategy on the TPU at `address` (a name, grpc://host:port, or "local").

    Raises:
        ConfigError: the TPU does not answer within TPU_CONNECT_TIMEOUT seconds, or fails to start.
    """
    result = {}

    def connect():
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            result["strategy"] = tf.distribute.TPUStrategy(resolver)
        except Exception as error:  # noqa: BLE001  (any failure of the TPU client is reported as one line)
            result["error"] = first_line(error) or type(error).__name__

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(TPU_CONNECT_TIMEOUT)
    if "strategy" in result:
        return result["strategy"]
    why = result.get("error", f"no answer within {TPU_CONNECT_TIMEOUT} s")
    raise ConfigError(f"train.tpu_address: cannot reach the TPU at {address!r}: {why}")


def set_precision(train_config):
    """Applies `train.mixed_precision` as the global Keras dtype policy."""
    keras.mixed_precision.set_global_policy(train_config.mixed_precision)


def _cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows, else "unknown"."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _thread_count(configured, variable, default):
    """TensorFlow's thread-pool size: `tf.config`'s setting, else the environment variable, else `default`."""
    if configured:
        return configured
    try:
        number = decimal_integer(os.environ.get(variable, ""))
    except OverflowError:
        number = None
    return number if number is not None and number > 0 else default


def environment():
    """What a run's numbers depend on beyond its config -> {versions, cpu, cores, threads, policy}.

    Float32 training on CPUs reproduced to every digit across an Intel and an AMD CPU with 2
    intra-op threads each, but not across thread counts (README, "Reproducing the numbers"), so a
    run records them beside its metrics.
    """
    cores = usable_cores()
    threading_config = tf.config.threading
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "cpu": _cpu_model(), "cores": cores,
            "intra_op_threads": _thread_count(threading_config.get_intra_op_parallelism_threads(),
                                              "TF_NUM_INTRAOP_THREADS", cores),
            "inter_op_threads": _thread_count(threading_config.get_inter_op_parallelism_threads(),
                                              "TF_NUM_INTEROP_THREADS", cores),
            "accelerators": [device.device_type for device in tf.config.list_logical_devices()
                             if device.device_type != "CPU"],
            "dtype_policy": keras.mixed_precision.global_policy().name}


def make_optimizer(learning_rate, total_steps, warmup_fraction, weight_decay, lr_scales=None):
    """AdamW with linear warm-up then linear decay to 0 over `total_steps`.

    `lr_scales` ({variable path: factor}, `task_model.layer_lr_scales`) scales the rate of the
    variables it names (layer-wise decay); empty or None trains every variable at one rate.
    No gradient clipping: Keras clips each replica's partial gradient before the cross-replica
    sum, which would make results depend on the number of replicas. Under the mixed_float16
    policy it comes loss-scaled (`CountingLossScaleOptimizer`).
    """
    warmup = int(total_steps * warmup_fraction)
    decay = keras.optimizers.schedules.PolynomialDecay(learning_rate, max(total_steps - warmup, 1), 0.0)
    schedule = WarmupThen(learning_rate, warmup, decay) if warmup else decay
    if lr_scales:
        optimizer = LayerwiseAdamW(lr_scales, learning_rate=schedule, weight_decay=weight_decay, epsilon=1e-6)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, epsilon=1e-6)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return CountingLossScaleOptimizer(optimizer)
    return optimizer


@keras.saving.register_keras_serializable(package="road_tf")
class CountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scaling, except that a step it skips (scaled gradients not finite) still
    advances `iterations`.

    Keras' own leaves `iterations` where it was, though the step's batch was used up: a stage runs,
    checkpoints and resumes by `iterations` (the position in its data), so it ended short of
    `train.steps`, its learning rate never reached 0, and a resumed run re-read batches. Skipped
    steps now count as steps that changed no weight.
    """

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.inner_optimizer.iterations.assign_add(1)


@keras.saving.register_keras_serializable(package="road_tf")
class LayerwiseAdamW(keras.optimizers.Adam):
    """AdamW whose step for each variable is scaled by a fixed factor (layer-wise learning rates).

    Args:
        lr_scales: {variable path: factor}; variables not named train at factor 1.
        weight_decay: decoupled weight decay, as AdamW's, applied at each variable's scaled rate.
    Other keyword arguments are Adam's.
    """

    def __init__(self, lr_scales, weight_decay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.lr_scales = dict(lr_scales)
        self.decoupled_weight_decay = weight_decay
        self._scales = []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._scales = [float(self.lr_scales.get(variable.path, 1.0)) for variable in var_list]

    def update_step(self, gradient, variable, learning_rate):
        rate = keras.ops.cast(learning_rate, variable.dtype) * self._scales[self._get_variable_index(variable)]
        if self.decoupled_weight_decay:
            self.assign_sub(variable, variable * keras.ops.cast(self.decoupled_weight_decay, variable.dtype) * rate)
        super().update_step(gradient, variable, rate)

    def get_config(self):
        return {**super().get_config(), "lr_scales": self.lr_scales, "weight_decay": self.decoupled_weight_decay}


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


def check_batch_size(features, batch_size):
    """The number of rows of `features` (a dict of arrays); ConfigError naming train.batch_size when
    they do not fill one batch of `batch_size`."""
    rows = len(next(iter(features.values())))
    if rows < batch_size:
        raise ConfigError(f"train.batch_size: {batch_size} is larger than the {rows} training rows")
    return rows


def train_dataset(features, batch_size, seed, skip_batches=0, trim_padding=0):
    """Seeded, reshuffled-every-epoch batches of in-memory features, starting at batch `skip_batches`.

    Batch b is a pure function of (seed, b): epoch e = b // (N // batch_size) uses the stateless
    permutation of seed [seed, e]. So the order does not depend on TF's global seed, and a
    resumed run continues exactly where the killed one stopped.

    With `trim_padding` = m > 0 (features with a `padding_mask`), each run of LENGTH_POOL_BATCHES
    batches of the epoch's permutation is sorted by row length and cut into batches, the epoch's
    batches are shuffled (seed [seed, -1 - e]), and each batch keeps only its first
    ceil(longest row / m) * m positions: the rest are padding in every row of the batch.

    Args:
        features: dict of arrays with the same first dimension N; sequence features [N, S, ...].
    Returns:
        tf.data.Dataset of dicts of [batch_size, ...] tensors, infinite; with trim_padding,
        sequence features are [batch_size, S_b, ...] with S_b <= S a multiple of m (or S).
    """
    rows = check_batch_size(features, batch_size)
    per_epoch = rows // batch_size
    tensors = {key: tf.constant(value) for key, value in features.items()}
    lengths = None
    if trim_padding and PADDING_MASK in features:
        width = features[PADDING_MASK].shape[1]
        lengths = tf.constant(np.sum(features[PADDING_MASK], axis=1), tf.int64)
        sequence_keys = [key for key, value in features.items() if value.ndim > 1 and value.shape[1] == width]

    def epoch_order(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(rows, dtype=tf.int64),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        if lengths is None:
            return order
        order = order[:per_epoch * batch_size]
        pool = tf.range(per_epoch * batch_size, dtype=tf.int64) // (LENGTH_POOL_BATCHES * batch_size)
        grouped = tf.gather(order, tf.argsort(pool * (width + 1) + tf.gather(lengths, order), stable=True))
        batches = tf.random.experimental.stateless_shuffle(
            tf.range(per_epoch, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), -1 - epoch]))
        return tf.reshape(tf.gather(tf.reshape(grouped, [per_epoch, batch_size]), batches), [-1])

    def batch_at(index):
        epoch, position = index // per_epoch, index % per_epoch
        chosen = epoch_order(epoch)[position * batch_size:(position + 1) * batch_size]
        batch = {key: tf.gather(value, chosen) for key, value in tensors.items()}
        if lengths is not None:
            longest = tf.reduce_max(tf.gather(lengths, chosen))
            kept = tf.minimum((longest + trim_padding - 1) // trim_padding * trim_padding, width)
            batch.update({key: batch[key][:, :kept] for key in sequence_keys})
        return batch

    return tf.data.Dataset.range(skip_batches, 2**62).map(batch_at).prefetch(2)


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


def seed_stage(seed, role):
    """Seeds Python, NumPy, TensorFlow and Keras from (`seed`, `role`) before a stage builds its model.

    A stage's initial weights and dropout masks then depend on the run's `train.seed` and the
    stage's role ("multitask", "teacher_0", "student") only, not on which stages ran, were skipped
    as finished, or were resumed before it. Roles are strings, the seed a 31-bit integer.
    """
    digest = hashlib.sha256(f"{seed}/{role}".encode()).digest()
    keras.utils.set_random_seed(int.from_bytes(digest[:4], "big") % 2**31)


def seed_states(model):
    """The state variables of `model`'s random seed generators (dropout masks), in a fixed order.

    Keras keeps them out of `tf.train.Checkpoint(model=...)`; without them a resumed run would
    draw its dropout masks from the start of the random sequence again.
    """
    return [variable for variable in model.non_trainable_variables if variable.path.endswith("seed_generator_state")]


def time_left(seconds):
    """`seconds` (>= 0) as the progress line shows a stage's remaining time: "<1 min", "38 min", "1 h 05 min"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "<1 min"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class StageProgress(keras.callbacks.Callback):
    """One console line per stretch of steps: `[stage] step 120/400  loss 2.31  1.20 s/step  6 min left`
    (the time left at the mean rate of this process's steps so far; no time on the line of its
    first step, which has none yet, and none left on the last line).

    Args:
        stage: the stage's name; steps: its total steps; lines: about how many lines a stage prints.
    """

    def __init__(self, stage, steps, lines=20, stream=None):
        super().__init__()
        self.stage, self.steps = stage, steps
        self.every = max(1, steps // lines)
        self.stream = stream or sys.stdout
        self.started, self.first_step = None, None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.started is None:
            self.started, self.first_step = time.monotonic(), step
        if step % self.every and step < self.steps:
            return
        loss = (logs or {}).get("loss")
        loss_text = f"  loss {float(loss):.4f}" if loss is not None else ""
        timing = ""
        if step > self.first_step:  # the first step this process took has no step time yet
            rate = (time.monotonic() - self.started) / (step - self.first_step)
            left = f"  {time_left(rate * (self.steps - step))} left" if step < self.steps else ""
            timing = f"  {rate:.2f} s/step{left}"
        print(f"  [{self.stage}] step {step}/{self.steps}{loss_text}{timing}", file=self.stream, flush=True)


def evaluation_dir(stage_dir, train_config):
    """The folder where this process records a stage's evaluations (`PeriodicEvaluation`).

    The stage folder on the chief. Another multi-worker task evaluates too (every worker must keep
    the same best weights) but records into a private folder (`worker_path`), which starts with
    copies of the chief's `evals.json` and `best.weights.h5` of the stage so far, so a resumed stage
    knows its best step on every worker. The chief writes them only at steps every worker takes
    part in, so they do not change before the stage trains on.
    """
    stage_dir = pathlib.Path(stage_dir)
    own = worker_path(stage_dir, train_config)
    if not is_chief(train_config):
        own.mkdir(parents=True, exist_ok=True)
        for name in (EVALS_FILE, BEST_WEIGHTS):
            if (stage_dir / name).is_file():
                shutil.copyfile(stage_dir / name, own / name)
            else:  # records of an earlier try of the stage in this process, which the chief does not hold
                (own / name).unlink(missing_ok=True)
    return own


class PeriodicEvaluation(keras.callbacks.Callback):
    """Scores the model on the dev split every `every` steps and at the last step; keeps the best weights.

    Each evaluation is logged to TensorBoard (`logs/eval`), to the console and to `evals.json` in
    `stage_dir` (`evaluation_dir`); with `keep="best"` the weights of the best score so far are
    written to `best.weights.h5`. Both files survive a kill, so a resumed stage still knows its best step.
    Under MultiWorkerMirroredStrategy every worker evaluates, but each ranks the evaluations by the
    chief's score (`chief_value`): workers on different CPUs may round a score differently, and
    one that kept other best weights would train on from other weights than its peers.

    Args:
        kept: the model whose weights are evaluated and kept (the student, not its trainer).
        evaluate: () -> metrics dict of `kept`'s current weights.
        metric: the key of `evaluate`'s dict to maximise (e.g. "f1").
        every: steps between evaluations; steps: the stage's last step.
        keep: "best" or "last".
    """

    def __init__(self, kept, evaluate, metric, every, steps, stage_dir, keep):
        super().__init__()
        self.kept = kept
        self.evaluate, self.metric, self.every, self.steps, self.keep = evaluate, metric, every, steps, keep
        self.stage_dir = pathlib.Path(stage_dir)
        self.history = read_evals(self.stage_dir)
        self.writer = None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        last = self.history[-1]["step"] if self.history else 0
        if step > last and (step % self.every == 0 or step >= self.steps):
            self._evaluate(step)

    def _evaluate(self, step):
        metrics = self.evaluate()
        value = chief_value(self.model.distribute_strategy, float(metrics[self.metric]))
        best = max((entry["value"] for entry in self.history), default=None)
        self.history.append({"step": step, "value": value, "metrics": metrics})
        if self.keep == "best" and (best is None or value > best):
            save_weights(self.kept, self.stage_dir / BEST_WEIGHTS)
        write_atomic(self.stage_dir / EVALS_FILE, json.dumps(self.history, indent=2) + "\n")
        if self.writer is None:
            self.writer = tf.summary.create_file_writer(str(self.stage_dir / "logs" / "eval"))
        with self.writer.as_default(step=step):
            for key in ("exact", "f1", "accuracy"):
                if key in metrics:
                    tf.summary.scalar(f"dev_{key}", metrics[key])
        self.writer.flush()
        shown = "  ".join(f"{key} {metrics[key]:.2f}" for key in ("exact", "f1", "accuracy") if key in metrics)
        print(f"  [{self.stage_dir.name}] dev at step {step}: {shown}", flush=True)


def chief_value(strategy, value):
    """The float `value` as the chief computed it, on every worker of a MultiWorkerMirroredStrategy
    (an all-reduce in which only the first replica counts); `value` itself under other strategies.
    Every worker must call it at the same point, as with any collective."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return value

    def replica_share():
        first = tf.distribute.get_replica_context().replica_id_in_sync_group == 0
        return tf.where(first, tf.constant(value, tf.float64), tf.constant(0.0, tf.float64))

    return float(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_share), axis=None))


def read_evals(stage_dir):
    """The evaluations a stage logged so far (`evals.json`), oldest first; [] when none.

    Raises:
        DataError: naming the file, when it is not the list of {step, value, ...} a stage writes.
    """
    path = pathlib.Path(stage_dir) / EVALS_FILE
    if not path.is_file():
        return []
    history = read_json(path)
    if not (isinstance(history, list) and all(
            isinstance(entry, dict) and is_finite_number(entry.get("step")) and is_finite_number(entry.get("value"))
            for entry in history)):
        raise DataError(path, "not the evaluations a stage writes (a JSON list of {step, value, metrics}); delete "
                              "the stage's folder to train the stage again")
    return history


def best_eval(stage_dir):
    """The logged evaluation with the highest value (the earliest on ties), or None."""
    history = read_evals(stage_dir)
    return max(history, key=lambda entry: (entry["value"], -entry["step"])) if history else None


def drop_checkpoints(stage_dir):
    """Removes a finished stage's intermediate checkpoints (its weights files stay)."""
    shutil.rmtree(pathlib.Path(stage_dir) / "checkpoints", ignore_errors=True)


def checkpoint_state(directory):
    """The state `tf.train.CheckpointManager` recorded in `directory` (CHECKPOINT_STATE), or None when
    there is none or TensorFlow cannot read it (garbage, empty, not UTF-8, no newest checkpoint named)."""
    try:
        return tf.train.get_checkpoint_state(str(directory))
    except ValueError:  # UnicodeDecodeError too
        return None


def checkpoint_prefixes(directory):
    """The path prefixes of the checkpoints with a file in `directory` (`ckpt-<n>`), the lowest n first
    (none when `directory` is not a folder)."""
    numbers = set()
    if directory.is_dir():
        numbers = {int(match.group(1)) for match in map(CHECKPOINT_FILE.fullmatch, os.listdir(directory)) if match}
    return [str(directory / f"ckpt-{number}") for number in sorted(numbers)]


def checkpoints_to_try(directory):
    """The checkpoints (path prefixes) to resume from, in order: the one `directory`'s state file names,
    then every other `ckpt-<n>` with a file there, the highest n first.

    Logs a warning when the state file cannot be read or names a checkpoint that is not there.
    """
    found = checkpoint_prefixes(directory)[::-1]
    state = checkpoint_state(directory)
    if state is None:
        if (directory / CHECKPOINT_STATE).exists():
            logging.warning("%s is not a checkpoint state TensorFlow can read; looking for the newest checkpoint "
                            "among the ckpt-* files beside it", directory / CHECKPOINT_STATE)
        return found
    named = state.model_checkpoint_path
    if named not in found:
        logging.warning("%s names checkpoint %s, which is not there; looking for the newest checkpoint among the "
                        "ckpt-* files beside it", directory / CHECKPOINT_STATE, named)
        return found
    return [named] + [prefix for prefix in found if prefix != named]


def restore_newest(checkpoint, directory):
    """Restores `checkpoint` from the newest checkpoint in `directory` that restores -> its path
    prefix, or None when the folder holds no checkpoint.

    A checkpoint that fails to restore (a truncated, garbage or missing index or data file) is
    skipped with a warning naming its files, for the next of `checkpoints_to_try`.

    Raises:
        DataError: naming `directory`, when it holds checkpoint files but none of them restores.
    """
    failed = []
    for prefix in checkpoints_to_try(directory):
        try:
            checkpoint.restore(prefix).expect_partial()
            return prefix
        except RESTORE_ERRORS as error:
            reason = error_reason(error)
            name = pathlib.Path(prefix).name
            files = ", ".join(str(path) for path in sorted(directory.glob(f"{name}.*")))
            logging.warning("skipping checkpoint %s, which cannot be restored (%s): one of its files is damaged or "
                            "missing: %s", name, reason, files)
            failed.append(f"{name} ({reason})")
    if failed:
        raise DataError(directory, f"no checkpoint here can be restored: {'; '.join(failed)}; delete this folder to "
                                   "train the stage again from step 0 (or start a new run with --new)")
    return None


def checkpoint_manager(checkpoint, directory, max_to_keep):
    """A `tf.train.CheckpointManager` saving `checkpoint` into `directory`, keeping `max_to_keep`.

    A state file there that TensorFlow cannot read (`checkpoint_state`) is written anew first, naming
    the checkpoints beside it (`checkpoint_prefixes`), or deleted when there are none: the manager
    would fail on it or ignore it, and then never delete those older checkpoints as it saves.
    """
    directory = pathlib.Path(directory)
    state = directory / CHECKPOINT_STATE
    if state.is_file() and checkpoint_state(directory) is None:
        found = checkpoint_prefixes(directory)
        if found:
            now = time.time()  # the manager deletes only checkpoints stamped after the last preserved time
            tf.compat.v1.train.update_checkpoint_state(
                str(directory), found[-1], found, all_model_checkpoint_timestamps=[now] * len(found),
                last_preserved_timestamp=now - 1)
        else:
            state.unlink()
    return tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)


def fit(model, features, train_config, steps, stage_dir, extra_callbacks=(), make_dataset=None):
    """Trains `model` (already built and compiled in the strategy scope) for `steps` steps.

    The data is a seeded shuffle of `features` in `train.batch_size` batches or, when given,
    `make_dataset(finished_steps)`: a dataset whose first element is the batch of step
    `finished_steps` (e.g. the multi-task stage's per-step task slots).

    Resumes from the newest checkpoint in `stage_dir/checkpoints` that restores (`restore_newest`:
    weights, optimizer and the dropout seed states, so a resumed run equals an uninterrupted one).
    Logs to TensorBoard under `stage_dir/logs`. Under multi_worker every worker resumes from the
    chief's checkpoints, and only the chief writes checkpoints and logs into `stage_dir`. Returns
    the Keras History (None when the stage had already finished).

    Raises:
        DataError: `stage_dir/checkpoints` holds checkpoints but none of them restores.
        RoadError: under multi_worker, when a peer worker stops answering.
    """
    stage_dir = pathlib.Path(stage_dir)
    checkpoints = stage_dir / "checkpoints"
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, seed_states=seed_states(model))
    restored = restore_newest(checkpoint, checkpoints)
    if restored:
        logging.info("resumed %s from %s", stage_dir.name, restored)
    done = int(model.optimizer.iterations.numpy())
    if done >= steps:
        return None
    every = train_config.checkpoint_every
    dataset = (make_dataset(done) if make_dataset
               else train_dataset(features, train_config.batch_size, train_config.seed, skip_batches=done,
                                trim_padding=train_config.trim_padding))
    chief = is_chief(train_config)
    if train_config.strategy == "multi_worker":
        _fit_across_workers(model, dataset.element_spec)
    manager = (checkpoint_manager(checkpoint, checkpoints, max_to_keep=2) if chief
               else checkpoint_manager(checkpoint, worker_path(checkpoints, train_config), max_to_keep=1))
    callbacks = [_Checkpointer(manager, steps), StopOnNonFinite(stage_dir.name), StageProgress(stage_dir.name, steps),
                 *extra_callbacks]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(str(stage_dir / "logs"), update_freq=max(every // 4, 1)))
    try:
        return model.fit(
            dataset,
            initial_epoch=done // every,
            epochs=math.ceil(steps / every),
            steps_per_epoch=every,
            callbacks=callbacks,
            verbose=0,
        )
    except PEER_ERRORS as error:
        if train_config.strategy != "multi_worker":
            raise
        reached = int(model.optimizer.iterations.numpy())
        raise RoadError(f"stage {stage_dir.name}: a peer worker stopped answering near step {reached} "
                        f"({type(error).__name__}: {first_line(error, 300)}); restart every worker to resume from the "
                        f"last checkpoint") from None


def _fit_across_workers(model, element_spec):
    """Lets Keras 3.12's `fit` run `model` under MultiWorkerMirroredStrategy (tensorflow#72388).

    Across workers, Keras reduces every value `train_step` returns with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on the scalar losses every train step
    logs ("Invalid reduction dimension 0 for input with 0 dimensions"); here each is returned as
    a [1] vector, whose reduction is the mean over replicas. And Keras builds the model before
    `fit` by averaging one batch across workers in a single `strategy.reduce`, which fails on a
    dict of tensors (issue 12's crash); symbolic inputs need only shapes and dtypes, so the model
    is built from the dataset's element spec instead.
    """
    train_step = model.train_step

    def train_step_with_vector_logs(data):
        return {name: tf.reshape(value, [1]) for name, value in train_step(data).items()}

    def build(iterator=None, data_batch=None):
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=element_spec)

    model.train_step = train_step_with_vector_logs
    model._maybe_symbolic_build = build


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
    check runs before the epoch-end checkpoint, so no non-finite weights are saved. A non-finite loss
    at the first step was computed before any update, so its message does not blame the learning rate.

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
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        if not math.isfinite(loss) and step == 1:
            raise RoadError(f"stage {self.stage}: the loss of its first step is {loss}, computed from the weights it "
                            "started from before any update, so not the learning rate's doing: check the settings "
                            "that scale the loss (e.g. distillation.*), train.mixed_precision and the data")
        what = (f"the loss is {loss}" if not math.isfinite(loss) else
                f"weight {first_non_finite(self.model.trainable_variables)} is not finite (a non-finite gradient)")
        setting = "multitask.learning_rate" if self.stage == "multitask" else "train.learning_rate"
        raise RoadError(f"stage {self.stage}: training diverged at step {step}: {what}; "
                        f"the learning rate there was {float(optimizer.learning_rate):.3g}: lower {setting} "
                        "(or check train.mixed_precision and the data)")
