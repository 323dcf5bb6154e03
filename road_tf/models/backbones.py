"""Encoders: keras-hub BERT/ELECTRA backbones from a `ModelConfig`, and every layer's output."""

import keras
import keras_hub

from road_tf.errors import ConfigError
from road_tf.minilm import minilm_path
from road_tf.models.convert import load_hf_backbone, load_hf_bert


def build_backbone(model_config, vocabulary_size, max_sequence_length):
    """Builds (or loads) the encoder a `ModelConfig` describes.

    Args:
        model_config: `road_tf.config.ModelConfig`; a checkpoint keeps the transformer layers
            its `pretrained_layers` lists (all when empty).
        vocabulary_size: size of the tokenizer's vocabulary (random init only).
        max_sequence_length: position-embedding size (random init only).
    Returns:
        a keras-hub `BertBackbone` or `ElectraBackbone`.
    """
    if model_config.pretrained == "minilm":
        backbone = load_hf_bert(minilm_path(), layers=model_config.pretrained_layers)
    elif model_config.pretrained == "preset":
        backbone = keras_hub.models.Backbone.from_preset(model_config.preset)
    elif model_config.pretrained != "none":
        backbone = load_hf_backbone(model_config.pretrained, layers=model_config.pretrained_layers)
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
    outputs += [backbone.get_layer(f"transformer_layer_{i}").output for i in range(backbone.num_layers)]
    return keras.Model(backbone.inputs, outputs, name=f"{backbone.name}_hidden_states")
