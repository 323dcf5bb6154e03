"""Checkpointed training: a killed run resumes to the same weights as an uninterrupted one."""

import io
import logging
import re
import shutil

import numpy as np
import pytest
import keras
import tensorflow as tf

from road_tf import training
from road_tf.errors import DataError
from road_tf.distillation.distiller import Distiller
from road_tf.models.task_model import layer_lr_scales
from road_tf.tasks import get_task
from helpers_models import SEQ, random_span_features, tiny_model, train_config


class Kill(keras.callbacks.Callback):
    """Simulates a crash after `at` optimizer steps."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            raise KeyboardInterrupt("killed")


def run(stage_dir, config, seed, callbacks=(), dropout=0.0, layer_lr_decay=1.0):
    student = tiny_model(seed=seed, dropout=dropout)
    distiller = Distiller(student, get_task("squad2"))
    distiller.compile(optimizer=training.make_optimizer(config.learning_rate, config.steps, 0.2, 0.01,
                                                        layer_lr_scales(student, layer_lr_decay)))
    distiller.optimizer.build(distiller.trained_variables())
    training.fit(distiller, random_span_features(24, seed=1), config, config.steps, stage_dir, callbacks)
    return student


@pytest.mark.parametrize("dropout, trim_padding, layer_lr_decay", [(0.0, 0, 1.0), (0.3, 0, 1.0), (0.3, 4, 1.0),
                                                                  (0.3, 0, 0.5)],
                         ids=["no_dropout", "dropout", "dropout_trimmed_batches", "dropout_layerwise_rates"])
def test_kill_and_resume_gives_the_same_weights(tmp_path, dropout, trim_padding, layer_lr_decay):
    config = train_config(steps=7, checkpoint_every=2, trim_padding=trim_padding)
    straight = run(tmp_path / "straight", config, seed=0, dropout=dropout, layer_lr_decay=layer_lr_decay)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", config, seed=0, callbacks=[Kill(5)], dropout=dropout, layer_lr_decay=layer_lr_decay)
    # The restart builds a model from a different seed: everything, the dropout masks' random
    # state included, must come from the checkpoint.
    resumed = run(tmp_path / "killed", config, seed=9, dropout=dropout, layer_lr_decay=layer_lr_decay)
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / "killed" / "logs").is_dir()


class Overflowing(keras.Model):
    """One Dense unit whose float16 gradient overflows at the first loss scales (2^15, 2^14, ...)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1, kernel_initializer="ones")

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(self.dense(data["x"]), tf.float32)))
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, self.trainable_variables), self.trainable_variables)
        return {"loss": loss}


class CountBatches(keras.callbacks.Callback):
    batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_steps_the_loss_scale_skips_still_count_as_steps(tmp_path):
    """Under mixed_float16 a step whose scaled gradients overflow changes no weight but uses up its
    batch: Keras' LossScaleOptimizer did not count it, so the stage (which stops, checkpoints and
    resumes by `iterations`) ran 8 batches for 2 counted steps and recorded ckpt-2 as step 8's."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = Overflowing()
        model.build((None, 2))
        model.compile(optimizer=training.make_optimizer(1e-4, 8, 0.0, 0.0))
        counter = CountBatches()
        training.fit(model, {"x": np.full((64, 2), 5.0, np.float32)}, train_config(steps=8, checkpoint_every=4), 8,
                     tmp_path, [counter])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(model.optimizer, training.CountingLossScaleOptimizer)
    assert float(model.optimizer.dynamic_scale.numpy()) < 2.0 ** 15, "the loss scale dropped: steps were skipped"
    assert counter.batches == 8 and int(model.optimizer.iterations.numpy()) == 8
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-8")


def test_finished_stage_is_not_trained_again(tmp_path):
    config = train_config(steps=4, checkpoint_every=2)
    first = run(tmp_path / "s", config, seed=0)
    again = run(tmp_path / "s", config, seed=3)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class FirstStep(keras.callbacks.Callback):
    """Records the step a stage's training starts from (the step it resumed at)."""

    step = None

    def on_train_begin(self, logs=None):
        self.step = int(self.model.optimizer.iterations.numpy())


RESUMED = train_config(steps=7, checkpoint_every=2)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """(the weights of an uninterrupted 7-step run with dropout, the checkpoints folder of the same run
    killed at step 5: ckpt-2 and ckpt-4, the state file naming ckpt-4)."""
    root = tmp_path_factory.mktemp("killed_run")
    straight = run(root / "straight", RESUMED, seed=0, dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        run(root / "killed", RESUMED, seed=0, callbacks=[Kill(5)], dropout=0.3)
    return [weight.numpy() for weight in straight.weights], root / "killed" / "checkpoints"


def resume_damaged(tmp_path, killed_checkpoints, damage):
    """Resumes a copy of `killed_checkpoints` after `damage(folder)` -> (the step it resumed at, the student)."""
    shutil.copytree(killed_checkpoints, tmp_path / "checkpoints")
    damage(tmp_path / "checkpoints")
    first = FirstStep()
    student = run(tmp_path, RESUMED, seed=9, callbacks=[first], dropout=0.3)
    return first.step, student


def warnings_of(caplog):
    """road_tf's warnings (TensorFlow's own logger warns of retracing)."""
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING
            and record.name == "root"]


def emptied(name):
    """Damage that empties the file `name` of the checkpoints folder."""
    return lambda folder: (folder / name).write_bytes(b"")


def garbled(name):
    """Damage that keeps the file's size: its middle byte inverted."""
    def damage(folder):
        data = bytearray((folder / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / name).write_bytes(bytes(data))
    return damage


def removed(prefix):
    """Damage that deletes the files of checkpoint `prefix`, which the state file still names."""
    def damage(folder):
        for path in folder.glob(f"{prefix}.*"):
            path.unlink()
    return damage


DATA_4 = "ckpt-4.data-00000-of-00001"


@pytest.mark.parametrize("state", [b"model_checkpoint_path: garbage ###\n", b"", b"\xff\xfe\x00 binary"],
                         ids=["text", "empty", "binary"])
def test_an_unreadable_checkpoint_state_resumes_from_the_newest_checkpoint(tmp_path, killed_run, caplog, state):
    """Garbage in TF's `checkpoint` state file restarted the stage from step 0 without a word (text)
    or failed it (ValueError, UnicodeDecodeError): the ckpt-* files beside it are read instead."""
    caplog.set_level(logging.WARNING)
    straight, killed = killed_run
    step, student = resume_damaged(tmp_path, killed, lambda folder: (folder / "checkpoint").write_bytes(state))
    assert step == 4
    state_file = tmp_path / "checkpoints" / "checkpoint"
    assert [message for message in warnings_of(caplog) if message.startswith(f"{state_file} is not a checkpoint state")]
    for a, b in zip(straight, student.weights):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-7"), "the state is written anew"
    kept = sorted(path.name for path in (tmp_path / "checkpoints").glob("ckpt-*.index"))
    assert kept == ["ckpt-6.index", "ckpt-7.index"], "ckpt-2 and ckpt-4 are deleted as in an undamaged resume"


@pytest.mark.parametrize("damage, warned", [(emptied("ckpt-4.index"), "{folder}/ckpt-4.index"),
                                            (garbled("ckpt-4.index"), "{folder}/ckpt-4.index"),
                                            (emptied(DATA_4), "{folder}/" + DATA_4),
                                            (garbled(DATA_4), "{folder}/" + DATA_4),
                                            (removed("ckpt-4"), "{folder}/checkpoint names checkpoint {folder}/ckpt-4, "
                                                                "which is not there")],
                         ids=["index_emptied", "index_garbled", "data_emptied", "data_garbled", "files_removed"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, killed_run, caplog, damage, warned):
    """A newest checkpoint that does not restore failed every rerun with one TF line naming no file
    ("OpError: file is too short to be an sstable"): it is skipped with a warning naming its files,
    and the stage resumes from the checkpoint before it to the uninterrupted run's weights."""
    caplog.set_level(logging.WARNING)
    straight, killed = killed_run
    step, student = resume_damaged(tmp_path, killed, damage)
    assert step == 2
    warnings = warnings_of(caplog)
    assert len(warnings) == 1 and warned.format(folder=tmp_path / "checkpoints") in warnings[0], warnings
    for a, b in zip(straight, student.weights):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoints_none_of_which_restores_are_one_error_naming_their_folder(tmp_path, killed_run):
    """A folder of checkpoints none of which restores stops the stage (it must not start over from
    step 0 without a word) with one error naming the folder and what to do."""
    def damage(folder):
        emptied("ckpt-2.index")(folder)
        emptied("ckpt-4.index")(folder)

    folder = re.escape(str(tmp_path / "checkpoints"))
    with pytest.raises(DataError, match=f"^{folder}: no checkpoint here can be restored: ckpt-4 .*; ckpt-2 .*; "
                                        "delete this folder to train the stage again from step 0"):
        resume_damaged(tmp_path, killed_run[1], damage)


def test_checkpoint_data_without_an_index_is_not_ignored(tmp_path, killed_run):
    """Only data shards left beside an unreadable state file: an error, not a silent start from step 0."""
    def damage(folder):
        (folder / "checkpoint").write_text("garbage")
        for name in ("ckpt-2.index", "ckpt-4.index"):
            (folder / name).unlink()

    folder = re.escape(str(tmp_path / "checkpoints"))
    with pytest.raises(DataError, match=f"^{folder}: no checkpoint here can be restored"):
        resume_damaged(tmp_path, killed_run[1], damage)


def test_batch_larger_than_data_is_a_config_error():
    from road_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size"):
        training.train_dataset(random_span_features(4), batch_size=8, seed=0)


def take(dataset, count):
    return [{key: value.numpy() for key, value in batch.items()} for batch in dataset.take(count)]


def test_trimmed_batches_group_rows_by_length_and_cut_only_padding():
    features = random_span_features(40, seed=2)
    features["example_index"] = np.arange(40, dtype=np.int32)
    lengths = features["padding_mask"].sum(axis=1)
    batches = take(training.train_dataset(features, batch_size=4, seed=3, trim_padding=4), 20)
    for batch in batches:
        rows, width = batch["example_index"], batch["padding_mask"].shape[1]
        assert width == min(SEQ, -(-lengths[rows].max() // 4) * 4)
        for key in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(batch[key], features[key][rows, :width])
        assert not features["padding_mask"][rows, width:].any()
    for epoch in (batches[:10], batches[10:]):
        assert sorted(np.concatenate([b["example_index"] for b in epoch])) == list(range(40))
        # The 10 batches of an epoch are one length pool: sorted by length, they do not overlap.
        spans = sorted((lengths[b["example_index"]].min(), lengths[b["example_index"]].max()) for b in epoch)
        assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    assert len({b["padding_mask"].shape[1] for b in batches}) > 1
    assert [b["example_index"].tolist() for b in batches[:10]] != [b["example_index"].tolist() for b in batches[10:]]
    resumed = take(training.train_dataset(features, batch_size=4, seed=3, skip_batches=7, trim_padding=4), 5)
    for a, b in zip(batches[7:12], resumed):
        assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)


def test_trim_padding_is_rejected_on_tpus():
    from road_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="train.trim_padding: must be 0 when strategy is tpu"):
        train_config(trim_padding=8, strategy="tpu", tpu_address="local").validate()


@pytest.mark.parametrize("value, expected", [("3", 3), ("", None), ("0", None), ("two", None), ("\u00b2", None),
                                             ("9" * 5000, None), ("-3", None)])
def test_environment_records_the_thread_pool_tensorflow_uses(monkeypatch, value, expected):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", value)
    environment = training.environment()
    assert environment["intra_op_threads"] == (expected or environment["cores"])
    assert environment["cpu"] and environment["dtype_policy"] == keras.mixed_precision.global_policy().name


@pytest.mark.parametrize("text", ['{"metrics": [1]}', "[]", '{"metrics": {"f1": 1.0}', "[" * 50_000])
def test_a_damaged_stage_record_is_one_error_naming_it(tmp_path, text):
    """A finished stage's stage.json that is not what a stage writes stops a resumed run with one line
    naming the file (it was a KeyError or JSONDecodeError traceback)."""
    from road_tf.experiment import STAGE_FILE, stage_metrics

    (tmp_path / STAGE_FILE).write_text(text)
    with pytest.raises(DataError, match=f"^{tmp_path / STAGE_FILE}: "):
        stage_metrics(tmp_path / STAGE_FILE)
    (tmp_path / STAGE_FILE).write_text('{"metrics": {"f1": 61.5}}')
    assert stage_metrics(tmp_path / STAGE_FILE) == {"f1": 61.5}


@pytest.mark.parametrize("text", ['{"step": 1}', '[{"step": 10, "value": "high"}]', '[{"value": 1.0}]', "[true]",
                                  '[{"step": 10, "value": NaN}]', "[" * 50_000])
def test_damaged_evaluations_are_one_error_naming_them(tmp_path, text):
    """A stage's evals.json that is not the list a stage writes stops keep=best with one line naming it."""
    (tmp_path / training.EVALS_FILE).write_text(text)
    with pytest.raises(DataError, match=f"^{tmp_path / training.EVALS_FILE}: "):
        training.best_eval(tmp_path)
    (tmp_path / training.EVALS_FILE).write_text('[{"step": 10, "value": 50.0}, {"step": 20, "value": 52.5}]')
    assert training.best_eval(tmp_path)["step"] == 20


@pytest.mark.parametrize("seconds,shown", [(0, "<1 min"), (29, "<1 min"), (31, "1 min"), (38 * 60, "38 min"),
                                           (3599, "1 h 00 min"), (3600 + 5 * 60, "1 h 05 min"),
                                           (26 * 3600, "26 h 00 min")])
def test_time_left_reads_as_minutes_and_hours(seconds, shown):
    assert training.time_left(seconds) == shown


class _FakeIterations:
    def __init__(self):
        self.value = 0

    def numpy(self):
        return self.value


def progress_of(steps, **kwargs):
    """(StageProgress of a stage of `steps` steps printing to a StringIO, that stream, the optimizer's
    iterations it reads: set `.value` before each on_train_batch_end)."""
    stream, iterations = io.StringIO(), _FakeIterations()
    progress = training.StageProgress("student", steps, stream=stream, **kwargs)
    progress.set_model(type("Model", (), {"optimizer": type("Optimizer", (), {"iterations": iterations})()})())
    return progress, stream, iterations


def test_progress_lines_say_the_time_left_at_the_mean_step_time(monkeypatch):
    """A stage of 400 steps at 3 s a step: at step 200, 10 min left; the last line says none."""
    clock = iter([100.0, 100.0 + 3 * 199, 100.0 + 3 * 399])
    monkeypatch.setattr(training.time, "monotonic", lambda: next(clock))
    progress, stream, iterations = progress_of(400, lines=2)
    for step in (1, 200, 400):
        iterations.value = step
        progress.on_train_batch_end(step, {"loss": 1.5})
    assert stream.getvalue().splitlines() == ["  [student] step 200/400  loss 1.5000  3.00 s/step  10 min left",
                                              "  [student] step 400/400  loss 1.5000  3.00 s/step"]


def test_the_first_step_a_process_prints_has_no_step_time_yet(monkeypatch):
    monkeypatch.setattr(training.time, "monotonic", lambda: 5.0)
    progress, stream, iterations = progress_of(30)
    iterations.value = 7  # a resumed stage's first step, on a line of its own (every step prints)
    progress.on_train_batch_end(0, {"loss": 2.0})
    assert stream.getvalue() == "  [student] step 7/30  loss 2.0000\n"
