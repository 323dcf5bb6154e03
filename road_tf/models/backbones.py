"""Encoders: keras-hub BERT/ELECTRA backbones from a `ModelConfig`, and every layer's output."""

import dataclasses
import pathlib

import keras
import keras_hub

from road_tf.config import is_run_directory, load_run_config, run_encoder_weights
from road_tf.errors import ConfigError, error_reason, weights_mismatch
from road_tf.minilm import minilm_path
from road_tf.models.convert import load_hf_backbone, load_hf_bert

TRANSFORMER_LAYER = "transformer_layer_"


def preset_backbone(preset, dropout):
    """The keras-hub backbone of `preset` with `dropout`; ConfigError when it cannot be fetched (keras-hub
    downloads a preset on first use, then reads its cache)."""
    try:
        return keras_hub.models.Backbone.from_preset(preset, dropout=dropout)
    except OSError as error:  # requests' ConnectionError is one: no network, or the host is down
        raise ConfigError(f"model.preset {preset}: cannot be fetched ({error_reason(error)}); "
                          "keras-hub downloads a preset on first use: without the internet, start from a local "
                          "encoder (model.pretrained=minilm, or a folder)") from None


def build_backbone(model_config, vocabulary_size, max_sequence_length):
    """Builds (or loads) the encoder a `ModelConfig` describes.

    Args:
        model_config: `road_tf.config.ModelConfig`; a checkpoint or run keeps the transformer
            layers its `pretrained_layers` lists (all when empty), and every encoder gets its
            `dropout`.
        vocabulary_size: size of the tokenizer's vocabulary (random init only).
        max_sequence_length: position-embedding size (random init only).
    Returns:
        a keras-hub `BertBackbone` or `ElectraBackbone`.
    """
    if model_config.pretrained == "minilm":
        backbone = load_hf_bert(minilm_path(), dropout=model_config.dropout, layers=model_config.pretrained_layers)
    elif model_config.pretrained == "preset":
        backbone = preset_backbone(model_config.preset, model_config.dropout)
    elif is_run_directory(model_config.pretrained):
        backbone = backbone_from_run(model_config.pretrained, model_config.pretrained_layers, model_config.dropout,
                                     vocabulary_size, max_sequence_length)
    elif model_config.pretrained != "none":
        backbone = load_hf_backbone(model_config.pretrained, dropout=model_config.dropout,
                                    layers=model_config.pretrained_layers)
    elif model_config.family == "bert":
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            num_layers=model_config.num_layers,
            num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim,
            intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout,
            max_sequence_length=max_sequence_length,
        )
    else:
        backbone = keras_hub.models.ElectraBackbone(
            vocab_size=vocabulary_size,
            num_layers=model_config.num_layers,
            num_heads=model_config.num_heads,
            hidden_dim=model_config.hidden_dim,
            embedding_dim=model_config.hidden_dim,
            intermediate_dim=model_config.intermediate_dim,
            dropout=model_config.dropout,
            max_sequence_length=max_sequence_length,
        )
    check_vocabulary(backbone, vocabulary_size, model_config)
    return backbone


def backbone_from_run(run, layers, dropout, vocabulary_size, max_sequence_length):
    """The encoder of the model a finished road_tf run exported, cut to `layers` (all when empty).

    Args:
        run: the run directory; its `config.yaml` gives the encoder's configuration and
            `student/encoder.weights.h5` its weights.
        layers: the run's transformer layers to keep (`model.pretrained_layers`).
        dropout: the encoder's dropout rate (`model.dropout`), whatever the run trained with.
        vocabulary_size: the tokenizer's (a randomly initialised run's encoder needs it).
        max_sequence_length: `data.max_seq_length` of this run, at most the run encoder's positions.
    Raises:
        ConfigError: the run is unfinished, saved no encoder weights, has fewer positions than
            this run's windows, or lacks a layer asked for.
    """
    made = load_run_config(run, "model.pretrained")
    path = run_encoder_weights(run)
    if not pathlib.Path(path).is_file():
        raise ConfigError(f"model.pretrained: the run {run} saved no encoder weights ({path}); "
                          "runs from before encoders were saved must be rerun")
    source = build_backbone(dataclasses.replace(made.model, dropout=dropout), vocabulary_size,
                            made.data.max_seq_length)
    try:
        hidden_states_encoder(source).load_weights(path)
    except ValueError as error:
        raise ConfigError(f"model.pretrained: {path} does not fit the encoder of the run's config.yaml: "
                          f"{weights_mismatch(error)}") from None
    if max_sequence_length > source.max_sequence_length:
        raise ConfigError(f"data.max_seq_length: {max_sequence_length} is more than the {source.max_sequence_length} "
                          f"positions of the encoder of the run {run} (model.pretrained)")
    if not layers:
        return source
    if max(layers) >= source.num_layers:
        raise ConfigError(f"model.pretrained_layers: {list(layers)} asks for layer {max(layers)}, but the run {run} "
                          f"has {source.num_layers} layers (0 to {source.num_layers - 1})")
    return cut_backbone(source, layers)


def cut_backbone(source, layers):
    """A copy of keras-hub backbone `source` that keeps only its transformer layers `layers`.

    Layer i of the copy is `source`'s layer layers[i] (weights and feed-forward activation);
    embeddings and pooler are copied whole.
    """
    backbone = type(source).from_config({**source.get_config(), "num_layers": len(layers)})
    for layer in backbone.layers:
        if not layer.weights:
            continue
        block = layer.name.startswith(TRANSFORMER_LAYER)
        origin = f"{TRANSFORMER_LAYER}{layers[int(layer.name[len(TRANSFORMER_LAYER):])]}" if block else layer.name
        kept = source.get_layer(origin)
        layer.set_weights(kept.get_weights())
        if block:
            layer.activation = kept.activation
            layer._feedforward_intermediate_dense.activation = kept._feedforward_intermediate_dense.activation
    return backbone


def backbone_vocabulary_size(backbone):
    """Rows of the backbone's token embedding."""
    return backbone.get_layer("token_embedding").input_dim


def check_vocabulary(backbone, vocabulary_size, model_config):
    """Raises ConfigError when the encoder's embedding does not match the tokenizer."""
    size = backbone_vocabulary_size(backbone)
    if size != vocabulary_size:
        raise ConfigError(
            f"model.pretrained={model_config.pretrained!r}: the encoder's vocabulary has {size} tokens "
            f"but the tokenizer (data.vocab) has {vocabulary_size}"
        )


def hidden_states_encoder(backbone):
    """A functional model with the backbone's inputs and every hidden state as outputs.

    Returns:
        keras.Model mapping {token_ids, segment_ids, padding_mask} int32 [B, S] to
        (hidden_0, ..., hidden_N), each float [B, S, hidden_dim], where hidden_0 is the embedding
        output and hidden_i the output of transformer layer i. One forward pass yields all of them.
    """
    names = [layer.name for layer in backbone.layers]
    embedding_name = "embeddings_projection" if "embeddings_projection" in names else "embeddings_dropout"
    outputs = [backbone.get_layer(embedding_name).output]
    outputs += [backbone.get_layer(f"{TRANSFORMER_LAYER}{i}").output for i in range(backbone.num_layers)]
    return keras.Model(backbone.inputs, outputs, name=f"{backbone.name}_hidden_states")
