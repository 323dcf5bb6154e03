"""End to end: a trained QA student, exported by `export_qa_model`, served by `serving.devserver`.

A tiny student (1 layer, hidden 32) is fine-tuned for 20 steps on a small synthetic corpus,
exported to `<tmp>/saved_models/road_demo/1`, and served by a devserver subprocess on free
127.0.0.1 ports. gRPC, REST, the client CLI and a direct `tf.saved_model.load` must give the
same answers, scores and character offsets for questions with a short, a multi-window, a
non-ASCII and an empty context. Then the student trains a few more steps and is exported as
version 2 while the server runs: the server must switch to it.
"""

import base64
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from helpers_serving import REPO_ROOT, direct_rows, free_port, http_json, start_devserver, stop_devserver
from road_tf.config import Config, DataConfig, DecodeConfig, ModelConfig, TrainConfig
from road_tf.data.features import qa_windows
from road_tf.data.tokenizer import load_tokenizer
from road_tf.experiment import stage_model, train_stage
from road_tf.saved_model import export_qa_model
from road_tf.tasks import get_task, load_task_data
from serving import client

MODEL_NAME = "road_demo"
POLL_SECONDS = 0.2
FLOAT_OUTPUTS = ("score", "no_answer_probability")
EXACT_OUTPUTS = ("answer", "start_char", "end_char", "error")

LONG_CONTEXT = " ".join(
    f"The {name} River rises in the {hills} Hills and flows for {km} km past the town of {town}."
    for name, hills, km, town in [
        ("Velden", "Marrow", 412, "Ostrava"), ("Tessa", "Brin", 96, "Dorvan"), ("Kolm", "Aster", 1210, "Sable"),
        ("Irith", "Ven", 58, "Halden"), ("Mura", "Toll", 733, "Pell"), ("Ansel", "Corve", 265, "Lisk"),
        ("Oban", "Ferro", 389, "Quill"), ("Rask", "Ulm", 140, "Tamber"),
    ]
)
CONTEXTS = [
    "The Velden river flows through Marrow, a city founded in 1821 by Ilse Varga.",
    LONG_CONTEXT,
    "Café Zürich sells crème brûlée; its owner, Ærin Støle, was born in Ostrava near 東京 station.",
    "",
]
QUESTIONS = [
    "Who founded Marrow?",
    "Which town does the Rask River pass?",
    "Where was Ærin Støle born?",
    "Is there anything here?",
]
DATA = DataConfig(synthetic_train_size=96, synthetic_dev_size=8, max_seq_length=64, max_query_length=16, doc_stride=24,
                  max_context_bytes=2000)
"""max_context_bytes (the synthetic texts take at most 1,144 bytes) lies below the devserver's
--max_string_bytes (1 MiB), so the exported model's own limit is what refuses a longer text."""
OVER = f"bytes, above the limit of {DATA.max_context_bytes} bytes (data.max_context_bytes)"


class Served:
    """The devserver subprocess and what it serves."""

    def __init__(self, process, rest_url, grpc_target, model_dir, student, tokenizer, config, task_data):
        self.process = process
        self.rest_url = rest_url
        self.grpc_target = grpc_target
        self.model_dir = model_dir
        self.student = student
        self.tokenizer = tokenizer
        self.config = config
        self.task_data = task_data


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Trains a tiny student, exports version 1 and serves it; stops the server afterwards.

    The null answer is switched off (threshold 1e9), so every non-empty context gets a span and
    the offset checks always have something to check."""
    root = tmp_path_factory.mktemp("serving_export")
    config = Config(
        model=ModelConfig(num_layers=1, num_heads=2, hidden_dim=32, intermediate_dim=64, dropout=0.0),
        data=dataclasses.replace(DATA, cache_dir=str(root / "cache")),
        train=TrainConfig(steps=20, batch_size=8, learning_rate=5e-3, warmup_fraction=0.0, checkpoint_every=20),
        decode=DecodeConfig(null_score_diff_threshold=1e9),
    )
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task("squad2")
    task_data = load_task_data(task, config, tokenizer)
    keras.utils.set_random_seed(0)
    student = stage_model(config, config.model, task, tokenizer, "student")
    train_stage(root / "student", student, task_data, tokenizer, config, config.train.steps,
                config.train.learning_rate)
    version_dir = export_qa_model(student, task, tokenizer, config, base_dir=root / "saved_models",
                                  model_name=MODEL_NAME)
    assert version_dir.name == "1"
    grpc_port, rest_port = free_port(), free_port()
    rest_url = f"http://127.0.0.1:{rest_port}"
    process = start_devserver(
        [f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={MODEL_NAME}",
         f"--model_base_path={version_dir.parent}", f"--file_system_poll_wait_seconds={POLL_SECONDS}"],
        f"{rest_url}/v1/models/{MODEL_NAME}",
    )
    yield Served(process, rest_url, f"127.0.0.1:{grpc_port}", version_dir.parent, student, tokenizer, config,
                 task_data)
    returncode, stderr = stop_devserver(process, signal.SIGTERM)
    assert returncode == 0, stderr


def assert_same_rows(actual, expected, what):
    """Equal answers and offsets; scores equal up to float32 round-off (another process, batch)."""
    assert len(actual) == len(expected), what
    for row, (got, want) in enumerate(zip(actual, expected)):
        assert {key: got[key] for key in EXACT_OUTPUTS} == {key: want[key] for key in EXACT_OUTPUTS}, (what, row)
        np.testing.assert_allclose([got[key] for key in FLOAT_OUTPUTS], [want[key] for key in FLOAT_OUTPUTS],
                                   rtol=1e-5, atol=1e-5, err_msg=f"{what}, row {row}")


def served_version(rest_url):
    """The version numbers the devserver reports as AVAILABLE for road_demo."""
    status, body = http_json("GET", f"{rest_url}/v1/models/{MODEL_NAME}")
    assert status == 200, body
    return [int(s["version"]) for s in body["model_version_status"] if s["state"] == "AVAILABLE"]


def run_client_cli(*args):
    """`python -m serving.client ARGS` -> CompletedProcess (UTF-8 text on both pipes)."""
    return subprocess.run([sys.executable, "-m", "serving.client", *args], cwd=REPO_ROOT, capture_output=True,
                          encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=120)


def test_contexts_cover_the_hard_cases(served):
    """The long context needs several windows at this sequence length; the others need one."""
    windows = qa_windows(served.tokenizer, tf.constant(QUESTIONS), tf.constant(CONTEXTS), DATA.max_seq_length,
                         DATA.max_query_length, DATA.doc_stride)
    per_question = np.bincount(windows["example_index"].numpy(), minlength=len(QUESTIONS))
    assert per_question[1] >= 3
    assert list(per_question[[0, 2, 3]]) == [1, 1, 1]


def test_grpc_rest_and_direct_load_agree(served):
    """The batch of questions answered over gRPC, over REST and in-process gives the same rows;
    answers are exact substrings at their character offsets; an empty context has no answer."""
    direct = direct_rows(served.model_dir / "1", QUESTIONS, CONTEXTS)
    assert_same_rows(client.predict_grpc(served.grpc_target, MODEL_NAME, QUESTIONS, CONTEXTS), direct, "gRPC")
    assert_same_rows(client.predict_rest(served.rest_url, MODEL_NAME, QUESTIONS, CONTEXTS), direct, "REST")
    for question, context, want in zip(QUESTIONS, CONTEXTS, direct):
        alone = client.predict_rest(served.rest_url, MODEL_NAME, [question], [context], version=1)
        assert_same_rows(alone, [want], f"REST, one question: {question}")
    for context, row in zip(CONTEXTS, direct):
        assert 0.0 <= row["no_answer_probability"] <= 1.0
        if context:
            assert row["answer"] and context[row["start_char"]:row["end_char"]] == row["answer"]
    assert (direct[3]["answer"], direct[3]["start_char"], direct[3]["end_char"]) == ("", -1, -1)
    assert direct[3]["no_answer_probability"] == 1.0


@pytest.mark.parametrize("change, message", [
    (lambda vocab, positions: {"token_ids": [[2, vocab, 3]]}, "values must be in [0, {vocab})"),
    (lambda vocab, positions: {"segment_ids": [[0, 2, 1]]}, "values must be in [0, 2)"),
    (lambda vocab, positions: {name: [[1] * (positions + 1)] for name in ("token_ids", "segment_ids", "padding_mask")},
     "the model takes at most {positions}"),
], ids=["token_id_past_vocab", "segment_id_2", "window_past_positions"])
def test_token_inputs_out_of_the_exported_tables_are_refused(served, change, message):
    """serve_token_ids over REST: ids past the export's embedding tables and windows past its
    position table get INVALID_ARGUMENT naming the limit, read from the export's variables."""
    vocab, positions = served.tokenizer.vocabulary_size, served.config.data.max_seq_length
    inputs = {"token_ids": [[2, 5, 3]], "segment_ids": [[0, 1, 1]], "padding_mask": [[1, 1, 1]],
              **change(vocab, positions)}
    status, body = http_json("POST", f"{served.rest_url}/v1/models/{MODEL_NAME}:predict",
                             {"signature_name": "serve_token_ids", "inputs": inputs})
    assert status == 400 and message.format(vocab=vocab, positions=positions) in body["error"]


def raw_rows(served, api, questions, contexts):
    """serving_default's answer rows to `questions` and `contexts`, bytes that need not be UTF-8,
    sent as gRPC string tensors or REST {"b64": ...} values (columnar)."""
    if api == "gRPC":
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        for name, texts in (("question", questions), ("context", contexts)):
            request.inputs[name].CopyFrom(tf.make_tensor_proto(texts, dtype=tf.string))
        with grpc.insecure_channel(served.grpc_target) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=60)
        columns = {name: tf.make_ndarray(proto).tolist() for name, proto in response.outputs.items()}
        columns = {name: [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]
                   for name, values in columns.items()}
    else:
        inputs = {name: [{"b64": base64.b64encode(text).decode("ascii")} for text in texts]
                  for name, texts in (("question", questions), ("context", contexts))}
        status, body = http_json("POST", f"{served.rest_url}/v1/models/{MODEL_NAME}:predict", {"inputs": inputs})
        assert status == 200, body
        columns = body["outputs"]
    return [{name: values[row] for name, values in columns.items()} for row in range(len(questions))]


@pytest.mark.parametrize("api", ["gRPC", "REST"])
def test_bad_texts_get_no_answer_and_the_reason_in_their_own_rows(served, api):
    """A text that is not UTF-8 or above the exported data.max_context_bytes (a constant of the
    graph) failed the whole request with INVALID_ARGUMENT, and under TF Serving's batching other
    clients' requests too. Now its row gets "no answer" and the reason, and the other rows their
    answers, as when asked alone."""
    limit = DATA.max_context_bytes
    questions = [QUESTIONS[0].encode(), b"Who \xc3(?", QUESTIONS[2].encode(), b"Who?", b"why " * (limit // 4 + 1)]
    contexts = [CONTEXTS[0].encode(), CONTEXTS[0].encode(), CONTEXTS[2].encode(), b"word " * (limit // 5 + 1),
                b"Ada \xff\xfe wrote it."]
    rows = raw_rows(served, api, questions, contexts)
    good = direct_rows(served.model_dir / "1", [QUESTIONS[0], QUESTIONS[2]], [CONTEXTS[0], CONTEXTS[2]])
    assert_same_rows([rows[0], rows[2]], good, api)
    nothing = direct_rows(served.model_dir / "1", [""], [""])[0]
    errors = ["question is not valid UTF-8", f"context is {limit + 5} {OVER}",
              f"question is {limit + 4} {OVER}; context is not valid UTF-8"]
    assert_same_rows([rows[1], rows[3], rows[4]], [{**nothing, "error": error} for error in errors], api)
    assert {(row["answer"], row["start_char"], row["end_char"], row["no_answer_probability"])
            for row in rows[1::2] + rows[4:]} == {("", -1, -1, 1.0)}


@pytest.mark.parametrize("api", ["gRPC", "REST"])
def test_a_context_at_the_default_model_limit_reaches_the_model(served, api):
    """The devserver's default --max_string_bytes (65,536 before) refused a context the default
    data.max_context_bytes (100,000) lets a model answer, failing the whole request with
    INVALID_ARGUMENT; now the text reaches the model, which answers or refuses it in its row."""
    size = DataConfig().max_context_bytes + 1
    rows = raw_rows(served, api, [QUESTIONS[0].encode()] * 2, [CONTEXTS[0].encode(), b"x" * size])
    assert [row["error"] for row in rows] == ["", f"context is {size} {OVER}"]


def test_client_cli_names_a_question_the_model_refuses(served, tmp_path, capsys):
    """A batch record above the exported data.max_context_bytes: one line naming its line, id and
    the model's reason, exit 2 and no --output (the server refused the whole request before)."""
    limit, batch, output = DATA.max_context_bytes, tmp_path / "questions.jsonl", tmp_path / "answers.jsonl"
    records = [{"id": "short", "question": QUESTIONS[0], "context": CONTEXTS[0]},
               {"id": "long", "question": "Which word?", "context": "word " * (limit // 5 + 1)}]
    batch.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    for server in (["--rest", served.rest_url], ["--grpc", served.grpc_target]):
        with pytest.raises(SystemExit) as exit_info:
            client.main(["--batch-file", str(batch), "--output", str(output), "--model", MODEL_NAME, *server])
        assert exit_info.value.code == 2 and not output.exists()
        assert capsys.readouterr().err.splitlines() == [
            f"error: {batch}: line 2 (id 'long'): the model refuses the question: context is {limit + 5} {OVER}"]


def test_client_cli_prints_the_same_json(served, capsys):
    """The client CLI prints the direct answer as one JSON object with non-ASCII text unchanged:
    `python -m serving.client` over REST, and its `main` (same code, no second TF start-up) over gRPC."""
    want = direct_rows(served.model_dir / "1", QUESTIONS[2:3], CONTEXTS[2:3])
    result = run_client_cli(QUESTIONS[2], "--context", CONTEXTS[2], "--rest", served.rest_url, "--model", MODEL_NAME)
    assert result.returncode == 0, result.stderr
    assert client.main([QUESTIONS[2], "--context", CONTEXTS[2], "--grpc", served.grpc_target,
                        "--model", MODEL_NAME]) == 0
    for api, stdout in (("REST", result.stdout), ("gRPC", capsys.readouterr().out)):
        lines = stdout.splitlines()
        assert len(lines) == 1, (api, stdout)
        row = json.loads(lines[0])
        assert list(row) == ["answer", "score", "no_answer_probability", "start_char", "end_char", "error"]
        assert_same_rows([row], want, f"client CLI over {api}")


def test_second_export_is_served(served):
    """Exporting a further-trained student while the server runs: version 2 goes live and both
    APIs answer as the new SavedModel does (and no longer as version 1)."""
    config, task_data = served.config, served.task_data
    train_stage(served.model_dir.parent / "student_more", served.student, task_data, served.tokenizer, config, 10,
                config.train.learning_rate)
    version_dir = export_qa_model(served.student, task_data.task, served.tokenizer, config,
                                  base_dir=served.model_dir.parent, model_name=MODEL_NAME)
    assert version_dir.name == "2"
    deadline = time.monotonic() + 60
    while served_version(served.rest_url) != [2]:
        assert time.monotonic() < deadline, "version 2 was not picked up within 60 s"
        time.sleep(POLL_SECONDS)
    new, old = direct_rows(version_dir, QUESTIONS, CONTEXTS), direct_rows(served.model_dir / "1", QUESTIONS, CONTEXTS)
    assert [row["score"] for row in new] != [row["score"] for row in old]
    assert_same_rows(client.predict_grpc(served.grpc_target, MODEL_NAME, QUESTIONS, CONTEXTS), new, "gRPC v2")
    assert_same_rows(client.predict_rest(served.rest_url, MODEL_NAME, QUESTIONS, CONTEXTS), new, "REST v2")
