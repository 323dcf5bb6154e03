"""Constants of the pipeline runs (the runners hold the paths, pipeline.py holds none), and the
settings the Trainer lays over the recipe."""

from road_tf.config import load_config
from road_tf.files import write_atomic

# Kubeflow V2 accepts [a-z0-9][a-z0-9-]* only.
PIPELINE_NAME = "road-tfx"
MODEL_NAME = "road_tfx"
# Gate floor: dev F1 must exceed the always-"no answer" F1 of the eval split by this many points.
NO_ANSWER_MARGIN = 1.0
# Gate regression rule: dev F1 may trail the latest blessed model's F1 by at most this many points.
REGRESSION_TOLERANCE = 0.5
# A single SQuAD file is split by article until the eval half holds this many questions.
MIN_DEV_QUESTIONS = 1000


def trainer_overrides(scratch):
    """The settings the Trainer's run_fn lays over the pipeline's recipe: the two splits, written as
    SQuAD JSON under `scratch` (a pathlib.Path), are its data (not split again), the whole eval split is
    scored, the Pusher exports instead of the run, and the feature cache stays in `scratch`."""
    return ["data.source=json", f"data.train_path={scratch / 'train.json'}", f"data.dev_path={scratch / 'dev.json'}",
            "data.split_dev_questions=0", "data.max_eval_examples=0", "export.enabled=false",
            f"data.cache_dir={scratch / 'cache'}"]


def trainer_config(config_yaml, scratch):
    """The road_tf Config run_fn trains with: the resolved recipe `config_yaml` (text), written to
    scratch/config.yaml, loaded with `trainer_overrides(scratch)`.

    Raises:
        ConfigError: the recipe conflicts with the Trainer's settings.
    """
    path = scratch / "config.yaml"
    write_atomic(path, config_yaml)
    return load_config(path, trainer_overrides(scratch))
