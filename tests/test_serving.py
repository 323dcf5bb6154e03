"""Tests for serving/: the devserver's REST and gRPC APIs, version swaps, configs and the client.

One devserver subprocess (module fixture) serves three copies of a toy SavedModel with
road_tf's serving contract: `toy` (read-only), `toy_swap` (the version-swap test) and
`toy_load` (the slow load test), so the tests do not disturb each other.
"""

import base64
import http.client
import itertools
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import file_system_storage_path_source_pb2

from helpers_serving import (
    EXPECTED_ANSWERS,
    QA_EXAMPLES,
    REPO_ROOT,
    direct_rows,
    free_port,
    http_json,
    install_version,
    save_toy_versions,
    start_devserver,
    stop_devserver,
    write_warmup,
)
from serving import client, devserver
from serving import servables as servables_module
from serving.batching import BatchingParameters, InFlight
from road_tf.errors import RoadError
from road_tf.files import MAX_CONFIG_BYTES, versions
from serving.grpc_api import build_server
from serving.errors import HTTP_STATUS, ServingError, reason_phrase
from serving.limits import RequestLimits
from serving.rest import predict_json
from serving.servables import ModelManager, ModelRegistry, Servable, model_failure
from serving.textproto import read_text_proto

MAX_REQUEST_BYTES = 64 * 1024
POLL_SECONDS = 0.2
QUESTIONS = [example["question"] for example in QA_EXAMPLES]
CONTEXTS = [example["context"] for example in QA_EXAMPLES]
OUTPUT_NAMES = {"answer", "score", "no_answer_probability", "start_char", "end_char"}


class Served:
    """Where the module's devserver listens and what it serves."""

    def __init__(self, process, rest_url, grpc_target, base_paths, staged):
        self.process = process
        self.rest_url = rest_url
        self.grpc_target = grpc_target
        self.base_paths = base_paths
        self.staged = staged


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """{version: path} of the toy model's two versions, saved outside any base path."""
    return save_toy_versions(tmp_path_factory.mktemp("staged"))


@pytest.fixture(scope="module")
def served(tmp_path_factory, staged):
    """A devserver subprocess (config file flags) serving toy, toy_swap and toy_load at version 1."""
    root = tmp_path_factory.mktemp("models")
    base_paths = {}
    config = ["model_config_list {"]
    for name in ("toy", "toy_swap", "toy_load"):
        base_paths[name] = str(root / name)
        install_version(staged[1], base_paths[name], 1)
        config.append(
            f'  config {{ name: "{name}" base_path: "{base_paths[name]}" model_platform: "tensorflow" '
            "model_version_policy { latest { num_versions: 1 } } }"
        )
    config.append("}")
    os.makedirs(os.path.join(base_paths["toy"], "notes"))
    os.makedirs(os.path.join(base_paths["toy"], ".tmp-9-abandoned"))
    config_path = root / "models.config"
    config_path.write_text("\n".join(config) + "\n")
    grpc_port, rest_port = free_port(), free_port()
    rest_url = f"http://127.0.0.1:{rest_port}"
    process = start_devserver(
        [
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_config_file={config_path}",
            f"--max_request_bytes={MAX_REQUEST_BYTES}",
            f"--file_system_poll_wait_seconds={POLL_SECONDS}",
        ],
        f"{rest_url}/v1/models/toy",
    )
    yield Served(process, rest_url, f"127.0.0.1:{grpc_port}", base_paths, staged)
    returncode, stderr = stop_devserver(process, signal.SIGTERM)
    assert returncode == 0, stderr


@pytest.fixture(scope="module")
def stubs(served):
    """(PredictionServiceStub, ModelServiceStub) on one channel to the devserver."""
    channel = grpc.insecure_channel(served.grpc_target)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def assert_serves_version(served, name, version):
    """The devserver answers QA_EXAMPLES for `name` as toy version `version` does."""
    rows = client.predict_rest(served.rest_url, name, QUESTIONS, CONTEXTS)
    assert [row["answer"] for row in rows] == EXPECTED_ANSWERS[version]


def qa_request(name="toy", questions=QUESTIONS, contexts=CONTEXTS, version=None, signature=""):
    """A gRPC PredictRequest for serving_default (or `signature`)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["question"].CopyFrom(tf.make_tensor_proto(questions, dtype=tf.string))
    request.inputs["context"].CopyFrom(tf.make_tensor_proto(contexts, dtype=tf.string))
    return request


def test_rest_grpc_and_direct_load_agree(served):
    """Row, columnar and base64 REST, gRPC and an in-process load give the same answers, per contract."""
    expected = direct_rows(served.staged[1], QUESTIONS, CONTEXTS)
    assert [row["answer"] for row in expected] == EXPECTED_ANSWERS[1]
    rest_rows = client.predict_rest(served.rest_url, "toy", QUESTIONS, CONTEXTS)
    rest_v1_rows = client.predict_rest(served.rest_url, "toy", QUESTIONS, CONTEXTS, version=1)
    grpc_rows = client.predict_grpc(served.grpc_target, "toy", QUESTIONS, CONTEXTS)
    grpc_v1_rows = client.predict_grpc(served.grpc_target, "toy", QUESTIONS, CONTEXTS, version=1)
    status, body = http_json(
        "POST", f"{served.rest_url}/v1/models/toy:predict", {"inputs": {"question": QUESTIONS, "context": CONTEXTS}}
    )
    assert status == 200 and set(body["outputs"]) == OUTPUT_NAMES
    columnar_rows = [{name: body["outputs"][name][row] for name in expected[0]} for row in range(len(QUESTIONS))]
    b64_instances = [
        {"question": q, "context": {"b64": base64.b64encode(c.encode("utf-8")).decode("ascii")}}
        for q, c in zip(QUESTIONS, CONTEXTS)
    ]
    status, body = http_json("POST", f"{served.rest_url}/v1/models/toy:predict", {"instances": b64_instances})
    assert status == 200
    b64_rows = body["predictions"]
    for rows in (rest_rows, rest_v1_rows, grpc_rows, grpc_v1_rows, columnar_rows, b64_rows):
        assert rows == expected
    for row, context in zip(rest_rows, CONTEXTS):
        if row["answer"]:
            assert context[row["start_char"] : row["end_char"]] == row["answer"]
        else:
            assert (row["start_char"], row["end_char"], row["no_answer_probability"]) == (-1, -1, 1.0)


def test_grpc_predict_reports_model_spec_and_filters_outputs(stubs):
    """A gRPC answer names model, version and signature; output_filter trims the outputs."""
    request = qa_request()
    request.output_filter.append("answer")
    response = stubs[0].Predict(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 1)
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"answer"}
    assert [a.decode() for a in tf.make_ndarray(response.outputs["answer"])] == EXPECTED_ANSWERS[1]


def test_token_id_signature_over_rest_rows_columns_and_grpc(served, stubs):
    """serve_token_ids: 2-D int32 inputs in all three request forms give the direct outputs."""
    token_ids = [[101, 7, 8, 102], [101, 9, 102, 0]]
    segment_ids = [[0, 0, 1, 1], [0, 0, 1, 0]]
    padding_mask = [[1, 1, 1, 1], [1, 1, 1, 0]]
    direct = tf.saved_model.load(served.staged[1]).signatures["serve_token_ids"](
        token_ids=tf.constant(token_ids), segment_ids=tf.constant(segment_ids), padding_mask=tf.constant(padding_mask)
    )
    expected = {name: direct[name].numpy().tolist() for name in ("start_logits", "end_logits")}
    url = f"{served.rest_url}/v1/models/toy:predict"
    inputs = {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
    status, columns = http_json("POST", url, {"signature_name": "serve_token_ids", "inputs": inputs})
    assert status == 200 and columns["outputs"] == expected
    instances = [{name: value[row] for name, value in inputs.items()} for row in range(2)]
    status, rows = http_json("POST", url, {"signature_name": "serve_token_ids", "instances": instances})
    assert status == 200
    assert rows["predictions"] == [{name: expected[name][row] for name in expected} for row in range(2)]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "toy"
    request.model_spec.signature_name = "serve_token_ids"
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(np.array(value, dtype=np.int32)))
    response = stubs[0].Predict(request, timeout=30)
    assert {name: tf.make_ndarray(response.outputs[name]).tolist() for name in expected} == expected


def test_model_status_over_rest_and_grpc(served, stubs):
    """Status names the one loaded version as AVAILABLE/OK; directories not named by integers are ignored."""
    expected = {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert http_json("GET", f"{served.rest_url}/v1/models/toy") == (200, expected)
    assert http_json("GET", f"{served.rest_url}/v1/models/toy/versions/1") == (200, expected)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "toy"
    response = stubs[1].GetModelStatus(request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)
    ]


def test_metadata_over_rest_and_grpc(served, stubs):
    """Metadata lists both signatures with dtypes and shapes; REST renders gRPC's SignatureDefMap."""
    status, body = http_json("GET", f"{served.rest_url}/v1/models/toy/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "toy", "version": "1", "signature_name": ""}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert {name: spec["dtype"] for name, spec in default["inputs"].items()} == {
        "question": "DT_STRING",
        "context": "DT_STRING",
    }
    assert default["inputs"]["question"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert {name: spec["dtype"] for name, spec in default["outputs"].items()} == {
        "answer": "DT_STRING",
        "score": "DT_FLOAT",
        "no_answer_probability": "DT_FLOAT",
        "start_char": "DT_INT32",
        "end_char": "DT_INT32",
    }
    token_inputs = signatures["serve_token_ids"]["inputs"]
    assert {name: len(spec["tensor_shape"]["dim"]) for name, spec in token_inputs.items()} == {
        "token_ids": 2,
        "segment_ids": 2,
        "padding_mask": 2,
    }
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "toy"
    response = stubs[0].GetModelMetadata(request, timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 1)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    rendered = json_format.MessageToDict(
        signature_map, preserving_proto_field_name=True, including_default_value_fields=True
    )
    assert rendered == body["metadata"]["signature_def"]


TOKEN_INPUTS = {"token_ids": [[1, 2]], "segment_ids": [[0, 1]], "padding_mask": [[1, 1]]}

REST_ERRORS = [
    ("bad_json", "POST", "/v1/models/toy:predict", '{"instances": [', 400, "malformed JSON"),
    ("not_an_object", "POST", "/v1/models/toy:predict", "[1, 2]", 400, "must be a JSON object"),
    ("missing_input_row", "POST", "/v1/models/toy:predict", {"instances": [{"question": "q"}]}, 400,
     "missing input(s) context"),
    ("missing_input_columnar", "POST", "/v1/models/toy:predict", {"inputs": {"question": ["q"]}}, 400,
     "missing input(s) context"),
    ("unknown_input", "POST", "/v1/models/toy:predict",
     {"inputs": {"question": ["q"], "context": ["c"], "extra": ["x"]}}, 400, "unknown input(s) extra"),
    ("number_for_string", "POST", "/v1/models/toy:predict", {"instances": [{"question": 1, "context": "c"}]}, 400,
     "expects strings"),
    ("float_for_int", "POST", "/v1/models/toy:predict",
     {"signature_name": "serve_token_ids", "inputs": {**TOKEN_INPUTS, "token_ids": [[1.5, 2]]}}, 400,
     "expects integers"),
    ("ragged", "POST", "/v1/models/toy:predict",
     {"signature_name": "serve_token_ids", "inputs": {**TOKEN_INPUTS, "token_ids": [[1, 2], [3]]}}, 400, "ragged"),
    ("wrong_rank", "POST", "/v1/models/toy:predict", {"inputs": {"question": [["q"]], "context": [["c"]]}}, 400,
     "expects shape"),
    ("empty_batch_row", "POST", "/v1/models/toy:predict", {"instances": []}, 400, "empty batch"),
    ("empty_batch_columnar", "POST", "/v1/models/toy:predict", {"inputs": {"question": [], "context": []}}, 400,
     "empty batch"),
    ("both_formats", "POST", "/v1/models/toy:predict",
     {"instances": [{"question": "q", "context": "c"}], "inputs": {"question": ["q"], "context": ["c"]}}, 400,
     "exactly one of"),
    ("unknown_signature", "POST", "/v1/models/toy:predict",
     {"signature_name": "nope", "instances": [{"question": "q", "context": "c"}]}, 400, "signature 'nope' not found"),
    ("batch_mismatch", "POST", "/v1/models/toy:predict",
     {"inputs": {"question": ["a", "b"], "context": ["c"]}}, 400, "different batch sizes"),
    ("unknown_model", "POST", "/v1/models/nope:predict", {"instances": [{"question": "q", "context": "c"}]}, 404,
     "Servable not found"),
    ("unknown_version", "POST", "/v1/models/toy/versions/7:predict",
     {"instances": [{"question": "q", "context": "c"}]}, 404, "Specific(toy, 7)"),
    ("status_unknown_version", "GET", "/v1/models/toy/versions/7", None, 404, "Specific(toy, 7)"),
    ("metadata_unknown_model", "GET", "/v1/models/nope/metadata", None, 404, "not served"),
    ("predict_with_get", "GET", "/v1/models/toy:predict", None, 404, "Malformed request"),
    ("body_over_limit", "POST", "/v1/models/toy:predict", "x" * (MAX_REQUEST_BYTES + 1), 413, "exceeds"),
]


@pytest.mark.parametrize(
    "method, path, body, status, fragment", [case[1:] for case in REST_ERRORS], ids=[case[0] for case in REST_ERRORS]
)
def test_rest_errors_then_keeps_serving(served, method, path, body, status, fragment):
    """Each malformed REST request gets its status and {"error": ...}; a good request then works."""
    got_status, got_body = http_json(method, served.rest_url + path, body)
    assert got_status == status
    assert set(got_body) == {"error"} and fragment in got_body["error"]
    assert_serves_version(served, "toy", 1)


def test_rest_oversized_body_keeps_the_connection_usable(served):
    """After a 413 on a keep-alive connection, the next request on it is answered normally."""
    connection = http.client.HTTPConnection(served.rest_url.split("//")[1], timeout=30)
    try:
        connection.request("POST", "/v1/models/toy:predict", body=b"x" * (2 * MAX_REQUEST_BYTES))
        response = connection.getresponse()
        assert response.status == 413 and "exceeds" in json.loads(response.read())["error"]
        good = json.dumps({"instances": [{"question": QUESTIONS[0], "context": CONTEXTS[0]}]})
        connection.request("POST", "/v1/models/toy:predict", body=good)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["predictions"][0]["answer"] == EXPECTED_ANSWERS[1][0]
    finally:
        connection.close()


def _missing_context():
    request = qa_request()
    del request.inputs["context"]
    return request


def _float_question():
    request = qa_request()
    request.inputs["question"].CopyFrom(tf.make_tensor_proto([1.0, 2.0, 3.0], dtype=tf.float32))
    return request


def _unknown_output():
    request = qa_request()
    request.output_filter.append("logits")
    return request


GRPC_ERRORS = [
    ("missing_input", _missing_context, grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_dtype", _float_question, grpc.StatusCode.INVALID_ARGUMENT),
    ("empty_batch", lambda: qa_request(questions=[], contexts=[]), grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_rank", lambda: qa_request(questions=[["q"]], contexts=[["c"]]), grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown_signature", lambda: qa_request(signature="nope"), grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown_output_filter", _unknown_output, grpc.StatusCode.INVALID_ARGUMENT),
    ("unknown_model", lambda: qa_request(name="nope"), grpc.StatusCode.NOT_FOUND),
    ("unknown_version", lambda: qa_request(version=7), grpc.StatusCode.NOT_FOUND),
    ("over_limit", lambda: qa_request(questions=["q" * MAX_REQUEST_BYTES], contexts=["c"]),
     grpc.StatusCode.RESOURCE_EXHAUSTED),
]


@pytest.mark.parametrize("make_request, code", [c[1:] for c in GRPC_ERRORS], ids=[c[0] for c in GRPC_ERRORS])
def test_grpc_predict_errors_then_keeps_serving(stubs, make_request, code):
    """Each malformed Predict gets its gRPC status code; a good request then works."""
    with pytest.raises(grpc.RpcError) as raised:
        stubs[0].Predict(make_request(), timeout=30)
    assert raised.value.code() == code
    response = stubs[0].Predict(qa_request(), timeout=30)
    assert [a.decode() for a in tf.make_ndarray(response.outputs["answer"])] == EXPECTED_ANSWERS[1]


def test_grpc_status_and_metadata_errors(stubs):
    """Unknown model/version -> NOT_FOUND; metadata without a (supported) field -> INVALID_ARGUMENT."""
    for name, version in (("nope", None), ("toy", 7)):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        with pytest.raises(grpc.RpcError) as raised:
            stubs[1].GetModelStatus(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    for fields in ([], ["signature_def", "weights"]):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
        request.model_spec.name = "toy"
        with pytest.raises(grpc.RpcError) as raised:
            stubs[0].GetModelMetadata(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_version_swap_under_traffic_drops_nothing(served):
    """Installing version 2 while REST and gRPC clients run: 0 failures, each client's answers
    switch once, for good."""
    base_path = served.base_paths["toy_swap"]
    answers, failures, stop = [], [], threading.Event()
    predictor = client.GrpcPredictor(served.grpc_target, timeout=30)

    def keep_asking(predict):
        while not stop.is_set():
            try:
                reply = tuple(row["answer"] for row in predict("toy_swap", QUESTIONS, CONTEXTS))
                answers.append((threading.get_ident(), reply))
            except Exception as error:  # every failure counts, whatever its kind
                failures.append(repr(error))

    threads = [
        threading.Thread(target=keep_asking, args=(lambda *a: client.predict_rest(served.rest_url, *a),)),
        threading.Thread(target=keep_asking, args=(predictor.predict,)),
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answers) >= 20, "first answers")
        tmp_path = os.path.join(base_path, f".tmp-2-{uuid.uuid4().hex[:8]}")
        shutil.copytree(served.staged[2], tmp_path)
        time.sleep(4 * POLL_SECONDS)
        assert http_json("GET", f"{served.rest_url}/v1/models/toy_swap")[1]["model_version_status"][0]["version"] == "1"
        os.rename(tmp_path, os.path.join(base_path, "2"))
        wait_until(lambda: any(reply == tuple(EXPECTED_ANSWERS[2]) for _, reply in answers), "answers from version 2")
        settled = len(answers)
        wait_until(lambda: len(answers) >= settled + 20, "answers after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        predictor.close()
    assert failures == []
    versions = {tuple(answers): version for version, answers in EXPECTED_ANSWERS.items()}
    assert {reply for _, reply in answers} == set(versions)
    for thread in threads:
        seen = [versions[reply] for ident, reply in answers if ident == thread.ident]
        assert seen == sorted(seen) and seen[-1] == 2
    status = http_json("GET", f"{served.rest_url}/v1/models/toy_swap")[1]
    assert [s["version"] for s in status["model_version_status"]] == ["2"]
    assert http_json("GET", f"{served.rest_url}/v1/models/toy_swap/versions/1")[0] == 404


def wait_until(condition, what, timeout=60.0):
    """Polls condition() every 50 ms; fails the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_client_cli(*args):
    """Runs `python -m serving.client ARGS` -> CompletedProcess (text)."""
    return subprocess.run(
        [sys.executable, "-m", "serving.client", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )


def test_client_cli_prints_one_json_answer(served, tmp_path):
    """The CLI prints the signature outputs as one JSON object (REST, --context and --context-file)."""
    result = run_client_cli(QUESTIONS[0], "--context", CONTEXTS[0], "--rest", served.rest_url, "--model", "toy")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    answer = json.loads(lines[0])
    assert list(answer) == ["answer", "score", "no_answer_probability", "start_char", "end_char"]
    assert answer == direct_rows(served.staged[1], QUESTIONS[:1], CONTEXTS[:1])[0]
    context_file = tmp_path / "context.txt"
    context_file.write_text(CONTEXTS[2], encoding="utf-8")
    result = run_client_cli(QUESTIONS[2], "--context-file", str(context_file), "--rest", served.rest_url,
                            "--model", "toy", "--version", "1")
    assert result.returncode == 0 and json.loads(result.stdout)["answer"] == EXPECTED_ANSWERS[1][2]


def test_client_cli_batch_file_over_grpc(served, tmp_path, capsys):
    """--batch-file answers every record in order with its id, over gRPC, into --output."""
    batch = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": f"q{i}", "question": q, "context": c}) for i, (q, c) in enumerate(zip(QUESTIONS, CONTEXTS))
    ]
    extra = json.dumps({"question": "is it red", "context": "red"})
    batch.write_text(f"{lines[0]}\n\n{lines[1]}\n{extra}\n")
    output = tmp_path / "out.jsonl"
    argv = ["--batch-file", str(batch), "--grpc", served.grpc_target, "--model", "toy", "--batch-size", "2",
            "--output", str(output)]
    assert client.main(argv) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [row.get("id") for row in rows] == ["q0", "q1", None]
    assert [row["answer"] for row in rows] == [EXPECTED_ANSWERS[1][0], "", "red"]
    assert capsys.readouterr().out == ""


def test_client_cli_unreachable_server_is_one_line_exit_2():
    """An unreachable server: exit 2 and exactly one line on stderr, for REST and gRPC."""
    port = free_port()
    for api in (["--rest", f"http://127.0.0.1:{port}"], ["--grpc", f"127.0.0.1:{port}"]):
        result = run_client_cli("q", "--context", "c", *api, "--timeout", "10")
        assert result.returncode == 2
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: cannot reach")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ('{"question": "q", "context": "c"}\n{"question": "q"\n', "line 2: not valid JSON"),
        ('{"question": "q", "context": 3}\n', "line 1: 'context' is missing or not a string"),
        ('{"question": "q", "context": "c", "id": [1]}\n', "line 1: 'id' must be"),
        ("\n\n", "no records"),
        ("[" * 100_000 + "\n", "line 1: not valid JSON (nested too deeply)"),
        ('{"question": "q", "context": "c", "id": ' + "9" * 5000 + "}\n", "line 1: a number has more digits than"),
        ('{"question": "q\\ud800", "context": "c"}\n', "line 1: 'question' is not UTF-8 text (lone surrogate"),
    ],
    ids=["bad_json", "context_not_string", "bad_id", "empty", "nested", "id_digits", "lone_surrogate"],
)
def test_client_cli_bad_batch_file(tmp_path, capsys, content, fragment):
    """A bad batch file: exit 2 with one line naming the file, the line and the problem."""
    batch = tmp_path / "in.jsonl"
    batch.write_text(content)
    with pytest.raises(SystemExit) as raised:
        client.main(["--batch-file", str(batch), "--rest", "http://127.0.0.1:9"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(batch) in err and fragment in err


@pytest.mark.parametrize("flags", [["--batch-file"], ["q", "--context-file"]], ids=["batch_file", "context_file"])
@pytest.mark.parametrize("path, fragment", [("/dev/zero", "a device, not a file"), ("{tmp}", "a folder, not a file")],
                         ids=["device", "folder"])
def test_client_cli_refuses_devices_and_folders(tmp_path, capsys, flags, path, fragment):
    """Reading /dev/zero would never end: a device or folder is one line naming it, exit 2."""
    path = path.format(tmp=tmp_path)
    with pytest.raises(SystemExit) as raised:
        client.main([*flags, path, "--rest", "http://127.0.0.1:9"])
    assert raised.value.code == 2
    assert capsys.readouterr().err == f"error: {path}: {fragment}\n"


def test_client_cli_reports_server_error_text(served, tmp_path, capsys):
    """A server error answer becomes one line carrying the server's message, exit 2, and no
    (partial or temporary) --output file is left behind."""
    output = tmp_path / "out" / "answers.jsonl"
    output.parent.mkdir()
    with pytest.raises(SystemExit) as raised:
        client.main(["q", "--context", "c", "--rest", served.rest_url, "--model", "nope", "--output", str(output)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 404" in err and "not served" in err
    assert list(output.parent.iterdir()) == []


def test_devserver_flags_log_lines_and_sigint(staged, tmp_path):
    """--model_name/--model_base_path serve a model; SIGINT exits 0 after logging load and unload."""
    base_path = tmp_path / "solo"
    install_version(staged[1], str(base_path), 1)
    rest_port = free_port()
    process = start_devserver(
        [f"--port={free_port()}", f"--rest_api_port={rest_port}", "--model_name=solo",
         f"--model_base_path={base_path}", "--enable_batching"],
        f"http://127.0.0.1:{rest_port}/v1/models/solo",
    )
    rows = client.predict_rest(f"http://127.0.0.1:{rest_port}", "solo", QUESTIONS, CONTEXTS)
    assert [row["answer"] for row in rows] == EXPECTED_ANSWERS[1]
    returncode, stderr = stop_devserver(process, signal.SIGINT)
    assert returncode == 0, stderr
    assert f"loaded model solo version 1 from {base_path}/1 in " in stderr
    assert "(1 warmup requests)" in stderr
    assert "shutting down on SIGINT" in stderr
    assert "unloaded model solo version 1" in stderr
    assert "batching enabled: max_batch_size=1000" in stderr


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--port=8500"], "give --model_config_file"),
        (["--model_base_path=/x", "--port=9000", "--rest_api_port=9000"], "must differ"),
        (["--model_config_file=/nonexistent/models.config"], "no such model config file"),
        (["--model_base_path=/x", "--port=many"],
         "argument --port: must be a whole number in ASCII digits, got 'many'"),
        (["--model_base_path=/x", "--max_string_bytes=0"], "--max_string_bytes must be positive"),
        (["--model_base_path=/x", "--rest_timeout_seconds=nan"],
         "argument --rest_timeout_seconds: must be a finite number"),
        (["--model_base_path=/x", "--rest_timeout_seconds=inf"], "must be a finite number"),
        (["--model_base_path=/x", "--max_request_bytes=3000000000"],
         "--max_request_bytes must be at most 2147483647, got 3000000000"),
        (["--model_base_path=/x", "--max_request_bytes=99999999999999999999"],
         "argument --max_request_bytes: must be a whole number of at most 64 bits"),
        (["--model_base_path=/x", "--rest_timeout_seconds=1e300"],
         "--rest_timeout_seconds must be at most 86,400 seconds (a day), got 1e+300"),
        (["--model_base_path=/x", "--file_system_poll_wait_seconds=1e300"],
         "--file_system_poll_wait_seconds must be at most 86,400 seconds (a day)"),
        (["--model_base_path=/x", "--file_system_poll_wait_seconds=nan"],
         "argument --file_system_poll_wait_seconds: must be a finite number"),
        (["--model_base_path=/x", "--max_num_load_retries=-5"], "--max_num_load_retries must not be negative, got -5"),
        (["--model_base_path=/x", "--file_system_poll_wait_seconds=1e-9"],
         "--file_system_poll_wait_seconds must be 0 (load once) or at least 0.1 seconds, got 1e-09"),
        (["--model_base_path=/x", "--host="], "--host: must not be empty"),
    ],
    ids=["no_model", "same_ports", "missing_config", "bad_port", "zero_limit", "nan_timeout", "inf_timeout",
         "huge_request_bytes", "int64_request_bytes", "huge_timeout", "huge_poll_wait", "nan_poll_wait",
         "negative_retries", "busy_poll_wait", "empty_host"],
)
def test_devserver_bad_flags_are_one_line_exit_2(capsys, argv, fragment):
    """Bad devserver flags: exit 2 and one line on stderr, before anything is served."""
    with pytest.raises(SystemExit) as raised:
        devserver.main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize("layout, poll, fragment", [
    ("file", "1", "base path {base}: is a file, not a folder, so it can hold no versions"),
    ("empty", "0", "no version loaded from {base} (the log above says why), and --file_system_poll_wait_seconds 0"),
    ("missing", "0", "no version loaded from {base}"),
])
def test_a_base_path_that_can_never_serve_is_one_line_exit_2(tmp_path, capsys, layout, poll, fragment):
    """A file as base path, or nothing to load with polling off: the devserver listened for ever and
    answered every request NOT_FOUND, with one warning in its log."""
    base = tmp_path / "m"
    if layout == "file":
        base.write_text("x")
    elif layout == "empty":
        base.mkdir()
    with pytest.raises(SystemExit) as raised:
        devserver.main(["--model_name=m", f"--model_base_path={base}", f"--port={free_port()}", "--rest_api_port=0",
                        f"--file_system_poll_wait_seconds={poll}"])
    assert raised.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("error: ")]) == 1
    assert err[-1].startswith("error: model m: ") and fragment.format(base=base) in err[-1]


def test_a_base_path_not_made_yet_is_waited_for_while_polling(tmp_path):
    """As with TF Serving, a model folder the pipeline's first push will make is polled until it appears."""
    manager = servables_module.ModelManager(
        "m", str(tmp_path / "later"), file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig
        .ServableVersionPolicy())
    registry = servables_module.ModelRegistry([manager], 60)
    registry.start()
    registry.stop()
    assert manager.loaded_versions() == []


def test_devserver_accepts_the_largest_flag_values():
    """The largest --max_request_bytes is the largest gRPC takes (one more overflows its C int), and
    timeouts of a day and no load retries are accepted."""
    args = devserver.parse_args([
        "--model_base_path=/x", f"--max_request_bytes={devserver.MAX_GRPC_BYTES}", "--rest_timeout_seconds=86400",
        "--file_system_poll_wait_seconds=86400", "--max_num_load_retries=0",
    ])
    assert (args.max_request_bytes, args.rest_timeout_seconds, args.max_num_load_retries) == (2**31 - 1, 86400.0, 0)
    build_server(ModelRegistry([], 0), devserver.MAX_GRPC_BYTES, 1, RequestLimits(), InFlight()).stop(None)
    with pytest.raises(OverflowError):
        build_server(ModelRegistry([], 0), devserver.MAX_GRPC_BYTES + 1, 1, RequestLimits(), InFlight())


class LoadWatch(ModelRegistry):
    """A registry of no models that records whether loading began."""

    loaded = False

    def start(self):
        self.loaded = True
        super().start()


def test_devserver_refuses_busy_ports_before_loading_models(served):
    """A gRPC or REST port already in use is a RoadError naming the address, not a silent share, and
    comes before the models load (which can take minutes)."""
    grpc_port, rest_port = (int(served.grpc_target.rsplit(":", 1)[1]), int(served.rest_url.rsplit(":", 1)[1]))
    for ports, fragment in (((grpc_port, 0), "cannot listen for gRPC"), ((free_port(), rest_port), "for REST")):
        registry = LoadWatch([], 0)
        server = devserver.DevServer(registry, "127.0.0.1", *ports, MAX_REQUEST_BYTES, 2)
        try:
            with pytest.raises(RoadError, match=fragment):
                server.start()
        finally:
            server.stop()
        assert not registry.loaded
        if ports[0] != grpc_port:  # the gRPC port it bound is free again: gRPC keeps a port until a started server stops
            socket.create_server(("127.0.0.1", ports[0])).close()


def test_shipped_configs_parse_as_tf_serving_protos():
    """serving/models.config serves road_demo (newest version only); batching.config is valid."""
    configs = devserver.read_model_config(os.path.join(REPO_ROOT, "serving", "models.config"))
    assert [(c.name, c.base_path, c.model_version_policy.latest.num_versions) for c in configs] == [
        ("road_demo", "/models/road_demo", 1)
    ]
    batching = BatchingParameters()
    with open(os.path.join(REPO_ROOT, "serving", "batching.config"), encoding="utf-8") as stream:
        text_format.Parse(stream.read(), batching)
    assert batching.max_batch_size.value >= 1 and batching.num_batch_threads.value >= 1
    assert not batching.pad_variable_length_inputs  # TF Serving would pad padding_mask with 1s


def test_bad_model_config_is_refused(tmp_path):
    """A duplicate model name in a ModelServerConfig is a one-line ConfigError naming the file."""
    path = tmp_path / "models.config"
    entry = 'config { name: "a" base_path: "/m/a" }'
    path.write_text(f"model_config_list {{ {entry} {entry} }}")
    with pytest.raises(devserver.ConfigError, match="models.config: model a is configured twice"):
        devserver.read_model_config(str(path))


CONFIG_FILES = {
    "model_config": ([], "--model_config_file", b'model_config_list { config { name: "m" base_path: "x" } }'),
    "batching": (["--model_base_path=/x", "--enable_batching"], "--batching_parameters_file",
                 b"max_batch_size { value: 8 }"),
}
"""The devserver's config files -> (the other arguments it needs, the file's flag, valid content)."""


def _feed_fifo_reader(path):
    """Writes a line to the FIFO at `path` and closes it, if a reader has it open (so a reader that
    should have refused it fails instead of hanging)."""
    try:
        handle = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody has it open for reading
        return
    os.write(handle, b"not a text proto\n")
    os.close(handle)


@pytest.mark.parametrize("config", CONFIG_FILES)
@pytest.mark.parametrize("kind, fragment", [
    ("device", "a device or pipe, not a"),
    ("pipe", "a device or pipe, not a"),
    ("folder", "a folder, not a"),
    ("not_utf8", "not UTF-8 text (invalid start byte at byte {end})"),
    ("too_large", "larger than 1,048,576 bytes, too large for a"),
], ids=["device", "pipe", "folder", "not_utf8", "too_large"])
def test_devserver_refuses_hostile_config_files(tmp_path, capsys, config, kind, fragment):
    """A config file that never ends (/dev/zero), is a pipe or a folder, is not UTF-8 or is above
    1 MiB: exit 2 with one line naming it, without reading it whole."""
    others, flag, content = CONFIG_FILES[config]
    path = {"device": "/dev/zero", "folder": str(tmp_path)}.get(kind, str(tmp_path / "file.config"))
    watchdog = threading.Timer(5, _feed_fifo_reader, [path])
    if kind == "pipe":
        os.mkfifo(path)  # nobody writes: opening it would block until the watchdog does
        watchdog.start()
    elif kind == "not_utf8":
        with open(path, "wb") as stream:
            stream.write(content + b"\xff")
    elif kind == "too_large":
        with open(path, "wb") as stream:
            stream.write(content + b" " * MAX_CONFIG_BYTES)
    with pytest.raises(SystemExit) as raised:
        devserver.main([*others, f"{flag}={path}"])
    watchdog.cancel()
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and fragment.format(end=len(content)) in err


def test_config_files_of_the_largest_size_and_nested_too_deeply(tmp_path):
    """A config file of MAX_CONFIG_BYTES parses; one nesting Any messages deeper than Python's
    recursion limit is a ConfigError naming the file, not a RecursionError."""
    largest = tmp_path / "largest.config"
    largest.write_bytes(CONFIG_FILES["batching"][2].ljust(MAX_CONFIG_BYTES))
    assert read_text_proto(str(largest), BatchingParameters(), "batching parameters").max_batch_size.value == 8
    nested = tmp_path / "nested.config"
    depth = sys.getrecursionlimit()
    nested.write_text("custom_model_config { " + "[type.googleapis.com/google.protobuf.Any] { " * depth
                      + "}" * depth + " }")
    refusal = f"^{re.escape(str(nested))}: not a ModelServerConfig text proto: nested too deeply$"
    with pytest.raises(devserver.ConfigError, match=refusal):
        devserver.read_model_config(str(nested))


def _garbage_saved_model(staged, version_dir):
    os.makedirs(version_dir)
    with open(os.path.join(version_dir, "saved_model.pb"), "wb") as stream:
        stream.write(b"not a protobuf")


def _failing_warmup(staged, version_dir):
    shutil.copytree(staged[2], version_dir)
    write_warmup(version_dir, {"question": ["q"]})


@pytest.mark.parametrize("break_version, retries", [(_garbage_saved_model, 0), (_failing_warmup, 2)],
                         ids=["garbage", "bad_warmup"])
def test_manager_keeps_old_version_when_new_one_is_broken(staged, tmp_path, caplog, break_version, retries):
    """A newest version that fails to load (or to warm up) leaves the previous one serving,
    and is given up on after 1 + max_load_retries attempts (as in TF Serving: with 0 retries,
    a version is still loaded once)."""
    base_path = str(tmp_path / "m")
    install_version(staged[1], base_path, 1)
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    policy.latest.num_versions = 1
    manager = ModelManager("m", base_path, policy, max_load_retries=retries)
    manager.poll()
    break_version(staged, os.path.join(base_path, "2"))
    with caplog.at_level(logging.INFO, logger="serving.devserver"):
        for _ in range(4):
            manager.poll()
    assert manager.loaded_versions() == [1]
    assert manager.get().version == 1
    failures = [r.getMessage() for r in caplog.records if "failed to load model m version 2" in r.getMessage()]
    assert len(failures) == retries + 1 and f"attempt {retries + 1}, giving up" in failures[-1]


def test_a_load_failure_is_logged_with_its_first_line_of_text(staged, tmp_path, caplog, monkeypatch):
    """A load error whose message starts with a line break was logged with an empty reason."""
    base_path = str(tmp_path / "m")
    install_version(staged[1], base_path, 1)
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    policy.latest.num_versions = 1

    def failing(*args, **kwargs):
        raise RuntimeError("\n  the graph needs an op this server lacks\n  (stack)")

    monkeypatch.setattr(servables_module, "Servable", failing)
    with caplog.at_level(logging.INFO, logger="serving.devserver"):
        ModelManager("m", base_path, policy, max_load_retries=0).poll()
    assert [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records if "failed to load" in r.getMessage()] == [
        "the graph needs an op this server lacks"]


def test_a_version_folder_named_with_leading_zeros_is_served_from_that_folder(staged, tmp_path, caplog):
    """"007" is version 7 (as TF Serving parses it), but the devserver loaded it from "7", which did
    not exist: nothing was ever served. Beside it, "7" names the same version and is ignored."""
    base_path = str(tmp_path / "m")
    install_version(staged[1], base_path, "007")
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    manager = ModelManager("m", base_path, policy, max_load_retries=0)
    manager.poll()
    assert manager.loaded_versions() == [7] and manager.get().version == 7
    install_version(staged[2], base_path, 7)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serving.devserver"):
        assert [manager.available_versions() for _ in range(3)] == [{7: "007"}] * 3
    assert [record.getMessage() for record in caplog.records] == [
        f"model m: ignoring {ascii(os.path.join(base_path, '7'))}: 007 names version 7 too"]
    assert versions(base_path) == {7: pathlib.Path(base_path) / "007"}


def serving_1_beside_a_broken_2(staged, tmp_path):
    """(ModelManager of model "m" with version 1 loaded and version 2 a garbage saved_model.pb that
    it has not tried yet (no load retries), its base path)."""
    base_path = str(tmp_path / "m")
    install_version(staged[1], base_path, 1)
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    manager = ModelManager("m", base_path, policy, max_load_retries=0)
    manager.poll()
    _garbage_saved_model(staged, os.path.join(base_path, "2"))
    return manager, base_path


def test_a_version_given_up_on_is_loaded_anew_once_copied_in_again(staged, tmp_path):
    """A half-copied version used up its load retries, and the devserver never tried it again, even
    once it was removed and copied in whole: it served the old version until restarted."""
    manager, base_path = serving_1_beside_a_broken_2(staged, tmp_path)
    manager.poll()
    assert manager.loaded_versions() == [1]
    shutil.rmtree(os.path.join(base_path, "2"))
    manager.poll()
    install_version(staged[2], base_path, 2)
    manager.poll()
    assert manager.loaded_versions() == [2]


def test_a_base_path_that_cannot_be_listed_keeps_the_versions_given_up_on(staged, tmp_path, monkeypatch, caplog):
    """A listing that fails for a moment (EIO, a stale NFS handle) is not a version leaving: the
    version given up on stays given up on, not loaded again with all its retries."""
    manager, _ = serving_1_beside_a_broken_2(staged, tmp_path)
    with caplog.at_level(logging.ERROR, logger="serving.devserver"):
        manager.poll()
        listdir = os.listdir
        monkeypatch.setattr(os, "listdir", lambda path: (_ for _ in ()).throw(OSError(5, "Input/output error")))
        manager.poll()
        monkeypatch.setattr(os, "listdir", listdir)
        manager.poll()
    assert sum("failed to load model m version 2" in record.getMessage() for record in caplog.records) == 1
    assert manager.loaded_versions() == [1]


def test_version_policies_choose_versions():
    """latest N, all and specific pick the expected versions among those on disk."""
    policy_class = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy
    available = [1, 3, 10, 2]
    latest = policy_class()
    latest.latest.num_versions = 2
    specific = policy_class()
    specific.specific.versions.extend([2, 7])
    everything = policy_class()
    everything.all.SetInParent()
    choices = {
        "unset": policy_class(),
        "latest": latest,
        "specific": specific,
        "all": everything,
    }
    chosen = {key: ModelManager("m", "/x", policy).wanted_versions(available) for key, policy in choices.items()}
    assert chosen == {"unset": {10}, "latest": {3, 10}, "specific": {2}, "all": {1, 2, 3, 10}}


def test_a_specific_policy_naming_absent_versions_says_so_once(tmp_path, caplog):
    """model_version_policy { specific { versions: 7 } } over a base path without 7 served nothing and logged nothing."""
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    policy.specific.versions.extend([1, 7])
    (tmp_path / "1").mkdir()
    manager = ModelManager("m", str(tmp_path), policy)
    with caplog.at_level(logging.INFO, logger="serving.devserver"):
        manager.poll()
        manager.poll()
    warnings = [r.getMessage() for r in caplog.records if "model_version_policy names" in r.getMessage()]
    assert warnings == [f"model m: model_version_policy names version(s) 1, 7, not (or not completely) under base "
                        f"path {tmp_path}: not served until they appear"]


class OddOutputs(tf.Module):
    """A hostile model whose outputs REST's JSON cannot carry as they are: a complex64 score
    ("complex") and a 0-d answer beside a batched score ("scalar"); and one ("boom") that fails with
    OutOfRangeError when a question is "boom"."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question")])
    def complex_score(self, question):
        return {"score": tf.complex(tf.zeros(tf.shape(question)), 1.0)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question")])
    def scalar_answer(self, question):
        return {"answer": tf.constant("x"), "score": tf.zeros(tf.shape(question))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question")])
    def boom(self, question):
        """Reads one question past the end of those that are not "boom" (OutOfRangeError: End of sequence)."""
        kept = iter(tf.data.Dataset.from_tensor_slices(question).filter(lambda text: text != "boom"))
        for _ in tf.range(tf.size(question)):
            next(kept)
        return {"answer": question}


@pytest.fixture(scope="module")
def odd_registry(tmp_path_factory):
    """A ModelRegistry serving OddOutputs as model "odd" version 1 (in this process, not polled)."""
    base_path = tmp_path_factory.mktemp("odd")
    module = OddOutputs()
    tf.saved_model.save(module, str(base_path / "1"),
                        signatures={"complex": module.complex_score, "scalar": module.scalar_answer,
                                    "boom": module.boom})
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    registry = ModelRegistry([ModelManager("odd", str(base_path), policy)], 0)
    registry.start()
    return registry


@pytest.mark.parametrize("signature, request_key, answer", [
    ("complex", "instances", "output 'score' has dtype complex64, which the JSON mapping does not cover"),
    ("complex", "inputs", "output 'score' has dtype complex64, which the JSON mapping does not cover"),
    ("scalar", "instances", "output 'answer' has no batch dimension (a scalar); use the columnar format ('inputs')"),
    ("scalar", "inputs", {"outputs": {"answer": "x", "score": [0.0]}}),
])
def test_rest_outputs_json_cannot_carry_are_refused_as_tf_serving_does(odd_registry, signature, request_key, answer):
    """A complex64 output reached json.dumps after the 200 status was chosen: the devserver closed the
    connection without an answer; a 0-d string output was bytes, not an array (HTTP 500). TF Serving
    answers 400 for both ("Failed to write JSON value", "has no shape information" in row format)."""
    request = {"signature_name": signature, request_key: ["q"]}
    if isinstance(answer, dict):
        assert predict_json(odd_registry, "odd", None, request, RequestLimits()) == answer
        return
    with pytest.raises(ServingError) as raised:
        predict_json(odd_registry, "odd", None, request, RequestLimits())
    assert (raised.value.http_status, raised.value.message) == (400, answer)


def test_an_error_the_model_raises_keeps_its_status_code(odd_registry):
    """A model's OutOfRangeError was answered 500 "internal error: OutOfRangeError: Graph execution error: ..."
    (its stack-trace lines included); TF Serving answers its code (HTTP 400)."""
    request = {"signature_name": "boom", "instances": ["q", "boom"]}
    with pytest.raises(ServingError) as raised:
        predict_json(odd_registry, "odd", None, request, RequestLimits())
    assert (raised.value.code, raised.value.http_status) == ("OUT_OF_RANGE", 400)
    assert raised.value.message == "the model failed: End of sequence"


@pytest.mark.parametrize("error, code, status", [
    (tf.errors.CancelledError, "CANCELLED", 499),
    (tf.errors.FailedPreconditionError, "FAILED_PRECONDITION", 400),
    (tf.errors.InternalError, "INTERNAL", 500),
    (tf.errors.UnimplementedError, "UNIMPLEMENTED", 501),
])
def test_a_model_error_answers_tf_serving_s_status(error, code, status):
    """TF Serving's REST statuses (http_server.cc); CANCELLED was answered UNKNOWN (500)."""
    failure = model_failure(error(None, None, "why"))
    assert (failure.code, failure.http_status, failure.message) == (code, status, "the model failed: why")


def test_every_status_the_devserver_answers_has_a_reason_phrase():
    assert {status: reason_phrase(status) for status in (404, 499)} == {404: "Not Found", 499: "Client Closed Request"}
    assert all(reason_phrase(status) for status in HTTP_STATUS.values())


def test_a_model_without_signatures_says_so(tmp_path):
    """A SavedModel with no signature at all was refused with "...; it has " and nothing after it."""
    tf.saved_model.save(OddOutputs(), str(tmp_path / "1"), signatures={})
    with pytest.raises(ServingError) as raised:
        Servable("bare", 1, str(tmp_path / "1")).input_specs("")
    assert raised.value.message == "signature 'serving_default' not found in model bare version 1; it has no signatures"


@pytest.mark.slow
def test_load_10000_requests_with_a_version_swap(served):
    """10,000 single-question requests (half REST, half gRPC) at concurrency 32; version 2
    is installed after 5,000: no request may fail, and both versions must answer."""
    total, concurrency = 10_000, 32
    predictor = client.GrpcPredictor(served.grpc_target, timeout=60)
    counter, lock = itertools.count(), threading.Lock()
    answers, failures = [], []
    swap = threading.Thread(
        target=install_version, args=(served.staged[2], served.base_paths["toy_load"], 2)
    )

    def worker():
        while True:
            with lock:
                index = next(counter)
            if index >= total:
                return
            if index == total // 2:
                swap.start()
            try:
                if index % 2:
                    rows = predictor.predict("toy_load", QUESTIONS[:1], CONTEXTS[:1])
                else:
                    rows = client.predict_rest(served.rest_url, "toy_load", QUESTIONS[:1], CONTEXTS[:1], timeout=60)
                answers.append(rows[0]["answer"])
            except Exception as error:  # every failure counts, whatever its kind
                failures.append(repr(error))

    started = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    swap.join()
    predictor.close()
    print(
        f"\nload test: {total} requests, concurrency {concurrency}, {elapsed:.1f} s, "
        f"{total / elapsed:.0f} requests/s, {len(failures)} failed, "
        f"{answers.count(EXPECTED_ANSWERS[1][0])} answered by v1, {answers.count(EXPECTED_ANSWERS[2][0])} by v2"
    )
    assert failures == []
    assert len(answers) == total
    assert {EXPECTED_ANSWERS[1][0], EXPECTED_ANSWERS[2][0]} <= set(answers)
    wait_until(lambda: answers_from(served, "toy_load") == EXPECTED_ANSWERS[2][0], "version 2 on toy_load")


def answers_from(served, name):
    """The answer model `name` now gives to the first toy question."""
    return client.predict_rest(served.rest_url, name, QUESTIONS[:1], CONTEXTS[:1])[0]["answer"]


def test_devserver_refuses_an_empty_model_name():
    """`--model_name=$NAME` with NAME unset loaded the model under "", a name no REST URL can give
    (/v1/models/:predict): refused by flag, as a config file's entry without a name is."""
    with pytest.raises(RoadError, match=r"^--model_name: must not be empty \(no REST URL can name the model"):
        devserver.parse_args(["--model_base_path=/x", "--model_name="])
    assert devserver.parse_args(["--model_config_file=/x", "--model_name="]).model_name == ""  # ignored there


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("FALSE", False), ("0", False)])
def test_boolean_flags_take_tf_servings_spellings(value, expected):
    assert devserver.parse_args(["--model_base_path=/x", f"--enable_batching={value}"]).enable_batching is expected


@pytest.mark.parametrize("value", ["yes", "no", "2", ""])
def test_other_boolean_flag_values_are_refused(value):
    """tensorflow_model_server takes true/false/1/0 only; a command line the devserver took would fail there."""
    with pytest.raises(RoadError, match="expected true or false"):
        devserver.parse_args(["--model_base_path=/x", f"--enable_batching={value}"])


def _ipv6_loopback():
    """True when this machine can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine cannot listen on the IPv6 loopback ::1")
def test_devserver_listens_on_ipv6():
    """--host [::1] (or ::1) serves REST and gRPC on the IPv6 loopback; the REST server was IPv4-only."""
    args = devserver.parse_args(["--model_base_path=/x", "--host=[::1]"])
    assert args.host == "::1"
    grpc_port, rest_port = free_port(), free_port()
    server = devserver.DevServer(ModelRegistry([], 0), args.host, grpc_port, rest_port, MAX_REQUEST_BYTES, 2)
    server.start()
    try:
        status, body = http_json("GET", f"http://[::1]:{rest_port}/v1/models/absent")
        assert status == 404 and "absent" in body["error"]
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "absent"
        with grpc.insecure_channel(f"[::1]:{grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as raised:
                model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        server.stop()


class GatedLoad(ModelRegistry):
    """A registry of no models whose loading waits until `go` is set."""

    def __init__(self):
        super().__init__([], 0)
        self.loading, self.go = threading.Event(), threading.Event()

    def start(self):
        self.loading.set()
        assert self.go.wait(60)
        super().start()


def test_devserver_refuses_connections_while_the_models_load():
    """Both ports are held from the start but listen only once the models are loaded: a readiness
    probe that merely connects must not pass while loading (TF Serving opens its ports then too)."""
    registry = GatedLoad()
    grpc_port, rest_port = free_port(), free_port()
    server = devserver.DevServer(registry, "127.0.0.1", grpc_port, rest_port, MAX_REQUEST_BYTES, 2)
    failures = []

    def start():
        try:
            server.start()
        except BaseException as error:
            failures.append(error)

    starting = threading.Thread(target=start)
    starting.start()
    try:
        assert registry.loading.wait(60)
        for port in (grpc_port, rest_port):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        registry.go.set()
        starting.join(60)
        assert not failures and not starting.is_alive()
        status, body = http_json("GET", f"http://127.0.0.1:{rest_port}/v1/models/absent")
        assert status == 404 and "absent" in body["error"]
        socket.create_connection(("127.0.0.1", grpc_port), timeout=5).close()
    finally:
        registry.go.set()
        starting.join(60)
        server.stop()



@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_host_finds_a_port_in_use_on_either_address_family(host):
    """gRPC listens on IPv4 and IPv6 for either wildcard: an IPv4 listener must stop `--host ::` too."""
    with socket.create_server(("0.0.0.0", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(RoadError, match=f"cannot listen for gRPC on .*:{port}: Address already in use"):
            devserver.reserve_port(host, port, "gRPC")
    for probe in devserver.reserve_port(host, port, "gRPC"):
        probe.close()


def test_a_host_that_does_not_resolve_is_one_error_before_loading():
    with pytest.raises(RoadError, match="cannot listen for gRPC on no-such-host.invalid:8500: "):
        devserver.reserve_port("no-such-host.invalid", 8500, "gRPC")
