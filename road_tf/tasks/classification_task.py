"""Sentence and sentence-pair classification: MNLI, QQP, sentiment."""

import numpy as np

from road_tf import losses
from road_tf.data.features import LABEL, featurize_classification
from road_tf.evaluation.classification import classification_metrics
from road_tf.models.heads import ClassificationHead
from road_tf.models.inference import predict_outputs
from road_tf.registry import CLASSIFICATION
from road_tf.tasks.task import Evaluation, Task


class ClassificationTask(Task):
    """A classification task: outputs `<task>/logits`, float32 [B, num_classes]."""

    kind = CLASSIFICATION
    metric = "accuracy"
    needs_dev_features = True

    @property
    def num_classes(self):
        return self.spec.num_classes

    @property
    def logit_keys(self):
        return self.output_keys(("logits",))

    def featurize(self, tokenizer, examples, data_config):
        """ClassificationExamples -> `[CLS] a [SEP] (b [SEP])` features with labels."""
        return featurize_classification(tokenizer, examples, data_config.max_seq_length)

    def head_outputs(self, sequence, inputs, dropout):
        """{logits key: [B, C]} from the last hidden state [B, S, D] (its [CLS] row)."""
        head = ClassificationHead(self.num_classes, dropout=dropout, name=f"{self.name}_classifier")
        return {self.logit_keys[0]: head(sequence)}

    def has_pretrained_head(self, pretrained):
        """Classification heads are never taken from a checkpoint."""
        return False

    def load_pretrained_head(self, model, pretrained):
        """Nothing to load: the head starts from its random initialisation."""

    def hard_loss(self, logits, data):
        """Per-example cross-entropy [B] of (logits,) against the labels."""
        return losses.class_ce(logits[0], data[LABEL])

    def evaluate(self, model, data, tokenizer, config, null_score_diff_threshold=None):
        """Accuracy and F1 on the dev features; predictions.json maps each example id to its class."""
        logits = predict_outputs(model, data.dev_features, self.logit_keys)[self.logit_keys[0]]
        predicted = np.argmax(logits, axis=-1)
        files = {"predictions.json": {example.guid: int(label) for example, label in zip(data.dev_examples, predicted)}}
        return Evaluation(classification_metrics(data.dev_features[LABEL], predicted), files)
