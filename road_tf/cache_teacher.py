"""python -m road_tf.cache_teacher: run the teacher(s) once and cache their logits for offline KD.

    python -m road_tf.cache_teacher --config RECIPE [--set ...] --output teacher.tfrecord

Every teacher in `distillation.teachers` must name its trained weights in `checkpoint`. The
output holds the training features plus `teacher_logits/<teacher>/<head>` per window (TFRecords
with a JSON sidecar, written atomically). Train with `--set distillation.mode=offline --set
distillation.cache_path=teacher.tfrecord`: the step then costs about what plain fine-tuning costs.
"""

import argparse
import logging
import sys

import numpy as np

from road_tf import config as config_lib
from road_tf.distillation.distiller import offline_teacher_key
from road_tf.errors import ConfigError, DataError, cli_main

def teacher_logits(teachers, task, features, batch_size=64):
    """{offline_teacher_key(t, h): float32 [N, ...]} for every teacher model and logits head."""
    from road_tf.models.task_model import logit_keys
    from road_tf.training import predict_outputs

    keys = logit_keys(task.name, task.kind)
    cached = {}
    for t, teacher in enumerate(teachers):
        outputs = predict_outputs(teacher, features, keys, batch_size)
        cached.update({offline_teacher_key(t, h): outputs[key].astype(np.float32) for h, key in enumerate(keys)})
    return cached


def load_offline_features(path, train_features, num_teachers):
    """Training features with cached teacher logits; checks they were made from the same features."""
    from road_tf.data.features import TOKEN_IDS, read_feature_cache

    cached = read_feature_cache(path)
    if cached is None:
        raise DataError(path, "no complete teacher-logits cache here; run python -m road_tf.cache_teacher first")
    if not np.array_equal(cached[TOKEN_IDS], train_features[TOKEN_IDS]):
        raise DataError(path, "the cached teacher logits were computed on different training features "
                              "(data or featurization settings changed); rebuild the cache")
    missing = [offline_teacher_key(t, 0) for t in range(num_teachers) if offline_teacher_key(t, 0) not in cached]
    if missing:
        raise DataError(path, f"cache lacks {', '.join(missing)}; it holds fewer teachers than configured")
    return cached


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m road_tf.cache_teacher",
                                     description="Cache teacher logits over the training split for offline KD.")
    parser.add_argument("--config", help="recipe name or YAML file of overrides")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", required=True, help="TFRecord file to write (a .json sidecar goes beside it)")
    return parser.parse_args(argv)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    path = config_lib.resolve_recipe(args.config) if args.config else None
    config = config_lib.load_config(path, args.overrides)
    teachers_config = config.distillation.teachers
    if not teachers_config:
        raise ConfigError("distillation.teachers: no teachers configured")
    for i, teacher in enumerate(teachers_config):
        if not teacher.checkpoint:
            raise ConfigError(f"distillation.teachers[{i}].checkpoint: required to cache a teacher's logits")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)

    from road_tf.data.features import write_feature_cache
    from road_tf.data.tokenizer import load_tokenizer
    from road_tf.experiment import build_model, load_task_data
    from road_tf.tasks import get_task

    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task(config.task)
    task_data = load_task_data(task, config, tokenizer)
    teachers = []
    for i, teacher_config in enumerate(teachers_config):
        teacher = build_model(teacher_config.model, task, tokenizer, config, name=f"teacher_{i}")
        teacher.load_weights(teacher_config.checkpoint)
        teachers.append(teacher)
    features = dict(task_data.train_features)
    features.update(teacher_logits(teachers, task, features))
    write_feature_cache(args.output, features)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
