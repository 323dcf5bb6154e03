"""python -m road_tf.cache_teacher: run the teacher(s) once and cache their logits for offline KD.

    python -m road_tf.cache_teacher --config RECIPE [--set ...] --output teacher.tfrecord

Every teacher in `distillation.teachers` must name its trained weights in `checkpoint`. The
output holds the training features plus `teacher_logits/<teacher>/<head>` per window (TFRecords
with a JSON sidecar, written atomically). Train with `--set distillation.mode=offline --set
distillation.cache_path=teacher.tfrecord`: the step then costs about what plain fine-tuning costs.
"""

import logging
import pathlib
import sys

from road_tf import config as config_lib
from road_tf.data import sources
from road_tf.data.vocab import check_encoder_vocabularies
from road_tf.errors import ArgumentParser, ConfigError, RoadError, cli_main, nonempty, one_line_when_stopped
from road_tf.files import check_distinct, check_weights_file, check_writable_dir, check_writable_file


def parse_args(argv):
    parser = ArgumentParser(prog="python -m road_tf.cache_teacher",
                            description="Cache teacher logits over the training split for offline KD.")
    parser.add_argument("--config", type=nonempty, help="recipe name or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field, as in python -m road_tf.train (repeatable)")
    parser.add_argument("--output", type=nonempty, required=True,
                        help="TFRecord file to write (a .json sidecar goes beside it)")
    return parser.parse_args(argv)


def cache_teacher_logits(config, output):
    """Runs every teacher of `config` (each with a `checkpoint`) over the training split; writes `output`.

    The cache holds the training features and `teacher_logits/<teacher>/<head>` per window, written
    atomically (TFRecords plus a JSON sidecar that records each checkpoint's sha256, which training
    checks against its teachers). Each checkpoint must be a readable Keras weights file, checked
    before the data loads.
    """
    teachers_config = config.distillation.teachers
    if not teachers_config:
        raise ConfigError("distillation.teachers: no teachers configured")
    for i, teacher in enumerate(teachers_config):
        field = f"distillation.teachers[{i}].checkpoint"
        if not teacher.checkpoint:
            raise ConfigError(f"{field}: required to cache a teacher's logits")
        check_weights_file(teacher.checkpoint, field)
    check_encoder_vocabularies(config)
    from road_tf.data.features import write_feature_cache  # TensorFlow loads here, once the checks passed
    from road_tf.data.tokenizer import load_tokenizer
    from road_tf.distillation.offline import teacher_logits, teacher_notes
    from road_tf.experiment import load_teacher_weights
    from road_tf.models.task_model import build_model
    from road_tf.tasks import get_task, load_task_data

    notes = teacher_notes(teachers_config)  # before the weights load: what the logits come from
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task(config.task)
    task_data = load_task_data(task, config, tokenizer)
    teachers = []
    for i, teacher_config in enumerate(teachers_config):
        teacher = build_model(teacher_config.model, [task], tokenizer.vocabulary_size, config.data.max_seq_length,
                              f"teacher_{i}")
        load_teacher_weights(teacher, teacher_config.checkpoint, i)
        teachers.append(teacher)
    features = dict(task_data.train_features)
    features.update(teacher_logits(teachers, task, features))
    write_feature_cache(output, features, notes)


def check_outputs(output, config, recipe):
    """RoadError when `output` or its .json sidecar would overwrite a file the command reads (the
    --config file `recipe`, None without one; data, vocabulary, teacher checkpoints) or each other (an
    --output ending in .json), or when the sidecar cannot be written (`output` itself is checked
    before the config loads)."""
    sidecar = pathlib.Path(output).with_suffix(".json")
    if sidecar == pathlib.Path(output):
        raise RoadError(f"--output {output}: its .json sidecar would overwrite it; name it .tfrecord")
    data = config.data
    read = {"--config": recipe, "data.train_path": data.train_path, "data.dev_path": data.dev_path,
            "data.vocab": "" if data.vocab == "minilm" else data.vocab,
            **{f"distillation.teachers[{i}].checkpoint": teacher.checkpoint
               for i, teacher in enumerate(config.distillation.teachers)}}
    check_distinct({"--output": output, "the .json sidecar of --output": sidecar}, read)
    check_writable_file(sidecar, "--output")


@cli_main
def main(argv=None):
    args = parse_args(argv)
    with one_line_when_stopped(lambda: "the teacher logits were not cached; rerun the command to cache them"):
        return cache_to(args)


def cache_to(args):
    """Checks the parsed flags `args`, then caches the logits of the teachers of their config to
    `args.output` (`cache_teacher_logits`) and prints its path -> 0."""
    check_writable_file(args.output, "--output")
    path, config = config_lib.load_recipe(args.config, args.overrides)
    check_outputs(args.output, config, path)
    check_writable_dir(sources.cache_root(config.data), "data.cache_dir")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    cache_teacher_logits(config, args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
