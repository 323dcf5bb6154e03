"""What every task shares: its spec, its logits' output keys, its data, its evaluation result."""

import dataclasses

from road_tf.data import sources


@dataclasses.dataclass
class Evaluation:
    """A model's dev score on one task.

    Attributes:
        metrics: the task's metric dict (SQuAD: the official v2.0 keys; classification: accuracy, F1).
        files: {file name: JSON-ready object} to write beside the stage (predictions, n-best lists).
    """

    metrics: dict
    files: dict


class Task:
    """Base of the task classes: the parts that do not depend on the kind of task.

    Args:
        spec: the task's `road_tf.registry.TaskSpec`.
    """

    kind = None
    metric = None

    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"

    def output_keys(self, suffixes):
        """This task's model output keys, `<task>/<suffix>`."""
        return tuple(f"{self.name}/{suffix}" for suffix in suffixes)

    def evaluator(self, model, data, tokenizer, config, null_score_diff_threshold=None):
        """A function of no arguments returning `evaluate(...)`'s Evaluation of `model` as its weights
        are at the call (evaluations during training call it again and again)."""
        return lambda: self.evaluate(model, data, tokenizer, config, null_score_diff_threshold)

    def load_examples(self, data_config, split, is_main_task=True, task_files=None, tokenizer=None):
        """The examples of one split; see `road_tf.data.sources.load_split`."""
        return sources.load_split(self.spec, data_config, split, is_main_task, task_files, tokenizer)

    def features(self, tokenizer, examples, data_config, split):
        """`featurize`'s output for one split, cached under the run's cache folder."""
        return sources.cached_features(self.name, split, examples, tokenizer, data_config,
                                       lambda: self.featurize(tokenizer, examples, data_config))


@dataclasses.dataclass
class TaskData:
    """A task's examples and features for training and dev (dev features: None when evaluation needs none)."""

    task: Task
    train_examples: list
    dev_examples: list
    train_features: dict
    dev_features: object


def load_task_data(task, config, tokenizer, is_main_task=True):
    """Reads and featurizes both splits of `task` (the run's main task unless `is_main_task` is False),
    from its `multitask.task_files` entry when it has one."""
    data = config.data
    files = config.multitask.files_of(task.name)
    train_examples = task.load_examples(data, "train", is_main_task, files, tokenizer)
    dev_examples = task.load_examples(data, "dev", is_main_task, files, tokenizer)
    dev_features = task.features(tokenizer, dev_examples, data, "dev") if task.needs_dev_features else None
    return TaskData(task, train_examples, dev_examples, task.features(tokenizer, train_examples, data, "train"),
                    dev_features)
