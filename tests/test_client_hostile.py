"""Tests for serving/client.py against hostile input: flags, batch files, --output paths and REST
servers that trickle, never answer, send endless or deeply nested bodies, or reject one record.

The servers here are raw sockets in this process (no devserver, no model), so the tests take seconds.
"""

import contextlib
import json
import os
import socket
import stat
import threading
import time

import pytest
from tensorflow.core.framework import types_pb2

from conftest import one_error_line
from helpers_serving import tensor
from serving import client

ANSWER = {"answer": "Ada", "score": 1.0, "no_answer_probability": 0.0, "start_char": 0, "end_char": 3}
UNREACHABLE = "http://127.0.0.1:9"


def http_answer(status, body, headers=""):
    """An HTTP/1.1 response (bytes) with a Content-Length, unless `headers` brings its own framing."""
    framing = headers or f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status} X\r\n{framing}\r\n".encode() + body


def predictions(request):
    """A 200 response with one ANSWER per instance of a predict request."""
    return http_answer(200, json.dumps({"predictions": [ANSWER] * len(request["instances"])}).encode())


@contextlib.contextmanager
def fake_server(respond, request_lines=None):
    """A keep-alive REST server on 127.0.0.1 -> its URL. respond(request JSON, socket) answers each
    request: it returns bytes to send, or sends (or stalls) itself and returns None. Each request's
    first line is appended to the list `request_lines` when one is given."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle(conn):
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as reader:
            while True:
                headers = []
                for line in iter(reader.readline, b"\r\n"):
                    if not line:  # the client closed the connection
                        return
                    headers.append(line)
                if request_lines is not None:
                    request_lines.append(headers[0])
                length = next(int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length"))
                answer = respond(json.loads(reader.read(length)), conn)
                if answer is None:
                    return
                conn.sendall(answer)

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn = listener.accept()[0]
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def refused(capsys, argv):
    """Runs the client CLI with `argv`, which must fail -> its one stderr line."""
    with pytest.raises(SystemExit) as raised:
        client.main(argv)
    return one_error_line(capsys, raised)


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize("flags, fragment", [
    (["--rest", "http://[::1"], "bad REST URL 'http://[::1': Invalid IPv6 URL"),
    (["--rest", "http://a..b:80"], "'a..b' is not a host name"),
    (["--rest", f"http://{'a' * 300}:80"], "is not a host name"),
    (["--rest", "http://a b:80"], "holds spaces"),
    (["--rest", "http://h:80/?a=1"], "a query or fragment (? or #) is not part of the server's address"),
    (["--rest", "http://\udcff:80"], "--rest: not UTF-8 text (byte 0xff at character 7)"),
    (["--rest", ""], "--rest: must not be empty"),
    (["--grpc", ""], "--grpc: must not be empty"),
    (["--grpc", "\udcff:1"], "--grpc: not UTF-8 text"),
    (["--grpc", "localhost"], "bad gRPC target 'localhost': it names no port; expected HOST:PORT"),
    (["--grpc", "[::1]"], "bad gRPC target '[::1]': it names no port"),
    (["--grpc", "dns:///localhost"], "bad gRPC target 'dns:///localhost': it names no port"),
    (["--grpc", "ipv4:127.0.0.1:1,127.0.0.2"], "it names no port"),
    (["--grpc", "h:1", "--model", "m\udcff"], "--model: not UTF-8 text"),
    (["--timeout", "1e10"], "--timeout: must be a number of seconds above 0, at most 86400, got '1e10'"),
    (["--timeout", "0"], "--timeout"),
    (["--grpc", "h:1", "--version", "9" * 26], "--version: must be an integer from 0 to 9223372036854775807"),
    (["--version", "9" * 5000], "got '9999999999999999999999999999999999999...9999"),
    (["--batch-size", "9" * 5000], "--batch-size: must be a positive integer"),
], ids=["ipv6", "empty_label", "long_label", "space", "query", "rest_bytes", "rest_empty", "grpc_empty", "grpc_bytes",
        "grpc_no_port", "grpc_ipv6_no_port", "grpc_dns_no_port", "grpc_ipv4_list_no_port",
        "model_bytes", "timeout_huge", "timeout_zero", "version_int64", "version_5000_digits", "batch_size_digits"])
def test_bad_flags_are_one_line(capsys, flags, fragment):
    """Flags that crashed the client (IDNA, IPv6, overflow, non-UTF-8 argv) or fell back to REST
    (`--grpc ""`) are one short line naming the flag, before any server is asked."""
    line = refused(capsys, ["q", "--context", "c", *flags])
    assert fragment in line and len(line) < 500


@pytest.mark.parametrize("target, port", [
    ("127.0.0.1:84036", "84036"), ("127.0.0.1:-1", "-1"), ("dns:///localhost:70000", "70000"),
    ("ipv4:127.0.0.1:8500,127.0.0.1:99999", "99999"), ("h:" + "9" * 5000, "9" * 20),
], ids=["wraps", "negative", "dns", "ipv4_list", "digits"])
def test_grpc_port_out_of_range_is_refused(capsys, target, port):
    """gRPC takes a port modulo 65536 (127.0.0.1:84036 reached a server on 18500): a port outside
    0-65535 is refused by name before anything is sent, in the CLI and the library."""
    line = refused(capsys, ["q", "--context", "c", "--grpc", target])
    assert "bad gRPC target" in line and f"port {port}" in line and "out of range 0-65535" in line
    with pytest.raises(client.ServerError, match="out of range"):
        client.GrpcPredictor(target)


@pytest.mark.parametrize("target", ["127.0.0.1:8500", "127.0.0.1:008500", "h:" + "0" * 5000, "[::1]:65535",
                                    "dns:///localhost:0", "ipv4:127.0.0.1:1,127.0.0.2:2", "unix:/tmp/s:99999"])
def test_grpc_targets_in_range_pass(target):
    """Ports 0-65535 and socket targets pass the check (a bare host is refused: gRPC would take port 443)."""
    assert client._grpc_target_problem(target) is None


def test_non_utf8_question_is_one_line(capsys):
    """A question holding a byte that is not UTF-8 (as argv delivers it) is refused before gRPC sees it."""
    assert "QUESTION: not UTF-8 text (byte 0xff" in refused(capsys, ["\udcff", "--context", "c", "--grpc", "h:1"])


def test_largest_flag_values_are_accepted():
    """A day's --timeout and an int64 --version pass; the predictors check the same bounds."""
    args = client.parse_args(["q", "--context", "c", "--timeout", "86400", "--version", str(2**63 - 1)])
    assert (args.timeout, args.version) == (86400, 2**63 - 1)
    with pytest.raises(ValueError, match="timeout"):
        client.RestPredictor(UNREACHABLE, timeout=9e9)
    with pytest.raises(client.ServerError, match="bad gRPC target ''"):
        client.GrpcPredictor("")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"version": 2**63}, "version must be from 0"), ({"model": "m\ud800"}, "model name: not UTF-8"),
    ({"questions": ["\ud800"]}, "question 0: not UTF-8 text (lone surrogate '\\ud800'"),
], ids=["version", "model", "question"])
def test_predictor_refuses_unsendable_requests(kwargs, fragment):
    """Library calls with a version beyond int64 or text that cannot be UTF-8 are a ValueError,
    before anything is sent (gRPC would crash encoding them)."""
    call = {"model": "m", "questions": ["q"], "contexts": ["c"], **kwargs}
    with pytest.raises(ValueError) as raised:
        client.RestPredictor(UNREACHABLE).predict(**call)
    assert fragment in str(raised.value)


# ---------------------------------------------------------------- --output


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_output_refuses_folders_pipes_and_devices_up_front(tmp_path, capsys, kind):
    """--output on a folder, pipe or device is refused before any request (the server here is
    unreachable, and the error is about --output), and the thing there is left alone."""
    path = {"folder": tmp_path, "fifo": tmp_path / "fifo", "device": "/dev/null"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    before = os.stat(path).st_mode
    line = refused(capsys, ["q", "--context", "c", "--rest", UNREACHABLE, "--output", str(path)])
    assert line.startswith(f"error: --output {path}: is a ") and "not a file name" in line
    assert os.stat(path).st_mode == before


def test_output_through_a_link_is_mode_644(tmp_path):
    """--output on a symbolic link writes the file it names (the link stays), mode 644."""
    target, link = tmp_path / "answers.jsonl", tmp_path / "link.jsonl"
    target.write_text("old\n")
    target.chmod(0o600)
    link.symlink_to(target)
    with fake_server(lambda request, conn: predictions(request)) as url:
        assert client.main(["q", "--context", "c", "--rest", url, "--output", str(link)]) == 0
    assert link.is_symlink() and json.loads(target.read_text()) == ANSWER
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_output_may_not_overwrite_the_batch_file(tmp_path, capsys):
    """--output naming the --batch-file is refused before the questions are read."""
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"question": "q", "context": "c"}\n')
    line = refused(capsys, ["--batch-file", str(batch), "--output", str(batch), "--rest", UNREACHABLE])
    assert "is the --batch-file file" in line


# ---------------------------------------------------------------- hostile REST servers


def trickle(request, conn):
    """Sends a whole answer one byte every 0.2 s."""
    for byte in predictions(request):
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def silent(request, conn):
    """Reads the request and never answers."""
    time.sleep(3)


@pytest.mark.parametrize("respond", [trickle, silent])
def test_timeout_bounds_the_whole_request(capsys, respond):
    """A server that trickles its answer or never answers: --timeout 1 ends the call after about
    a second, saying the server did not answer in time (not that it cannot be reached)."""
    with fake_server(respond) as url:
        started = time.monotonic()
        line = refused(capsys, ["q", "--context", "c", "--rest", url, "--timeout", "1"])
    assert time.monotonic() - started < 2.5
    assert line == f"error: REST server at {url} did not answer within 1 s"


def test_a_slow_name_lookup_is_bounded_by_the_timeout(capsys, monkeypatch):
    """A DNS resolver that takes 5 s: --timeout 1 ends the call after about a second, saying the
    server cannot be reached in time; a host that resolves at once still gets its answer."""
    lookup = socket.getaddrinfo

    def slow_for_one_host(host, *args, **kwargs):
        if host == "slow.example":
            time.sleep(5)
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_for_one_host)
    started = time.monotonic()
    line = refused(capsys, ["q", "--context", "c", "--rest", "http://slow.example:80", "--timeout", "1"])
    assert time.monotonic() - started < 2.5
    assert line == "error: cannot reach REST server at http://slow.example:80 within 1 s"
    with fake_server(lambda request, conn: predictions(request)) as url:
        answers = client.RestPredictor(url.replace("127.0.0.1", "localhost"), timeout=5).predict("m", ["q"], ["c"])
    assert answers == [ANSWER]


def test_a_url_path_beyond_ascii_is_sent_percent_encoded():
    """http.client sends the request line as ASCII: a path such as /ä was a UnicodeEncodeError traceback."""
    lines = []
    with fake_server(lambda request, conn: predictions(request), lines) as url:
        with contextlib.closing(client.RestPredictor(f"{url}/ä/x%20y/", timeout=5)) as predictor:
            assert predictor.predict("m", ["q"], ["c"]) == [ANSWER]
    assert lines == [b"POST /%C3%A4/x%20y/v1/models/m:predict HTTP/1.1\r\n"]


def test_request_bodies_are_utf8_not_escapes(monkeypatch):
    """A CJK text sent as \\uXXXX escapes took 6 bytes a character instead of 3: 32 contexts under a
    model's 100,000-byte limit made a body above the devserver's 4 MiB --max_request_bytes."""
    bodies = []
    predictor = client.RestPredictor(UNREACHABLE)
    monkeypatch.setattr(predictor, "_post", lambda path, body: bodies.append(body) or (200, b'{"predictions": [{}]}'))
    predictor.predict("m", ["誰?"], ["漢字" * 10])
    assert "漢字".encode("utf-8") * 10 in bodies[0] and b"\\u" not in bodies[0]


def endless(request, conn):
    """An answer of no declared length that never ends."""
    conn.sendall(http_answer(200, b"", "Connection: close\r\n"))
    while True:
        conn.sendall(b" " * 65536)


@pytest.mark.parametrize("respond, fragment", [
    (lambda request, conn: http_answer(200, b"", "Content-Length: 100000000000\r\n"),
     "an answer of 100000000000 bytes (Content-Length); the client reads at most 100000"),
    (endless, "an answer above 100000 bytes"),
], ids=["content_length", "endless"])
def test_oversized_answers_are_refused(respond, fragment):
    """A REST answer above max_response_bytes (declared or sent) is a ServerError, not a MemoryError."""
    with fake_server(respond) as url, contextlib.closing(client.RestPredictor(url, 10, 100_000)) as predictor:
        with pytest.raises(client.ServerError, match="REST server at .* sent") as raised:
            predictor.predict("m", ["q"], ["c"])
    assert fragment in str(raised.value)


@pytest.mark.parametrize("status, fragment", [(200, "unexpected response: JSON nested too deeply"),
                                              (500, "HTTP 500: [[[[")])
def test_deeply_nested_answers_are_one_line(capsys, status, fragment):
    """200,000 `[` as an answer or an error body: one line (no RecursionError), cut short."""
    with fake_server(lambda request, conn: http_answer(status, b"[" * 200_000)) as url:
        line = refused(capsys, ["q", "--context", "c", "--rest", url])
    assert fragment in line and len(line) < 400


def test_errors_hide_credentials_and_shorten_long_texts(capsys):
    """A user:password@ in --rest is not repeated, and a 5,000-character model name and error
    text are cut short."""
    long_error = json.dumps({"error": "x" * 5000}).encode()
    with fake_server(lambda request, conn: http_answer(404, long_error)) as url:
        line = refused(capsys, ["q", "--context", "c", "--rest", url.replace("//", "//user:pw@"),
                                "--model", "m" * 5000])
    assert "pw" not in line and "HTTP 404" in line and len(line) < 600


def test_lone_surrogates_in_answers_stay_escaped(capsys):
    """An answer holding a lone surrogate ("\\ud800", not UTF-8) is printed escaped, not a crash."""
    body = b'{"predictions": [{"answer": "\\ud800"}]}'
    with fake_server(lambda request, conn: http_answer(200, body)) as url:
        assert client.main(["q", "--context", "c", "--rest", url]) == 0
    assert capsys.readouterr().out == '{"answer": "\\ud800"}\n'


def refuse(bad):
    """A server refusing (HTTP 400) any request that holds a question `bad` returns True for."""
    def respond(request, conn):
        if any(bad(instance["question"], len(request["instances"])) for instance in request["instances"]):
            return http_answer(400, b'{"error": "refused"}')
        return predictions(request)
    return respond


def batch_of_three(tmp_path):
    """A batch file of three records (the second with an id), a blank line before the third."""
    batch = tmp_path / "in.jsonl"
    records = [{"question": "q1", "context": "c"}, {"question": "q2", "context": "c", "id": "second"},
               {"question": "q3", "context": "c"}]
    batch.write_text("\n".join([json.dumps(records[0]), json.dumps(records[1]), "", json.dumps(records[2])]))
    return batch


def test_server_rejection_names_the_record(tmp_path, capsys):
    """A rejected batch request is asked again a record at a time: the error names the line and
    id of the record the server refuses."""
    batch = batch_of_three(tmp_path)
    with fake_server(refuse(lambda question, rows: question == "q2")) as url:
        line = refused(capsys, ["--batch-file", str(batch), "--rest", url, "--batch-size", "2"])
    assert line.startswith(f"error: {batch}: line 2 (id 'second'): http://") and line.endswith("HTTP 400: refused")


def test_records_a_rejected_request_held_are_answered_one_at_a_time(tmp_path, capsys):
    """A server that refuses any request of more than one row (a body above --max_request_bytes, more
    rows than max_batch_size) while each record passes alone: the file was refused ("lines 1 to 2")."""
    with fake_server(refuse(lambda question, rows: rows > 1)) as url:
        assert client.main(["--batch-file", str(batch_of_three(tmp_path)), "--rest", url, "--batch-size", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [json.dumps(row) for row in (ANSWER, {"id": "second", **ANSWER}, ANSWER)]


def test_a_question_the_model_refuses_is_one_line(capsys):
    """A question the model answers with an "error" (a road_tf export's reason, e.g. a context
    above its data.max_context_bytes) was printed as an answer of "no answer" with exit 0."""
    reason = "context is 250000 bytes, above the limit of 100000 bytes (data.max_context_bytes)"

    def respond(request, conn):
        return http_answer(200, json.dumps({"predictions": [{**ANSWER, "error": reason}]}).encode())

    with fake_server(respond) as url:
        assert refused(capsys, ["q", "--context", "c", "--rest", url]) == (
            f"error: the model refuses the question: {reason}")


@pytest.mark.parametrize("flags, text, message", [
    (["q", "--context-file"], "x" * 2000, "longer than 1,000 characters, the longest context the client sends"),
    (["--batch-file"], '{"question": "q", "context": "c"}\n' + "x" * 2000,
     "line 2: longer than 1,000 characters, the longest record the client sends"),
], ids=["context_file", "batch_file"])
def test_endless_input_is_refused_at_the_limit_before_any_request(capsys, monkeypatch, tmp_path, flags, text, message):
    """A pipe of endless text (`<(cat /dev/zero)`) was read into memory without end: here a file
    past a lowered limit is refused with one line naming it, before any server is asked."""
    monkeypatch.setattr(client, "MAX_INPUT_CHARS", 1000)
    path = tmp_path / "input.txt"
    path.write_text(text)
    line = refused(capsys, [*flags, str(path), "--rest", UNREACHABLE])
    assert line == f"error: {path}: {message}"


@pytest.mark.parametrize("flags, file_text, message", [
    (["\u3000\t", "--context", "c"], None, "error: QUESTION: empty or only whitespace (see --help)"),
    (["q", "--context", ""], None, "error: --context: empty or only whitespace (see --help)"),
    (["q", "--context-file"], " \n\u2028", "error: {path}: the context is empty or only whitespace"),
    (["--batch-file"], '{"question": "q", "context": "c"}\n{"question": "q", "context": "\\u00a0", "id": 7}\n',
     "error: {path}: line 2: 'context' is empty or only whitespace"),
    (["--batch-file"], '{"question": "", "context": "c"}\n', "error: {path}: line 1: 'question' is empty or only whitespace"),
], ids=["question", "context", "context_file", "batch_context", "batch_question"])
def test_blank_questions_and_contexts_are_refused_before_any_request(tmp_path, capsys, flags, file_text, message):
    """The exported model refuses a blank question or context (as the data readers do) only after a
    round trip; the client refuses it at once, naming the flag, file or line. Blank means no
    character outside str.isspace (U+3000, U+2028 and U+00A0 included)."""
    path = tmp_path / "input.txt"
    if file_text is not None:
        path.write_text(file_text, encoding="utf-8")
        flags = [*flags, str(path)]
    assert refused(capsys, [*flags, "--rest", UNREACHABLE]) == message.format(path=path)


@pytest.mark.parametrize("line, key", [
    ('{"question": "q", "context": "c", "question": "r"}', "'question' is given 2 times"),
    ('{"question": "q", "context": "c", "id": 1, "id": 2, "id": 3}', "'id' is given 3 times"),
    ('{"question": "q", "context": "c", "meta": {"a": 1, "a": 2}}', "'a' is given 2 times"),
], ids=["question", "id", "nested"])
def test_a_batch_record_that_gives_a_key_twice_is_refused_before_any_request(tmp_path, capsys, line, key):
    """JSON keeps a repeated key's last value: the question asked (or the id copied to its answer)
    would silently be the second one. The record is refused by line, before the server is asked."""
    batch = tmp_path / "in.jsonl"
    batch.write_text('{"question": "q", "context": "c"}\n' + line + "\n")
    error = refused(capsys, ["--batch-file", str(batch), "--rest", UNREACHABLE])
    assert error == f"error: {batch}: line 2: the key {key}; give each key once"


# ---------------------------------------------------------------- gRPC servers


@contextlib.contextmanager
def fake_grpc_server(respond):
    """A gRPC PredictionService on 127.0.0.1 -> its target. respond(PredictRequest, context) answers each
    Predict: it returns the outputs ({name: TensorProto}), or aborts the call through `context`."""
    from concurrent import futures

    import grpc
    from tensorflow_serving.apis import predict_pb2

    def predict(request, context):
        return predict_pb2.PredictResponse(outputs=respond(request, context))

    handler = grpc.unary_unary_rpc_method_handler(predict, request_deserializer=predict_pb2.PredictRequest.FromString,
                                                  response_serializer=predict_pb2.PredictResponse.SerializeToString)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService", {"Predict": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.mark.parametrize("output, fragment", [
    (tensor(types_pb2.DT_STRING, [], string_val=[b"ab"]), "output 'answer' has shape [], expected [2] (one value per question)"),
    (tensor(types_pb2.DT_STRING, [], unknown_rank=True, string_val=[b"a", b"b"]),
     "output 'answer' has shape unknown, expected [2]"),
    (tensor(types_pb2.DT_FLOAT, [2, 2**40], float_val=[1.0]), "output 'answer' has shape [2, 1099511627776], expected [2]"),
    (tensor(types_pb2.DT_STRING, [2], string_val=[b"a", b"b", b"c"]), "output 'answer' holds a value count of 3, expected 2"),
    (tensor(types_pb2.DT_STRING, [2], string_val=[b"only"], int_val=[9]), "output 'answer' holds a value count of 1, "
     "expected 2 (one per question)"),
    (tensor(types_pb2.DT_FLOAT, [2], tensor_content=b"\x00" * 7), "output 'answer' is not a readable tensor (buffer size"),
    (tensor(types_pb2.DT_COMPLEX64, [2], scomplex_val=[0.0] * 4), "output 'answer' has dtype complex64, outside TF Serving's JSON"),
    (tensor(types_pb2.DT_VARIANT, [2]), "output 'answer' has dtype variant, outside TF Serving's JSON mapping"),
    (tensor(9999, [2]), "output 'answer' has dtype enum 9999, outside TF Serving's JSON mapping"),
], ids=["scalar_string", "unknown_rank", "huge_shape", "more_values", "fewer_values", "odd_content", "complex", "variant", "no_dtype"])
def test_grpc_outputs_that_are_not_one_value_per_question_are_refused(output, fragment):
    """A gRPC answer was read as whatever its TensorProtos held: a 0-d string "ab" answered two questions
    with "a" and "b", a declared [2, 2**40] filled memory (MemoryError), and unreadable or odd-typed
    tensors ended in a ValueError, TypeError or KeyError traceback (a complex score, in json.dumps)."""
    with fake_grpc_server(lambda request, context: {"answer": output}) as target, \
            pytest.raises(client.ServerError) as raised:
        client.predict_grpc(target, "m", ["q1", "q2"], ["c1", "c2"], timeout=10)
    assert str(raised.value).startswith(f"gRPC server at {target}: {fragment}")


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"])
def test_grpc_rejection_names_the_record(tmp_path, capsys, code):
    """TF Serving answers a model's FAILED_PRECONDITION or OUT_OF_RANGE as HTTP 400 over REST, where the
    client asked again record by record and named the one refused; over gRPC it named only "lines 1 to 2"."""
    import grpc

    def respond(request, context):
        questions = request.inputs["question"].string_val
        if b"q2" in questions:
            context.abort(getattr(grpc.StatusCode, code), "refused")
        return {"answer": tensor(types_pb2.DT_STRING, [len(questions)], string_val=[b"a"] * len(questions))}

    batch = tmp_path / "in.jsonl"
    batch.write_text('{"question": "q1", "context": "c"}\n{"question": "q2", "context": "c", "id": "second"}\n')
    with fake_grpc_server(respond) as target:
        line = refused(capsys, ["--batch-file", str(batch), "--grpc", target, "--batch-size", "2"])
    assert line == f"error: {batch}: line 2 (id 'second'): gRPC server at {target}: {code}: refused"


def test_a_byte_order_mark_opening_a_batch_or_context_file_is_dropped(tmp_path):
    """The SQuAD, TSV and recipe readers drop it; the client refused such a batch file ("Unexpected
    UTF-8 BOM") and sent it as the first character of a context."""
    batch, context = tmp_path / "batch.jsonl", tmp_path / "context.txt"
    batch.write_bytes(b"\xef\xbb\xbf" + json.dumps({"question": "Who?", "context": "Ada wrote it."}).encode() + b"\n")
    context.write_bytes(b"\xef\xbb\xbfAda wrote it.")
    assert [record["question"] for record in client.read_batch_file(batch)] == ["Who?"]
    assert client.read_context_file(context) == "Ada wrote it."
