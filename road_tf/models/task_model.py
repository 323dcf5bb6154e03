"""One shared encoder with one head per task, as a single functional Keras model.

Outputs are a dict: `hidden_states` (embedding output and every layer, [B, S, D] each) and each
task's logits under its own keys (`task.logit_keys`). A single-task model is the one-head case.
"""

import pathlib

import keras

from road_tf.data.features import MODEL_INPUTS
from road_tf.errors import ConfigError, weights_mismatch
from road_tf.models.backbones import build_backbone, hidden_states_encoder

HIDDEN_STATES = "hidden_states"


def build_task_model(backbone, tasks, dropout=0.1, name="road_model"):
    """Builds encoder + heads.

    Args:
        backbone: a keras-hub backbone.
        tasks: task objects (`road_tf.tasks`); each adds its head with `task.head_outputs(sequence,
            inputs, dropout)`.
        dropout: classification-head dropout.
    Returns:
        keras.Model from {token_ids, segment_ids, padding_mask} int32 [B, S] to the output dict.
    """
    inputs = {key: keras.Input(shape=(None,), dtype="int32", name=key) for key in MODEL_INPUTS}
    hidden = hidden_states_encoder(backbone)(inputs)
    outputs = {HIDDEN_STATES: list(hidden)}
    for task in tasks:
        outputs.update(task.head_outputs(hidden[-1], inputs, dropout))
    return keras.Model(inputs, outputs, name=name)


def build_model(model_config, tasks, vocabulary_size, max_sequence_length, name, encoder_weights=None):
    """A task model with a `ModelConfig`'s encoder, optionally starting from saved encoder weights.

    A head that the pretrained checkpoint carries (a Hugging Face `*ForQuestionAnswering` folder's
    `qa_outputs`) is loaded too (`task.load_pretrained_head`).

    Args:
        tasks: the task objects whose heads the model carries.
        vocabulary_size: the tokenizer's; max_sequence_length: `data.max_seq_length`.
        encoder_weights: an `encoder.weights.h5` written by the multi-task stage, or None.
    """
    backbone = build_backbone(model_config, vocabulary_size, max_sequence_length)
    model = build_task_model(backbone, tasks, dropout=model_config.dropout, name=name)
    for task in tasks:
        task.load_pretrained_head(model, model_config.pretrained)
    if encoder_weights:
        load_encoder_weights(model, encoder_weights)
    return model


def encoder_of(model):
    """The shared encoder sub-model (backbone with all hidden states) inside a task model."""
    return next(layer for layer in model.layers if layer.name.endswith("_hidden_states"))


def load_encoder_weights(model, path):
    """Loads encoder weights (`encoder_of(...).save_weights`) into `model`'s encoder.

    Args:
        model: a task model (`build_task_model`) whose backbone has the same configuration.
        path: the `encoder.weights.h5` file.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no multi-task encoder weights there (run the multitask stage first)")
    try:
        encoder_of(model).load_weights(str(path))
    except ValueError as error:
        raise ConfigError(f"{path}: these encoder weights do not fit this model's encoder (model and multitask "
                          f"encoders must share one configuration): {weights_mismatch(error)}") from None


def layer_lr_scales(model, decay):
    """Learning-rate factors for layer-wise decay, ELECTRA's fine-tuning rule.

    With L transformer layers, layer i (0 = the lowest) trains at `decay ** (L - i)` times the
    stage's rate and the rest of the encoder (embeddings) at `decay ** (L + 1)`; variables outside
    the encoder (heads, projections) keep the full rate.

    Returns:
        {variable path: factor} for the encoder's trainable variables; {} when `decay` is 1.
    """
    if decay == 1.0:
        return {}
    encoder = encoder_of(model)
    layers = num_layers(model)
    scales = {variable.path: decay ** (layers + 1) for variable in encoder.trainable_variables}
    for i in range(layers):
        for variable in encoder.get_layer(f"transformer_layer_{i}").trainable_variables:
            scales[variable.path] = decay ** (layers - i)
    return scales


def num_layers(model):
    """Transformer layers of a task model's encoder (hidden states minus the embedding output)."""
    return len(model.output[HIDDEN_STATES]) - 1
