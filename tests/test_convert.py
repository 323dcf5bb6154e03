"""Hugging Face -> keras-hub converters, checked against a NumPy forward pass of the HF weights.

The tiny checkpoints are written here in Hugging Face's tensor layout (nothing is downloaded).
The reference below reads those HF-named tensors directly, so a wrong transpose, reshape or
name in the converter shows up as a different output.
"""

import json
import math

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from road_tf.config import ModelConfig
from road_tf.errors import ConfigError, RoadError
from road_tf.minilm import minilm_path
from road_tf.models import convert
from road_tf.models.backbones import build_backbone
from road_tf.models.span_logits import SpanLogits
from road_tf.models.task_model import build_task_model
from road_tf.tasks import get_task
from helpers_models import dropout_rates

HIDDEN, HEADS, LAYERS, VOCAB, INTERMEDIATE, POSITIONS, EMBEDDING = 8, 2, 2, 50, 16, 12, 4
_erf = np.vectorize(math.erf)


def gelu(x, approximate):
    """GELU: tanh approximation (keras-hub) or exact erf (Hugging Face `gelu`)."""
    if approximate:
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * gamma + beta


def reference_forward(tensors, config, token_ids, segment_ids, padding_mask, prefix, approximate):
    """BERT/ELECTRA encoder in NumPy on HF-named float64 tensors -> (sequence [B,L,H], pooled or None)."""

    def w(name):
        return tensors[prefix + name].astype(np.float64) if prefix + name in tensors else tensors[name].astype(np.float64)

    def linear(x, name):
        return x @ w(f"{name}.weight").T + w(f"{name}.bias")

    def norm(x, name):
        style = ("weight", "bias") if (prefix + name + ".weight") in tensors or (name + ".weight") in tensors else ("gamma", "beta")
        return layer_norm(x, w(f"{name}.{style[0]}"), w(f"{name}.{style[1]}"))

    batch, length = token_ids.shape
    heads = config["num_attention_heads"]
    head_dim = config["hidden_size"] // heads
    x = (w("embeddings.word_embeddings.weight")[token_ids] + w("embeddings.position_embeddings.weight")[:length]
         + w("embeddings.token_type_embeddings.weight")[segment_ids])
    x = norm(x, "embeddings.LayerNorm")
    if (prefix + "embeddings_project.weight") in tensors:
        x = linear(x, "embeddings_project")
    additive_mask = (1.0 - padding_mask[:, None, None, :]) * -1e9
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}"

        def split(t):
            return t.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

        q, k, v = (split(linear(x, f"{layer}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + additive_mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, heads * head_dim)
        x = norm(x + linear(context, f"{layer}.attention.output.dense"), f"{layer}.attention.output.LayerNorm")
        hidden = gelu(linear(x, f"{layer}.intermediate.dense"), approximate)
        x = norm(x + linear(hidden, f"{layer}.output.dense"), f"{layer}.output.LayerNorm")
    pooled = None
    if (prefix + "pooler.dense.weight") in tensors or "pooler.dense.weight" in tensors:
        pooled = np.tanh(linear(x[:, 0], "pooler.dense"))
    return x, pooled


def tiny_checkpoint(folder, model_type, prefix, layer_norm_names=("weight", "bias"), seed=0, layers=LAYERS):
    """Writes config.json + model.safetensors of a random `layers`-layer model in HF's layout."""
    rng = np.random.default_rng(seed)
    width = EMBEDDING if model_type == "electra" else HIDDEN

    def rand(*shape, scale=0.5):
        return (rng.normal(size=shape) * scale).astype(np.float32)

    tensors = {}

    def add_linear(name, n_out, n_in):
        tensors[f"{prefix}{name}.weight"] = rand(n_out, n_in)
        tensors[f"{prefix}{name}.bias"] = rand(n_out, scale=0.1)

    def add_norm(name, n):
        tensors[f"{prefix}{name}.{layer_norm_names[0]}"] = 1.0 + rand(n, scale=0.1)
        tensors[f"{prefix}{name}.{layer_norm_names[1]}"] = rand(n, scale=0.1)

    tensors[f"{prefix}embeddings.word_embeddings.weight"] = rand(VOCAB, width)
    tensors[f"{prefix}embeddings.position_embeddings.weight"] = rand(POSITIONS, width)
    tensors[f"{prefix}embeddings.token_type_embeddings.weight"] = rand(2, width)
    tensors[f"{prefix}embeddings.position_ids"] = np.arange(POSITIONS, dtype=np.int64)[None]
    add_norm("embeddings.LayerNorm", width)
    if model_type == "electra":
        add_linear("embeddings_project", HIDDEN, EMBEDDING)
        tensors["discriminator_predictions.dense.weight"] = rand(HIDDEN, HIDDEN)
    else:
        add_linear("pooler.dense", HIDDEN, HIDDEN)
        tensors["cls.predictions.bias"] = rand(VOCAB)
    for i in range(layers):
        layer = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            add_linear(f"{layer}.attention.self.{name}", HIDDEN, HIDDEN)
        add_linear(f"{layer}.attention.output.dense", HIDDEN, HIDDEN)
        add_norm(f"{layer}.attention.output.LayerNorm", HIDDEN)
        add_linear(f"{layer}.intermediate.dense", INTERMEDIATE, HIDDEN)
        add_linear(f"{layer}.output.dense", HIDDEN, INTERMEDIATE)
        add_norm(f"{layer}.output.LayerNorm", HIDDEN)
    config = {"model_type": model_type, "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": layers,
              "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
              "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
              "hidden_dropout_prob": 0.1}
    if model_type == "electra":
        config["embedding_size"] = EMBEDDING
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return tensors, config


def inputs():
    token_ids = np.array([[1, 7, 22, 3, 45, 2, 0, 0], [1, 9, 9, 14, 2, 30, 31, 2]], dtype=np.int32)
    segment_ids = np.array([[0, 0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 1]], dtype=np.int32)
    padding_mask = np.array([[1, 1, 1, 1, 1, 1, 0, 0], [1] * 8], dtype=np.int32)
    return token_ids, segment_ids, padding_mask


def run_backbone(backbone, token_ids, segment_ids, padding_mask):
    outputs = backbone({"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask})
    return np.asarray(outputs["sequence_output"]), np.asarray(outputs["pooled_output"])


@pytest.mark.parametrize("prefix, norm_names", [("bert.", ("weight", "bias")), ("", ("gamma", "beta"))])
def test_bert_matches_numpy_reference(tmp_path, prefix, norm_names):
    tensors, config = tiny_checkpoint(tmp_path, "bert", prefix, norm_names)
    backbone = convert.load_hf_bert(tmp_path)
    assert backbone.max_sequence_length == POSITIONS
    token_ids, segment_ids, padding_mask = inputs()
    sequence, pooled = run_backbone(backbone, token_ids, segment_ids, padding_mask)
    ref_sequence, ref_pooled = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, prefix, False)
    np.testing.assert_allclose(sequence, ref_sequence, atol=1e-4)
    np.testing.assert_allclose(pooled, ref_pooled, atol=1e-4)
    tanh_sequence, _ = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, prefix, True)
    assert np.abs(sequence - tanh_sequence).max() > 10 * np.abs(sequence - ref_sequence).max()


@pytest.mark.parametrize("hidden_act, approximate", [("gelu", False), ("gelu_new", True), ("gelu_pytorch_tanh", True)])
def test_hidden_act_decides_the_gelu_and_survives_from_config(tmp_path, hidden_act, approximate):
    """`gelu` computes exact GELU, the tanh variants keras-hub's own; a copy of a task model made
    from its config and the answer graph (`SpanLogits`) compute the same."""
    tensors, config = tiny_checkpoint(tmp_path, "bert", "bert.")
    config = dict(config, hidden_act=hidden_act)
    (tmp_path / "config.json").write_text(json.dumps(config))
    backbone = convert.load_hf_bert(tmp_path)
    token_ids, segment_ids, padding_mask = inputs()
    sequence, _ = run_backbone(backbone, token_ids, segment_ids, padding_mask)
    expected, _ = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, "bert.", approximate)
    np.testing.assert_allclose(sequence, expected, atol=1e-4)
    task = get_task("squad2")
    model = build_task_model(backbone, [task])
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    features = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    np.testing.assert_allclose(copy(features)["hidden_states"][-1], sequence, atol=1e-6)
    start, _ = SpanLogits(model, task.head_name)(features)
    np.testing.assert_allclose(start, model(features)[task.logit_keys[0]], atol=1e-5)


def test_electra_with_embedding_projection_matches_numpy_reference(tmp_path):
    tensors, config = tiny_checkpoint(tmp_path, "electra", "electra.")
    backbone = convert.load_hf_backbone(tmp_path)
    assert type(backbone).__name__ == "ElectraBackbone"
    assert backbone.get_layer("embeddings_projection").kernel.shape == (EMBEDDING, HIDDEN)
    token_ids, segment_ids, padding_mask = inputs()
    sequence, _ = run_backbone(backbone, token_ids, segment_ids, padding_mask)
    ref_sequence, _ = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, "electra.", False)
    np.testing.assert_allclose(sequence, ref_sequence, atol=1e-4)


def test_dispatch_and_errors_name_the_problem(tmp_path):
    tensors, config = tiny_checkpoint(tmp_path / "ok", "bert", "bert.")
    assert type(convert.load_hf_backbone(tmp_path / "ok", dropout=0.0)).__name__ == "BertBackbone"

    with pytest.raises(RoadError, match="no such checkpoint folder"):
        convert.load_hf_backbone(tmp_path / "absent")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(RoadError, match="a_file: a file, not a checkpoint folder"):
        convert.load_hf_backbone(tmp_path / "a_file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RoadError, match=r"config.json: missing.*road_tf run directory, config.yaml"):
        convert.load_hf_backbone(tmp_path / "empty")

    roberta = tmp_path / "roberta"
    roberta.mkdir()
    (roberta / "config.json").write_text(json.dumps(dict(config, model_type="roberta")))
    with pytest.raises(RoadError, match="model_type 'roberta' is not supported; known: bert, electra"):
        convert.load_hf_backbone(roberta)
    with pytest.raises(RoadError, match="model.safetensors: missing"):
        convert.load_hf_bert(roberta)

    relu = tmp_path / "relu"
    tiny_checkpoint(relu, "bert", "bert.")
    (relu / "config.json").write_text(json.dumps(dict(config, hidden_act="relu")))
    with pytest.raises(RoadError, match="hidden_act 'relu' is not supported"):
        convert.load_hf_bert(relu)

    bad = dict(tensors)
    bad["bert.encoder.layer.1.attention.self.key.weight"] = np.zeros((HIDDEN, HIDDEN + 1), np.float32)
    del bad["bert.encoder.layer.0.output.dense.bias"]
    save_file(bad, str(tmp_path / "ok" / "model.safetensors"))
    with pytest.raises(RoadError, match=r"missing tensor 'bert.encoder.layer.0.output.dense.bias'"):
        convert.load_hf_bert(tmp_path / "ok")
    bad["bert.encoder.layer.0.output.dense.bias"] = tensors["bert.encoder.layer.0.output.dense.bias"]
    save_file(bad, str(tmp_path / "ok" / "model.safetensors"))
    with pytest.raises(RoadError, match=r"'bert.encoder.layer.1.attention.self.key.weight' has shape \(8, 9\), "
                                        r"the keras-hub backbone needs \(8, 8\)"):
        convert.load_hf_bert(tmp_path / "ok")


def renumbered_layers(tensors, config, kept):
    """The checkpoint with only the transformer layers `kept`, checkpoint layer kept[i] renamed layer i."""
    out = {name: value for name, value in tensors.items() if "encoder.layer." not in name}
    for i, source in enumerate(kept):
        marker = f"encoder.layer.{source}."
        out.update({name.replace(marker, f"encoder.layer.{i}."): value for name, value in tensors.items() if marker in name})
    return out, dict(config, num_hidden_layers=len(kept))


@pytest.mark.parametrize("model_type, prefix, kept", [("bert", "bert.", (0, 2)), ("bert", "", (2,)),
                                                      ("electra", "electra.", (1, 2))])
def test_pretrained_layers_keep_the_chosen_checkpoint_layers(tmp_path, model_type, prefix, kept):
    """Backbone layer i holds checkpoint layer kept[i], and the backbone computes the checkpoint's
    network with the other layers left out."""
    tensors, config = tiny_checkpoint(tmp_path, model_type, prefix, layers=3)
    full = convert.load_hf_backbone(tmp_path)
    student = convert.load_hf_backbone(tmp_path, layers=kept)
    assert student.num_layers == len(kept)
    for i, source in enumerate(kept):
        weights = student.get_layer(f"transformer_layer_{i}").get_weights()
        expected = full.get_layer(f"transformer_layer_{source}").get_weights()
        assert len(weights) == len(expected) == 16
        assert all(np.array_equal(a, b) for a, b in zip(weights, expected))
    token_ids, segment_ids, padding_mask = inputs()
    sequence, _ = run_backbone(student, token_ids, segment_ids, padding_mask)
    ref_sequence, _ = reference_forward(*renumbered_layers(tensors, config, kept), token_ids, segment_ids,
                                        padding_mask, prefix, False)
    np.testing.assert_allclose(sequence, ref_sequence, atol=1e-4)
    full_sequence, _ = run_backbone(full, token_ids, segment_ids, padding_mask)
    assert np.abs(sequence - full_sequence).max() > 1e-2


def test_model_dropout_replaces_the_checkpoint_s_rate(tmp_path):
    """config.json says 0.1; `model.dropout` is what the encoder built from the folder uses."""
    tiny_checkpoint(tmp_path, "bert", "bert.")
    for rate in (0.0, 0.1, 0.35):
        backbone = build_backbone(ModelConfig(pretrained=str(tmp_path), dropout=rate), VOCAB, POSITIONS)
        assert dropout_rates(backbone) == {rate}


def test_pretrained_layers_beyond_the_checkpoint_name_the_field_and_depth(tmp_path):
    tiny_checkpoint(tmp_path, "bert", "bert.")
    with pytest.raises(ConfigError, match=r"^model.pretrained_layers: .*asks for layer 2, but the checkpoint .* has 2 "
                                          r"layers \(0 to 1\)$"):
        convert.load_hf_bert(tmp_path, layers=(0, 2))


def test_real_minilm_keeps_every_other_layer():
    try:
        folder = minilm_path()
    except RoadError as error:
        pytest.skip(f"MiniLM package not available: {error}")
    student = build_backbone(ModelConfig(pretrained="minilm", pretrained_layers=(1, 3, 5), dropout=0.2), 30522, 512)
    assert student.num_layers == 3 and dropout_rates(student) == {0.2}
    tensors = load_file(str(folder / "model.safetensors"))
    for i, source in enumerate((1, 3, 5)):
        query = student.get_layer(f"transformer_layer_{i}")._self_attention_layer.query_dense.kernel
        expected = tensors[f"encoder.layer.{source}.attention.self.query.weight"].T
        np.testing.assert_array_equal(np.asarray(query).reshape(expected.shape), expected)


def minilm_token_ids(folder, sentence):
    """[CLS] words [SEP] ids for a sentence of whole-word vocabulary entries."""
    vocab = {token: i for i, token in enumerate((folder / "vocab.txt").read_text().splitlines())}
    words = sentence.split()
    assert all(word in vocab for word in words), "test sentence must use whole-word vocabulary entries"
    return np.array([[vocab["[CLS]"]] + [vocab[w] for w in words] + [vocab["[SEP]"]]], dtype=np.int32)


def test_real_minilm_matches_numpy_reference():
    try:
        folder = minilm_path()
    except RoadError as error:
        pytest.skip(f"MiniLM package not available: {error}")
    backbone = convert.load_hf_bert(folder)
    config = json.loads((folder / "config.json").read_text())
    token_ids = minilm_token_ids(folder, "the quick brown fox jumps over the lazy dog .")
    segment_ids = np.zeros_like(token_ids)
    padding_mask = np.ones_like(token_ids)
    sequence, pooled = run_backbone(backbone, token_ids, segment_ids, padding_mask)
    tensors = load_file(str(folder / "model.safetensors"))
    exact, exact_pooled = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, "", False)
    approximate, _ = reference_forward(tensors, config, token_ids, segment_ids, padding_mask, "", True)
    # Measured: 1.1e-6 against exact GELU (the checkpoint's hidden_act), 2.6e-3 against tanh GELU
    # (what keras-hub's BERT computes unless the converter switches it).
    assert np.abs(sequence - exact).max() < 1e-4
    assert np.abs(sequence - approximate).max() > 1e-3
    assert np.abs(pooled - exact_pooled).max() < 1e-4


@pytest.mark.parametrize("text, problem", [
    ("[" * 100_000, "invalid JSON: arrays or objects nested too deeply"),
    ('{"a": 1', "invalid JSON at line 1 column 8"),
    ('{"a": 1, "a": 2}', "gives the key 'a' 2 times"),
])
def test_a_malformed_config_json_is_one_error_naming_it(tmp_path, text, problem):
    """config.json is read like every JSON file road_tf reads (one DataError naming it): JSON nested too
    deeply was a RecursionError traceback in road_tf.export."""
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(RoadError) as raised:
        convert.read_config(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / 'config.json'}: ") and problem in str(raised.value)
