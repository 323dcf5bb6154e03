"""Scores a task model on a task's dev examples: SQuAD 2.0 metrics or classification metrics."""

import numpy as np

from road_tf.data.features import LABEL
from road_tf.evaluation.classification import classification_metrics
from road_tf.evaluation.decoding import decode_spans
from road_tf.evaluation.squad_metric import squad_v2_metrics
from road_tf.models.task_model import logit_keys
from road_tf.training import predict_outputs


def evaluate(model, task, examples, features, export_config, batch_size=64):
    """Returns the task's dev metrics (SQuAD: official v2.0 keys; classification: accuracy, F1)."""
    keys = logit_keys(task.name, task.kind)
    outputs = predict_outputs(model, features, keys, batch_size)
    if task.kind == "span":
        predictions, na_probs, _ = decode_spans(
            examples,
            {"example_index": features["example_index"], "offsets": features["char_offsets"]},
            outputs[keys[0]], outputs[keys[1]],
            n_best_size=export_config.n_best_size,
            max_answer_length=export_config.max_answer_length,
            null_score_diff_threshold=export_config.null_score_diff_threshold,
        )
        return squad_v2_metrics(examples, predictions, na_probs)
    predicted = np.argmax(outputs[keys[0]], axis=-1)
    return classification_metrics(features[LABEL], predicted)

