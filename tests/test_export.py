"""Raw-text SavedModel export: signatures, decoding parity, op check, atomic versions."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from road_tf import export
from road_tf.config import Config, DataConfig, ExportConfig, ModelConfig
from road_tf.data.examples import QAExample
from road_tf.data.features import featurize_qa
from road_tf.data.tokenizer import load_tokenizer
from road_tf.errors import RoadError
from road_tf.evaluation.decoding import decode_spans
from road_tf.models.backbones import build_backbone
from road_tf.models.task_model import build_task_model
from road_tf.training import predict_outputs

CONTEXTS = [
    "The Velden river flows through Marrow, a city founded in 1821 by Ilse Varga.",
    "Café Zürich sells ½ litre bottles; its owner, Ærin Støle, was born in Ostrava. " * 6,
    "",
]
QUESTIONS = ["Who founded Marrow?", "Where was the owner born?", "Anything?"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tokenizer = load_tokenizer()
    config = Config(data=DataConfig(max_seq_length=48, max_query_length=12, doc_stride=16),
                    export=ExportConfig(null_score_diff_threshold=1e9))
    keras.utils.set_random_seed(1)
    backbone = build_backbone(ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32),
                              tokenizer.vocabulary_size, 48)
    model = build_task_model(backbone, {"squad2": "span"})
    base = tmp_path_factory.mktemp("saved_models")
    path = export.export_qa_model(model, tokenizer, config, "squad2", base_dir=base, model_name="m")
    return dict(tokenizer=tokenizer, config=config, model=model, base=base, path=path)


def serve(path, questions, contexts):
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](question=tf.constant(questions), context=tf.constant(contexts))
    return {key: value.numpy() for key, value in out.items()}


def test_layout_and_warmup(exported):
    path = exported["path"]
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_answers_are_exact_substrings_with_char_offsets(exported):
    out = serve(exported["path"], QUESTIONS, CONTEXTS)
    for i, context in enumerate(CONTEXTS):
        answer = out["answer"][i].decode("utf-8")
        start, end = int(out["start_char"][i]), int(out["end_char"][i])
        if answer:
            assert context[start:end] == answer
        else:
            assert (start, end) == (-1, -1)
        assert 0.0 <= out["no_answer_probability"][i] <= 1.0
    assert out["answer"][2] == b"" and out["no_answer_probability"][2] == 1.0  # an empty context has no span


def test_serving_decoder_matches_evaluation_decoder(exported):
    """With the null answer disabled (threshold 1e9), the in-graph best span equals decode_spans' best span."""
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    examples = [QAExample(str(i), q, c, ()) for i, (q, c) in enumerate(zip(QUESTIONS[:2], CONTEXTS[:2]))]
    features = featurize_qa(tokenizer, examples, 48, 12, 16)
    logits = predict_outputs(model, features, ("squad2/start_logits", "squad2/end_logits"), 8)
    predictions, _, _ = decode_spans(examples, {"example_index": features["example_index"],
                                                "offsets": features["char_offsets"]},
                                     logits["squad2/start_logits"], logits["squad2/end_logits"],
                                     n_best_size=48, max_answer_length=config.export.max_answer_length,
                                     null_score_diff_threshold=1e9)
    out = serve(exported["path"], QUESTIONS[:2], CONTEXTS[:2])
    assert [a.decode("utf-8") for a in out["answer"]] == [predictions["0"], predictions["1"]]


def test_token_id_signature_matches_model(exported):
    tokenizer, model = exported["tokenizer"], exported["model"]
    features = featurize_qa(tokenizer, [QAExample("0", QUESTIONS[0], CONTEXTS[0], ())], 48, 12, 16)
    loaded = tf.saved_model.load(str(exported["path"]))
    out = loaded.signatures["serve_token_ids"](
        token_ids=tf.constant(features["token_ids"]), segment_ids=tf.constant(features["segment_ids"]),
        padding_mask=tf.constant(features["padding_mask"]))
    expected = predict_outputs(model, features, ("squad2/start_logits",), 8)["squad2/start_logits"]
    np.testing.assert_allclose(out["start_logits"].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_graph_uses_only_serving_ops(exported):
    ops = export.check_serving_ops(exported["path"])
    assert "FastWordpieceTokenizeWithOffsets" in ops and not ops & export.FORBIDDEN_OPS


def test_graph_check_rejects_py_function(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: tf.py_function(lambda y: y, [x], tf.float32),
                           input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "m"), signatures=module.f.get_concrete_function())
    with pytest.raises(RoadError, match="EagerPyFunc"):
        export.check_serving_ops(tmp_path / "m")


def test_next_version_and_failed_export_leaves_no_version(exported, monkeypatch):
    tokenizer, config, model, base = exported["tokenizer"], exported["config"], exported["model"], exported["base"]
    second = export.export_qa_model(model, tokenizer, config, "squad2", base_dir=base, model_name="m")
    assert second.name == "2"

    def crash(_):
        raise RuntimeError("killed during export")

    monkeypatch.setattr(export, "write_warmup", crash)
    with pytest.raises(RuntimeError):
        export.export_qa_model(model, tokenizer, config, "squad2", base_dir=base, model_name="m")
    names = sorted(p.name for p in (base / "m").iterdir())
    assert names == ["1", "2"]


def test_short_requests_run_on_trimmed_windows_with_the_same_answers(exported):
    windows = export.qa_windows(exported["tokenizer"], tf.constant(QUESTIONS[:1]), tf.constant(CONTEXTS[:1]), 48, 12, 16)
    trimmed = export.trim_padding(windows)
    real = int(windows["padding_mask"].numpy().sum())
    assert trimmed["token_ids"].shape == (1, real) and trimmed["byte_offsets"].shape == (1, real, 2)
    model = exported["model"]
    full = export.logits_only(model, "squad2")({k: windows[k] for k in ("token_ids", "segment_ids", "padding_mask")})
    short = export.logits_only(model, "squad2")({k: trimmed[k] for k in ("token_ids", "segment_ids", "padding_mask")})
    np.testing.assert_allclose(full[0].numpy()[:, :real], short[0].numpy(), rtol=1e-5, atol=1e-5)
