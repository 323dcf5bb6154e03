"""SpanLogits, the answer graph's encoder: the task model's span logits in float32, bfloat16, XLA."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from road_tf.config import ModelConfig
from road_tf.errors import ConfigError
from road_tf.models.backbones import build_backbone
from road_tf.models.heads import NEG_INF
from road_tf.models.span_logits import SpanLogits
from road_tf.models.task_model import build_task_model, encoder_of
from road_tf.tasks import get_task

SQUAD = get_task("squad2")
VOCABULARY = 120


def tiny_model(family="bert", backbone=None):
    keras.utils.set_random_seed(3)
    backbone = backbone or build_backbone(ModelConfig(family=family, num_layers=2, hidden_dim=16, num_heads=2,
                                                      intermediate_dim=32), VOCABULARY, 40)
    return build_task_model(backbone, [SQUAD])


def windows(groups=3, length=21, seed=0):
    """Random windows: question tokens, then context tokens, the later windows padded shorter."""
    rng = np.random.default_rng(seed)
    segment = np.zeros((groups, length), np.int32)
    segment[:, 5:] = 1
    mask = np.ones((groups, length), np.int32)
    for row in range(1, groups):
        mask[row, length - 4 * row:] = 0
    return {"token_ids": tf.constant(rng.integers(1, VOCABULARY, (groups, length)), tf.int32),
            "segment_ids": tf.constant(segment), "padding_mask": tf.constant(mask)}


def keras_logits(model, inputs):
    outputs = model(inputs, training=False)
    return [outputs[key].numpy() for key in SQUAD.logit_keys]


def assert_same_logits(got, expected, atol):
    """Equal at the positions a span may use; NEG_INF at every other position in both."""
    for got_side, expected_side in zip(got, expected):
        got_side = np.asarray(got_side, np.float32)
        allowed = expected_side > NEG_INF / 2
        assert allowed.sum() >= 3 and (got_side[~allowed] == NEG_INF).all()
        np.testing.assert_allclose(got_side[allowed], expected_side[allowed], atol=atol, rtol=0)


@pytest.mark.parametrize("family", ["bert", "electra"])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_float32_logits_equal_the_task_model(family, jit_compile):
    model = tiny_model(family)
    inputs = windows()
    got = SpanLogits(model, SQUAD.head_name, jit_compile=jit_compile)(inputs)
    assert_same_logits(got, keras_logits(model, inputs), atol=1e-5)


def test_electra_embedding_projection_is_applied():
    """An ELECTRA encoder whose embeddings are narrower than its hidden layers projects them."""
    backbone = keras_hub.models.ElectraBackbone(vocab_size=VOCABULARY, num_layers=1, num_heads=2, hidden_dim=16,
                                                embedding_dim=8, intermediate_dim=32, max_sequence_length=40)
    model = tiny_model(backbone=backbone)
    assert any(layer.name == "embeddings_projection" for layer in backbone.layers)
    inputs = windows()
    assert_same_logits(SpanLogits(model, SQUAD.head_name)(inputs), keras_logits(model, inputs), atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_bfloat16_holds_bfloat16_copies_and_close_logits(jit_compile):
    model = tiny_model()
    logits = SpanLogits(model, SQUAD.head_name, "bfloat16", jit_compile=jit_compile)
    dtypes = {name: weight.dtype for name, weight in logits.weights().items()}
    assert {dtype for name, dtype in dtypes.items() if "norm_" not in name} == {tf.bfloat16}
    assert {dtype for name, dtype in dtypes.items() if "norm_" in name} == {tf.float32}
    inputs = windows()
    got, expected = logits(inputs), keras_logits(model, inputs)
    scale = max(np.abs(side[side > NEG_INF / 2]).max() for side in expected)
    assert_same_logits(got, expected, atol=0.05 * scale)
    assert max(np.abs(np.asarray(g) - e).max() for g, e in zip(got, expected)) > 0  # really bfloat16


def test_frozen_copies_the_weights_and_live_reads_them():
    model = tiny_model()
    inputs = windows()
    frozen = SpanLogits(model, SQUAD.head_name, max_constant_bytes=1 << 20)
    live = SpanLogits(model, SQUAD.head_name, frozen=False)
    before = keras_logits(model, inputs)
    head = model.get_layer(SQUAD.head_name).dense
    head.bias.assign(head.bias + tf.constant([3.0, -2.0]))
    assert_same_logits(live(inputs), keras_logits(model, inputs), atol=1e-5)
    assert_same_logits(frozen(inputs), before, atol=1e-5)
    assert frozen.weights_in_graph and not frozen.trainable_variables and not live.variables
    assert sorted(variable.name for variable in frozen.variables) == [
        "position_embedding/embeddings:0", "segment_embedding/embeddings:0", "token_embedding/embeddings:0"]


@pytest.mark.parametrize("jit_compile, limit", [(True, 1 << 20), (False, 1000), (False, 0)])
def test_frozen_weights_are_variables_under_xla_or_past_the_limit(jit_compile, limit):
    """XLA would embed graph constants in every compiled shape, and matrices over
    `max_constant_bytes` (0 by default) stay out of the graph: the frozen copy is then held in
    non-trainable variables, with the same logits."""
    model = tiny_model()
    inputs = windows()
    frozen = SpanLogits(model, SQUAD.head_name, jit_compile=jit_compile, max_constant_bytes=limit)
    assert not frozen.weights_in_graph and not frozen.trainable_variables
    assert len(frozen.variables) == len(frozen.weights()) == len(SpanLogits(model, SQUAD.head_name).weights())
    assert_same_logits(frozen(inputs), keras_logits(model, inputs), atol=1e-5)


@pytest.mark.parametrize("length", [1, 7, 21, 40])
def test_length_buckets_pad_and_cut_back(length):
    """Padding to a multiple of 16 (at most the 40 positions) changes no logit; the shape is kept."""
    model = tiny_model()
    inputs = windows(groups=2, length=length) if length > 5 else {
        "token_ids": tf.constant([[2] * length]), "segment_ids": tf.zeros((1, length), tf.int32),
        "padding_mask": tf.ones((1, length), tf.int32)}
    bucketed = SpanLogits(model, SQUAD.head_name, length_multiple=16)(inputs)
    plain = SpanLogits(model, SQUAD.head_name)(inputs)
    for got, expected in zip(bucketed, plain):
        assert got.shape == expected.shape == inputs["token_ids"].shape
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)


def test_pre_norm_encoders_are_refused_with_their_name():
    model = tiny_model()
    encoder_of(model).get_layer("transformer_layer_0").normalize_first = True
    with pytest.raises(ConfigError, match="_hidden_states: the answer graph supports keras-hub BERT and ELECTRA"):
        SpanLogits(model, SQUAD.head_name)
