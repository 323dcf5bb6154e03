"""Constants of the pipeline runs (the runners hold the paths, pipeline.py holds none), and the
settings the Trainer lays over the recipe."""

import hashlib
import os
import pathlib

from road_tf import config as config_lib
from road_tf.files import write_atomic
from road_tf.packaged import compared_path

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
    return config_lib.load_config(path, trainer_overrides(scratch))


def recipe_paths(config):
    """{setting: path} of the files and folders a resolved recipe makes the Trainer read from outside
    the image (data.train_path and dev_path aside: the Trainer reads the pipeline's examples). Offline
    too it reads the teachers' checkpoints: it checks that they fit their models and made the cache."""
    data, distillation = config.data, config.distillation
    paths = {
        "data.vocab": "" if data.vocab == "minilm" else data.vocab,
        "distillation.cache_path": distillation.cache_path if distillation.mode == "offline" else "",
        **{f"{field}.pretrained": "" if model.pretrained in config_lib.PRETRAINED_KEYWORDS else model.pretrained
           for field, model in config_lib.model_sections(config).items()},
        **{f"distillation.teachers[{i}].checkpoint": teacher.checkpoint
           for i, teacher in enumerate(distillation.teachers)},
        **{f"multitask.task_files[{i}].{name}": getattr(files, name)
           for i, files in enumerate(config.multitask.task_files) for name in ("train_path", "dev_path")},
    }
    return {setting: path for setting, path in paths.items() if path}


def _files_read(path):
    """[(file, NAME)] that the Trainer may read at `path`: the file itself (NAME ""); of a road_tf run
    folder its config.yaml, metrics.json and student stage (not its log, which another run in the
    same process may append to); of any other folder every file. NAMEs are relative to `path`."""
    path = pathlib.Path(compared_path(path))
    if path.is_file():
        return [(path, "")]
    if config_lib.is_run_directory(path):
        found = [path / config_lib.RUN_CONFIG_FILE, path / config_lib.RUN_METRICS_FILE,
                 *(path / config_lib.STUDENT_STAGE).rglob("*")]
    else:
        found = path.rglob("*") if path.is_dir() else []
    return sorted((file, str(file.relative_to(path))) for file in found if file.is_file())


def inputs_stamp(config):
    """A sha256 hex digest of the name, size, modification time and inode of every file the Trainer reads
    besides the pipeline's examples (`recipe_paths`: pretrained run folders, teacher checkpoints,
    logit caches, multi-task files). The Trainer's cache key holds only their paths, so without it
    a cached model would outlive a retrained `runs/squad1_minilm`; with it, a changed file reruns
    the Trainer."""
    digest = hashlib.sha256()
    for setting, path in sorted(recipe_paths(config).items()):
        digest.update("\n".join([setting, path, *_stat_lines(path), ""]).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _stat_lines(path):
    """"NAME SIZE MTIME_NS INODE" of each file `_files_read` finds at `path` (the inode tells a file
    replaced by a rename apart, even with its time copied); ["missing"] for none; ["unreadable:
    WHY"] when a folder cannot be searched or a file vanishes meanwhile (the Trainer reports it)."""
    try:
        return [f"{name} {stat.st_size} {stat.st_mtime_ns} {stat.st_ino}"
                for file, name in _files_read(path) for stat in [os.stat(file)]] or ["missing"]
    except OSError as error:
        return [f"unreadable: {error.strerror}"]
