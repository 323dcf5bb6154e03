"""Tasks: one object per task knows how to featurize, model, train and score it.

`get_task(name)` builds a task from its spec in `road_tf.registry`, the one list of task names.
"""

from road_tf.registry import CLASSIFICATION, SPAN, task_spec
from road_tf.tasks.classification_task import ClassificationTask
from road_tf.tasks.span_task import SpanTask
from road_tf.tasks.task import Evaluation, Task, TaskData, load_task_data

TASK_CLASSES = {SPAN: SpanTask, CLASSIFICATION: ClassificationTask}

__all__ = ["ClassificationTask", "Evaluation", "SpanTask", "Task", "TaskData", "get_task", "load_task_data"]


def get_task(name):
    """The task object named `name`; ConfigError lists the known names."""
    spec = task_spec(name)
    return TASK_CLASSES[spec.kind](spec)
