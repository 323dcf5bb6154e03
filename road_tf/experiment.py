"""One training run, stage by stage; shared by `python -m road_tf.train` and the TFX Trainer.

Stages (each in its own sub-folder of the run directory, each checkpointed and resumable):
  multitask/        optional multi-task pre-training of the encoder (k-task gradient averaging)
  teacher_<i>/      teachers trained here when no checkpoint is given
  student_no_kd/    the student fine-tuned on hard labels only (baseline for KD)
  student/          the student fine-tuned with KD (or plain, when there are no teachers)
The final student is evaluated and exported.
"""

import dataclasses
import json
import logging
import pathlib

import keras

from road_tf.data import sources
from road_tf.data.tokenizer import load_tokenizer
from road_tf.distillation.distiller import Distiller
from road_tf.distillation.layer_maps import build_layer_map
from road_tf.evaluation.task_eval import evaluate
from road_tf.models.backbones import build_backbone
from road_tf.models.task_model import build_task_model, num_layers
from road_tf.tasks import get_task
from road_tf import training
from road_tf.config import dump_yaml
from road_tf.files import write_atomic


@dataclasses.dataclass
class TaskData:
    """A task's examples and features for training and dev."""

    task: object
    train_examples: list
    dev_examples: list
    train_features: dict
    dev_features: dict


def load_task_data(task, config, tokenizer, is_main_task=True):
    """Reads and featurizes both splits of `task`."""
    data = config.data
    train_examples, train_files = sources.load_split(task, data, "train", is_main_task)
    dev_examples, dev_files = sources.load_split(task, data, "dev", is_main_task)
    return TaskData(
        task, train_examples, dev_examples,
        sources.featurize(task, train_examples, train_files, tokenizer, data, "train"),
        sources.featurize(task, dev_examples, dev_files, tokenizer, data, "dev"),
    )


def build_model(model_config, task, tokenizer, config, name, encoder_weights=None):
    """A task model for `task`, optionally starting from pre-trained encoder weights."""
    backbone = build_backbone(model_config, tokenizer.vocabulary_size, config.data.max_seq_length)
    model = build_task_model(backbone, {task.name: task.head}, dropout=model_config.dropout, name=name)
    if encoder_weights:
        from road_tf.multitask.trainer import load_encoder_weights

        load_encoder_weights(model, encoder_weights)
    return model


def train_stage(stage_dir, student, task_data, config, steps, learning_rate, teachers=(), distillation=None,
                layer_matches=(), offline_features=None):
    """Fine-tunes `student` for `steps`; returns dev metrics.

    It distills from online `teachers`, or from cached teacher logits when `offline_features`
    (training features plus `teacher_logits/...` keys) are given; with neither it is plain
    fine-tuning on hard labels.
    """
    task = task_data.task
    num_offline = len(distillation.teachers) if offline_features is not None else 0
    distiller = Distiller(student, task.name, task.kind, distillation=distillation, teachers=teachers,
                          num_offline_teachers=num_offline, layer_matches=layer_matches, total_steps=steps)
    train = config.train
    distiller.compile(
        optimizer=training.make_optimizer(learning_rate, steps, train.warmup_fraction, train.weight_decay),
        jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution,
    )
    distiller.optimizer.build(distiller.trained_variables())
    logging.info("stage %s: %d steps", stage_dir.name, steps)
    features = task_data.train_features if offline_features is None else offline_features
    training.fit(distiller, features, train, steps, stage_dir)
    student.save_weights(str(training.worker_path(stage_dir / "model.weights.h5", config.train)))
    return evaluate(student, task, task_data.dev_examples, task_data.dev_features, config.export)


def prepare_teachers(config, task_data, tokenizer, output_dir, stages):
    """Online teachers, loaded from `checkpoint` or trained here; records their dev metrics in `stages`."""
    if config.distillation.mode == "offline":
        return []
    task = task_data.task
    teachers = []
    for i, teacher_config in enumerate(config.distillation.teachers):
        teacher = build_model(teacher_config.model, task, tokenizer, config, name=f"teacher_{i}")
        if teacher_config.checkpoint:
            teacher.load_weights(teacher_config.checkpoint)
            stages[f"teacher_{i}"] = evaluate(teacher, task, task_data.dev_examples, task_data.dev_features,
                                              config.export)
        else:
            stages[f"teacher_{i}"] = train_stage(output_dir / f"teacher_{i}", teacher, task_data, config,
                                                 teacher_config.train_steps or config.train.steps,
                                                 config.train.learning_rate)
        teachers.append(teacher)
    return teachers


def offline_teacher_features(distillation, task_data):
    """Training features with cached teacher logits in offline mode, else None."""
    if distillation.mode != "offline":
        return None
    from road_tf.cache_teacher import load_offline_features

    return load_offline_features(distillation.cache_path, task_data.train_features, len(distillation.teachers))


def teacher_layer_matches(distillation, teachers, student):
    """Hidden-state layer matches between the first teacher and the student (empty if hidden KD is off)."""
    if distillation.hidden_loss == "none" or not teachers:
        return ()
    teacher = teachers[0]
    matches = distillation.layer_matches if distillation.layer_map == "custom" else ()
    return tuple(build_layer_map(distillation.layer_map, num_layers(teacher), num_layers(student), matches))


def check_layer_map(config):
    """Fails fast (before any training) on a layer map beyond a randomly initialised model's depth."""
    distillation = config.distillation
    if distillation.hidden_loss == "none" or not distillation.teachers:
        return
    teacher, student = distillation.teachers[0].model, config.model
    if teacher.pretrained == "none" and student.pretrained == "none":
        matches = distillation.layer_matches if distillation.layer_map == "custom" else ()
        build_layer_map(distillation.layer_map, teacher.num_layers, student.num_layers, matches)


def run_training(config, output_dir):
    """Runs every configured stage; returns the metrics dict written to metrics.json."""
    check_layer_map(config)
    output_dir = pathlib.Path(output_dir)
    training.set_precision(config.train)
    keras.utils.set_random_seed(config.train.seed)
    strategy = training.get_strategy(config.train)
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task(config.task)
    task_data = load_task_data(task, config, tokenizer)
    stages = {}
    distillation = config.distillation
    steps, lr = config.train.steps, config.train.learning_rate

    encoder_weights = None
    if config.multitask.steps:
        from road_tf.multitask.trainer import run_multitask_stage

        encoder_weights, stages["multitask"] = run_multitask_stage(config, tokenizer, task_data, output_dir / "multitask")

    with strategy.scope():
        teachers = prepare_teachers(config, task_data, tokenizer, output_dir, stages)
        if distillation.teachers and distillation.compare_without_kd:
            baseline = build_model(config.model, task, tokenizer, config, "student_no_kd", encoder_weights)
            stages["student_no_kd"] = train_stage(output_dir / "student_no_kd", baseline, task_data, config, steps, lr)
        student = build_model(config.model, task, tokenizer, config, "student", encoder_weights)
        stages["student"] = train_stage(
            output_dir / "student", student, task_data, config, steps, lr, teachers=teachers,
            distillation=distillation, layer_matches=teacher_layer_matches(distillation, teachers, student),
            offline_features=offline_teacher_features(distillation, task_data),
        )

    final = {"task": task.name, "split": "dev", **stages["student"]}
    metrics = {"final": final, "dev": stages["student"], "stages": stages, "export": None}
    if config.export.enabled and task.kind == "span" and training.is_chief(config.train):
        from road_tf.export import export_qa_model

        metrics["export"] = str(export_qa_model(student, tokenizer, config, task.name))
    return metrics


def run_and_record(config, output_dir):
    """`run_training` that also writes `config.yaml` (first) and `metrics.json` (last) to `output_dir`."""
    output_dir = pathlib.Path(output_dir)
    write_atomic(training.worker_path(output_dir / "config.yaml", config.train), dump_yaml(config))
    metrics = run_training(config, output_dir)
    write_atomic(training.worker_path(output_dir / "metrics.json", config.train), json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
