"""Hugging Face checkpoints (config.json + model.safetensors) -> keras-hub BERT/ELECTRA backbones.

keras-hub 0.25 cannot load these itself: its BERT converter wants tensor names prefixed `bert.`
(the offline MiniLM has none) and it has no ELECTRA converter. So the weights are read with
`safetensors.numpy` and copied here, name by name, each shape checked.

Layouts: a Hugging Face Linear stores its weight as [out, in]; Keras Dense/EinsumDense kernels
are [in, ...out]. Attention query/key/value kernels are [hidden, heads, head_dim] (bias
[heads, head_dim]) and the attention output kernel is [heads, head_dim, hidden].

GELU: keras-hub's TransformerEncoder uses the tanh approximation, while BERT/ELECTRA configs say
`hidden_act: gelu` (exact erf). A backbone built here computes what `hidden_act` names: for `gelu`
every feed-forward layer's activation is switched to Keras' exact GELU (`activation: gelu` in the
layer config, so `get_config`/`from_config` copies of a task model keep it; the keras-hub
backbone's own config, its constructor arguments, does not, so `save_to_preset` would lose it);
`gelu_new`/`gelu_pytorch_tanh` keep keras-hub's tanh form. keras-hub presets are not touched. Measured on the MiniLM (6 layers,
hidden 384) and one short sentence against a NumPy forward pass of the HF weights: the sequence
output (values up to ~5) differed by 2.6e-3 with tanh GELU and differs by 1.1e-6 with exact GELU
(tests/test_convert.py); tiny BERT/ELECTRA question-answering checkpoints saved by transformers
give the same start/end logits as PyTorch to 1e-4 (tests/test_hf_teacher.py).

Depth: `layers` (model.pretrained_layers) keeps a subset of the checkpoint's transformer layers, in
order, so e.g. the 6-layer MiniLM gives a 3-layer student from its layers 1, 3 and 5; embeddings
and pooler load as usual.

Question-answering heads: `BertForQuestionAnswering` / `ElectraForQuestionAnswering` keep a
`qa_outputs` Linear [2, hidden] (row 0 start, row 1 end) beside the encoder; `load_span_head`
copies it into a road_tf `SpanHead` (Dense `span_logits`, kernel [hidden, 2], column 0 start).

Other known differences from the Hugging Face models:
- LayerNorm epsilon: keras-hub fixes 1e-12 whatever `layer_norm_eps` says (1e-12 in BERT and
  ELECTRA checkpoints).
- Dropout: keras-hub has one rate; `hidden_dropout_prob` is used unless `dropout` is given.
- Pooler: ELECTRA discriminators and `BertForQuestionAnswering` checkpoints have none; the
  backbone's `pooled_dense` then keeps its random initialisation (QA heads do not use it).
"""

import pathlib

import keras
import keras_hub
import numpy as np
from safetensors import safe_open

from road_tf.data.json_files import read_json
from road_tf.errors import ConfigError, RoadError
from road_tf.files import require_folder
from road_tf.minilm import WEIGHTS_FILE

CONFIG_FILE = "config.json"
EXACT_GELU = "gelu"
TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh")
GELU_ACTIVATIONS = (EXACT_GELU, *TANH_GELUS)
QA_HEAD = "qa_outputs"


def read_config(folder):
    """Returns config.json of a checkpoint folder as a dict; RoadError if missing or malformed."""
    path = pathlib.Path(folder) / CONFIG_FILE
    require_folder(folder, str(folder), "checkpoint folder")
    if not path.is_file():
        raise RoadError(f"{path}: missing; a Hugging Face checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE} "
                        "(a road_tf run directory, config.yaml)")
    config = read_json(path)
    if not isinstance(config, dict):
        raise RoadError(f"{path}: expected a JSON object")
    return config


def _read_tensors(folder, keep=lambda name: True):
    """Returns {name: float32 array} of the tensors in a folder's model.safetensors whose name `keep`s."""
    path = pathlib.Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        other = " (pytorch_model.bin is not supported; save the model with safe_serialization=True)" \
            if (pathlib.Path(folder) / "pytorch_model.bin").is_file() else ""
        raise RoadError(f"{path}: missing{other}")
    try:
        with safe_open(str(path), framework="numpy") as tensors:
            return {name: tensors.get_tensor(name).astype(np.float32) for name in tensors.keys() if keep(name)}
    except Exception as error:  # safetensors raises its own SafetensorError and TypeError (bf16)
        raise RoadError(f"{path}: cannot read the tensors ({error})") from None


def _field(config, key, folder):
    """config[key], or a RoadError naming the file and the missing key."""
    if key not in config:
        raise RoadError(f"{pathlib.Path(folder) / CONFIG_FILE}: missing key {key!r}")
    return config[key]


def _check_architecture(config, folder):
    """Refuses configs keras-hub's encoder cannot reproduce (non-GELU, relative positions)."""
    where = pathlib.Path(folder) / CONFIG_FILE
    activation = config.get("hidden_act", "gelu")
    if activation not in GELU_ACTIVATIONS:
        raise RoadError(f"{where}: hidden_act {activation!r} is not supported; keras-hub's encoder uses GELU")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise RoadError(f"{where}: position_embedding_type {position_type!r} is not supported, only 'absolute'")


class _Porter:
    """Copies named Hugging Face tensors into Keras variables, checking every shape.

    Args:
        tensors: {name: array} from model.safetensors.
        prefix: the model's name prefix ("bert." / "electra."); names are looked up with it
            first and without it second, so unprefixed checkpoints (the MiniLM) load too.
        source: the weights file, for error messages.
    """

    def __init__(self, tensors, prefix, source):
        self.tensors = tensors
        self.prefix = prefix
        self.source = source

    def has(self, name):
        """Whether the checkpoint holds `name`, prefixed or not."""
        return self.prefix + name in self.tensors or name in self.tensors

    def get(self, name):
        """The tensor `name` (prefixed or not); RoadError naming it if absent."""
        for key in (self.prefix + name, name):
            if key in self.tensors:
                return key, self.tensors[key]
        raise RoadError(f"{self.source}: missing tensor {self.prefix + name!r}")

    def _assign(self, variable, key, value, expected_hf_shape, converted):
        """Checks the HF tensor's shape, then assigns `converted(value)` to the variable."""
        if tuple(value.shape) != tuple(expected_hf_shape):
            raise RoadError(f"{self.source}: tensor {key!r} has shape {tuple(value.shape)}, "
                            f"the keras-hub backbone needs {tuple(expected_hf_shape)}")
        variable.assign(converted(value))

    def copy(self, variable, name):
        """Same layout on both sides (embedding tables, LayerNorm vectors, biases)."""
        key, value = self.get(name)
        shape = tuple(variable.shape)
        self._assign(variable, key, value, shape, lambda v: v)

    def linear(self, variable, name, in_axes=1):
        """HF Linear weight [out, in] -> Keras kernel whose first `in_axes` axes make up `in`."""
        key, value = self.get(name)
        shape = tuple(variable.shape)
        hf_shape = (int(np.prod(shape[in_axes:])), int(np.prod(shape[:in_axes])))
        self._assign(variable, key, value, hf_shape, lambda v: v.T.reshape(shape))

    def bias(self, variable, name):
        """HF flat bias [n] -> Keras bias of any shape with n entries (e.g. [heads, head_dim])."""
        key, value = self.get(name)
        shape = tuple(variable.shape)
        self._assign(variable, key, value, (int(np.prod(shape)),), lambda v: v.reshape(shape))

    def dense(self, layer, name, in_axes=1):
        """A Linear's weight and bias into a Dense/EinsumDense layer."""
        self.linear(layer.kernel, f"{name}.weight", in_axes)
        self.bias(layer.bias, f"{name}.bias")

    def layer_norm(self, layer, name):
        """LayerNorm `weight`/`bias` (or the older `gamma`/`beta`) into gamma/beta."""
        new_style = self.has(f"{name}.weight")
        self.copy(layer.gamma, f"{name}.weight" if new_style else f"{name}.gamma")
        self.copy(layer.beta, f"{name}.bias" if new_style else f"{name}.beta")


def _use_activation(backbone, config):
    """Makes every feed-forward layer compute config.json's `hidden_act` (exact or tanh GELU).

    keras-hub builds its encoders with tanh GELU. For `gelu` the TransformerEncoder's
    `activation` (what its get_config records) and its intermediate Dense's activation (what its
    call runs) both become Keras' exact GELU.
    """
    if config.get("hidden_act", EXACT_GELU) != EXACT_GELU:
        return
    exact = keras.activations.get(EXACT_GELU)
    for i in range(backbone.num_layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        block.activation = exact
        block._feedforward_intermediate_dense.activation = exact


def _port_embeddings(backbone, porter):
    """Word, position and token-type tables and the embedding LayerNorm."""
    porter.copy(backbone.get_layer("token_embedding").embeddings, "embeddings.word_embeddings.weight")
    porter.copy(backbone.get_layer("position_embedding").position_embeddings, "embeddings.position_embeddings.weight")
    porter.copy(backbone.get_layer("segment_embedding").embeddings, "embeddings.token_type_embeddings.weight")
    porter.layer_norm(backbone.get_layer("embeddings_layer_norm"), "embeddings.LayerNorm")


def _port_encoder(backbone, porter, layers):
    """Every transformer layer: self-attention, its LayerNorm, the feed-forward, its LayerNorm.

    Backbone layer i receives checkpoint layer `layers[i]` (len(layers) == backbone.num_layers).
    """
    for i, source in enumerate(layers):
        block = backbone.get_layer(f"transformer_layer_{i}")
        attention = block._self_attention_layer
        hf = f"encoder.layer.{source}"
        porter.dense(attention.query_dense, f"{hf}.attention.self.query")
        porter.dense(attention.key_dense, f"{hf}.attention.self.key")
        porter.dense(attention.value_dense, f"{hf}.attention.self.value")
        porter.dense(attention.output_dense, f"{hf}.attention.output.dense", in_axes=2)
        porter.layer_norm(block._self_attention_layer_norm, f"{hf}.attention.output.LayerNorm")
        porter.dense(block._feedforward_intermediate_dense, f"{hf}.intermediate.dense")
        porter.dense(block._feedforward_output_dense, f"{hf}.output.dense")
        porter.layer_norm(block._feedforward_layer_norm, f"{hf}.output.LayerNorm")


def _port_pooler(backbone, porter):
    """The pooler, if the checkpoint has one (else `pooled_dense` keeps its random init)."""
    if porter.has("pooler.dense.weight"):
        porter.dense(backbone.get_layer("pooled_dense"), "pooler.dense")


def _kept_layers(config, folder, layers):
    """The checkpoint layers a backbone keeps: `layers` (model.pretrained_layers), or all when empty.

    Raises:
        ConfigError: a layer index is beyond the checkpoint's num_hidden_layers.
    """
    depth = _field(config, "num_hidden_layers", folder)
    if not layers:
        return tuple(range(depth))
    if max(layers) >= depth:
        raise ConfigError(f"model.pretrained_layers: {list(layers)} asks for layer {max(layers)}, but the checkpoint "
                          f"{folder} has {depth} layers (0 to {depth - 1})")
    return tuple(layers)


def _encoder_sizes(config, folder, dropout, layers):
    """keras-hub constructor arguments shared by BERT and ELECTRA, read from config.json
    (`layers`: the checkpoint layers kept, from `_kept_layers`)."""
    return {
        "num_layers": len(layers),
        "num_heads": _field(config, "num_attention_heads", folder),
        "hidden_dim": _field(config, "hidden_size", folder),
        "intermediate_dim": _field(config, "intermediate_size", folder),
        "dropout": config.get("hidden_dropout_prob", 0.1) if dropout is None else dropout,
        "max_sequence_length": _field(config, "max_position_embeddings", folder),
        "num_segments": config.get("type_vocab_size", 2),
    }


def load_hf_bert(folder, dropout=None, layers=()):
    """A `keras_hub.models.BertBackbone` holding a Hugging Face BERT checkpoint's weights.

    Args:
        folder: a folder with config.json (model_type bert) and model.safetensors; tensor
            names may carry the `bert.` prefix (BertModel heads) or not (the MiniLM).
        dropout: the backbone's dropout rate; None uses config.json's hidden_dropout_prob.
        layers: the checkpoint's transformer layers to keep, in order (model.pretrained_layers):
            backbone layer i is checkpoint layer layers[i]. Empty keeps them all.

    Returns:
        the backbone; its position table has config.json's max_position_embeddings rows.
    """
    config = read_config(folder)
    _check_architecture(config, folder)
    layers = _kept_layers(config, folder, layers)
    porter = _Porter(_read_tensors(folder), "bert.", pathlib.Path(folder) / WEIGHTS_FILE)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=_field(config, "vocab_size", folder), **_encoder_sizes(config, folder, dropout, layers))
    _use_activation(backbone, config)
    _port_embeddings(backbone, porter)
    _port_encoder(backbone, porter, layers)
    _port_pooler(backbone, porter)
    return backbone


def load_hf_electra(folder, dropout=None, layers=()):
    """A `keras_hub.models.ElectraBackbone` holding an ELECTRA discriminator's weights.

    Args:
        folder: config.json (model_type electra) + model.safetensors, names prefixed
            `electra.` (e.g. google/electra-small-discriminator). When embedding_size differs
            from hidden_size, `embeddings_project` becomes the backbone's
            `embeddings_projection`. Generator and discriminator heads are ignored.
        dropout, layers: as in `load_hf_bert`.
    """
    config = read_config(folder)
    _check_architecture(config, folder)
    layers = _kept_layers(config, folder, layers)
    porter = _Porter(_read_tensors(folder), "electra.", pathlib.Path(folder) / WEIGHTS_FILE)
    sizes = _encoder_sizes(config, folder, dropout, layers)
    backbone = keras_hub.models.ElectraBackbone(
        vocab_size=_field(config, "vocab_size", folder),
        embedding_dim=config.get("embedding_size", sizes["hidden_dim"]),
        **sizes,
    )
    _use_activation(backbone, config)
    _port_embeddings(backbone, porter)
    if backbone.embedding_dim != backbone.hidden_dim:
        porter.dense(backbone.get_layer("embeddings_projection"), "embeddings_project")
    _port_encoder(backbone, porter, layers)
    _port_pooler(backbone, porter)
    return backbone


LOADERS = {"bert": load_hf_bert, "electra": load_hf_electra}


def load_hf_backbone(folder, dropout=None, layers=()):
    """Loads a Hugging Face checkpoint folder with the loader its config.json `model_type` names
    (`dropout`, `layers`: as in `load_hf_bert`)."""
    config = read_config(folder)
    model_type = config.get("model_type")
    if model_type not in LOADERS:
        raise RoadError(f"{pathlib.Path(folder) / CONFIG_FILE}: model_type {model_type!r} is not supported; "
                        f"known: {', '.join(LOADERS)}")
    return LOADERS[model_type](folder, dropout=dropout, layers=layers)


def has_span_head(pretrained):
    """Whether `model.pretrained` is a Hugging Face folder whose model.safetensors holds `qa_outputs`.

    False for the keywords (none, minilm, preset) and for encoder-only checkpoints.
    """
    if not (pathlib.Path(pretrained) / WEIGHTS_FILE).is_file():
        return False
    return bool(_read_tensors(pretrained, keep=lambda name: name == f"{QA_HEAD}.weight"))


def load_span_head(model, head_name, folder):
    """Copies a `*ForQuestionAnswering` checkpoint's `qa_outputs` into a span head of `model`.

    Args:
        model: a task model from `build_task_model` with a span head named `head_name`
            (its Dense `span_logits`, kernel [hidden, 2]).
        head_name: the span head's layer name (`SpanTask.head_name`).
        folder: the Hugging Face folder the model's encoder was loaded from; its
            `qa_outputs.weight` [2, hidden] (row 0 start, row 1 end) and `qa_outputs.bias` [2]
            become the kernel (transposed) and bias.
    Returns:
        the model, with the head's weights replaced; RoadError if the checkpoint has no head
        or its width differs from the encoder's.
    """
    source = pathlib.Path(folder) / WEIGHTS_FILE
    tensors = _read_tensors(folder, keep=lambda name: name.startswith(f"{QA_HEAD}."))
    if not tensors:
        raise RoadError(f"{source}: no question-answering head ({QA_HEAD}.weight); "
                        "save a BertForQuestionAnswering or ElectraForQuestionAnswering model")
    head = model.get_layer(head_name)
    _Porter(tensors, "", source).dense(head.dense, QA_HEAD)
    return model
