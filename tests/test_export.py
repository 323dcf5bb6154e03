"""Raw-text SavedModel export: signatures, parity with run evaluation, op check, atomic versions."""

import dataclasses
import json
import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from road_tf import saved_model as export
from road_tf.config import Config, DataConfig, DecodeConfig, ModelConfig
from road_tf.data.examples import QAExample
from road_tf.data.features import featurize_qa, pair_windows, qa_windows
from road_tf.data.tokenizer import WordPieceTokenizer, load_tokenizer
from road_tf.errors import NO_TOKEN, RoadError
from road_tf.evaluation import answerer
from road_tf.evaluation.answerer import decode_answers, grouped_logits
from road_tf.files import versions
from road_tf.models.backbones import build_backbone
from road_tf.models.inference import predict_outputs
from road_tf.models.span_logits import SpanLogits
from road_tf.models.task_model import build_task_model
from road_tf.tasks import TaskData, get_task
from serving.servables import Servable, TokenInputRules, read_serve_meta_graph, variable_shapes

SQUAD = get_task("squad2")

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
                    decode=DecodeConfig(null_score_diff_threshold=1e9))
    keras.utils.set_random_seed(1)
    backbone = build_backbone(ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32),
                              tokenizer.vocabulary_size, 48)
    model = build_task_model(backbone, [SQUAD])
    base = tmp_path_factory.mktemp("saved_models")
    path = export.export_qa_model(model, SQUAD, tokenizer, config, metrics={"f1": 12.5}, base_dir=base,
                                  model_name="m")
    return dict(tokenizer=tokenizer, config=config, model=model, base=base, path=path)


@pytest.fixture(scope="module")
def loaded(exported):
    """The `exported` version, loaded once (a load takes seconds)."""
    return tf.saved_model.load(str(exported["path"]))


def serve(path, questions, contexts):
    return answers(tf.saved_model.load(str(path)), questions, contexts)


def answers(loaded, questions, contexts):
    """serving_default's outputs of a loaded SavedModel, as NumPy arrays."""
    out = loaded.signatures["serving_default"](question=tf.constant(questions), context=tf.constant(contexts))
    return {key: value.numpy() for key, value in out.items()}


def test_layout_and_warmup(exported):
    path = exported["path"]
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert json.loads((path / export.METRICS_FILE).read_text()) == {"f1": 12.5}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


def test_warmup_opens_with_one_full_window_per_signature(exported):
    """The first encoder call of each signature fixes its cached weight layout: the warm-up file
    opens with one window of max_seq_length tokens to serving_default, then its tokens to
    serve_token_ids, then the example questions."""
    tokenizer, data = exported["tokenizer"], exported["config"].data
    records = tf.data.TFRecordDataset(str(exported["path"] / "assets.extra" / "tf_serving_warmup_requests"))
    requests = [prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request for record in records]
    assert [request.model_spec.signature_name for request in requests] == [
        "serving_default", "serve_token_ids", "serving_default"]
    questions, contexts = (tf.make_ndarray(requests[0].inputs[key]) for key in ("question", "context"))
    windows = qa_windows(tokenizer, tf.constant(questions), tf.constant(contexts), data.max_seq_length,
                         data.max_query_length, data.doc_stride)
    assert windows["padding_mask"].numpy().sum(axis=1).tolist() == [data.max_seq_length]
    for key in ("token_ids", "segment_ids", "padding_mask"):
        np.testing.assert_array_equal(tf.make_ndarray(requests[1].inputs[key]), windows[key].numpy())
    assert len(tf.make_ndarray(requests[2].inputs["question"])) == len(export.WARMUP_EXAMPLES)


def test_warmup_fits_a_small_max_context_bytes(exported, tmp_path):
    """With max_seq_length 64 and data.max_context_bytes 200, the full warm-up window was a context
    of 59 "word"s, 294 bytes: the model refused it, so its first encoder call fixed the weight
    layout for a window of three tokens. Every warm-up row is answered now, in the devserver's
    load too, and the first window still fills the 64 positions."""
    tokenizer = exported["tokenizer"]
    config = Config(data=DataConfig(max_seq_length=64, max_query_length=12, doc_stride=16, max_context_bytes=200))
    backbone = build_backbone(ModelConfig(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32),
                              tokenizer.vocabulary_size, 64)
    path = export.export_qa_model(build_task_model(backbone, [SQUAD]), SQUAD, tokenizer, config, base_dir=tmp_path,
                                  model_name="m")
    servable = Servable("m", 1, str(path))
    records = tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests"))
    requests = [prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request for record in records]
    assert servable.warmup_requests == len(requests) == 3
    outputs = [servable.predict_protos(request.model_spec.signature_name, request.inputs) for request in requests]
    assert [output["error"].tolist() for output in outputs[::2]] == [[b""], [b""] * len(export.WARMUP_EXAMPLES)]
    assert tf.make_ndarray(requests[1].inputs["padding_mask"]).sum(axis=1).tolist() == [64]


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


def test_zero_questions_get_zero_rows_of_every_output(loaded):
    """A request of no questions (gRPC can send one) failed in the concat of zero window groups."""
    signatures = loaded.signatures
    none = tf.constant([], tf.string)
    out = signatures["serving_default"](question=none, context=none)
    assert {key: (value.dtype, value.shape.as_list()) for key, value in out.items()} == {
        "answer": (tf.string, [0]), "score": (tf.float32, [0]), "no_answer_probability": (tf.float32, [0]),
        "start_char": (tf.int32, [0]), "end_char": (tf.int32, [0]), "error": (tf.string, [0])}
    no_windows = tf.zeros([0, 48], tf.int32)
    logits = signatures["serve_token_ids"](token_ids=no_windows, segment_ids=no_windows, padding_mask=no_windows)
    assert {key: value.shape.as_list() for key, value in logits.items()} == {"start_logits": [0, 48],
                                                                             "end_logits": [0, 48]}


def test_zero_questions_are_decoded_eagerly_too(exported):
    """Eagerly (a user's own call of `decode`), the concat of zero window groups failed too."""
    qa = SQUAD.answerer(exported["model"], exported["tokenizer"], exported["config"])
    none = tf.constant([], tf.string)
    out = qa.decode(none, none)
    assert {key: value.shape.as_list() for key, value in out.items()} == {
        **{key: [0] for key in ("answer", "score", "no_answer_probability", "start_char", "end_char", "null_score",
                                "best_text", "error")},
        **{key: [0, 20] for key in ("nbest_text", "nbest_score", "nbest_start_char", "nbest_end_char")}}


OVER = "bytes, above the limit of 100000 bytes (data.max_context_bytes)"
BAD_ROWS = [  # (question, context, error): rows serving_default refuses (the limit is DataConfig's 100,000 bytes)
    (b"Who?", b"Ada \xff\xfe wrote it.", "context is not valid UTF-8"),
    (b"\xc3(", b"Ada wrote it.", "question is not valid UTF-8"),
    (b"Who?", b"Ada \xed\xa0\x80 wrote it.", "context is not valid UTF-8"),  # a UTF-16 surrogate encoded as UTF-8
    (b"Who?", b"Ada \xc0\xaf wrote it.", "context is not valid UTF-8"),  # an overlong "/"
    (b"Who?", b"Ada wrote \xe2\x82", "context is not valid UTF-8"),  # cut inside a character
    (b"Who?", "\u00e9".encode() * 50_001, f"context is 100002 {OVER}"),  # counted in bytes, not characters
    (b"why " * 25_000 + b"?", b"Ada wrote it.", f"question is 100001 {OVER}"),
    (b"\xff" * 100_001, b"\xff", f"question is 100001 {OVER}; context is not valid UTF-8"),  # not read further
    (b"", b"Ada wrote it.", "question is empty or only whitespace"),  # the data readers refuse it too
    (b"Who?", " \u3000\n\u2028".encode(), "context is empty or only whitespace"),  # str.isspace()'s white space
    (b" \t", b"\xff", "question is empty or only whitespace; context is not valid UTF-8"),
    ("\u200b\u2060 ".encode(), b"Ada wrote it.", f"question {NO_TOKEN}"),  # zero-width: not white space
    (b"Who?", "\u0301\u00ad\x07\u00a8".encode(), f"context {NO_TOKEN}"),  # a lone accent, soft hyphen, BEL, diaeresis
    ("\ufeff".encode(), b"\xff", f"question {NO_TOKEN}; context is not valid UTF-8"),
]


def test_bad_rows_get_no_answer_and_the_reason_and_the_others_are_answered_as_alone(loaded):
    """A question or context that is not valid UTF-8 (gRPC carries any bytes: it was answered with
    offsets over garbage) or above the exported data.max_context_bytes (a 2 MB context took a
    minute of the MiniLM's time) failed the whole batch, under TF Serving's batching other clients'
    questions too. Now its row alone gets "no answer" (as an empty question about an empty
    context) and the reason; the good rows around it are answered as when asked alone."""
    good = [(q.encode(), c.encode()) for q, c in zip(QUESTIONS, CONTEXTS)]
    rows = [good[0], *[pair[:2] for pair in BAD_ROWS[:4]], good[1], *[pair[:2] for pair in BAD_ROWS[4:]], good[2]]
    out = answers(loaded, [q for q, _ in rows], [c for _, c in rows])
    nothing = answers(loaded, [""], [""])
    for row, (question, context) in enumerate(rows):
        if (question, context) in good:
            alone = answers(loaded, [question], [context])
            for key in ("answer", "start_char", "end_char", "error"):
                assert out[key][row] == alone[key][0], (row, key)
            np.testing.assert_allclose([out["score"][row], out["no_answer_probability"][row]],
                                       [alone["score"][0], alone["no_answer_probability"][0]], rtol=1e-5, atol=1e-5)
        else:
            error = next(error for q, c, error in BAD_ROWS if (q, c) == (question, context))
            assert (out["answer"][row], out["start_char"][row], out["end_char"][row]) == (b"", -1, -1), row
            assert (out["no_answer_probability"][row], out["error"][row]) == (1.0, error.encode()), row
            np.testing.assert_allclose(out["score"][row], nothing["score"][0], rtol=1e-5, atol=1e-5)
    assert nothing["error"][0] == b"question is empty or only whitespace; context is empty or only whitespace"


def test_texts_at_max_context_bytes_are_answered(loaded):
    """The limit itself is allowed, for questions and contexts alike."""
    out = answers(loaded, ["why " * 25_000], ["word " * 20_000])
    assert out["answer"][0].startswith(b"word") and out["error"][0] == b""


def test_each_text_is_tokenized_once_and_refused_rows_make_one_empty_window(exported, monkeypatch):
    """The input check and the windows share one tokenization of each text. A refused row is cut
    into windows as an empty question and context, so a 50 MB context makes one window of three
    tokens, not a million windows, and its context is decoded as "" (the n-best copies it); a text
    above the limit or not valid UTF-8 does not reach the tokenizer at all (it reads "" in its place)."""
    tokenized, seen = [], []
    for method in ("tokenize", "tokenize_with_offsets"):
        original = getattr(WordPieceTokenizer, method)
        monkeypatch.setattr(WordPieceTokenizer, method, lambda self, texts, original=original:
                            tokenized.extend(texts.numpy().tolist()) or original(self, texts))

    def recorded(tokenizer, tokens, *args):
        windows = pair_windows(tokenizer, tokens, *args)
        seen.append(([int(n) for n in tokens["question_ids"].row_lengths()],
                     [int(n) for n in tokens["context_ids"].row_lengths()], windows["example_index"].numpy().tolist()))
        return windows

    def decoded(start, end, offsets, example_index, contexts, *args):
        seen.append(contexts.numpy().tolist())
        return decode_answers(start, end, offsets, example_index, contexts, *args)

    monkeypatch.setattr(answerer, "pair_windows", recorded)
    monkeypatch.setattr(answerer, "decode_answers", decoded)
    qa = SQUAD.answerer(exported["model"], exported["tokenizer"], exported["config"])
    zero_width = "\u200b".encode()
    questions = [b"Who?", QUESTIONS[0].encode(), b"\xff", zero_width]
    contexts = [b"word " * 10_000_000, CONTEXTS[0].encode(), b"Ada", b"Ada wrote it."]
    out = qa.decode(tf.constant(questions), tf.constant(contexts))
    assert sorted(tokenized) == sorted([b"Who?", QUESTIONS[0].encode(), b"", zero_width,
                                        b"", CONTEXTS[0].encode(), b"Ada", b"Ada wrote it."])
    question_len = len(exported["tokenizer"].tokenize(tf.constant([QUESTIONS[0]]))[0])
    context_len = len(exported["tokenizer"].tokenize(tf.constant([CONTEXTS[0]]))[0])
    assert seen == [([0, question_len, 0, 0], [0, context_len, 0, 0], [0, 1, 2, 3]), [b"", CONTEXTS[0].encode(), b"", b""]]
    assert out["error"].numpy().tolist() == [f"context is 50000000 {OVER}".encode(), b"",
                                            b"question is not valid UTF-8", f"question {NO_TOKEN}".encode()]
    assert [out["answer"].numpy().tolist()[row] for row in (0, 2, 3)] == [b"", b"", b""]
    assert out["no_answer_probability"].numpy().tolist()[2:] == [1.0, 1.0]


def test_valid_utf8_with_a_replacement_character_bom_and_nul_is_answered(loaded):
    """U+FFFD, a byte order mark and NUL are valid UTF-8: the check (a transcode with replacement
    that must change nothing) lets them through."""
    context = "\ufeffAda \ufffd wrote it\x00 in 1843."
    out = answers(loaded, ["Who wrote it \ufffd?"], [context])
    start, end = int(out["start_char"][0]), int(out["end_char"][0])
    assert out["answer"][0].decode("utf-8") == context[start:end] != "" and out["error"][0] == b""


@pytest.mark.parametrize("threshold", [-0.5])
def test_run_evaluation_answers_like_the_saved_model(exported, tmp_path, threshold):
    """The answers and no-answer probabilities evaluation records are the exported model's."""
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    config = dataclasses.replace(config, decode=DecodeConfig())
    examples = [QAExample(str(i), q, c, ()) for i, (q, c) in enumerate(zip(QUESTIONS * 3, CONTEXTS * 3))]
    evaluation = SQUAD.evaluate(model, TaskData(SQUAD, [], examples, {}, None), tokenizer, config, threshold)
    path = export.export_qa_model(model, SQUAD, tokenizer, config, threshold, base_dir=tmp_path, model_name="m")
    out = serve(path, [e.question for e in examples], [e.context for e in examples])
    assert [a.decode("utf-8") for a in out["answer"]] == list(evaluation.files["predictions.json"].values())
    np.testing.assert_allclose(out["no_answer_probability"], list(evaluation.files["na_probs.json"].values()),
                               atol=1e-6)
    nbest = evaluation.files["nbest.json"]
    assert all(0 < len(nbest[e.qid]) <= config.decode.n_best_size for e in examples[:2])
    assert nbest["2"] == [], "an empty context has no span"


def test_token_id_signature_matches_model(exported):
    tokenizer, model = exported["tokenizer"], exported["model"]
    features = featurize_qa(tokenizer, [QAExample("0", QUESTIONS[0], CONTEXTS[0], ())], 48, 12, 16)
    loaded = tf.saved_model.load(str(exported["path"]))
    out = loaded.signatures["serve_token_ids"](
        token_ids=tf.constant(features["token_ids"]), segment_ids=tf.constant(features["segment_ids"]),
        padding_mask=tf.constant(features["padding_mask"]))
    expected = predict_outputs(model, features, ("squad2/start_logits",))["squad2/start_logits"]
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


def test_a_model_without_a_name_is_refused(exported, tmp_path):
    """Without a name the versions would be numbered folders of the base folder itself."""
    config = exported["config"]
    unnamed = dataclasses.replace(config, export=dataclasses.replace(config.export, model_name=""))
    with pytest.raises(RoadError, match="^export.model_name: empty"):
        export.export_qa_model(exported["model"], SQUAD, exported["tokenizer"], unnamed, base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_next_version_and_failed_export_leaves_no_version(exported, monkeypatch):
    tokenizer, config, model, base = exported["tokenizer"], exported["config"], exported["model"], exported["base"]
    second = export.export_qa_model(model, SQUAD, tokenizer, config, base_dir=base, model_name="m")
    assert second.name == "2"

    def crash(*_):
        raise RuntimeError("killed during export")

    monkeypatch.setattr(export, "write_warmup", crash)
    with pytest.raises(RuntimeError):
        export.export_qa_model(model, SQUAD, tokenizer, config, base_dir=base, model_name="m")
    names = sorted(p.name for p in (base / "m").iterdir())
    assert names == ["1", "2"]


def test_versions_warns_once_for_all_odd_entries_of_a_model_folder(tmp_path, caplog):
    for name in ["3", "notes", "²", "a", "b", ".tmp-4"]:
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING):
        assert sorted(versions(tmp_path)) == [3]
    assert [record.getMessage() for record in caplog.records] == [
        f"{tmp_path}: ignoring 4 entries that are not version folders (base-10 integers): 'a', 'b', 'notes', ..."]
    caplog.clear()
    (tmp_path / "3").rmdir()
    assert versions(tmp_path) == {}
    assert not caplog.records


def test_a_version_records_the_run_it_came_from(exported, tmp_path):
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    run = tmp_path / "runs" / "student-1"
    assert not export.newest_is_from(exported["base"] / "m", run)  # exported without a source
    assert not export.newest_is_from(tmp_path / "absent", run)
    path = export.export_qa_model(model, SQUAD, tokenizer, config, base_dir=tmp_path, model_name="m",
                                  source=tmp_path / "runs" / ".." / "runs" / "student-1")
    assert json.loads((path / export.SOURCE_FILE).read_text()) == {"run": str(run.resolve())}
    assert export.newest_is_from(tmp_path / "m", run)
    assert not export.newest_is_from(tmp_path / "m", tmp_path / "runs" / "student-2")
    (path / export.SOURCE_FILE).write_text("{not json")
    assert not export.newest_is_from(tmp_path / "m", run)


@pytest.mark.parametrize("group_size", [1, 2, 100])
def test_grouped_windows_give_the_padded_batch_logits(exported, group_size):
    """Windows of different lengths, run in length-sorted groups, get the logits of one padded batch."""
    questions = tf.constant([QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]])
    contexts = tf.constant([CONTEXTS[0], CONTEXTS[1], "Short one."])
    windows = qa_windows(exported["tokenizer"], questions, contexts, 48, 12, 16)
    lengths = windows["padding_mask"].numpy().sum(axis=1)
    assert len(set(lengths)) > 2 and windows["token_ids"].shape[0] > 3
    outputs = exported["model"]({key: windows[key] for key in ("token_ids", "segment_ids", "padding_mask")})
    full = [outputs[key] for key in SQUAD.logit_keys]
    logits_model = SpanLogits(exported["model"], SQUAD.head_name)
    grouped = tf.function(grouped_logits, reduce_retracing=True)(logits_model, windows, group_size)
    for expected, got in zip(full, grouped):
        assert got.shape == expected.shape
        mask = windows["padding_mask"].numpy().astype(bool)
        np.testing.assert_allclose(got.numpy()[mask], expected.numpy()[mask], rtol=1e-5, atol=1e-5)
        if group_size == 1:  # each window ran alone, cut to its own length: the rest is zero padding
            assert not got.numpy()[~mask].any()


def graph_weight_dtypes(path):
    """[(name, dtype)] of the encoder weights an export holds as graph constants (`SpanLogits`),
    one pair per constant in the saved graph (a weight saved twice appears twice)."""
    weight_ending = ("kernel", "bias", "gamma", "beta")
    return [(node.name, tf.as_dtype(node.attr["dtype"].type))
            for function in read_serve_meta_graph(str(path)).graph_def.library.function
            for node in function.node_def
            if node.op == "Const" and node.name.endswith(weight_ending)]


def test_weights_are_graph_constants_not_variables(exported):
    """Without XLA, the export's encoder weights are constants of its graph, saved once; the
    embedding tables stay variables whose rows the devserver checks token inputs against."""
    weights = graph_weight_dtypes(exported["path"])
    assert len(weights) == len(dict(weights)) == len(SpanLogits(exported["model"], SQUAD.head_name).weights()) - 3
    assert {dtype for _, dtype in weights} == {tf.float32}
    shapes = variable_shapes(read_serve_meta_graph(str(exported["path"])))
    tokenizer, config = exported["tokenizer"], exported["config"]
    assert shapes == {"token_embedding/embeddings": [tokenizer.vocabulary_size, 16],
                      "segment_embedding/embeddings": [2, 16],
                      "position_embedding/embeddings": [config.data.max_seq_length, 16]}
    rules = TokenInputRules(shapes)
    assert rules.ranges["token_ids"][1] == tokenizer.vocabulary_size and rules.max_length == config.data.max_seq_length


def test_max_constant_mib_0_keeps_every_weight_in_variables(exported, tmp_path):
    """export.max_constant_mib=0 (for servers short of memory): no weight constants, the same answers."""
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    variables = dataclasses.replace(config, export=dataclasses.replace(config.export, max_constant_mib=0))
    path = export.export_qa_model(model, SQUAD, tokenizer, variables, base_dir=tmp_path, model_name="m")
    assert not graph_weight_dtypes(path)
    names = tf.train.load_checkpoint(str(path / "variables" / "variables")).get_variable_to_dtype_map()
    assert len([name for name in names if name.startswith("logits_model/")]) == len(
        SpanLogits(model, SQUAD.head_name).weights())
    got, expected = serve(path, QUESTIONS, CONTEXTS), serve(exported["path"], QUESTIONS, CONTEXTS)
    assert list(got["answer"]) == list(expected["answer"])
    np.testing.assert_allclose(got["no_answer_probability"], expected["no_answer_probability"], atol=1e-5)


def test_the_encoder_function_is_not_inlined(exported):
    """The function that holds the weights keeps `_noinline` in the saved graph: inlined into the
    window-group loop, grappler would hoist its constants and fuse nothing into its matmuls."""
    holders = [function for function in read_serve_meta_graph(str(exported["path"])).graph_def.library.function
               if any(node.op == "Const" and node.name == "block0_qkv_kernel" for node in function.node_def)]
    assert len(holders) == 1 and holders[0].attr["_noinline"].b


def test_a_float32_export_of_a_mixed_precision_run_records_its_metrics_as_they_are(exported, tmp_path):
    """Run evaluation measures in float32 whatever train.mixed_precision: such an export answers as measured."""
    config = exported["config"]
    mixed = dataclasses.replace(config, train=dataclasses.replace(config.train, mixed_precision="mixed_bfloat16"))
    path = export.export_qa_model(exported["model"], SQUAD, exported["tokenizer"], mixed, base_dir=tmp_path,
                                  model_name="m", metrics={"f1": 12.5})
    assert json.loads((path / export.METRICS_FILE).read_text()) == {"f1": 12.5}


def test_bfloat16_export_answers_like_float32(exported, tmp_path):
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    bf16 = dataclasses.replace(config, export=dataclasses.replace(config.export, precision="bfloat16"))
    path = export.export_qa_model(model, SQUAD, tokenizer, bf16, base_dir=tmp_path, model_name="m",
                                  metrics={"f1": 12.5})
    export.check_serving_ops(path)
    assert json.loads((path / export.METRICS_FILE).read_text()) == {
        "f1": 12.5, "measured_precision": "float32", "exported_precision": "bfloat16"}
    weights = dict(graph_weight_dtypes(path))
    assert len(weights) == len(SpanLogits(model, SQUAD.head_name).weights()) - 3
    assert {dtype for name, dtype in weights.items() if "norm_" not in name} == {tf.bfloat16}
    assert {dtype for name, dtype in weights.items() if "norm_" in name} == {tf.float32}
    got, expected = serve(path, QUESTIONS, CONTEXTS), serve(exported["path"], QUESTIONS, CONTEXTS)
    np.testing.assert_allclose(got["score"], expected["score"], rtol=0.05, atol=0.05)
    for i, context in enumerate(CONTEXTS):
        start, end = int(got["start_char"][i]), int(got["end_char"][i])
        assert got["answer"][i].decode("utf-8") == (context[start:end] if start >= 0 else "")


def test_xla_export_answers_like_float32_and_warms_every_shape(exported, tmp_path):
    """export.jit_compile: the same answers as the plain export; its warm-up requests hold one
    batch per window-group size and length bucket, each cut into windows of the bucket's length."""
    tokenizer, config, model = exported["tokenizer"], exported["config"], exported["model"]
    xla = dataclasses.replace(config, export=dataclasses.replace(
        config.export, jit_compile=True, length_bucket=16, window_group_size=2))
    path = export.export_qa_model(model, SQUAD, tokenizer, xla, base_dir=tmp_path, model_name="m")
    export.check_serving_ops(path)
    got, expected = serve(path, QUESTIONS, CONTEXTS), serve(exported["path"], QUESTIONS, CONTEXTS)
    assert list(got["answer"]) == list(expected["answer"])
    np.testing.assert_allclose(got["no_answer_probability"], expected["no_answer_probability"], atol=1e-5)
    records = list(tf.data.TFRecordDataset(str(path / "assets.extra" / "tf_serving_warmup_requests")))
    batches = export.warmup_batches(xla)
    assert len(records) == len(batches) + 1 == 3 + 3 * 2  # 48 positions in buckets of 16, groups of 1 and 2
    shapes = set()
    for questions, contexts in batches[2:]:
        windows = qa_windows(tokenizer, tf.constant(questions), tf.constant(contexts), 48, 12, 16)
        lengths = windows["padding_mask"].numpy().sum(axis=1)
        assert len(lengths) == len(questions) and len(set(lengths)) == 1
        shapes.add((len(questions), int(lengths[0])))
    assert shapes == {(g, n) for g in (1, 2) for n in (16, 32, 48)}
