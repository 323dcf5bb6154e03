"""Hostile and malformed requests against the devserver (issue 14): none may crash it, hang it,
make it allocate what a request merely declares, or answer anything but a JSON/gRPC error.

One devserver subprocess (module fixture) serves the toy model of helpers_serving with small
limits (1 s request deadline, 8 REST connections, 16 instances, 4,096 elements, 1 KiB strings),
its log in a file. Each case sends one malformed request and checks: a 4xx answer with a
{"error": "..."} JSON body (REST; 505 for an HTTP version it does not speak) or a gRPC error
status other than UNKNOWN/INTERNAL, exactly one new "rejected" log line (none where gRPC itself
refuses before the devserver sees the call), no traceback, and a good request answered right
after. The last test checks the server's peak RSS stayed within 300 MB of its idle size over the
whole module, the 20,000,000-element gRPC shape included.
"""

import base64
import collections
import functools
import json
import os
import re
import select
import signal
import socket
import struct
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from helpers_serving import (
    EXPECTED_ANSWERS,
    QA_EXAMPLES,
    TOY_TABLES,
    free_port,
    install_version,
    save_toy_model,
    save_toy_versions,
    start_devserver,
    stop_devserver,
    tensor,
)
from serving import client
from serving.errors import MAX_STATUS_BYTES, ServingError
from serving.limits import RequestLimits
from serving.servables import MAX_VERSION, ModelManager, version_number

MAX_BYTES = 1 << 20
TIMEOUT = 1.0
MAX_CONNECTIONS = 8
MAX_INSTANCES = 16
MAX_ELEMENTS = 4096
MAX_STRING = 1024
VOCAB = TOY_TABLES["token_embedding/embeddings"]
MAX_LENGTH = TOY_TABLES["position_embedding/embeddings"]
RSS_BUDGET = 300 * 1024 * 1024
ODD_VERSION_NAMES = ["²", "٣", "1²", "1.0", "-1", "+2", "0x1", " 3", "99999999999999999999", "notes"]
"""Directories in the base path that are not versions: none may stop the server or its polls."""
QUESTION, CONTEXT = QA_EXAMPLES[0]["question"], QA_EXAMPLES[0]["context"]


class Served:
    """The fuzzed devserver: its process, addresses, log file and idle RSS."""

    def __init__(self, process, rest_port, grpc_target, log_path, base_path, staged):
        self.process = process
        self.rest_port = rest_port
        self.rest_url = f"http://127.0.0.1:{rest_port}"
        self.grpc_target = grpc_target
        self.log_path = log_path
        self.base_path = base_path
        self.staged = staged
        self.idle_rss = None
        self.version = 1

    @functools.cached_property
    def channel(self):
        """A gRPC channel to the server (closed by the fixture)."""
        return grpc.insecure_channel(self.grpc_target)

    def log(self):
        """The server's log so far (str)."""
        with open(self.log_path, encoding="utf-8") as stream:
            return stream.read()

    def memory(self, field):
        """A /proc/PID/status field of the server in bytes (VmRSS, VmHWM) or as a count (Threads)."""
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    value = int(line.split()[1])
                    return value * 1024 if line.rstrip().endswith("kB") else value
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The devserver with small limits, serving toy version 1 from a base path that also holds
    directories whose names are not versions."""
    root = tmp_path_factory.mktemp("fuzz")
    staged = save_toy_versions(root)
    base_path = str(root / "toy")
    install_version(staged[1], base_path, 1)
    for name in ODD_VERSION_NAMES:
        os.makedirs(os.path.join(base_path, name, "variables"))
        open(os.path.join(base_path, name, "saved_model.pb"), "wb").close()
    grpc_port, rest_port = free_port(), free_port()
    log_path = str(root / "devserver.log")
    process = start_devserver(
        [f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=toy", f"--model_base_path={base_path}",
         "--file_system_poll_wait_seconds=0.2", f"--max_request_bytes={MAX_BYTES}",
         f"--rest_timeout_seconds={TIMEOUT}", f"--rest_max_connections={MAX_CONNECTIONS}",
         f"--max_request_instances={MAX_INSTANCES}", f"--max_request_elements={MAX_ELEMENTS}",
         f"--max_string_bytes={MAX_STRING}"],
        f"http://127.0.0.1:{rest_port}/v1/models/toy", log_path=log_path,
    )
    served = Served(process, rest_port, f"127.0.0.1:{grpc_port}", log_path, base_path, staged)
    assert_serves(served)
    served.idle_rss = served.memory("VmRSS")
    yield served
    served.channel.close()
    returncode, _ = stop_devserver(process, signal.SIGTERM)
    assert returncode == 0, served.log()[-2000:]


def assert_serves(served):
    """A good request over REST and one over gRPC get the answer of the version being served."""
    expected = EXPECTED_ANSWERS[served.version][0]
    assert client.predict_rest(served.rest_url, "toy", [QUESTION], [CONTEXT])[0]["answer"] == expected
    assert client.predict_grpc(served.grpc_target, "toy", [QUESTION], [CONTEXT])[0]["answer"] == expected


class LogWatch:
    """The log lines a server writes while the `with` block runs."""

    def __init__(self, served):
        self._served = served

    def __enter__(self):
        self._start = len(self._served.log())
        return self

    def __exit__(self, *exc):
        return False

    def lines(self):
        """The new lines so far."""
        return self._served.log()[self._start:].splitlines()


def assert_rejected_lines(watch, expected):
    """`expected` new "rejected" lines, and no traceback, in the log since `watch` began."""
    lines = watch.lines()
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    assert sum("rejected" in line for line in lines) == expected, "\n".join(lines)


# ---------------------------------------------------------------- raw HTTP


def read_response(sock):
    """Reads one HTTP response from a socket -> (status, headers {lower name: value}, body bytes);
    (None, {}, b"") when the server closed the connection without answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, {}, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def raw_exchange(port, data, half_close=False, trickle=None, timeout=10.0):
    """Sends raw bytes to the REST port and reads the answer -> (status, headers, body, seconds).

    Args:
        data: the bytes to send at once; half_close: shut down writing after them (end of input).
        trickle: (bytes, seconds) sent one byte at a time, `seconds` apart, after `data`
            (a slow-loris client); stops when the server closes.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    started = time.monotonic()
    stop = threading.Event()
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        if trickle is not None:
            threading.Thread(target=_trickle, args=(sock, *trickle, stop), daemon=True).start()
        status, headers, body = read_response(sock)
        return status, headers, body, time.monotonic() - started
    finally:
        stop.set()
        sock.close()


def _trickle(sock, data, seconds, stop):
    """Sends `data` one byte every `seconds` until done, stopped or the socket fails."""
    for index in range(len(data)):
        if stop.wait(seconds):
            return
        try:
            sock.send(data[index:index + 1])
        except OSError:
            return


def http_request(method, path, body=b"", headers=None, version="HTTP/1.1"):
    """A request as raw bytes with Content-Length (unless headers say otherwise) and Connection: close."""
    fields = {"Host": "fuzz", "Connection": "close", **({"Content-Length": str(len(body))} if body else {}),
              **(headers or {})}
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode("latin-1") + body


PREDICT = "/v1/models/toy:predict"
GOOD_QA = {"instances": [{"question": QUESTION, "context": CONTEXT}]}
GOOD_TOKENS = {"token_ids": [[101, 7, 102]], "segment_ids": [[0, 0, 1]], "padding_mask": [[1, 1, 1]]}


def tokens(**changes):
    """A serve_token_ids columnar request with some inputs replaced."""
    return {"signature_name": "serve_token_ids", "inputs": {**GOOD_TOKENS, **changes}}


def qa(question=QUESTION, context=CONTEXT, **extra):
    """A one-instance serving_default row request."""
    return {"instances": [{"question": question, "context": context, **extra}]}


TOKEN_CASES = {
    "negative_token_id": (dict(token_ids=[[101, -1, 102]]), "values must be in [0, 1000)"),
    "min_int32_token_id": (dict(token_ids=[[101, -(2**31), 102]]), "values must be in"),
    "token_id_at_vocab": (dict(token_ids=[[101, VOCAB, 102]]), "values must be in"),
    "token_id_far_out": (dict(token_ids=[[101, 2**31 - 1, 102]]), "values must be in"),
    "token_id_int32_overflow": (dict(token_ids=[[101, 2**31, 102]]), "out of range for dtype int32"),
    "token_id_float": (dict(token_ids=[[101, 1.5, 102]]), "expects integers"),
    "token_id_string": (dict(token_ids=[[101, "7", 102]]), "expects numbers"),
    "token_id_bool": (dict(token_ids=[[101, True, 102]]), "expects numbers"),
    "token_id_null": (dict(token_ids=[[101, None, 102]]), "expects numbers"),
    "padding_mask_5": (dict(padding_mask=[[1, 5, 1]]), "a padding mask holds 0 or 1"),
    "padding_mask_minus_3": (dict(padding_mask=[[1, -3, 1]]), "a padding mask holds 0 or 1"),
    "padding_mask_2": (dict(padding_mask=[[2, 1, 1]]), "a padding mask holds 0 or 1"),
    "segment_id_minus_1": (dict(segment_ids=[[0, -1, 1]]), "segment_embedding"),
    "segment_id_2": (dict(segment_ids=[[0, 2, 1]]), "segment_embedding"),
    "token_batch_mismatch": (dict(token_ids=[[101, 7, 102], [101, 8, 102]]), "different batch sizes"),
    "token_length_mismatch": (dict(padding_mask=[[1]]), "must have the same shape"),
    "token_length_longer": (dict(segment_ids=[[0, 0, 1, 1]]), "must have the same shape"),
    "sequence_too_long": (dict(token_ids=[[1] * (MAX_LENGTH + 1)], segment_ids=[[0] * (MAX_LENGTH + 1)],
                               padding_mask=[[1] * (MAX_LENGTH + 1)]), f"at most {MAX_LENGTH}"),
    "token_rank_1": (dict(token_ids=[101, 7, 102]), "expects shape"),
    "token_rank_3": (dict(token_ids=[[[101, 7, 102]]]), "expects shape"),
    "token_ragged": (dict(token_ids=[[101, 7], [102]]), "ragged"),
    "token_empty_batch": (dict(token_ids=[], segment_ids=[], padding_mask=[]), "expects shape"),
}
"""serve_token_ids inputs that are wrong in value, type or shape: {id: (changed inputs, error fragment)}."""
GRPC_TOKEN_CASES = ("negative_token_id", "min_int32_token_id", "token_id_at_vocab", "token_id_far_out",
                    "padding_mask_5", "padding_mask_minus_3", "padding_mask_2", "segment_id_minus_1", "segment_id_2",
                    "token_batch_mismatch", "token_length_mismatch", "token_length_longer", "sequence_too_long")
"""The TOKEN_CASES that are valid int32 arrays, so that they can be sent as TensorProtos."""


def _json_cases():
    """(id, body (str: sent as is; else JSON), HTTP status, error fragment or None) for POST :predict."""
    good = json.dumps(GOOD_QA)
    cases = [(f"truncated_at_{cut}", good[:cut], 400, "malformed JSON") for cut in range(1, len(good), 9)]
    cases += [
        ("empty_body_text", " ", 400, "malformed JSON"),
        ("root_list", "[]", 400, "must be a JSON object"),
        ("root_number", "1", 400, "must be a JSON object"),
        ("root_string", '"x"', 400, "must be a JSON object"),
        ("root_null", "null", 400, "must be a JSON object"),
        ("root_true", "true", 400, "must be a JSON object"),
        ("root_nan", "NaN", 400, "must be a JSON object"),
        ("trailing_garbage", good + "}", 400, "malformed JSON"),
        ("single_quotes", good.replace('"', "'"), 400, "malformed JSON"),
        ("nested_200000_lists", "[" * 200_000 + "]" * 200_000, 400, "nested too deeply"),
        ("nested_100000_objects", '{"a":' * 100_000 + "1" + "}" * 100_000, 400, "nested too deeply"),
        ("nested_in_instances", '{"instances": ' + "[" * 50_000 + "]" * 50_000 + "}", 400, "nested too deeply"),
        ("nested_40_in_input", {"inputs": {"question": json.loads("[" * 40 + '"q"' + "]" * 40), "context": ["c"]}},
         400, "nested deeper"),
        ("integer_5000_digits", '{"instances": [' + "9" * 5000 + "]}", 400, "malformed JSON"),
        ("surrogate_question", r'{"instances": [{"question": "\ud800", "context": "c"}]}', 400, "lone surrogate"),
        ("surrogate_context", r'{"instances": [{"question": "q", "context": "a\udfffb"}]}', 400, "lone surrogate"),
        ("surrogate_columnar", r'{"inputs": {"question": ["\udbff"], "context": ["c"]}}', 400, "lone surrogate"),
        ("surrogate_input_name_row", r'{"instances": [{"question": "q", "context": "c", "\ud800": "x"}]}', 400,
         "unknown input"),
        ("surrogate_input_name_columnar", r'{"inputs": {"question": ["q"], "context": ["c"], "\ud800": ["x"]}}', 400,
         "unknown input"),
        ("surrogate_request_key", r'{"instances": [], "\ud800": 1}', 400, "unknown request key"),
        ("surrogate_signature", r'{"signature_name": "\ud800", "instances": [{"question": "q", "context": "c"}]}',
         400, "not found"),
        ("surrogate_pair_reversed", r'{"instances": [{"question": "\udc00\ud800", "context": "c"}]}', 400,
         "lone surrogate"),
        ("unknown_key", {**GOOD_QA, "extra": 1}, 400, "unknown request key"),
        # A repeated key: Python kept the last value, TF Serving keeps the first (other answers in production).
        ("repeated_instances", '{"instances": [{"question": "q", "context": "c"}], "instances": [{"question": "q", '
         '"context": "c"}, {"question": "q", "context": "c"}]}', 400, 'gives the key "instances" 2 times'),
        ("repeated_signature_name", '{"signature_name": "serve_token_ids", "signature_name": "serving_default", '
         '"instances": [{"question": "q", "context": "c"}]}', 400, 'gives the key "signature_name" 2 times'),
        ("repeated_input_row", '{"instances": [{"question": "q", "question": "r", "context": "c"}]}', 400,
         'gives the key "question" 2 times'),
        ("repeated_input_columnar", '{"inputs": {"question": ["q"], "context": ["c"], "context": ["d"], '
         '"context": ["e"]}}', 400, 'gives the key "context" 3 times'),
        ("repeated_b64", '{"instances": [{"question": {"b64": "cQ==", "b64": "cg=="}, "context": "c"}]}', 400,
         'gives the key "b64" 2 times'),
        ("repeated_surrogate_key", r'{"\ud800": 1, "\ud800": 2}', 400, r'gives the key "\ud800" 2 times'),
        ("both_formats", {**GOOD_QA, "inputs": {"question": ["q"], "context": ["c"]}}, 400, "exactly one of"),
        ("neither_format", {"signature_name": "serving_default"}, 400, "exactly one of"),
    ]
    for kind, value in [("number", 1), ("null", None), ("list", []), ("object", {})]:
        cases.append((f"signature_name_{kind}", {**GOOD_QA, "signature_name": value}, 400, "must be a string"))
    for kind, value in [("object", {}), ("string", "q"), ("number", 3), ("null", None)]:
        cases.append((f"instances_{kind}", {"instances": value}, 400, "must be a list"))
    cases += [
        ("instances_empty", {"instances": []}, 400, "empty batch"),
        ("instances_numbers", {"instances": [1, 2]}, 400, "must be an object"),
        ("instance_missing_context", {"instances": [{"question": "q"}]}, 400, "missing input"),
        ("instance_extra_input", qa(extra="x"), 400, "unknown input"),
        ("instances_mixed", {"instances": [{"question": "q", "context": "c"}, "x"]}, 400, "must be an object"),
        ("inputs_list", {"inputs": [["q"], ["c"]]}, 400, "keyed by input name"),
        ("inputs_missing", {"inputs": {"question": ["q"]}}, 400, "missing input"),
        ("columnar_batch_mismatch", {"inputs": {"question": ["a", "b"], "context": ["c"]}}, 400,
         "different batch sizes"),
        ("columnar_scalar", {"inputs": {"question": "q", "context": "c"}}, 400, "expects shape"),
        ("columnar_rank_2", {"inputs": {"question": [["q"]], "context": [["c"]]}}, 400, "expects shape"),
        ("columnar_ragged", {"inputs": {"question": [["q"], []], "context": ["c", "d"]}}, 400, "ragged"),
        ("columnar_empty", {"inputs": {"question": [], "context": []}}, 400, "empty batch"),
    ]
    for kind, value in [("number", 1), ("float", 1.5), ("true", True), ("null", None), ("object", {"a": 1}),
                        ("list", ["q"]), ("b64_bad", {"b64": "!!!"}), ("b64_number", {"b64": 1}),
                        ("b64_extra_key", {"b64": "cQ==", "x": 1}), ("b64_padding", {"b64": "cQ"})]:
        fragment = "expects shape" if kind == "list" else None
        cases.append((f"question_{kind}", qa(question=value), 400, fragment))
    cases += [
        ("string_over_limit", qa(context="x" * (MAX_STRING + 1)), 400, "--max_string_bytes"),
        ("utf8_string_over_limit", qa(context="é" * (MAX_STRING // 2 + 1)), 400, "--max_string_bytes"),
        ("b64_over_limit", qa(context={"b64": base64.b64encode(b"x" * (MAX_STRING + 1)).decode()}), 400,
         "--max_string_bytes"),
        ("too_many_instances", {"instances": [{"question": "q", "context": "c"}] * (MAX_INSTANCES + 1)}, 400,
         "--max_request_instances"),
        ("too_many_columnar_rows", {"inputs": {"question": ["q"] * (MAX_INSTANCES + 1),
                                               "context": ["c"] * (MAX_INSTANCES + 1)}}, 400,
         "--max_request_instances"),
        ("too_many_elements", tokens(token_ids=[[1] * 2000], segment_ids=[[0] * 2000], padding_mask=[[1] * 2000]),
         400, "--max_request_elements"),
        ("unknown_signature", {**GOOD_QA, "signature_name": "nope"}, 400, "not found"),
    ]
    cases += [(name, tokens(**changes), 400, fragment) for name, (changes, fragment) in TOKEN_CASES.items()]
    return cases


def _route_cases():
    """(id, raw request bytes, HTTP status, error fragment or None) for routes and methods."""
    body = json.dumps(GOOD_QA).encode()
    cases = [
        ("unknown_model", http_request("POST", "/v1/models/nope:predict", body), 404, "not served"),
        ("surrogate_model_name", http_request("POST", "/v1/models/%ED%A0%80:predict", body), 404, "not served"),
        ("unknown_version", http_request("POST", "/v1/models/toy/versions/7:predict", body), 404, "Specific(toy, 7)"),
        ("version_20_digits", http_request("POST", "/v1/models/toy/versions/" + "9" * 20 + ":predict", body), 404,
         "Malformed request"),
        ("version_5000_digits", http_request("GET", "/v1/models/toy/versions/" + "9" * 5000), 404,
         "Malformed request"),
        ("version_label", http_request("GET", "/v1/models/toy/labels/stable"), 404, "Malformed request"),
        ("get_predict", http_request("GET", PREDICT), 404, "Malformed request"),
        ("post_status", http_request("POST", "/v1/models/toy", body), 404, "Malformed request"),
        ("root_path", http_request("GET", "/"), 404, "Malformed request"),
        ("v2_path", http_request("POST", "/v2/models/toy:predict", body), 404, "Malformed request"),
        ("bad_target", http_request("GET", "http://[x/v1/models/toy"), 400, "malformed request target"),
    ]
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "PRI", "FOO"):
        cases.append((f"method_{method.lower()}", http_request(method, PREDICT, body), 405, "not supported"))
    return cases


def _http_cases():
    """(id, raw request bytes, HTTP status, error fragment or None) for malformed HTTP."""
    body = json.dumps(GOOD_QA).encode()
    line = f"POST {PREDICT} HTTP/1.1\r\n".encode()
    cases = [
        ("garbage_line", b"GARBAGE\r\n\r\n", 400, "malformed request line"),
        ("http_0_9", b"GET /v1/models/toy\r\n\r\n", 400, "malformed request line"),
        ("double_space", b"GET  /v1/models/toy HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        ("extra_word", b"GET /v1/models/toy HTTP/1.1 x\r\n\r\n", 400, "malformed request line"),
        ("ftp_version", b"GET /v1/models/toy FTP/1.1\r\n\r\n", 400, "malformed request line"),
        ("bad_method_token", b"G(T /v1/models/toy HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        ("nul_in_line", b"GET /v1/\x00 HTTP/1.1\r\n\r\n", 404, "Malformed request"),
        ("binary_line", bytes(range(1, 256)).replace(b"\n", b"") + b"\r\n\r\n", 400, "malformed request line"),
        ("http_2", b"GET /v1/models/toy HTTP/2.0\r\n\r\n", 505, "not supported"),
        ("http_3", b"GET /v1/models/toy HTTP/3.0\r\n\r\n", 505, "not supported"),
        ("uri_too_long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414, "longer than"),
        ("line_without_end", b"GET /v1/models/toy HTTP/1.1", 400, "closed inside the request line"),
        ("header_too_long", http_request("GET", "/v1/models/toy", headers={"X-Big": "x" * 70_000}), 431, "larger than"),
        ("headers_too_many", http_request("GET", "/v1/models/toy", headers={f"X-{i}": "1" for i in range(101)}), 431,
         "more than 100"),
        ("headers_too_big_in_total", http_request("GET", "/v1/models/toy",
                                                  headers={f"X-{i}": "x" * 2000 for i in range(40)}), 431,
         "larger than"),
        ("header_without_colon", line + b"NoColon\r\n\r\n", 400, "malformed header line"),
        ("header_folded", line + b"Host: x\r\n folded\r\n\r\n", 400, "malformed header line"),
        ("header_name_space", line + b"Bad Name: x\r\n\r\n", 400, "malformed header line"),
        ("headers_unfinished", line + b"Host: x\r\n", 400, "closed inside the request headers"),
        ("two_content_lengths_same", line + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n{}   ", 400,
         "2 Content-Length headers"),
        ("two_content_lengths_differ", line + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}" + b" " * 38, 400,
         "2 Content-Length headers"),
        ("content_length_list", line + b"Content-Length: 2, 2\r\n\r\n{}", 400, "bad Content-Length"),
        ("transfer_encoding_chunked", line + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400,
         "Transfer-Encoding"),
        ("transfer_encoding_and_length", line + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n{}", 400,
         "Transfer-Encoding"),
        ("post_without_length", line + b"Connection: close\r\n\r\n", 411, "needs a Content-Length"),
        ("body_over_limit", http_request("POST", PREDICT, b"x" * (MAX_BYTES + 1)), 413, "exceeds"),
        ("declared_over_limit_with_expect", line + b"Content-Length: 999999999999\r\nExpect: 100-continue\r\n\r\n",
         413, "exceeds"),
    ]
    for value in ("abc", "-1", "+5", "1_0", "0x10", "1e3", "99999999999999999999", "", "5 5"):
        cases.append((f"content_length_{value or 'empty'}", line + f"Content-Length: {value}\r\n\r\n".encode(), 400,
                      "bad Content-Length"))
    cases.append(("short_body_half_closed", http_request("POST", PREDICT, body)[:-10], 400, "body ended after"))
    return cases


JSON_CASES = _json_cases()
RAW_CASES = _route_cases() + _http_cases()
HALF_CLOSED = {"line_without_end", "headers_unfinished", "short_body_half_closed"}
"""Raw cases whose client ends its input after sending (the server sees the request cut short)."""


def check_error_answer(status, headers, body, expected_status, fragment):
    """An answer with the expected status, a JSON Content-Type and a {"error": str} body."""
    assert status == expected_status, body[:300]
    assert headers.get("content-type") == "application/json"
    payload = json.loads(body)
    assert set(payload) == {"error"} and isinstance(payload["error"], str) and payload["error"]
    if fragment is not None:
        assert fragment in payload["error"], payload["error"]


@pytest.mark.parametrize("body, status, fragment", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_malformed_json_requests(served, body, status, fragment):
    """A malformed predict body: its 4xx JSON error, one log line, then a good request works."""
    data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    with LogWatch(served) as watch:
        answer = raw_exchange(served.rest_port, http_request("POST", PREDICT, data))
        check_error_answer(*answer[:3], status, fragment)
        assert_rejected_lines(watch, 1)
    assert_serves(served)


@pytest.mark.parametrize("case, data, status, fragment", RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_malformed_http_requests(served, case, data, status, fragment):
    """Malformed HTTP, unknown routes and methods: a JSON error, one log line, the server serves on."""
    with LogWatch(served) as watch:
        status_got, headers, body, seconds = raw_exchange(served.rest_port, data, half_close=case in HALF_CLOSED)
        check_error_answer(status_got, headers, body, status, fragment)
        assert seconds < TIMEOUT + 2
        assert_rejected_lines(watch, 1)
    if status == 405:
        assert headers["allow"] == "GET, POST"
    assert_serves(served)


def test_error_body_escapes_lone_surrogates_as_valid_json(served):
    """An error message that echoes a lone surrogate is still valid JSON (the escape round-trips)."""
    data = r'{"inputs": {"question": ["q"], "context": ["c"], "\ud800x": ["x"]}}'.encode()
    status, _, body, _ = raw_exchange(served.rest_port, http_request("POST", PREDICT, data))
    assert status == 400
    assert "\ud800x" in json.loads(body)["error"]


@pytest.mark.parametrize(
    "data, trickle, fragment",
    [
        (http_request("POST", PREDICT, b'{"instances": []}')[:-5], None, "did not arrive whole"),
        (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n", None, "did not arrive whole"),
        (b"P", (b"OST " + PREDICT.encode() + b" HTTP/1.1\r\n\r\n", 0.3), "did not arrive whole"),
        (http_request("POST", PREDICT, b"[" * 64)[:-60], (b"[" * 60, 0.3), "did not arrive whole"),
    ],
    ids=["body_shorter_than_length", "headers_never_end", "slow_loris_line", "slow_loris_body"],
)
def test_slow_or_short_requests_get_408_at_the_deadline(served, data, trickle, fragment):
    """A body shorter than its Content-Length, or bytes trickling in (each well within the
    deadline), get 408 once --rest_timeout_seconds have passed since the request began."""
    with LogWatch(served) as watch:
        status, headers, body, seconds = raw_exchange(served.rest_port, data, trickle=trickle)
        check_error_answer(status, headers, body, 408, fragment)
        assert TIMEOUT * 0.9 <= seconds < TIMEOUT + 2
        assert_rejected_lines(watch, 1)
    assert_serves(served)


def test_idle_connection_is_closed_without_an_answer(served):
    """A connection that sends nothing is closed after the deadline; nothing is logged as rejected."""
    with LogWatch(served) as watch:
        status, _, _, seconds = raw_exchange(served.rest_port, b"")
        assert status is None and TIMEOUT * 0.9 <= seconds < TIMEOUT + 2
        assert_rejected_lines(watch, 0)


def test_keep_alive_connection_serves_several_requests(served):
    """Two requests on one connection (HTTP/1.1 keep-alive) get two answers; then Connection: close."""
    sock = socket.create_connection(("127.0.0.1", served.rest_port), timeout=10)
    try:
        body = json.dumps(GOOD_QA).encode()
        for connection in ("keep-alive", "close"):
            sock.sendall(http_request("POST", PREDICT, body, headers={"Connection": connection}))
            status, headers, answer = read_response(sock)
            assert status == 200
            assert json.loads(answer)["predictions"][0]["answer"] == EXPECTED_ANSWERS[served.version][0]
        assert headers["connection"] == "close" and sock.recv(1) == b""
    finally:
        sock.close()


def start_toy_devserver(root, flags):
    """A devserver with `flags` serving toy version 1 from root/toy, logging to root/devserver.log."""
    save_toy_model(str(root / "staged"), 1)
    base_path = str(root / "toy")
    install_version(str(root / "staged"), base_path, 1)
    grpc_port, rest_port, log_path = free_port(), free_port(), str(root / "devserver.log")
    process = start_devserver([f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=toy",
                               f"--model_base_path={base_path}", *flags],
                              f"http://127.0.0.1:{rest_port}/v1/models/toy", log_path=log_path)
    return Served(process, rest_port, f"127.0.0.1:{grpc_port}", log_path, base_path, {})


def hold_rest_slots(port, count):
    """`count` silent connections that each hold one of the server's REST slots.

    A connection opened while an earlier one (the readiness check's) still holds its slot is
    refused, so holding is checked rather than assumed: a status request sent after the holders
    is accepted in turn behind them (the accept loop is first in, first out); once it is refused
    (503) while no holder has anything to read, every holder holds a slot. A refused holder is
    replaced and the check repeated.
    """
    holders = []
    for _ in range(20):
        holders += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count - len(holders))]
        status = raw_exchange(port, http_request("GET", "/v1/models/toy"))[0]
        readable = set(select.select(holders, [], [], 0)[0])
        for sock in readable:
            sock.close()
        holders = [sock for sock in holders if sock not in readable]
        if status == 503 and len(holders) == count:
            return holders
    raise AssertionError(f"could not hold {count} REST slots in 20 tries")


def test_excess_connections_are_refused_at_once_and_threads_stay_bounded(tmp_path):
    """With --rest_max_connections=4, four half-open connections hold the slots (their deadline
    is a minute) and eight more, sent together, each get 503 JSON at once and one log line; the
    server has no more than 4 connection threads, and serves again once the slots free up."""
    served = start_toy_devserver(tmp_path, ["--rest_max_connections=4", "--rest_timeout_seconds=60"])
    try:
        threads_idle = served.memory("Threads")
        holders = hold_rest_slots(served.rest_port, 4)
        with LogWatch(served) as watch:
            answers = [None] * 8

            def knock(index):
                answers[index] = raw_exchange(served.rest_port, b"", timeout=10)

            knockers = [threading.Thread(target=knock, args=(index,)) for index in range(len(answers))]
            for thread in knockers:
                thread.start()
            threads_busy = served.memory("Threads")
            for thread in knockers:
                thread.join()
            for status, headers, body, seconds in answers:
                check_error_answer(status, headers, body, 503, "--rest_max_connections=4")
                assert seconds < 2
            assert threads_busy <= threads_idle + 4
            assert_rejected_lines(watch, 8)
            for sock in holders:
                sock.close()
        time.sleep(0.3)
        assert client.predict_rest(served.rest_url, "toy", [QUESTION], [CONTEXT])[0]["answer"] == EXPECTED_ANSWERS[1][0]
    finally:
        returncode, _ = stop_devserver(served.process, signal.SIGTERM)
    assert returncode == 0 and "Traceback" not in served.log()


def test_rest_predictor_keeps_its_connection_and_outlives_the_idle_timeout(served):
    """RestPredictor answers several questions over one kept-alive connection, and when the
    devserver has closed that connection for idling (after 1 s here) it reconnects by itself."""
    predictor = client.RestPredictor(served.rest_url, timeout=10)
    try:
        ports = set()
        for _ in range(3):
            assert predictor.predict("toy", [QUESTION], [CONTEXT])[0]["answer"] == EXPECTED_ANSWERS[served.version][0]
            ports.add(predictor._idle[0].sock.getsockname()[1])
        assert len(ports) == 1 and len(predictor._idle) == 1
        time.sleep(TIMEOUT + 0.5)
        assert predictor.predict("toy", [QUESTION], [CONTEXT])[0]["answer"] == EXPECTED_ANSWERS[served.version][0]
    finally:
        predictor.close()


@pytest.mark.parametrize("url", ["ftp://host:1", "http://", "http://host:port", "localhost:8501"])
def test_rest_predictor_refuses_bad_urls(url):
    """A URL that is not http(s)://HOST[:PORT] is a ServerError naming it."""
    with pytest.raises(client.ServerError, match="bad REST URL"):
        client.RestPredictor(url)


@pytest.mark.parametrize("url, address", [("http://[fe80::abcd]", ("fe80::abcd", 80)),
                                          ("https://[::1]/base", ("::1", 443)), ("http://[::1]:8501", ("::1", 8501))])
def test_rest_predictor_connects_to_an_ipv6_host_at_the_url_s_port(monkeypatch, url, address):
    """Without a port, http.client split "fe80::abcd" at its last colon: an InvalidURL traceback, or
    a look-up of host ":" for "[::1]"."""
    tried = []

    def connect_by(deadline):
        def connect(where, timeout=None, source_address=None):
            tried.append(where)
            raise OSError("refused")
        return connect

    monkeypatch.setattr(client, "_connect_by", connect_by)
    predictor = client.RestPredictor(url, timeout=1)
    with pytest.raises(client.ServerError, match="cannot reach REST server"):
        predictor.predict("toy", [QUESTION], [CONTEXT])
    assert tried and set(tried) == {address}


def test_reset_connections_write_no_traceback(served):
    """Clients that reset their connection mid-request or mid-body leave no traceback and no
    rejected line (there is nobody to answer)."""
    partial = [b"POS", b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost",
               http_request("POST", PREDICT, b"{" * 100)[:-50]]
    with LogWatch(served) as watch:
        for data in partial * 3:
            sock = socket.create_connection(("127.0.0.1", served.rest_port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(data)
            time.sleep(0.05)
            sock.close()
        time.sleep(0.3)
        assert_rejected_lines(watch, 0)
    assert_serves(served)


# ---------------------------------------------------------------- gRPC


def predict_request(inputs, signature="", name="toy", **spec):
    """A PredictRequest with TensorProto `inputs`."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            request.model_spec.version_label = value
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    return request


def qa_protos(**changes):
    """serving_default inputs (question, context) as TensorProtos, some replaced."""
    good = {"question": tf.make_tensor_proto([QUESTION]), "context": tf.make_tensor_proto([CONTEXT])}
    return {**good, **changes}


def token_protos(**changes):
    """serve_token_ids inputs as int32 TensorProtos (from lists, or given protos), some replaced."""
    protos = {}
    for key, value in {**GOOD_TOKENS, **changes}.items():
        protos[key] = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(
            np.array(value, dtype=np.int32))
    return protos


INVALID = grpc.StatusCode.INVALID_ARGUMENT
STRING, INT32 = types_pb2.DT_STRING, types_pb2.DT_INT32


LONG_NAME = 100_000
"""Characters of a name that gRPC's 16 KiB metadata limit cannot echo."""


def _grpc_predict_cases():
    """(id, PredictRequest or raw bytes, status code, detail fragment or None, logged)."""
    t = token_protos
    cases = [
        ("declared_20000000_elements", predict_request(t(token_ids=tensor(INT32, [1, 20_000_000])), "serve_token_ids"),
         INVALID, "--max_request_elements", True),
        ("declared_huge_dims", predict_request(t(token_ids=tensor(INT32, [2**62, 2**62])), "serve_token_ids"),
         INVALID, "--max_request_instances", True),
        ("declared_huge_inner_dim", predict_request(t(token_ids=tensor(INT32, [1, 2**62, 2**62])), "serve_token_ids"),
         INVALID, "--max_request_elements", True),
        ("string_shape_10_from_one_value", predict_request(qa_protos(question=tensor(STRING, [10], string_val=[b"q"]),
                                                                  context=tensor(STRING, [10], string_val=[b"c"]))),
         INVALID, "needs 10 values", True),
        ("string_10000_rows", predict_request(qa_protos(question=tensor(STRING, [10_000], string_val=[b"q"]))),
         INVALID, "--max_request_instances", True),
        ("string_more_values_than_shape",
         predict_request(qa_protos(question=tensor(STRING, [1], string_val=[b"q"] * 3))),
         INVALID, "needs 1 values", True),
        ("string_no_values", predict_request(qa_protos(question=tensor(STRING, [1]))), INVALID, "needs 1 values", True),
        ("string_in_tensor_content", predict_request(qa_protos(question=tensor(STRING, [1], tensor_content=b"q"))),
         INVALID, "string_val", True),
        ("int_fewer_values", predict_request(t(token_ids=tensor(INT32, [1, 3], int_val=[101])), "serve_token_ids"),
         INVALID, "needs 3 values", True),
        ("int_content_odd_bytes", predict_request(t(token_ids=tensor(INT32, [1, 3], tensor_content=b"\x00" * 7)),
                                                  "serve_token_ids"), INVALID, "whole number", True),
        ("int_content_too_long", predict_request(t(token_ids=tensor(INT32, [1, 3], tensor_content=b"\x00" * 16)),
                                                 "serve_token_ids"), INVALID, "needs 3 values", True),
        ("negative_dim", predict_request(t(token_ids=tensor(INT32, [1, -3], int_val=[1, 2, 3])), "serve_token_ids"),
         INVALID, "negative dimension", True),
        ("unknown_rank", predict_request(qa_protos(question=tensor(STRING, [], unknown_rank=True, string_val=[b"q"]))),
         INVALID, "unknown rank", True),
        ("rank_40", predict_request(qa_protos(question=tensor(STRING, [1] * 40, string_val=[b"q"]))), INVALID,
         "dimensions", True),
        ("scalar_string", predict_request(qa_protos(question=tensor(STRING, [], string_val=[b"q"]))), INVALID,
         "expects shape", True),
        ("string_over_limit", predict_request(qa_protos(context=tf.make_tensor_proto([b"x" * (MAX_STRING + 1)]))),
         INVALID, "--max_string_bytes", True),
        ("too_many_rows", predict_request(qa_protos(question=tf.make_tensor_proto(["q"] * (MAX_INSTANCES + 1)),
                                                    context=tf.make_tensor_proto(["c"] * (MAX_INSTANCES + 1)))),
         INVALID, "--max_request_instances", True),
        ("too_many_elements", predict_request(t(token_ids=[[1] * 2000], segment_ids=[[0] * 2000],
                                                padding_mask=[[1] * 2000]), "serve_token_ids"),
         INVALID, "--max_request_elements", True),
        ("batch_mismatch", predict_request(qa_protos(question=tf.make_tensor_proto(["a", "b"]))), INVALID,
         "different batch sizes", True),
        ("float_for_string", predict_request(qa_protos(question=tf.make_tensor_proto([1.0]))), INVALID,
         "expects dtype string", True),
        ("int64_for_int32", predict_request(t(token_ids=tf.make_tensor_proto(np.array([[1, 2, 3]], np.int64))),
                                            "serve_token_ids"), INVALID, "expects dtype int32", True),
        ("dtype_invalid", predict_request(qa_protos(question=tensor(types_pb2.DT_INVALID, [1]))), INVALID,
         "expects dtype string", True),
        ("dtype_unknown_enum", predict_request(qa_protos(question=tensor(9999, [1]))), INVALID, "invalid dtype enum",
         True),
        ("missing_input", predict_request({"question": tf.make_tensor_proto(["q"])}), INVALID, "missing input", True),
        ("extra_input", predict_request(qa_protos(extra=tf.make_tensor_proto(["x"]))), INVALID, "unknown input", True),
        ("empty_input_name", predict_request(qa_protos(**{"": tf.make_tensor_proto(["x"])})), INVALID,
         "unknown input", True),
        ("empty_batch", predict_request(qa_protos(question=tf.make_tensor_proto([], dtype=tf.string),
                                                  context=tf.make_tensor_proto([], dtype=tf.string))),
         INVALID, "empty batch", True),
        ("unknown_signature", predict_request(qa_protos(), "nope"), INVALID, "not found", True),
        ("unknown_model", predict_request(qa_protos(), name="nope"), grpc.StatusCode.NOT_FOUND, "not served", True),
        ("empty_model_name", predict_request(qa_protos(), name=""), grpc.StatusCode.NOT_FOUND, "not served", True),
        ("unknown_version", predict_request(qa_protos(), version=7), grpc.StatusCode.NOT_FOUND, "Specific", True),
        ("max_version", predict_request(qa_protos(), version=MAX_VERSION), grpc.StatusCode.NOT_FOUND, "Specific",
         True),
        ("version_label", predict_request(qa_protos(), version_label="stable"), INVALID, "version labels", True),
        ("over_message_limit", predict_request(qa_protos(context=tf.make_tensor_proto([b"x" * MAX_BYTES]))),
         grpc.StatusCode.RESOURCE_EXHAUSTED, None, False),
    ]
    cases += [(f"tokens_{name}", predict_request(t(**TOKEN_CASES[name][0]), "serve_token_ids"), INVALID,
               TOKEN_CASES[name][1], True) for name in GRPC_TOKEN_CASES]
    output_filter = predict_request(qa_protos())
    output_filter.output_filter.append("logits")
    cases.append(("unknown_output_filter", output_filter, INVALID, "output_filter", True))
    # Names the error echoes, long enough that the whole message overflowed gRPC's metadata limit: the
    # client got RESOURCE_EXHAUSTED "received metadata size exceeds hard limit" instead of the status.
    long_filter = predict_request(qa_protos())
    long_filter.output_filter.append("z" * LONG_NAME)
    cases += [
        ("long_model_name", predict_request(qa_protos(), name="x" * LONG_NAME), grpc.StatusCode.NOT_FOUND,
         "not served", True),
        ("long_non_ascii_model_name", predict_request(qa_protos(), name="\u00e9" * LONG_NAME),
         grpc.StatusCode.NOT_FOUND, "not served", True),
        ("long_signature_name", predict_request(qa_protos(), "s" * LONG_NAME), INVALID, "not found", True),
        ("long_input_name", predict_request(qa_protos(**{"y" * LONG_NAME: tf.make_tensor_proto(["x"])})), INVALID,
         "unknown input", True),
        ("long_output_filter", long_filter, INVALID, "output_filter", True),
    ]
    good = predict_request(qa_protos()).SerializeToString()
    cases += [
        ("invalid_utf8_model_name", predict_request(qa_protos(), name="ab").SerializeToString().replace(
            b"ab", b"\xed\xa0", 1), INVALID, "not a valid tensorflow.serving.PredictRequest", True),
        ("invalid_utf8_input_name", predict_request(qa_protos(), name="toy").SerializeToString().replace(
            b"question", b"\xffuestion", 1), INVALID, "not a valid", True),
        ("garbage_bytes", b"\xff" * 64, INVALID, "not a valid", True),
        ("truncated_message", good[: len(good) // 2], INVALID, None, True),
    ]
    return cases


GRPC_PREDICT_CASES = _grpc_predict_cases()


def grpc_call(served, method, request, response_class):
    """Calls `method` ("/service/Method") with a message or raw bytes -> the response."""
    call = served.channel.unary_unary(method, request_serializer=lambda m: m if isinstance(m, bytes)
                                      else m.SerializeToString(), response_deserializer=response_class.FromString)
    return call(request, timeout=30)


@pytest.mark.parametrize("request_, code, fragment, logged", [c[1:] for c in GRPC_PREDICT_CASES],
                         ids=[c[0] for c in GRPC_PREDICT_CASES])
def test_malformed_grpc_predict(served, request_, code, fragment, logged):
    """A malformed Predict: its gRPC error status (never UNKNOWN or INTERNAL), one log line when
    the devserver (not gRPC itself) refused it, then a good request works."""
    with LogWatch(served) as watch:
        with pytest.raises(grpc.RpcError) as raised:
            grpc_call(served, "/tensorflow.serving.PredictionService/Predict", request_, predict_pb2.PredictResponse)
        assert raised.value.code() == code, raised.value.details()
        if fragment is not None:
            assert fragment in raised.value.details()
        assert len(raised.value.details().encode("utf-8")) <= MAX_STATUS_BYTES
        assert_rejected_lines(watch, int(logged))
    assert_serves(served)


def _metadata(fields, name="toy"):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = name
    return request


def _status(name="toy", version=None):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    return request


GRPC_OTHER_CASES = [
    ("metadata_no_field", "PredictionService/GetModelMetadata", _metadata([]), INVALID, True),
    ("metadata_unknown_field", "PredictionService/GetModelMetadata", _metadata(["weights"]), INVALID, True),
    ("metadata_unknown_model", "PredictionService/GetModelMetadata", _metadata(["signature_def"], "nope"),
     grpc.StatusCode.NOT_FOUND, True),
    ("metadata_garbage", "PredictionService/GetModelMetadata", b"\xff\x00\xff", INVALID, True),
    ("status_unknown_model", "ModelService/GetModelStatus", _status("nope"), grpc.StatusCode.NOT_FOUND, True),
    ("status_unknown_version", "ModelService/GetModelStatus", _status("toy", 9), grpc.StatusCode.NOT_FOUND, True),
    ("status_garbage", "ModelService/GetModelStatus", b"\x0a\xff", INVALID, True),
    ("metadata_long_field", "PredictionService/GetModelMetadata", _metadata(["m" * LONG_NAME]), INVALID, True),
    ("status_long_model_name", "ModelService/GetModelStatus", _status("x" * LONG_NAME), grpc.StatusCode.NOT_FOUND,
     True),
    ("classify", "PredictionService/Classify", classification_pb2.ClassificationRequest(),
     grpc.StatusCode.UNIMPLEMENTED, False),
    ("regress", "PredictionService/Regress", b"", grpc.StatusCode.UNIMPLEMENTED, False),
    ("unknown_service", "Nope/Predict", b"", grpc.StatusCode.UNIMPLEMENTED, False),
]


@pytest.mark.parametrize("method, request_, code, logged", [c[1:] for c in GRPC_OTHER_CASES],
                         ids=[c[0] for c in GRPC_OTHER_CASES])
def test_malformed_grpc_other_calls(served, method, request_, code, logged):
    """Metadata/status calls that are malformed or name nothing, and methods the devserver does
    not implement: an error status, then a good request works."""
    service = method if method.startswith("Nope") else f"tensorflow.serving.{method}"
    with LogWatch(served) as watch:
        with pytest.raises(grpc.RpcError) as raised:
            grpc_call(served, f"/{service}", request_, get_model_status_pb2.GetModelStatusResponse)
        assert raised.value.code() == code, raised.value.details()
        assert len((raised.value.details() or "").encode("utf-8")) <= MAX_STATUS_BYTES
        assert_rejected_lines(watch, int(logged))
    assert_serves(served)


# ---------------------------------------------------------------- versions and limits


def test_count_of_malformed_requests():
    """The issue asks for at least 150 malformed REST/gRPC requests."""
    total = len(JSON_CASES) + len(RAW_CASES) + len(GRPC_PREDICT_CASES) + len(GRPC_OTHER_CASES) + 4 + 1 + 3
    assert total >= 150, total


def test_odd_version_directories_are_ignored_with_one_warning_each(served):
    """Directories such as "²" (str.isdigit() but no int()) neither stop the server nor its polls:
    each is logged once, and a good new version is still found and served."""
    install_version(served.staged[2], served.base_path, 2)
    deadline = time.monotonic() + 60
    while client.predict_rest(served.rest_url, "toy", [QUESTION], [CONTEXT])[0]["answer"] != EXPECTED_ANSWERS[2][0]:
        assert time.monotonic() < deadline, "version 2 was not loaded"
        time.sleep(0.1)
    served.version = 2
    time.sleep(0.5)  # a few more polls
    log = served.log()
    for name in ODD_VERSION_NAMES:
        warnings = [line for line in log.splitlines() if "ignoring" in line and f"/{ascii(name)[1:-1]}'" in line]
        assert len(warnings) == 1, (name, warnings)
    assert "polling for new model versions failed" not in log and "Traceback" not in log
    assert_serves(served)


@pytest.mark.parametrize("name, version", [("0", 0), ("7", 7), ("007", 7), (str(MAX_VERSION), MAX_VERSION),
                                           (str(MAX_VERSION + 1), None), ("1" * 5000, None), ("²", None),
                                           ("٣", None), ("1.0", None), ("-1", None), ("", None), (".tmp-3-ab", None)])
def test_version_number(name, version):
    """Only base-10 ASCII integers within int64 name versions."""
    assert version_number(name) == version


def test_manager_survives_odd_names_and_logs_once(tmp_path, caplog):
    """ModelManager.available_versions: odd names are ignored with one warning each over many
    polls; hidden folders (the exporter's .tmp-*) silently."""
    for name in ("²", "notes", ".tmp-2-abc", "3"):
        os.makedirs(tmp_path / name)
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    manager = ModelManager("m", str(tmp_path), None)
    with caplog.at_level("WARNING", logger="serving.devserver"):
        assert [manager.available_versions() for _ in range(3)] == [{3: "3"}] * 3
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2 and any("\\xb2" in m for m in messages) and any("notes" in m for m in messages)


def test_declared_sizes_are_refused_before_allocation():
    """RequestBudget refuses a [1, 20000000] shape with the default limits from the dims alone,
    and counts elements over a request's inputs together."""
    limits = RequestLimits()
    with pytest.raises(ServingError, match="--max_request_elements=1000000"):
        limits.budget().take([1, 20_000_000], "input 'token_ids'")
    budget = RequestLimits(max_elements=10).budget()
    assert budget.take([2, 3], "a") == 6 and budget.take([0, 2**62], "b") == 0
    with pytest.raises(ServingError, match="more elements"):
        budget.take([1, 5], "c")


def test_peak_memory_stays_within_300_mb_of_idle(served):
    """Runs last: the server's peak RSS (VmHWM) over this whole module, every hostile request
    above plus a burst of the heaviest ones, stays within 300 MB of its idle RSS."""
    heavy = predict_request(token_protos(token_ids=tensor(INT32, [1, 20_000_000])), "serve_token_ids")
    strings = predict_request(qa_protos(question=tensor(STRING, [MAX_INSTANCES], string_val=[b"q"])))
    nested = http_request("POST", PREDICT, ("[" * 200_000 + "]" * 200_000).encode())
    lists = http_request("POST", PREDICT, ("[" + ",".join(["[]"] * 300_000) + "]").encode())
    for _ in range(5):
        for request in (heavy, strings):
            with pytest.raises(grpc.RpcError):
                grpc_call(served, "/tensorflow.serving.PredictionService/Predict", request, predict_pb2.PredictResponse)
        for data in (nested, lists):
            assert raw_exchange(served.rest_port, data)[0] == 400
    assert_serves(served)
    peak = served.memory("VmHWM")
    print(f"\ndevserver RSS idle {served.idle_rss / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB")
    assert peak - served.idle_rss <= RSS_BUDGET
    assert not re.search("Traceback", served.log())


@pytest.mark.slow
def test_2000_half_open_connections_with_default_flags(tmp_path):
    """The issue's flood against a devserver with default flags: 2,000 connections that send
    nothing keep at most --rest_max_connections (64) threads busy, the others get 503 at once; a
    body shorter than its Content-Length gets 408 after the 10 s default deadline (not 60 s);
    closing everything writes no traceback, and the server answers afterwards."""
    served = start_toy_devserver(tmp_path, [])
    try:
        threads_idle = served.memory("Threads")
        sockets = []
        for _ in range(2000):
            sockets.append(socket.create_connection(("127.0.0.1", served.rest_port), timeout=10))
        time.sleep(1.0)
        assert served.memory("Threads") <= threads_idle + 64
        statuses = collections.Counter(read_response(sock)[0] for sock in sockets[64:])
        # None: a connection that got a slot freed by an idle one, then idled out itself
        assert set(statuses) <= {503, None} and statuses[503] >= 2000 - 2 * 64, statuses
        for sock in sockets:
            sock.close()
        status, headers, body, seconds = raw_exchange(served.rest_port, http_request("POST", PREDICT, b"{}" * 10)[:-5],
                                                      timeout=30)
        check_error_answer(status, headers, body, 408, "did not arrive whole")
        assert 9 <= seconds < 13
        rows = client.predict_rest(served.rest_url, "toy", [QUESTION], [CONTEXT])
        assert rows[0]["answer"] == EXPECTED_ANSWERS[1][0]
    finally:
        returncode, _ = stop_devserver(served.process, signal.SIGTERM)
    assert returncode == 0 and "Traceback" not in served.log()
