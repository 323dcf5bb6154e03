"""The task registry: one entry per task says how to read, featurize, model and score it.

Adding a task is one `Task(...)` entry in `TASKS`.
"""

import dataclasses
import importlib
from typing import Optional

from road_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Task:
    """A task.

    Attributes:
        name: registry key, also the name of its head in a multi-task model.
        kind: "span" (SQuAD-style QA) or "classification".
        num_classes: classes of a classification task (0 for span tasks).
        reader: "module:function" reading a local file into examples.
        tfds_loader: "module:function" called as loader(name=tfds_name, split=...) -> examples.
        tfds_name: the TFDS dataset, or None when the task has no TFDS source.
        tfds_splits: TFDS split names for (train, dev).
        synthetic: key of the task's files in the synthetic corpus, or None.
        metric: name of the headline dev metric ("f1" for span tasks, "accuracy" otherwise).
    """

    name: str
    kind: str
    num_classes: int
    reader: str
    tfds_loader: Optional[str]
    tfds_name: Optional[str]
    tfds_splits: tuple
    synthetic: Optional[str]
    metric: str

    @property
    def head(self):
        """What `build_task_model` needs: "span" or the number of classes."""
        return "span" if self.kind == "span" else self.num_classes


TASKS = {
    task.name: task
    for task in (
        Task("squad2", "span", 0, "road_tf.data.squad:read_squad_json", "road_tf.data.squad:load_squad_tfds", "squad/v2.0",
             ("train", "validation"), "squad", "f1"),
        Task("mnli", "classification", 3, "road_tf.data.glue:read_mnli_tsv", "road_tf.data.glue:load_glue_tfds", "glue/mnli",
             ("train", "validation_matched"), None, "accuracy"),
        Task("qqp", "classification", 2, "road_tf.data.glue:read_qqp_tsv", "road_tf.data.glue:load_glue_tfds", "glue/qqp",
             ("train", "validation"), None, "accuracy"),
        Task("sentiment", "classification", 2, "road_tf.data.sentiment:read_sentiment_tsv",
             "road_tf.data.sentiment:load_sentiment_tfds", "glue/sst2", ("train", "validation"), None, "accuracy"),
        Task("synthetic_nli", "classification", 3, "road_tf.data.glue:read_mnli_tsv", None, None, (), "nli", "accuracy"),
        Task("synthetic_para", "classification", 2, "road_tf.data.glue:read_qqp_tsv", None, None, (), "para", "accuracy"),
        Task("synthetic_sentiment", "classification", 2, "road_tf.data.sentiment:read_sentiment_tsv", None, None, (),
             "sentiment", "accuracy"),
    )
}


def get_task(name):
    """Looks a task up by name; ConfigError lists the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def resolve(reference):
    """Imports "module:function"."""
    module, function = reference.split(":")
    return getattr(importlib.import_module(module), function)
