"""Multi-task pre-training of a shared encoder with k-task gradient averaging (ROaD, section 5).

Each optimizer step trains on k tasks chosen by a `TaskSampler`: the global batch B is split into
k passes ("slots") of B/k rows, one task per slot; each slot gets its own forward/backward pass
through the shared encoder and that task's head, and the optimizer applies the MEAN of the k
slots' gradients once. k = 1 is plain multi-task training (one task per step).

Data layout. The dataset yields, per step, {"slot_0": slot, ..., "slot_{k-1}": slot}; every
slot has the same keys whatever its task: the model inputs, every label key
(`start_positions`/`end_positions` of span tasks, `label` of classification tasks, zeros where
the task has no such label) and `task_id`, the task's index in the trainer's task order, repeated
over the rows. A slot's pass picks its loss with `tf.switch_case` on that index, so one traced
graph serves every combination of tasks, and the k passes call one `tf.function`, so the model
is traced once whatever k is. Every head's logits are computed in every pass (heads are cheap
next to the encoder); heads of tasks absent from a step get zero gradients.
"""

import dataclasses
import functools
import logging
import pathlib

import keras
import numpy as np
import tensorflow as tf

from road_tf import cluster, training
from road_tf.config import ENCODER_WEIGHTS
from road_tf.data.features import END, LABEL, MODEL_INPUTS, START
from road_tf.errors import ConfigError
from road_tf.files import save_weights
from road_tf.models.task_model import build_model, encoder_of, layer_lr_scales
from road_tf.multitask.samplers import TaskSampler
from road_tf.tasks import get_task, load_task_data

TASK_ID = "task_id"
LABEL_KEYS = (START, END, LABEL)


def slot_name(index):
    """Dataset key of slot `index` of a step."""
    return f"slot_{index}"


def slot_features(features, task_index):
    """One task's features in the common slot layout.

    Args:
        features: dict of arrays over N rows with the model inputs ([N, S]) and the task's own
            label keys ([N]); other keys (e.g. QA offsets) are dropped.
        task_index: the task's index in the trainer's task order.
    Returns:
        dict {key: int32 array} for the model inputs, LABEL_KEYS and TASK_ID; absent labels are zeros [N].
    """
    rows = len(features[MODEL_INPUTS[0]])
    columns = {key: np.asarray(features[key], np.int32) for key in MODEL_INPUTS}
    for key in LABEL_KEYS:
        columns[key] = np.asarray(features[key], np.int32) if key in features else np.zeros(rows, np.int32)
    columns[TASK_ID] = np.full(rows, task_index, np.int32)
    return columns


def step_dataset(task_features, sampler, global_batch_size, seed, start_step, stop_step):
    """The per-step slot batches of steps start_step..stop_step-1.

    Each task has its own repeated, seeded shuffle of B/k-row batches (`training.train_dataset`);
    a slot assigned to a task takes that task's next batch. Starting at `start_step` skips, in
    each task's stream, the batches the earlier steps consumed, so a resumed run sees exactly the
    batches an uninterrupted run would.

    Args:
        task_features: dict {task name: features}, with a key for every name of `sampler.names`.
        sampler: the `TaskSampler` (its k is the number of slots).
        global_batch_size: B, rows per optimizer step over all slots (a multiple of k).
        seed: int; task i's stream is shuffled with seed + i.
    Returns:
        finite tf.data.Dataset of {slot_name(j): {key: [B/k, ...] int32}} for j < k.
    """
    k = sampler.k
    pass_batch = global_batch_size // k
    consumed = sampler.counts(0, start_step)
    streams = [
        training.train_dataset(slot_features(task_features[name], index), pass_batch, seed + index,
                               skip_batches=consumed[name])
        for index, name in enumerate(sampler.names)
    ]
    choices = tf.data.Dataset.from_tensor_slices(sampler.plan(start_step, stop_step).ravel().astype(np.int64))
    slots = tf.data.Dataset.choose_from_datasets(streams, choices)

    def split(batch):
        return {slot_name(j): {key: value[j] for key, value in batch.items()} for j in range(k)}

    return slots.batch(k, drop_remainder=True).map(split).prefetch(2)


def accumulate_gradients(parts, variable):
    """Sum of one variable's gradients from several passes.

    Args:
        parts: list of tf.Tensor, tf.IndexedSlices or None (the variable was not reached).
        variable: the variable they belong to (for the shape and dtype of a zero gradient).
    Returns:
        tf.IndexedSlices (values and indices concatenated) when every present part is sparse,
        as embedding gradients are, so the sum never materialises a dense [vocab, dim] tensor;
        otherwise a dense tensor; zeros of the variable's shape when no part is present.
    """
    present = [part for part in parts if part is not None]
    if not present:
        return tf.zeros(variable.shape, dtype=variable.dtype)
    if len(present) == 1:
        return present[0]
    if all(isinstance(part, tf.IndexedSlices) for part in present):
        return tf.IndexedSlices(
            tf.concat([part.values for part in present], axis=0),
            tf.concat([part.indices for part in present], axis=0),
            present[0].dense_shape,
        )
    return tf.add_n([tf.convert_to_tensor(part) for part in present])


class MultiTaskTrainer(keras.Model):
    """Trains a multi-head task model with k-task gradient averaging; `call` is its forward pass.

    Args:
        task_model: from `build_task_model`, with one head per task of `tasks`.
        tasks: the task objects (`road_tf.tasks`); their order defines the task ids.
        k: slots (tasks) per optimizer step.
        global_batch_size: B, rows per step over all slots and replicas; a multiple of k.
    """

    def __init__(self, task_model, tasks, k, global_batch_size, **kwargs):
        super().__init__(**kwargs)
        if global_batch_size % k:
            raise ConfigError(f"multitask.batch_size: {global_batch_size} rows a step do not split into multitask.k={k} "
                              "equal passes")
        self.task_model = task_model
        self.tasks = tuple(tasks)
        self.task_names = tuple(task.name for task in self.tasks)
        self.k = k
        self.pass_batch_size = global_batch_size // k
        self.trackers = {"loss": keras.metrics.Mean(name="loss")}
        for name in self.task_names:
            self.trackers[f"{name}_loss"] = keras.metrics.Mean(name=f"{name}_loss")
            self.trackers[f"{name}_pick_rate"] = keras.metrics.Mean(name=f"{name}_pick_rate")
        # The wrapped task model is built and the trainer has no weights of its own; saying so
        # keeps Keras from building it by calling it on a step's slots, which `call` does not take.
        self.built = True
        self._slot_gradients = None

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Traced anew per compile: a traced pass holds the optimizer's loss scaling.
        self._slot_gradients = tf.function(self.slot_gradients)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.task_model({key: inputs[key] for key in MODEL_INPUTS}, training=training)

    def pass_loss(self, slot, training=True):
        """One slot's forward pass and loss under its own task's head.

        Args:
            slot: dict in the slot layout (`slot_features`), rows [b] (this replica's share of B/k).
        Returns:
            (per-example loss float32 [b], task index int32 scalar).
        """
        outputs = self.task_model({key: slot[key] for key in MODEL_INPUTS}, training=training)
        task_index = tf.reduce_max(slot[TASK_ID])
        branches = [
            functools.partial(task.hard_loss, tuple(outputs[key] for key in task.logit_keys), slot)
            for task in self.tasks
        ]
        return tf.switch_case(task_index, branches), task_index

    def slot_gradients(self, slot, training=True):
        """One slot's forward/backward pass: the gradients of its share of the step's loss.

        The slot's loss is its per-example loss summed and divided by the global pass batch B/k
        (`tf.nn.compute_average_loss`, right under any number of replicas) and by k, so the sum of
        the k slots' gradients is their mean. It goes through `optimizer.scale_loss`, so under
        mixed_float16 the gradients are loss-scaled, as `optimizer.apply` expects.

        Returns:
            (gradients aligned with `task_model.trainable_variables`, None for a variable the pass
            does not reach; task index int32 scalar; mean per-example loss float32 scalar).
        """
        with tf.GradientTape() as tape:
            per_example, task_index = self.pass_loss(slot, training=training)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.pass_batch_size) / self.k
            scaled = self.optimizer.scale_loss(loss)
        return tape.gradient(scaled, self.task_model.trainable_variables), task_index, tf.reduce_mean(per_example)

    def compute_gradients(self, data, training=True):
        """The mean over the k slots of each slot's gradient, one tape per slot.

        The slots' passes run through one `tf.function` of `slot_gradients`: every slot has the
        same input signature, so the model is traced once, whatever k is.

        Returns:
            (gradients aligned with `task_model.trainable_variables`, never None: a head no slot
            used gets zeros; [(task index, mean per-example loss)] per slot).
        """
        variables = self.task_model.trainable_variables
        parts = [[] for _ in variables]
        passes = []
        for j in range(self.k):
            gradients, task_index, loss = self._slot_gradients(data[slot_name(j)], training=training)
            for collected, gradient in zip(parts, gradients):
                collected.append(gradient)
            passes.append((task_index, loss))
        return [accumulate_gradients(p, v) for p, v in zip(parts, variables)], passes

    def train_step(self, data):
        gradients, passes = self.compute_gradients(data, training=True)
        self.optimizer.apply(training.dense_gradients(gradients), self.task_model.trainable_variables)
        return self._track(passes)

    def _track(self, passes):
        """Logs the mean slot loss, each task's loss over the slots it filled, and each task's share of slots."""
        self.trackers["loss"].update_state(tf.add_n([loss for _, loss in passes]) / float(len(passes)))
        for index, name in enumerate(self.task_names):
            for task_index, loss in passes:
                picked = tf.cast(tf.equal(task_index, index), tf.float32)
                self.trackers[f"{name}_loss"].update_state(loss, sample_weight=picked)
                self.trackers[f"{name}_pick_rate"].update_state(picked)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def _rows(features):
    """Rows (examples or QA windows) of a features dict."""
    return len(features[MODEL_INPUTS[0]])


def check_replicas(config):
    """ConfigError naming multitask.batch_size unless each of the k passes of the global batch B
    (B/k rows; `Config` checks that k divides B) splits evenly over the strategy's replicas."""
    multitask = config.multitask
    replicas = training.get_strategy(config.train).num_replicas_in_sync
    if config.multitask_batch_size() // multitask.k % replicas:
        raise ConfigError(f"multitask.batch_size: {config.multitask_batch_text()} must split into "
                          f"multitask.k={multitask.k} passes whose size is a multiple of the {replicas} replicas")


def prepare_multitask(config, tokenizer, main_task_data):
    """Loads the data of every task of `config.multitask.tasks` and checks that each fills one of
    the stage's passes (B/k rows), so that a run stops on them before it writes anything
    (`experiment.prepare_run`, which calls `check_replicas` first).

    Args:
        config: the run `Config`, with a multi-task stage (`multitask.steps` > 0).
        tokenizer: the run's `WordPieceTokenizer`.
        main_task_data: `TaskData` of `config.task`, reused when that task is among the tasks.
    Returns:
        {task name: TaskData}, in `multitask.tasks` order.
    Raises:
        ConfigError naming multitask.batch_size; the readers' errors for data that does not load.
    """
    multitask = config.multitask
    pass_batch = config.multitask_batch_size() // multitask.k
    data = {name: main_task_data if name == main_task_data.task.name
            else load_task_data(get_task(name), config, tokenizer, is_main_task=False)
            for name in multitask.tasks}
    for name, item in data.items():
        rows = _rows(item.train_features)
        if rows < pass_batch:
            raise ConfigError(f"multitask.batch_size: {config.multitask_batch_text()} makes multitask.k={multitask.k} "
                              f"passes of {pass_batch} rows, more than the {rows} training rows of task {name!r}")
    return data


def run_multitask_stage(config, tokenizer, data, stage_dir):
    """Multi-task pre-training of the encoder: trains, evaluates every task, saves the encoder.

    Args:
        config: the run `Config`; `config.multitask` picks tasks, steps, k, sampler, learning
            rate and the constant global batch B (`batch_size`, default `config.train.batch_size`).
        tokenizer: the run's `WordPieceTokenizer`.
        data: {task name: TaskData} of every task, checked against B (`prepare_multitask`).
        stage_dir: folder for checkpoints, logs and the encoder weights; a rerun resumes.
    Returns:
        (path of the saved encoder weights, metrics dict: the main task's dev metrics at the top
        level (when it is one of the tasks), every task's under "tasks", and the slots each task
        filled over the stage under "picks").
    """
    stage_dir = pathlib.Path(stage_dir)
    multitask = config.multitask
    train = dataclasses.replace(config.train, batch_size=config.multitask_batch_size())
    strategy = training.get_strategy(train)
    tasks = {name: item.task for name, item in data.items()}
    sampler = TaskSampler(multitask.sampler, {name: _rows(item.train_features) for name, item in data.items()},
                          multitask.k, replacement=multitask.replacement, seed=train.seed,
                          total_steps=multitask.steps, temperature=multitask.temperature)
    with strategy.scope():
        training.seed_stage(train.seed, "multitask")
        model = build_model(config.model, tasks.values(), tokenizer.vocabulary_size, config.data.max_seq_length,
                            "multitask_model")
        trainer = MultiTaskTrainer(model, tasks.values(), multitask.k, train.batch_size)
        trainer.compile(
            optimizer=training.make_optimizer(multitask.learning_rate, multitask.steps, train.warmup_fraction,
                                              train.weight_decay, layer_lr_scales(model, train.layer_lr_decay)),
            jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution,
        )
        trainer.optimizer.build(model.trainable_variables)
        features = {name: item.train_features for name, item in data.items()}
        logging.info("stage %s: %d steps, k=%d, %s sampler over %s", stage_dir.name, multitask.steps, multitask.k,
                     multitask.sampler, ", ".join(sampler.names))
        training.fit(trainer, None, train, multitask.steps, stage_dir,
                     make_dataset=lambda done: step_dataset(features, sampler, train.batch_size, train.seed, done,
                                                            multitask.steps))
    encoder_path = cluster.worker_path(stage_dir / ENCODER_WEIGHTS, config.train)
    save_weights(encoder_of(model), encoder_path)
    dev = {name: item.task.evaluate(model, item, tokenizer, config).metrics for name, item in data.items()}
    metrics = {**dev.get(config.task, {}), "tasks": dev, "picks": sampler.counts(0, multitask.steps),
               "k": multitask.k, "sampler": multitask.sampler, "steps": multitask.steps}
    return encoder_path, metrics

