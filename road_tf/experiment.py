"""One training run, stage by stage; shared by `python -m road_tf.train` and the TFX Trainer.

Stages (each in its own sub-folder of the run directory, each checkpointed and resumable):
  multitask/        optional multi-task pre-training of the encoder (k-task gradient averaging)
  teacher_<i>/      teachers trained here when no checkpoint is given
  student_no_kd/    the student fine-tuned on hard labels only (baseline for KD)
  student/          the student fine-tuned with KD (or plain, when there are no teachers)
Every stage is scored on the dev split by its task (for QA: the decoder the SavedModel runs) and
writes its dev predictions beside its weights; with `train.eval_every` it is also scored during
training and, with `train.keep=best`, ends with its best-scoring weights. A finished stage records
`stage.json` (its metrics and kept step) and drops its checkpoints (unless
`train.keep_checkpoints`), so a rerun of a killed run skips it. The final student is exported.
"""

import contextlib
import json
import logging
import pathlib
import typing

import keras

from road_tf import cluster, training
from road_tf.config import ENCODER_WEIGHTS, RUN_CONFIG_FILE, RUN_METRICS_FILE, STAGE_WEIGHTS, STUDENT_STAGE, dump_yaml
from road_tf.data.tokenizer import load_tokenizer
from road_tf.distillation.distiller import Distiller
from road_tf.distillation.layer_maps import build_layer_map
from road_tf.distillation.offline import load_offline_features
from road_tf.data.json_files import read_json
from road_tf.errors import ConfigError, DataError, RoadError, first_line, weights_mismatch
from road_tf.files import check_weights_file, newest_version, save_weights, write_atomic
from road_tf.models.task_model import build_model, encoder_of, layer_lr_scales, num_layers
from road_tf.multitask.trainer import check_replicas, prepare_multitask, run_multitask_stage
from road_tf.registry import SPAN
from road_tf.saved_model import export_qa_model, newest_is_from
from road_tf.tasks import get_task, load_task_data

STAGE_FILE = "stage.json"
MULTITASK_STAGE = "multitask"
"""The multi-task stage's name and folder in the run directory."""


@contextlib.contextmanager
def running(stage):
    """Turns an unexpected error inside `stage` into a RoadError naming the stage (traceback to the log)."""
    try:
        yield
    except RoadError:
        raise
    except Exception as error:  # a TensorFlow, network or OS error: the user needs the stage and the cause
        logging.exception("stage %s failed", stage)
        raise RoadError(f"stage {stage} failed: {type(error).__name__}: {first_line(error, 300)}") from error


def write_json(path, value):
    """Writes `value` as indented JSON, atomically."""
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def stage_model(config, model_config, task, tokenizer, name, encoder_weights=None, seed_role=None):
    """A one-task model with `model_config`'s encoder for this run's data, built after seeding from
    (`train.seed`, `seed_role` or `name`): stages given the same role start alike."""
    training.seed_stage(config.train.seed, seed_role or name)
    return build_model(model_config, [task], tokenizer.vocabulary_size, config.data.max_seq_length, name,
                       encoder_weights)


def score_stage(stage_dir, evaluate, config):
    """Scores a model with `evaluate` (its task's `evaluator`), writes the prediction files into
    `stage_dir`; returns the metrics."""
    evaluation = evaluate()
    for name, value in evaluation.files.items():
        write_json(cluster.worker_path(pathlib.Path(stage_dir) / name, config.train), value)
    return evaluation.metrics


def stage_metrics(record):
    """The dev metrics a finished stage recorded in `record` (its STAGE_FILE).

    Raises:
        DataError: naming the file, when it is not the JSON object a stage writes.
    """
    written = read_json(record)
    metrics = written.get("metrics") if isinstance(written, dict) else None
    if not isinstance(metrics, dict):
        raise DataError(record, "not the record a finished stage writes (a JSON object with its metrics); delete "
                                "the stage's folder to train the stage again")
    return metrics


def finished_stage(stage_dir, model):
    """A finished stage's recorded metrics, with its kept weights loaded into `model`; None if unfinished."""
    stage_dir = pathlib.Path(stage_dir)
    if not (stage_dir / STAGE_FILE).is_file():
        return None
    metrics = stage_metrics(stage_dir / STAGE_FILE)
    model.load_weights(str(stage_dir / STAGE_WEIGHTS))
    logging.info("stage %s already finished; reusing its weights", stage_dir.name)
    return metrics


def train_stage(stage_dir, student, task_data, tokenizer, config, steps, learning_rate, teachers=(),
                distillation=None, layer_matches=(), offline_features=None):
    """Fine-tunes `student` for `steps` (or reuses a finished stage); returns its dev metrics.

    It distills from online `teachers`, or from cached teacher logits when `offline_features`
    (training features plus `teacher_logits/...` keys) are given; with neither it is plain
    fine-tuning on hard labels. The metrics say which `step` the kept weights come from.
    """
    recorded = finished_stage(stage_dir, student)
    if recorded is not None:
        return recorded
    with running(stage_dir.name):
        return _train_stage(stage_dir, student, task_data, tokenizer, config, steps, learning_rate, teachers,
                            distillation, layer_matches, offline_features)


def _train_stage(stage_dir, student, task_data, tokenizer, config, steps, learning_rate, teachers, distillation,
                 layer_matches, offline_features):
    """`train_stage`'s work for an unfinished stage."""
    num_offline = len(distillation.teachers) if offline_features is not None else 0
    distiller = Distiller(student, task_data.task, distillation=distillation, teachers=teachers,
                          num_offline_teachers=num_offline, layer_matches=layer_matches, total_steps=steps)
    train = config.train
    distiller.compile(
        optimizer=training.make_optimizer(learning_rate, steps, train.warmup_fraction, train.weight_decay,
                                          layer_lr_scales(student, train.layer_lr_decay)),
        jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution,
    )
    distiller.optimizer.build(distiller.trained_variables())
    logging.info("stage %s: %d steps", stage_dir.name, steps)
    features = task_data.train_features if offline_features is None else offline_features
    callbacks = ()
    evaluate = task_data.task.evaluator(student, task_data, tokenizer, config)
    if train.eval_every:
        records = training.evaluation_dir(stage_dir, train)
        metric = kept_metric(task_data.task, config)
        callbacks = (training.PeriodicEvaluation(student, lambda: evaluate().metrics, metric, train.eval_every, steps,
                                                 records, train.keep),)
    training.fit(distiller, features, train, steps, stage_dir, extra_callbacks=callbacks)
    step = steps
    if train.keep == "best":  # config validation: keep=best needs eval_every > 0
        best = training.best_eval(records)
        student.load_weights(str(records / training.BEST_WEIGHTS))
        step = best["step"]
    save_weights(student, cluster.worker_path(stage_dir / STAGE_WEIGHTS, config.train))
    save_weights(encoder_of(student), cluster.worker_path(stage_dir / ENCODER_WEIGHTS, config.train))
    return finish_stage(stage_dir, evaluate, config, step)


def serves_tuned_threshold(task, config):
    """Whether the exported model answers at the dev-tuned null threshold (`export.null_threshold=best`)."""
    return task.kind == SPAN and config.export.null_threshold == "best"


def kept_metric(task, config):
    """The dev metric that picks a stage's best weights: the F1 at the dev-tuned null threshold when the
    export serves that threshold, else the task's own metric."""
    return "tuned_f1" if serves_tuned_threshold(task, config) else task.metric


def finish_stage(stage_dir, evaluate, config, step):
    """Scores the stage's kept weights with `evaluate` (the evaluator of its model), records
    `stage.json` and drops the checkpoints; returns the metrics."""
    metrics = {**score_stage(stage_dir, evaluate, config), "step": step}
    write_json(cluster.worker_path(pathlib.Path(stage_dir) / STAGE_FILE, config.train), {"metrics": metrics})
    if not config.train.keep_checkpoints and cluster.is_chief(config.train):
        training.drop_checkpoints(stage_dir)
    return metrics


def multitask_stage(config, tokenizer, data, stage_dir):
    """The multi-task stage's (encoder weights path, metrics); a finished stage is reused, not rerun.

    `data`: {task name: TaskData} from `prepare_multitask` (None when the stage had finished), emptied
    once the stage trained: the other tasks' data (gigabytes of real corpora) is not needed again.
    """
    record = stage_dir / STAGE_FILE
    if record.is_file():
        return stage_dir / ENCODER_WEIGHTS, stage_metrics(record)
    with running(MULTITASK_STAGE):
        path, metrics = run_multitask_stage(config, tokenizer, data, stage_dir)
    data.clear()
    write_json(cluster.worker_path(record, config.train), {"metrics": metrics})
    if not config.train.keep_checkpoints and cluster.is_chief(config.train):
        training.drop_checkpoints(stage_dir)
    return path, metrics


def prepare_teachers(config, task_data, tokenizer, output_dir, stages):
    """Online teachers: loaded from `checkpoint`, taken whole from a Hugging Face QA folder (encoder and
    `qa_outputs` head), or trained here; records their dev metrics in `stages`."""
    if config.distillation.mode == "offline":
        return []
    task = task_data.task
    teachers = []
    for i, teacher_config in enumerate(config.distillation.teachers):
        name = f"teacher_{i}"
        teacher = stage_model(config, teacher_config.model, task, tokenizer, name)
        if teacher_config.checkpoint:
            load_teacher_weights(teacher, teacher_config.checkpoint, i)
        if teacher_config.checkpoint or task.has_pretrained_head(teacher_config.model.pretrained):
            evaluate = task_data.task.evaluator(teacher, task_data, tokenizer, config)
            stages[name] = score_stage(output_dir / name, evaluate, config)
        else:
            stages[name] = train_stage(output_dir / name, teacher, task_data, tokenizer, config,
                                       teacher_config.train_steps or config.train.steps, config.train.learning_rate)
        teachers.append(teacher)
    return teachers


def load_teacher_weights(teacher, checkpoint, index):
    """Loads a teacher's `checkpoint` into the Keras model `teacher`; ConfigError naming the teacher's
    field when it is no readable Keras weights file (`check_weights_file`) or does not fit."""
    field = f"distillation.teachers[{index}].checkpoint"
    check_weights_file(checkpoint, field)
    try:
        teacher.load_weights(str(checkpoint))
    except (ValueError, OSError) as error:
        raise ConfigError(f"{field}: {checkpoint} does not fit the teacher's model config ({weights_mismatch(error)}); "
                          "its model sizes and data.max_seq_length must be those of the run that saved it") from None


def check_models(config, task, tokenizer):
    """Fails fast (before any training) on a model that cannot be built: a pretrained encoder
    (`model.pretrained`, a teacher's) that is missing, unreadable or does not fit its settings, or a
    teacher checkpoint that is missing or does not fit its model. Models initialised at random are
    not built.

    Returns:
        (student depth, teacher depths): transformer layers, an int and a tuple of ints in
        `distillation.teachers` order; a built model's own (a pretrained encoder's may differ from
        its config's `num_layers`), else its config's `num_layers`.
    """
    student_layers = config.model.num_layers
    if config.model.pretrained != "none":
        student_layers = num_layers(stage_model(config, config.model, task, tokenizer, "student_check"))
    teacher_layers = []
    for i, teacher_config in enumerate(config.distillation.teachers):
        depth = teacher_config.model.num_layers
        if teacher_config.checkpoint:
            teacher = stage_model(config, teacher_config.model, task, tokenizer, f"teacher_check_{i}")
            load_teacher_weights(teacher, teacher_config.checkpoint, i)
            depth = num_layers(teacher)
        elif config.distillation.mode == "online" and teacher_config.model.pretrained != "none":
            depth = num_layers(stage_model(config, teacher_config.model, task, tokenizer, f"teacher_check_{i}"))
        teacher_layers.append(depth)
    return student_layers, tuple(teacher_layers)


def offline_teacher_features(distillation, task_data):
    """Training features with cached teacher logits in offline mode, else None."""
    if distillation.mode != "offline":
        return None
    return load_offline_features(distillation.cache_path, task_data.train_features, distillation.teachers)


def layer_matches(distillation, teacher_layers, student_layers):
    """Hidden-state layer matches, one tuple of `LayerMatch` per teacher (empty when hidden KD is off).

    Args:
        teacher_layers: the teachers' depths (transformer layers, ints), in `distillation.teachers` order.
        student_layers: the student's depth (int).

    Raises ConfigError naming the `distillation.layer_matches` entry, the model and its depth when a
    custom match lies beyond that depth.
    """
    if distillation.hidden_loss == "none" or not teacher_layers:
        return ()
    return tuple(tuple(build_layer_map(distillation.layer_map, depth, student_layers, distillation.layer_matches,
                                       "distillation.layer_matches", (f"distillation.teachers[{i}]", "the student")))
                 for i, depth in enumerate(teacher_layers))


def teacher_layer_matches(distillation, teachers, student):
    """`layer_matches` between the task models `teachers` and `student`."""
    return layer_matches(distillation, tuple(num_layers(teacher) for teacher in teachers), num_layers(student))


class RunInputs(typing.NamedTuple):
    """What `prepare_run` checked and loaded for a run."""

    tokenizer: object
    task: object
    task_data: object
    offline_features: object
    multitask_data: object
    """{task name: TaskData} of a multi-task stage still to run (`prepare_multitask`), else None;
    `multitask_stage` empties it once the stage trained."""


def prepare_run(config, output_dir):
    """Checks and loads what the run into `output_dir` needs before it writes anything into its
    folder, so that a run stopped by its configuration or data leaves no trace: the strategy, the
    tokenizer, the models (`check_models`) and the hidden-state layer map between their real
    depths, the multi-task passes against the replicas, then (the slow part) the main task's data
    (and that it fills a batch), the other tasks' data of a multi-task stage that has not finished
    (and that they fill its passes) and the offline teacher logits."""
    training.set_precision(config.train)
    keras.utils.set_random_seed(config.train.seed)
    training.get_strategy(config.train)
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task(config.task)
    student_layers, teacher_layers = check_models(config, task, tokenizer)
    layer_matches(config.distillation, teacher_layers, student_layers)
    stage_record = pathlib.Path(output_dir) / MULTITASK_STAGE / STAGE_FILE
    multitask_pending = config.multitask.steps and not stage_record.is_file()
    if multitask_pending:
        check_replicas(config)
    with running("data"):
        task_data = load_task_data(task, config, tokenizer)
    training.check_batch_size(task_data.train_features, config.train.batch_size)
    multitask_data = None
    if multitask_pending:
        with running("data"):
            multitask_data = prepare_multitask(config, tokenizer, task_data)
    offline_features = offline_teacher_features(config.distillation, task_data)
    return RunInputs(tokenizer, task, task_data, offline_features, multitask_data)


def run_training(config, output_dir, inputs):
    """Runs every configured stage and exports the student; returns the metrics written to metrics.json.

    `inputs` are `prepare_run(config, output_dir)`'s.
    """
    output_dir = pathlib.Path(output_dir)
    tokenizer, task, task_data, offline_features, multitask_data = inputs
    strategy = training.get_strategy(config.train)
    distillation = config.distillation
    stages = {}
    steps, lr = config.train.steps, config.train.learning_rate

    encoder_weights = None
    if config.multitask.steps:
        encoder_weights, stages[MULTITASK_STAGE] = multitask_stage(config, tokenizer, multitask_data,
                                                                   output_dir / MULTITASK_STAGE)

    with strategy.scope():
        teachers = prepare_teachers(config, task_data, tokenizer, output_dir, stages)
        if distillation.teachers and distillation.compare_without_kd:
            baseline = stage_model(config, config.model, task, tokenizer, "student_no_kd", encoder_weights,
                                   seed_role="student")
            stages["student_no_kd"] = train_stage(output_dir / "student_no_kd", baseline, task_data, tokenizer, config,
                                                  steps, lr)
        student = stage_model(config, config.model, task, tokenizer, "student", encoder_weights)
        stages["student"] = train_stage(
            output_dir / STUDENT_STAGE, student, task_data, tokenizer, config, steps, lr, teachers=teachers,
            distillation=distillation, layer_matches=teacher_layer_matches(distillation, teachers, student),
            offline_features=offline_features,
        )

    final, threshold = stages["student"], None
    if serves_tuned_threshold(task, config):
        threshold = final["tuned_null_score_diff_threshold"]
        served = task_data.task.evaluator(student, task_data, tokenizer, config, threshold)
        final = {**score_stage(output_dir / STUDENT_STAGE / "served", served, config),
                 "step": final["step"]}
    metrics = {"final": {"task": task.name, "split": "dev", **final}, "stages": stages, "export": None}
    if config.export.enabled and task.kind == SPAN and cluster.is_chief(config.train):
        exported = exported_before(config, output_dir) or export_qa_model(
            student, task, tokenizer, config, threshold, metrics["final"], source=output_dir)
        metrics["export"] = str(pathlib.Path(exported).absolute())  # export.base_dir is relative to this cwd
    return metrics


def exported_before(config, output_dir):
    """The version an attempt of this run killed after its export (before metrics.json) wrote: the
    newest version of its model when that records `output_dir` as its run; None otherwise."""
    model_dir = config.export.model_folder()
    return newest_version(model_dir) if newest_is_from(model_dir, output_dir) else None


def run_and_record(config, output_dir, inputs=None):
    """`run_training` that also writes `config.yaml` (first, once `prepare_run`'s checks passed:
    `inputs` are its result, prepared here when not given) and `metrics.json` (last, with the
    `environment` of this invocation) to `output_dir`."""
    output_dir = pathlib.Path(output_dir)
    inputs = inputs or prepare_run(config, output_dir)
    write_atomic(cluster.worker_path(output_dir / RUN_CONFIG_FILE, config.train), dump_yaml(config))
    metrics = {**run_training(config, output_dir, inputs), "environment": training.environment()}
    write_json(cluster.worker_path(output_dir / RUN_METRICS_FILE, config.train), metrics)
    return metrics
