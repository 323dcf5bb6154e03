"""Encoders and heads with tiny configs: shapes, hidden states from one forward, masking, configs."""

import keras
import keras_hub
import numpy as np
import pytest

from road_tf.config import ModelConfig
from road_tf.errors import ConfigError
from road_tf.models.backbones import build_backbone
from road_tf.models.heads import NEG_INF, ClassificationHead, SpanHead
from road_tf.models.task_model import HIDDEN_STATES, build_task_model, encoder_of, num_layers
from road_tf.tasks import get_task
from helpers_models import SEQ, VOCAB, random_span_features


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_task_model_outputs_and_hidden_states(family):
    config = ModelConfig(family=family, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16, dropout=0.0)
    backbone = build_backbone(config, VOCAB, SEQ)
    model = build_task_model(backbone, [get_task("squad2"), get_task("mnli")])
    data = random_span_features(4)
    inputs = {key: data[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    out = model(inputs)
    assert out["squad2/start_logits"].shape == (4, SEQ) and out["mnli/logits"].shape == (4, 3)
    hidden = out[HIDDEN_STATES]
    assert len(hidden) == 3 and num_layers(model) == 2
    # The last hidden state is the backbone's own sequence output: no second forward pass.
    np.testing.assert_allclose(hidden[-1].numpy(), backbone(inputs)["sequence_output"].numpy(), rtol=1e-5, atol=1e-5)
    assert encoder_of(model).name.endswith("_hidden_states")


def test_span_head_masks_everything_but_cls_and_context():
    data = random_span_features(3)
    sequence = np.random.default_rng(0).normal(size=(3, SEQ, 8)).astype("float32")
    start, end = SpanHead()(sequence, data["segment_ids"], data["padding_mask"])
    allowed = ((data["segment_ids"] == 1) & (data["padding_mask"] == 1))
    allowed[:, 0] = True
    for logits in (start.numpy(), end.numpy()):
        assert (logits[~allowed] == NEG_INF).all() and (logits[allowed] > NEG_INF).all()


def test_heads_round_trip_their_config():
    head = ClassificationHead(5, dropout=0.2, name="c")
    clone = ClassificationHead.from_config(head.get_config())
    assert (clone.num_classes, clone.dropout, clone.name) == (5, 0.2, "c")
    model = build_task_model(build_backbone(ModelConfig(num_layers=1, hidden_dim=8, intermediate_dim=16), VOCAB, SEQ),
                             [get_task("sentiment")])
    restored = keras.Model.from_config(model.get_config())
    assert [w.shape for w in restored.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("family", ["bert", "electra"])
def test_keras_hub_preset_loads_from_a_local_directory(family, tmp_path):
    """`model.pretrained=preset` goes through keras-hub's from_preset; users name presets that
    download, here a local preset directory keeps it offline. A vocabulary other than the
    tokenizer's is refused."""
    config = ModelConfig(family=family, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16)
    saved = build_backbone(config, VOCAB, SEQ)
    saved.save_to_preset(str(tmp_path / "preset"))
    preset = ModelConfig(pretrained="preset", preset=str(tmp_path / "preset"))
    loaded = build_backbone(preset, VOCAB, SEQ)
    assert type(loaded) is type(saved)
    for expected, got in zip(saved.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ConfigError, match=f"vocabulary has {VOCAB} tokens"):
        build_backbone(preset, VOCAB + 1, SEQ)


def test_a_preset_that_cannot_be_downloaded_is_one_clear_error(monkeypatch):
    """Offline, `--config road_large` ended in "stage setup failed: ConnectionError ..." and left a run
    folder holding only train.log."""
    def offline(*args, **kwargs):  # keras-hub raises requests' ConnectionError, an OSError too
        raise ConnectionError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(ConfigError, match=r"^model.preset electra_small_discriminator_uncased_en: cannot be fetched "
                                          r"\(ConnectionError: .*api.kaggle.com.*\); keras-hub downloads a preset on "
                                          r"first use: without the internet, start from a local encoder"):
        build_backbone(ModelConfig(pretrained="preset", preset="electra_small_discriminator_uncased_en"), VOCAB, SEQ)
