"""One shared encoder with one head per task, as a single functional Keras model.

Outputs are a dict: `hidden_states` (embedding output and every layer, [B, S, D] each) and, per
task, `{task}/start_logits` + `{task}/end_logits` ([B, S], span tasks) or `{task}/logits`
([B, C], classification tasks). A single-task model is the one-head case.
"""

import keras

from road_tf.data.features import MODEL_INPUTS, PADDING_MASK, SEGMENT_IDS
from road_tf.models.backbones import hidden_states_encoder
from road_tf.models.heads import ClassificationHead, SpanHead

HIDDEN_STATES = "hidden_states"


def logit_keys(task_name, kind):
    """Output keys holding a task's logits, in a fixed order."""
    if kind == "span":
        return (f"{task_name}/start_logits", f"{task_name}/end_logits")
    return (f"{task_name}/logits",)


def build_task_model(backbone, heads, dropout=0.1, name="road_model"):
    """Builds encoder + heads.

    Args:
        backbone: a keras-hub backbone.
        heads: dict {task_name: "span" or number of classes (int)}.
        dropout: classification-head dropout.
    Returns:
        keras.Model from {token_ids, segment_ids, padding_mask} int32 [B, S] to the output dict.
    """
    inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in MODEL_INPUTS}
    hidden = hidden_states_encoder(backbone)(inputs)
    outputs = {HIDDEN_STATES: list(hidden)}
    for task_name, head in heads.items():
        if head == "span":
            start, end = SpanHead(name=f"{task_name}_span_head")(hidden[-1], inputs[SEGMENT_IDS], inputs[PADDING_MASK])
            outputs.update(dict(zip(logit_keys(task_name, "span"), (start, end))))
        else:
            logits = ClassificationHead(int(head), dropout=dropout, name=f"{task_name}_classifier")(hidden[-1])
            outputs[logit_keys(task_name, "classification")[0]] = logits
    return keras.Model(inputs, outputs, name=name)


def encoder_of(model):
    """The shared encoder sub-model (backbone with all hidden states) inside a task model."""
    return next(layer for layer in model.layers if layer.name.endswith("_hidden_states"))


def num_layers(model):
    """Transformer layers of a task model's encoder (hidden states minus the embedding output)."""
    return len(model.output[HIDDEN_STATES]) - 1
