"""`model.pretrained=<run directory>`: a student starts from the encoder a finished run exported,
cut to `model.pretrained_layers`, so a student can begin at its teacher's lower layers."""

import numpy as np
import pytest

from road_tf import train
from road_tf.config import ModelConfig, load_config, run_encoder_weights
from road_tf.errors import ConfigError
from road_tf.models.backbones import build_backbone, cut_backbone, hidden_states_encoder
from helpers_models import dropout_rates
from test_runs import tiny_args

VOCABULARY, LENGTH = 30522, 64


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished tiny run with a 2-layer encoder (random init, 12 steps)."""
    tmp_path = tmp_path_factory.mktemp("source")
    run = tmp_path / "source"
    assert train.main(tiny_args(tmp_path, "model.num_layers=2", "export.enabled=false", output_dir=run)) == 0
    return run


def inputs(seed=0):
    ids = np.random.RandomState(seed).randint(1000, 5000, size=(2, 20)).astype("int32")
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids)}


def run_model(run, layers=()):
    return ModelConfig(pretrained=str(run), pretrained_layers=tuple(layers))


def source_backbone(run):
    """The run's own encoder with its saved weights, for reference."""
    backbone = build_backbone(load_config(run / "config.yaml").model, VOCABULARY, LENGTH)
    hidden_states_encoder(backbone).load_weights(run_encoder_weights(run))
    return backbone


def test_a_run_saves_its_student_encoder_and_a_model_starts_from_it(source_run):
    source = hidden_states_encoder(source_backbone(source_run))(inputs())
    whole = hidden_states_encoder(build_backbone(run_model(source_run), VOCABULARY, LENGTH))(inputs())
    for expected, got in zip(source, whole):
        np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-6)
    fresh = hidden_states_encoder(build_backbone(ModelConfig(num_layers=2, hidden_dim=16, intermediate_dim=32),
                                                 VOCABULARY, LENGTH))(inputs())
    assert np.abs(np.array(fresh[-1]) - np.array(source[-1])).max() > 1e-3


def test_a_prefix_cut_computes_the_run_s_lower_layers(source_run):
    source = hidden_states_encoder(source_backbone(source_run))(inputs())
    cut = build_backbone(run_model(source_run, [0]), VOCABULARY, LENGTH)
    assert cut.num_layers == 1
    got = hidden_states_encoder(cut)(inputs())
    for expected, value in zip(source[:2], got):
        np.testing.assert_allclose(np.array(value), np.array(expected), atol=1e-6)


def test_each_kept_layer_holds_the_weights_of_the_layer_it_names(source_run):
    source = source_backbone(source_run)
    cut = build_backbone(run_model(source_run, [1]), VOCABULARY, LENGTH)
    for got, expected in zip(cut.get_layer("transformer_layer_0").get_weights(),
                             source.get_layer("transformer_layer_1").get_weights()):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(cut.get_layer("token_embedding").get_weights(),
                             source.get_layer("token_embedding").get_weights()):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("layers", [(), (1,)])
def test_model_dropout_replaces_the_run_s_rate(source_run, layers):
    """The source run trained at dropout 0.1; the new encoder, whole or cut, uses its own rate."""
    backbone = build_backbone(ModelConfig(pretrained=str(source_run), pretrained_layers=layers, dropout=0.3),
                              VOCABULARY, LENGTH)
    assert dropout_rates(backbone) == {0.3}


def test_cutting_the_minilm_equals_loading_its_layers_from_the_checkpoint():
    """The cut (used for runs) and the checkpoint loader (used for Hugging Face folders) agree."""
    whole = build_backbone(ModelConfig(pretrained="minilm"), VOCABULARY, 256)
    loaded = build_backbone(ModelConfig(pretrained="minilm", pretrained_layers=(1, 3, 5)), VOCABULARY, 256)
    got = hidden_states_encoder(cut_backbone(whole, (1, 3, 5)))(inputs())
    expected = hidden_states_encoder(loaded)(inputs())
    np.testing.assert_array_equal(np.array(got[-1]), np.array(expected[-1]))


def test_a_student_run_trains_from_a_run_s_layers(source_run, tmp_path):
    student = tmp_path / "student"
    assert train.main(tiny_args(tmp_path, f"model.pretrained={source_run}", "model.pretrained_layers=[1]",
                                "export.enabled=false", output_dir=student)) == 0
    made = load_config(student / "config.yaml")
    assert made.model.pretrained == str(source_run) and made.model.pretrained_layers == (1,)
    assert (student / "metrics.json").is_file()


def test_unusable_runs_are_refused_with_the_reason(source_run, tmp_path):
    with pytest.raises(ConfigError, match=r"model.pretrained_layers: \[0, 2\] asks for layer 2, .* has 2 layers"):
        build_backbone(run_model(source_run, [0, 2]), VOCABULARY, LENGTH)
    with pytest.raises(ConfigError, match="data.max_seq_length: 128 is more than the 64 positions"):
        build_backbone(run_model(source_run), VOCABULARY, 128)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((source_run / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="has not finished"):
        build_backbone(run_model(unfinished), VOCABULARY, LENGTH)
    (unfinished / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="saved no encoder weights"):
        build_backbone(run_model(unfinished), VOCABULARY, LENGTH)


def test_a_run_directory_is_refused_on_the_command_line_with_one_line(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("task: squad2\n")
    with pytest.raises(SystemExit) as exited:
        train.main(tiny_args(tmp_path, f"model.pretrained={unfinished}", "export.enabled=false",
                             output_dir=tmp_path / "out"))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has not finished" in err[0]
