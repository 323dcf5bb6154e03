"""The names a configuration may choose: every task and every KD loss, listed once.

This module is data only (no TensorFlow), so the configuration can validate names against it.
Behaviour lives elsewhere: `road_tf.tasks.get_task(name)` builds the task object from its spec
and `road_tf.losses.LOSSES` maps each KD loss name to its function.
"""

import dataclasses
from typing import Optional

from road_tf.errors import ConfigError

SPAN, CLASSIFICATION = "span", "classification"
KD_LOSSES = ("kl", "ce", "mse")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Where a task's data comes from and what it predicts.

    Attributes:
        name: registry key, also the name of its head in a multi-task model.
        kind: SPAN (SQuAD-style QA) or CLASSIFICATION.
        num_classes: classes of a classification task (0 for span tasks).
        reader: "module:function" reading a local file into examples.
        tfds_loader: "module:function" called as loader(name=tfds_name, split=..., skip_bad_records=...)
            -> examples.
        tfds_name: the TFDS dataset, or None when the task has no TFDS source.
        tfds_splits: TFDS split names for (train, dev).
        synthetic: key of the task's files in the synthetic corpus, or None.
        reads_main_files: the task is made from the main task's documents: with data.source=json
            it reads the main task's local files (data.train_path/dev_path or their split), and
            with tfds its data.tfds_name.
    """

    name: str
    kind: str
    num_classes: int
    reader: str
    tfds_loader: Optional[str]
    tfds_name: Optional[str]
    tfds_splits: tuple
    synthetic: Optional[str]
    reads_main_files: bool = False


TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("squad2", SPAN, 0, "road_tf.data.squad:read_squad_json", "road_tf.data.squad:load_squad_tfds",
                 "squad/v2.0", ("train", "validation"), "squad"),
        TaskSpec("squad2_cloze", SPAN, 0, "road_tf.data.cloze:read_cloze_json", "road_tf.data.cloze:load_cloze_tfds",
                 "squad/v2.0", ("train", "validation"), "squad", reads_main_files=True),
        TaskSpec("mnli", CLASSIFICATION, 3, "road_tf.data.glue:read_mnli_tsv", "road_tf.data.glue:load_glue_tfds",
                 "glue/mnli", ("train", "validation_matched"), None),
        TaskSpec("qqp", CLASSIFICATION, 2, "road_tf.data.glue:read_qqp_tsv", "road_tf.data.glue:load_glue_tfds",
                 "glue/qqp", ("train", "validation"), None),
        TaskSpec("sentiment", CLASSIFICATION, 2, "road_tf.data.sentiment:read_sentiment_tsv",
                 "road_tf.data.sentiment:load_sentiment_tfds", "glue/sst2", ("train", "validation"), None),
        TaskSpec("synthetic_nli", CLASSIFICATION, 3, "road_tf.data.glue:read_mnli_tsv", None, None, (), "nli"),
        TaskSpec("synthetic_para", CLASSIFICATION, 2, "road_tf.data.glue:read_qqp_tsv", None, None, (), "para"),
        TaskSpec("synthetic_sentiment", CLASSIFICATION, 2, "road_tf.data.sentiment:read_sentiment_tsv", None, None, (),
                 "sentiment"),
    )
}


def task_spec(name):
    """Looks a task up by name; ConfigError lists the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
