"""Multi-task trainer: k-task gradient averaging, sparse/absent gradients, replicas, data, end to end."""

import dataclasses
import shutil
import types

import h5py
import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from road_tf import training
from road_tf.config import Config, DataConfig, ModelConfig, MultitaskConfig, TrainConfig
from road_tf.data.features import END, LABEL, MODEL_INPUTS, START
from road_tf.distillation.distiller import Distiller
from road_tf.errors import ConfigError
from road_tf.models.task_model import build_model, build_task_model, encoder_of, load_encoder_weights
from road_tf.multitask import trainer as trainer_module
from road_tf.multitask.samplers import TaskSampler
from road_tf.multitask.trainer import (
    TASK_ID, MultiTaskTrainer, accumulate_gradients, prepare_multitask, run_multitask_stage, slot_features, slot_name,
    step_dataset,
)
from road_tf.registry import CLASSIFICATION, SPAN, TaskSpec
from road_tf.tasks import ClassificationTask, SpanTask, get_task, load_task_data

VOCAB, SEQ = 60, 16
HEADS = {"qa": "span", "nli": 3, "para": 2}


def make_task(name, head):
    """A task object outside the registry: "span" or a number of classes."""
    if head == "span":
        return SpanTask(TaskSpec(name, SPAN, 0, "", None, None, (), None))
    return ClassificationTask(TaskSpec(name, CLASSIFICATION, head, "", None, None, (), None))


TASKS = {name: make_task(name, head) for name, head in HEADS.items()}
ALL = list(TASKS.values())


def tiny_model(tasks=ALL):
    """A 1-layer BERT (hidden 16) with the given tasks' heads and no dropout."""
    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, dropout=0.0, max_sequence_length=SEQ)
    return build_task_model(backbone, tasks, dropout=0.0)


def task_features(head, rows, seed):
    """Random features of a task with `head` ("span" or classes): second half of each row is context."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(SEQ // 2 + 4, SEQ + 1, rows)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    features = {
        "token_ids": rng.integers(1, VOCAB, (rows, SEQ)).astype(np.int32) * mask,
        "segment_ids": np.tile((np.arange(SEQ) >= SEQ // 2).astype(np.int32), (rows, 1)) * mask,
        "padding_mask": mask,
    }
    if head == "span":
        start = rng.integers(SEQ // 2, SEQ // 2 + 2, rows) * (rng.random(rows) < 0.7)
        features[START] = start.astype(np.int32)
        features[END] = (start + (start > 0) * rng.integers(0, 2, rows)).astype(np.int32)
    else:
        features[LABEL] = rng.integers(0, head, rows).astype(np.int32)
    return features


FEATURES = {name: task_features(head, 24, seed) for seed, (name, head) in enumerate(HEADS.items())}


def make_step(tasks, rows):
    """One step's slots: slot j holds `rows` rows of task tasks[j] (different rows for repeats)."""
    step, used = {}, {}
    for j, name in enumerate(tasks):
        begin = used.get(name, 0)
        used[name] = begin + rows
        columns = slot_features(FEATURES[name], list(HEADS).index(name))
        step[slot_name(j)] = {key: tf.constant(value[begin:begin + rows]) for key, value in columns.items()}
    return step


def same_weights(source, target):
    """Copies every weight of `source` into `target` (same architecture)."""
    target.set_weights(source.get_weights())


def compiled_trainer(model, tasks, k, batch, optimizer, run_eagerly=False):
    """A MultiTaskTrainer around `model`, compiled with `optimizer`."""
    trainer = MultiTaskTrainer(model, tasks, k, batch)
    trainer.compile(optimizer=optimizer, run_eagerly=run_eagerly)
    return trainer


def reference_mean_loss_gradients(model, step, tasks):
    """Gradients of ONE tape over the mean of the slots' mean losses (the definition of the update)."""
    with tf.GradientTape() as tape:
        slot_losses = []
        for j, name in enumerate(tasks):
            slot = step[slot_name(j)]
            outputs = model({key: slot[key] for key in MODEL_INPUTS}, training=True)
            logits = tuple(outputs[key] for key in TASKS[name].logit_keys)
            slot_losses.append(tf.reduce_mean(TASKS[name].hard_loss(logits, slot)))
        loss = tf.add_n(slot_losses) / len(tasks)
    return tape.gradient(loss, model.trainable_variables)


def head_variables(model, task):
    """The trainable variables of `task`'s head."""
    return [v for v in model.trainable_variables if v.path.startswith(f"{task}_")]


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_averaged_update_equals_one_tape_over_the_mean_of_task_losses(run_eagerly):
    tasks = ["qa", "nli", "qa"]
    model, reference = tiny_model(), tiny_model()
    same_weights(model, reference)
    initial = [np.array(w) for w in model.get_weights()]
    step = make_step(tasks, rows=4)
    lr = 0.5
    trainer = compiled_trainer(model, ALL, k=3, batch=12, optimizer=keras.optimizers.SGD(lr), run_eagerly=run_eagerly)
    trainer.fit(tf.data.Dataset.from_tensors(step), epochs=1, verbose=0)

    gradients = reference_mean_loss_gradients(reference, step, tasks)
    for variable, gradient in zip(reference.trainable_variables, gradients):
        if gradient is not None:
            variable.assign(variable - lr * tf.convert_to_tensor(gradient))
    for trained, expected, before in zip(model.get_weights(), reference.get_weights(), initial):
        np.testing.assert_allclose(trained, expected, atol=1e-6)
    moved = sum(float(np.abs(a - b).sum()) for a, b in zip(model.get_weights(), initial))
    assert moved > 1e-2, "the step must change the weights"
    for variable in head_variables(model, "para"):
        before = initial[[v.path for v in model.weights].index(variable.path)]
        np.testing.assert_array_equal(variable.numpy(), before)


@pytest.mark.parametrize("graph", [False, True])
def test_gradients_keep_embeddings_sparse_and_give_absent_heads_zeros(graph):
    tasks = ["qa", "nli"]
    model, reference = tiny_model(), tiny_model()
    same_weights(model, reference)
    step = make_step(tasks, rows=3)
    trainer = compiled_trainer(model, ALL, k=2, batch=6, optimizer=keras.optimizers.SGD(0.1))
    compute = tf.function(trainer.compute_gradients) if graph else trainer.compute_gradients
    gradients, passes = compute(step)
    paths = [v.path for v in model.trainable_variables]
    embedding = gradients[next(i for i, p in enumerate(paths) if "token_embedding" in p)]
    assert isinstance(embedding, tf.IndexedSlices)
    assert embedding.indices.shape[0] == 2 * 3 * SEQ, "one index per token of both passes"
    assert [int(index) for index, _ in passes] == [0, 1]
    expected = reference_mean_loss_gradients(reference, step, tasks)
    for path, got, want in zip(paths, gradients, expected):
        assert got is not None, path
        if want is None:
            assert path.startswith("para_"), f"only the absent head may lack a gradient, not {path}"
            np.testing.assert_array_equal(tf.convert_to_tensor(got).numpy(), 0.0)
        else:
            np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(want).numpy(),
                                       rtol=1e-4, atol=1e-6, err_msg=path)


def test_mixed_float16_steps_are_loss_scaled_then_unscaled():
    tasks = ["qa", "para"]
    step = make_step(tasks, rows=4)
    reference = tiny_model()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_model()
        same_weights(reference, model)
        # A fixed-size first scale (128, below any overflow here) so that the first step is applied.
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5), initial_scale=128.0)
        trainer = compiled_trainer(model, ALL, k=2, batch=8, optimizer=optimizer)
        trainer.fit(tf.data.Dataset.from_tensors(step), epochs=1, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    float32 = compiled_trainer(reference, ALL, k=2, batch=8, optimizer=keras.optimizers.SGD(0.5))
    float32.fit(tf.data.Dataset.from_tensors(step), epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=5e-3)
    assert int(optimizer.iterations) == 1 and float(optimizer.dynamic_scale) == 128.0


def test_accumulate_gradients_sparse_dense_and_missing():
    variable = tf.Variable(tf.zeros([5, 2]))
    a = tf.IndexedSlices(tf.ones([2, 2]), tf.constant([0, 3]), tf.constant([5, 2]))
    b = tf.IndexedSlices(2 * tf.ones([1, 2]), tf.constant([3]), tf.constant([5, 2]))
    summed = accumulate_gradients([a, None, b], variable)
    assert isinstance(summed, tf.IndexedSlices)
    np.testing.assert_array_equal(tf.convert_to_tensor(summed).numpy()[:, 0], [1, 0, 0, 3, 0])
    mixed = accumulate_gradients([a, tf.ones([5, 2])], variable)
    np.testing.assert_array_equal(mixed.numpy()[:, 0], [2, 1, 1, 2, 1])
    zeros = accumulate_gradients([None, None], variable)
    assert zeros.shape == (5, 2) and not np.any(zeros.numpy())


def test_k1_equals_single_task_fine_tuning_with_the_distiller():
    steps, batch = 3, 8
    tasks = [TASKS["nli"]]
    features = {"nli": task_features(3, 40, seed=9)}
    student, model = tiny_model(tasks), tiny_model(tasks)
    same_weights(student, model)
    optimizer = lambda: training.make_optimizer(1e-2, steps, 0.0, 0.01)  # noqa: E731

    distiller = Distiller(student, TASKS["nli"])
    distiller.compile(optimizer=optimizer())
    distiller.fit(training.train_dataset(features["nli"], batch, seed=4), steps_per_epoch=steps, epochs=1, verbose=0)

    trainer = compiled_trainer(model, tasks, k=1, batch=batch, optimizer=optimizer())
    sampler = TaskSampler("uniform", {"nli": 40}, k=1)
    trainer.fit(step_dataset(features, sampler, batch, 4, 0, steps), steps_per_epoch=steps, epochs=1, verbose=0)
    for a, b in zip(student.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_two_replicas_give_the_weights_of_one_device(two_replicas):
    steps, batch = 3, 8
    sampler = TaskSampler("uniform", {name: 24 for name in HEADS}, k=2, replacement=False, seed=1)
    single = tiny_model()
    strategy = two_replicas
    with strategy.scope():
        mirrored = tiny_model()
        same_weights(single, mirrored)
        trainer_m = compiled_trainer(mirrored, ALL, 2, batch, training.make_optimizer(1e-2, steps, 0.0, 0.01))
    trainer_s = compiled_trainer(single, ALL, 2, batch, training.make_optimizer(1e-2, steps, 0.0, 0.01))
    for trainer in (trainer_s, trainer_m):
        trainer.fit(step_dataset(FEATURES, sampler, batch, 0, 0, steps), steps_per_epoch=steps, epochs=1, verbose=0)
    assert strategy.num_replicas_in_sync == 2
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, atol=2e-5)


def slot_mean_loss(model, slot, name):
    """Mean hard loss of one slot under task `name`'s head, without training."""
    outputs = model({key: slot[key] for key in MODEL_INPUTS}, training=False)
    logits = tuple(outputs[key] for key in TASKS[name].logit_keys)
    return float(tf.reduce_mean(TASKS[name].hard_loss(logits, slot)))


def test_trainer_logs_task_losses_over_the_slots_they_filled_and_pick_rates():
    model = tiny_model()
    trainer = compiled_trainer(model, ALL, k=2, batch=4, optimizer=keras.optimizers.SGD(0.0))
    plan = [["qa", "nli"], ["qa", "qa"]]
    steps = [make_step(tasks, 2) for tasks in plan]
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(
        tf.nest.map_structure(lambda *x: tf.stack(x), *steps)), epochs=1, verbose=0).history
    losses = {name: [slot_mean_loss(model, step[slot_name(j)], name) for step, tasks in zip(steps, plan)
                     for j, task in enumerate(tasks) if task == name] for name in ("qa", "nli")}
    assert len(losses["qa"]) == 3
    assert history["qa_loss"][0] == pytest.approx(np.mean(losses["qa"]), rel=1e-5)
    assert history["nli_loss"][0] == pytest.approx(losses["nli"][0], rel=1e-5)
    assert history["loss"][0] == pytest.approx(np.mean(losses["qa"] + losses["nli"]), rel=1e-5)
    assert history["qa_pick_rate"][0] == pytest.approx(0.75)
    assert history["nli_pick_rate"][0] == pytest.approx(0.25)
    assert history["para_pick_rate"][0] == 0.0 and history["para_loss"][0] == 0.0
    with pytest.raises(ConfigError, match="multitask.k=3"):
        MultiTaskTrainer(tiny_model(), ALL, 3, 8)


def test_step_dataset_follows_the_plan_and_resumes_mid_stream():
    sampler = TaskSampler("proportional", {"qa": 24, "nli": 12, "para": 6}, k=2, replacement=True, seed=2)
    steps, batch, seed = 8, 4, 3
    full = list(step_dataset(FEATURES, sampler, batch, seed, 0, steps).as_numpy_iterator())
    assert len(full) == steps
    plan = sampler.plan(0, steps)
    names = sampler.names
    picked = {name: 0 for name in names}
    for step, row in zip(full, plan):
        for j, index in enumerate(row):
            slot = step[slot_name(j)]
            np.testing.assert_array_equal(slot[TASK_ID], index)
            name = names[index]
            stream = training.train_dataset(slot_features(FEATURES[name], index), batch // 2, seed + index,
                                            skip_batches=picked[name])
            expected = next(iter(stream.take(1).as_numpy_iterator()))
            for key, value in expected.items():
                np.testing.assert_array_equal(slot[key], value, err_msg=f"{name} {key}")
            absent = (LABEL,) if TASKS[name].kind == SPAN else (START, END)
            assert not any(slot[key].any() for key in absent)
            picked[name] += 1
    resumed = list(step_dataset(FEATURES, sampler, batch, seed, 5, steps).as_numpy_iterator())
    assert len(resumed) == 3
    for a, b in zip(resumed, full[5:]):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def h5_arrays(path):
    """{dataset path: array} of every dataset in an HDF5 file."""
    found = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def tiny_multitask_config(tmp_path, **multitask):
    """A tiny-model config of a squad2 run with a multi-task stage (`multitask`: its settings)."""
    return Config(
        task="squad2",
        model=ModelConfig(num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, dropout=0.0),
        data=DataConfig(synthetic_train_size=48, synthetic_dev_size=16, max_seq_length=64, doc_stride=32,
                        max_query_length=16, cache_dir=str(tmp_path / "cache")),
        multitask=MultitaskConfig(**multitask),
        train=TrainConfig(batch_size=8, checkpoint_every=2, warmup_fraction=0.0),
    )


def test_a_run_refuses_passes_the_replicas_do_not_share_before_it_loads_any_data(tmp_path, monkeypatch):
    from road_tf import experiment

    def loaded(*args, **kwargs):
        raise AssertionError("data loaded before the batch was checked")

    monkeypatch.setattr(training, "get_strategy", lambda train: types.SimpleNamespace(num_replicas_in_sync=3))
    monkeypatch.setattr(experiment, "load_task_data", loaded)
    monkeypatch.setattr(trainer_module, "load_task_data", loaded)
    config = tiny_multitask_config(tmp_path, steps=2, k=2)
    with pytest.raises(ConfigError, match=r"^multitask.batch_size: 0 \(so train.batch_size 8\) must split into "
                                          "multitask.k=2 passes whose size is a multiple of the 3 replicas$"):
        experiment.prepare_run(config, tmp_path / "run")


def test_prepare_multitask_refuses_a_task_that_does_not_fill_a_pass(tmp_path):
    """The stage's data came into its batches unchecked: the error named train.batch_size."""
    from road_tf.data.tokenizer import load_tokenizer

    config = tiny_multitask_config(tmp_path, steps=2, k=2, tasks=("squad2", "synthetic_nli"), batch_size=100)
    tokenizer = load_tokenizer(config.data.vocab)
    main = load_task_data(get_task("squad2"), config, tokenizer)
    assert len(main.train_features["token_ids"]) > 50
    with pytest.raises(ConfigError, match="^multitask.batch_size: 100 makes multitask.k=2 passes of 50 rows, more "
                                          "than the 48 training rows of task 'synthetic_nli'$"):
        prepare_multitask(config, tokenizer, main)
    unset = dataclasses.replace(config, multitask=dataclasses.replace(config.multitask, batch_size=0),
                                train=dataclasses.replace(config.train, batch_size=100))
    with pytest.raises(ConfigError, match=r"^multitask.batch_size: 0 \(so train.batch_size 100\) makes multitask.k=2 "):
        prepare_multitask(unset, tokenizer, main)


def test_a_run_prepares_the_multitask_data_only_while_the_stage_has_not_finished(tmp_path, monkeypatch):
    """A resumed run past the stage does not load the other tasks' data again (TFDS corpora take minutes)."""
    from road_tf import experiment

    prepared = []
    monkeypatch.setattr(experiment, "prepare_multitask", lambda config, tokenizer, main: prepared.append(1) or {})
    config = tiny_multitask_config(tmp_path, steps=2, k=2)
    assert experiment.prepare_run(config, tmp_path / "run").multitask_data == {} and prepared == [1]
    (tmp_path / "run" / "multitask").mkdir(parents=True)
    (tmp_path / "run" / "multitask" / experiment.STAGE_FILE).write_text('{"metrics": {}}')
    assert experiment.prepare_run(config, tmp_path / "run").multitask_data is None and prepared == [1]


def test_the_multitask_stage_lets_go_of_the_tasks_data_once_it_trained(tmp_path, monkeypatch):
    """The run's inputs hold the data to the end of the run; the other tasks' data is not needed after the stage."""
    from road_tf import experiment

    monkeypatch.setattr(experiment, "run_multitask_stage",
                        lambda config, tokenizer, data, stage_dir: (stage_dir / "encoder.weights.h5", {"f1": 1.0}))
    data = {"squad2": object(), "synthetic_nli": object()}
    config = tiny_multitask_config(tmp_path, steps=2, k=2)
    assert experiment.multitask_stage(config, None, data, tmp_path / "multitask")[1] == {"f1": 1.0}
    assert data == {}


def test_run_multitask_stage_end_to_end_then_load_the_encoder(tmp_path):
    from road_tf.data.tokenizer import load_tokenizer

    config = tiny_multitask_config(tmp_path, steps=4, k=2, sampler="annealed", replacement=False)
    tokenizer = load_tokenizer(config.data.vocab)
    data = prepare_multitask(config, tokenizer, load_task_data(get_task("squad2"), config, tokenizer))
    path, metrics = run_multitask_stage(config, tokenizer, data, tmp_path / "multitask")
    assert set(metrics["tasks"]) == set(config.multitask.tasks)
    assert "f1" in metrics["tasks"]["squad2"] and "accuracy" in metrics["tasks"]["synthetic_nli"]
    assert metrics["f1"] == metrics["tasks"]["squad2"]["f1"], "the main task's metrics head the stage's"
    assert sum(metrics["picks"].values()) == 4 * 2
    assert (tmp_path / "multitask" / "checkpoints").is_dir() and path.is_file()

    # A run killed after step 2: its newest checkpoint is the uninterrupted run's step-2 one.
    killed = tmp_path / "killed" / "checkpoints"
    shutil.copytree(tmp_path / "multitask" / "checkpoints", killed)
    for leftover in killed.glob("ckpt-4*"):
        leftover.unlink()
    (killed / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\nall_model_checkpoint_paths: "ckpt-2"\n')
    step2_written = (killed / "ckpt-2.index").stat().st_mtime_ns
    resumed_path, resumed = run_multitask_stage(config, tokenizer, data, tmp_path / "killed")
    assert (killed / "ckpt-2.index").stat().st_mtime_ns == step2_written, "resumed, not retrained from step 0"
    resumed_arrays = h5_arrays(resumed_path)
    for key, value in h5_arrays(path).items():
        np.testing.assert_allclose(resumed_arrays[key], value, atol=1e-6, err_msg=key)
    assert resumed["picks"] == metrics["picks"]

    squad = [get_task("squad2")]
    student = build_model(config.model, squad, tokenizer.vocabulary_size, 64, "student", encoder_weights=path)
    copy = tmp_path / "copy.weights.h5"
    encoder_of(student).save_weights(str(copy))
    saved, loaded = h5_arrays(path), h5_arrays(copy)
    assert saved.keys() == loaded.keys() and len(saved) > 10
    for key in saved:
        np.testing.assert_array_equal(saved[key], loaded[key], err_msg=key)

    bigger = dataclasses.replace(config.model, hidden_dim=64)
    with pytest.raises(ConfigError, match="do not fit") as refused:
        build_model(bigger, squad, tokenizer.vocabulary_size, 64, "other", encoder_weights=path)
    vocab, width = tokenizer.vocabulary_size, config.model.hidden_dim
    message = str(refused.value)
    assert f": token_embedding/embeddings is ({vocab}, 64) in the model, ({vocab}, {width}) in the file; " in message
    assert message.endswith(" layers do not load") and "\n" not in message, "one line, not the variables' values"
    with pytest.raises(ConfigError, match="no multi-task encoder weights"):
        load_encoder_weights(student, tmp_path / "missing.weights.h5")


def test_squad2_and_its_cloze_task_train_side_by_side(tmp_path):
    """Two span tasks in one stage: each has its own head and dev score (the cloze one on clozes
    made from the dev contexts)."""
    from road_tf.data.tokenizer import load_tokenizer

    config = tiny_multitask_config(tmp_path, tasks=("squad2", "squad2_cloze"), steps=2, k=2)
    tokenizer = load_tokenizer(config.data.vocab)
    data = prepare_multitask(config, tokenizer, load_task_data(get_task("squad2"), config, tokenizer))
    _, metrics = run_multitask_stage(config, tokenizer, data, tmp_path / "multitask")
    assert set(metrics["tasks"]) == {"squad2", "squad2_cloze"}
    assert all("f1" in metrics["tasks"][name] and "HasAns_total" in metrics["tasks"][name] for name in metrics["tasks"])
    assert sum(metrics["picks"].values()) == 2 * 2


def test_a_run_refuses_a_layer_map_beyond_its_models_before_it_loads_any_data(tmp_path, monkeypatch):
    """Models initialised at random need no data to be checked: the refusal must not wait for it."""
    from road_tf import experiment
    from road_tf.config import load_config

    def loaded(*args, **kwargs):
        raise AssertionError("data loaded before the layer map was checked")

    monkeypatch.setattr(experiment, "load_task_data", loaded)
    config = load_config(None, ["distillation.teachers=[{model: {num_layers: 1}}]", "distillation.hidden_loss=mse",
                                "distillation.layer_map=custom",
                                "distillation.layer_matches=[{teacher_layer: 5, student_layer: 1, weight: 1.0}]"])
    with pytest.raises(ConfigError, match=r"^distillation.layer_matches\[0\]: teacher_layer 5 is beyond "
                                          r"distillation.teachers\[0\]'s 1 layers$"):
        experiment.prepare_run(config, tmp_path / "run")
