"""Tests for serving/batching.py and the devserver's --enable_batching.

In process: a Servable of a tiny SavedModel whose signature doubles its input and reports the
batch it saw (rows, and a per-call counter), batched by a BatchScheduler; a BatchQueue over a
plain Python function where the queue's timing must be exact. Out of process: the devserver with
--enable_batching and serving/batching.config, serving the toy QA model of helpers_serving.
"""

import collections
import json
import os
import re
import signal
import socket
import threading
import time
from concurrent import futures

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.config import file_system_storage_path_source_pb2

from helpers_serving import (
    EXPECTED_ANSWERS,
    QA_EXAMPLES,
    REPO_ROOT,
    direct_rows,
    free_port,
    install_version,
    save_toy_versions,
    start_devserver,
    stop_devserver,
)
from serving import client, devserver
from serving.batching import MAX_BATCH_THREADS, BatchingOptions, BatchScheduler, InFlight, read_batching_parameters
from serving.errors import ServingError
from serving.limits import MAX_SECONDS
from serving.servables import ModelManager, Servable

QUESTIONS = [example["question"] for example in QA_EXAMPLES]
CONTEXTS = [example["context"] for example in QA_EXAMPLES]
LONG_WAIT = 2_000_000
"""batch_timeout_micros that lets every request of a test join before a batch runs by timeout."""


class Doubler(tf.Module):
    """A batchable signature that shows the batch it ran in, and one that is not batchable."""

    def __init__(self):
        super().__init__()
        self.calls = tf.Variable(0, dtype=tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="x")])
    def double(self, x):
        """x: int32 [B, S] -> y = 2x [B, S]; batch_size [B] = B; call [B]: this call's number.
        Negative x -> InvalidArgumentError."""
        check = tf.debugging.assert_non_negative(x, message="x must not be negative")
        with tf.control_dependencies([check]):
            call = self.calls.assign_add(1)
        rows = tf.shape(x)[0]
        return {"y": x * 2, "batch_size": tf.fill([rows], rows), "call": tf.fill([rows], call)}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="x")])
    def total(self, x):
        """x: int32 [B, S] -> total: the scalar sum (no batch dim, so never batched)."""
        return {"total": tf.reduce_sum(x)}


@pytest.fixture(scope="module")
def doubler_path(tmp_path_factory):
    """The Doubler SavedModel: serving_default = double, "total" = total."""
    path = str(tmp_path_factory.mktemp("doubler") / "1")
    module = Doubler()
    tf.saved_model.save(module, path, signatures={"serving_default": module.double, "total": module.total})
    return path


@pytest.fixture
def batched_doubler(doubler_path):
    """make(**BatchingOptions fields) -> a Servable of the Doubler batched by a new scheduler;
    every scheduler is stopped after the test, and must leave no batch thread running."""
    schedulers = []

    def make(**options):
        schedulers.append(BatchScheduler(BatchingOptions(**{"num_batch_threads": 1, **options})))
        return Servable("doubler", 1, doubler_path, schedulers[-1])

    yield make
    for scheduler in schedulers:
        scheduler.stop()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("batch-")]


def concurrently(calls):
    """Runs the zero-argument callables at the same moment, one thread each -> list, in order,
    of each call's result or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as error:  # the test inspects every outcome
            return error

    with futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def wait_for(condition, what, timeout=60.0):
    """Polls condition() every 10 ms; fails the test naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def ask(servable, x, signature=""):
    """A zero-argument call of servable.predict with input x (np.ndarray, or a nested list of int32)."""
    array = x if isinstance(x, np.ndarray) else np.array(x, np.int32)
    return lambda: servable.predict(signature, {"x": array})


def test_concurrent_requests_share_calls_and_get_their_own_rows(batched_doubler):
    """Eight requests of one or two rows, sent together: fewer model calls than requests, each
    call saw the rows of exactly the requests that report it, and every request gets its rows."""
    servable = batched_doubler(max_batch_size=6, batch_timeout_micros=LONG_WAIT)
    inputs = [np.arange(10 * i, 10 * i + 3 * (1 + i % 2), dtype=np.int32).reshape(1 + i % 2, 3) for i in range(8)]
    results = concurrently([ask(servable, x) for x in inputs])
    rows_by_call = {}
    for x, result in zip(inputs, results):
        assert not isinstance(result, Exception), result
        np.testing.assert_array_equal(result["y"], x * 2)
        assert len(set(result["call"])) == 1 and len(set(result["batch_size"])) == 1
        rows_by_call.setdefault(int(result["call"][0]), []).append((len(x), int(result["batch_size"][0])))
    assert len(rows_by_call) < len(inputs)
    for call, rows in rows_by_call.items():
        assert sum(size for size, _ in rows) == rows[0][1] <= 6, (call, rows)


def test_request_larger_than_max_batch_size_is_invalid(batched_doubler):
    """A request of 5 rows with max_batch_size 4 is refused, naming both numbers; 4 rows pass."""
    servable = batched_doubler(max_batch_size=4)
    with pytest.raises(ServingError) as raised:
        servable.predict("", {"x": np.ones([5, 2], np.int32)})
    assert raised.value.code == "INVALID_ARGUMENT"
    assert "has 5 rows, more than the server's max_batch_size of 4" in raised.value.message
    assert servable.predict("", {"x": np.ones([4, 2], np.int32)})["y"].tolist() == [[2, 2]] * 4


def test_malformed_requests_in_a_burst_fail_alone(batched_doubler):
    """In a burst of six, a request the model rejects and one of the wrong dtype get
    INVALID_ARGUMENT; the four others get their answers, from runs without the bad one."""
    servable = batched_doubler(max_batch_size=5, batch_timeout_micros=LONG_WAIT)
    good = [[[i, i + 1]] for i in range(4)]
    results = concurrently(
        [ask(servable, x) for x in good] + [ask(servable, [[-1, 5]]), ask(servable, np.ones([1, 2], np.float32))]
    )
    for x, result in zip(good, results):
        assert not isinstance(result, Exception), result
        assert result["y"].tolist() == (np.asarray(x) * 2).tolist()
        assert result["batch_size"].tolist() == [1]
    rejected, wrong_dtype = results[4:]
    assert isinstance(rejected, ServingError) and rejected.code == "INVALID_ARGUMENT"
    assert "the model rejected the inputs" in rejected.message and "x must not be negative" in rejected.message
    assert isinstance(wrong_dtype, ServingError) and "expects dtype int32, got float32" in wrong_dtype.message


@pytest.mark.parametrize("code, alone", [("INVALID_ARGUMENT", True), ("OUT_OF_RANGE", True),
                                         ("FAILED_PRECONDITION", True), ("INTERNAL", False)])
def test_batch_with_a_rejected_request_is_rerun_one_by_one(code, alone):
    """The queue runs a full batch once; when the model rejects it (HTTP 400: INVALID_ARGUMENT, or a
    model's OUT_OF_RANGE or FAILED_PRECONDITION, which failed every request of the batch), each
    request runs alone. A failure no request is at fault for (INTERNAL) fails the batch, not rerun."""
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        if (inputs["x"] < 0).any():
            raise ServingError(code, "negative x")
        return {"y": inputs["x"] * 2}

    scheduler = BatchScheduler(BatchingOptions(max_batch_size=3, batch_timeout_micros=LONG_WAIT, num_batch_threads=1))
    try:
        queue = scheduler.queue(run)
        results = concurrently([lambda v=v: queue.submit({"x": np.array([v])}) for v in (1, -2, 3)])
    finally:
        scheduler.stop()
    if not alone:
        assert calls == [3] and all(isinstance(result, ServingError) and result.code == code for result in results)
        return
    assert calls == [3, 1, 1, 1]
    assert results[0]["y"].tolist() == [2] and results[2]["y"].tolist() == [6]
    assert isinstance(results[1], ServingError) and results[1].message == "negative x"


def test_full_queue_answers_unavailable():
    """With one batch thread busy and max_enqueued_batches 1 full, a further request gets
    UNAVAILABLE at once; the queued one still runs once the thread is free."""
    release, running = threading.Event(), threading.Event()

    def run(inputs):
        running.set()
        assert release.wait(30)
        return {"y": inputs["x"]}

    scheduler = BatchScheduler(BatchingOptions(max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1))
    queue = scheduler.queue(run)
    try:
        with futures.ThreadPoolExecutor(3) as pool:
            first = pool.submit(queue.submit, {"x": np.array([1])})
            assert running.wait(30)
            later = [pool.submit(queue.submit, {"x": np.array([v])}) for v in (2, 3)]
            done, _ = futures.wait(later, timeout=30, return_when=futures.FIRST_COMPLETED)
            refused = done.pop().exception()
            assert isinstance(refused, ServingError) and refused.code == "UNAVAILABLE"
            assert "max_enqueued_batches" in refused.message
            release.set()
            served = [future.result(timeout=30)["y"].tolist() for future in later if future.exception() is None]
            assert first.result(timeout=30)["y"].tolist() == [1] and served in ([[2]], [[3]])
    finally:
        release.set()
        scheduler.stop()


def test_stop_runs_queued_batches_then_refuses():
    """stop() runs what waits at once (not after the 60 s timeout), ends the threads, and later
    requests get UNAVAILABLE."""
    scheduler = BatchScheduler(BatchingOptions(batch_timeout_micros=60_000_000, num_batch_threads=2))
    queue = scheduler.queue(lambda inputs: {"y": inputs["x"] + 1})
    with futures.ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(queue.submit, {"x": np.array([v])}) for v in (1, 2)]
        wait_for(lambda: sum(batch.rows for batch in queue._batches) == 2, "both requests queued (a peek inside)")
        started = time.monotonic()
        scheduler.stop()
        assert [future.result(timeout=30)["y"].tolist() for future in pending] == [[2], [3]]
    assert time.monotonic() - started < 10
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("batch-")]
    with pytest.raises(ServingError) as raised:
        queue.submit({"x": np.array([1])})
    assert raised.value.code == "UNAVAILABLE" and "shutting down" in raised.value.message


def test_lone_request_runs_at_once_when_nothing_else_is_in_flight():
    """With an InFlight count, a request that is the only one in flight runs at once instead of
    after the 60 s timeout; without one (TF Serving's rule) it waits the timeout."""
    scheduler = BatchScheduler(BatchingOptions(batch_timeout_micros=60_000_000, num_batch_threads=1), InFlight())
    try:
        queue = scheduler.queue(lambda inputs: {"y": inputs["x"] + 1})
        started = time.monotonic()
        with scheduler.in_flight:
            assert queue.submit({"x": np.array([1])})["y"].tolist() == [2]
        assert time.monotonic() - started < 10
    finally:
        scheduler.stop()
    scheduler = BatchScheduler(BatchingOptions(batch_timeout_micros=300_000, num_batch_threads=1))
    try:
        queue = scheduler.queue(lambda inputs: {"y": inputs["x"] + 1})
        started = time.monotonic()
        queue.submit({"x": np.array([1])})
        assert time.monotonic() - started >= 0.3
    finally:
        scheduler.stop()


def test_batch_waits_for_requests_in_flight_then_runs_when_all_joined():
    """A queued request waits while another request is in flight but not yet queued; once that
    one joins, the batch (both) runs at once, long before the 60 s timeout."""
    calls = []

    def run(inputs):
        calls.append(inputs["x"].tolist())
        return {"y": inputs["x"] * 2}

    scheduler = BatchScheduler(BatchingOptions(batch_timeout_micros=60_000_000, num_batch_threads=1), InFlight())
    queue = scheduler.queue(run)
    arrived = threading.Event()

    def late_request():
        with scheduler.in_flight:
            arrived.set()
            time.sleep(0.5)  # e.g. still parsing its JSON
            return queue.submit({"x": np.array([2])})

    try:
        with futures.ThreadPoolExecutor(1) as pool:
            late = pool.submit(late_request)
            assert arrived.wait(30)
            started = time.monotonic()
            with scheduler.in_flight:
                first = queue.submit({"x": np.array([1])})
            assert 0.3 < time.monotonic() - started < 10
            assert first["y"].tolist() == [2] and late.result(timeout=30)["y"].tolist() == [4]
    finally:
        scheduler.stop()
    assert calls == [[1, 2]]


def test_batch_runs_when_the_other_request_in_flight_leaves():
    """A queued request waits while another request is in flight (say a metadata call); when that
    one leaves without joining, the batch runs at once, long before the 60 s timeout."""
    scheduler = BatchScheduler(BatchingOptions(batch_timeout_micros=60_000_000, num_batch_threads=1), InFlight())
    queue = scheduler.queue(lambda inputs: {"y": inputs["x"] + 1})
    other = scheduler.in_flight.__enter__()
    try:
        with futures.ThreadPoolExecutor(1) as pool:
            def request():
                with scheduler.in_flight:
                    return queue.submit({"x": np.array([1])})

            pending = pool.submit(request)
            wait_for(lambda: sum(batch.rows for batch in queue._batches) == 1, "the request queued (a peek inside)")
            time.sleep(0.3)
            assert not pending.done()
            started = time.monotonic()
            other.__exit__(None, None, None)
            assert pending.result(timeout=30)["y"].tolist() == [2]
            assert time.monotonic() - started < 10
    finally:
        scheduler.stop()


@pytest.mark.parametrize("pad", [True, False], ids=["padded", "not_padded"])
def test_variable_length_inputs(batched_doubler, pad):
    """[1, 3] and [1, 5] requests: padded (with each request's first element, as TF Serving)
    into one call when pad_variable_length_inputs is on, run in separate calls when it is off."""
    timeout = LONG_WAIT if pad else 200_000  # unpadded, the second request waits alone for the timeout
    servable = batched_doubler(max_batch_size=2, batch_timeout_micros=timeout, pad_variable_length_inputs=pad)
    short, long = [[1, 2, 3]], [[4, 5, 6, 7, 8]]
    first, second = concurrently([ask(servable, short), ask(servable, long)])
    assert second["y"].tolist() == [[8, 10, 12, 14, 16]]
    if pad:
        assert first["y"].tolist() == [[2, 4, 6, 2, 2]]
        assert first["batch_size"].tolist() == second["batch_size"].tolist() == [2]
        assert first["call"].tolist() == second["call"].tolist()
    else:
        assert first["y"].tolist() == [[2, 4, 6]]
        assert first["batch_size"].tolist() == second["batch_size"].tolist() == [1]
        assert first["call"].tolist() != second["call"].tolist()


def test_only_batchable_signatures_are_batched(batched_doubler):
    """A signature with a scalar output runs directly (and works) while batching is on."""
    servable = batched_doubler(max_batch_size=4)
    assert servable.batched_signatures() == ["serving_default"]
    assert servable.predict("total", {"x": np.ones([6, 2], np.int32)})["total"].tolist() == 12
    assert set(servable.predict("", {"x": np.ones([1, 1], np.int32)}, ("y",))) == {"y"}


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """{version: path} of the toy QA model's two versions, saved outside any base path."""
    return save_toy_versions(tmp_path_factory.mktemp("staged"))


def test_version_swap_with_batching_drops_nothing(staged, tmp_path):
    """Clients keep asking while version 2 replaces version 1: no request fails, each answer is
    its version's, every client moves to version 2 for good, and a request for the unloaded
    version 1 (held before the swap) still runs on it."""
    base_path = str(tmp_path / "toy")
    install_version(staged[1], base_path, 1)
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2))
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    manager = ModelManager("toy", base_path, policy, scheduler=scheduler)
    inputs = {"question": np.array(QUESTIONS, dtype=object), "context": np.array(CONTEXTS, dtype=object)}
    answers, failures, stop = collections.defaultdict(list), [], threading.Event()

    def keep_asking(client_id):
        while not stop.is_set():
            try:
                servable = manager.get()
                outputs = servable.predict("", inputs)
                answers[client_id].append((servable.version, [answer.decode() for answer in outputs["answer"]]))
            except Exception as error:  # every failure counts, whatever its kind
                failures.append(repr(error))

    def count(version):
        return sum(v == version for replies in list(answers.values()) for v, _ in list(replies))

    threads = [threading.Thread(target=keep_asking, args=(i,)) for i in range(4)]
    try:
        manager.poll()
        old = manager.get()
        for thread in threads:
            thread.start()
        wait_for(lambda: count(1) >= 10, "answers from version 1")
        install_version(staged[2], base_path, 2)
        manager.poll()
        assert manager.loaded_versions() == [2]
        wait_for(lambda: count(2) >= 10, "answers after the swap")
        stop.set()
        for thread in threads:
            thread.join()
        held = [answer.decode() for answer in old.predict("", inputs)["answer"]]
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join()
        scheduler.stop()
    assert failures == []
    for replies in answers.values():
        versions = [version for version, _ in replies]
        assert versions == sorted(versions)  # once on version 2, never back to version 1
        assert all(reply == EXPECTED_ANSWERS[version] for version, reply in replies)
    assert held == EXPECTED_ANSWERS[1]


def test_devserver_batches_and_answers_as_the_model(staged, tmp_path):
    """The devserver with --enable_batching and serving/batching.config: concurrent one-question
    REST and gRPC requests, and whole batches, answer as the SavedModel loaded in this process;
    SIGTERM then exits 0."""
    base_path = tmp_path / "toy"
    install_version(staged[1], str(base_path), 1)
    grpc_port, rest_port = free_port(), free_port()
    rest_url, grpc_target = f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}"
    process = start_devserver(
        [f"--port={grpc_port}", f"--rest_api_port={rest_port}", "--model_name=toy", f"--model_base_path={base_path}",
         "--enable_batching", f"--batching_parameters_file={os.path.join(REPO_ROOT, 'serving', 'batching.config')}"],
        f"{rest_url}/v1/models/toy",
    )
    predictor = client.GrpcPredictor(grpc_target, timeout=30)
    try:
        expected = direct_rows(staged[1], QUESTIONS, CONTEXTS)
        picks = [index % len(QUESTIONS) for index in range(16)]
        calls = [
            (lambda i=i: client.predict_rest(rest_url, "toy", [QUESTIONS[i]], [CONTEXTS[i]])) if n % 2 else
            (lambda i=i: predictor.predict("toy", [QUESTIONS[i]], [CONTEXTS[i]]))
            for n, i in enumerate(picks)
        ]
        results = concurrently(calls)
        assert results == [[expected[i]] for i in picks]
        assert client.predict_rest(rest_url, "toy", QUESTIONS, CONTEXTS) == expected
        assert predictor.predict("toy", QUESTIONS, CONTEXTS) == expected
    finally:
        predictor.close()
        returncode, stderr = stop_devserver(process, signal.SIGTERM)
    assert returncode == 0, stderr
    assert "batching enabled: max_batch_size=32, batch_timeout_micros=10000, max_enqueued_batches=64, " \
           "num_batch_threads=2, pad_variable_length_inputs=False" in stderr
    assert "model toy version 1 batches signature(s): serve_token_ids, serving_default" in stderr


def test_shipped_batching_config_and_defaults(tmp_path):
    """serving/batching.config reads as written; absent fields take TF Serving's defaults."""
    shipped = read_batching_parameters(os.path.join(REPO_ROOT, "serving", "batching.config"))
    assert shipped == BatchingOptions(32, 10000, 64, 2, False)
    empty = tmp_path / "empty.config"
    empty.write_text("# nothing set\n")
    defaults = read_batching_parameters(str(empty))
    assert (defaults.max_batch_size, defaults.batch_timeout_micros, defaults.max_enqueued_batches) == (1000, 0, 10)
    assert defaults.num_batch_threads == len(os.sched_getaffinity(0)) and not defaults.pad_variable_length_inputs


BAD_BATCHING = [
    ("garbage", "max_batch_size: [", "not a BatchingParameters text proto"),
    ("unknown_field", "max_batch_size { value: 8 }\nbatch_size: 3\n", 'has no field named "batch_size"'),
    ("zero_batch", "max_batch_size { value: 0 }", "max_batch_size must be at least 1, got 0"),
    ("negative_timeout", "batch_timeout_micros { value: -1 }", "batch_timeout_micros must be at least 0"),
    ("allowed_sizes", "max_batch_size { value: 8 } allowed_batch_sizes: [4, 2, 8]",
     "allowed_batch_sizes must increase and end at max_batch_size (8), got [4, 2, 8]"),
    ("missing", None, "no such batching parameters file"),
    ("endless_timeout", "batch_timeout_micros { value: 9223372036854775807 }",
     "batch_timeout_micros must be at most 86,400,000,000, got 9223372036854775807"),
    ("too_many_threads", "num_batch_threads { value: 100000000 }", "num_batch_threads must be at most 1,024"),
]


@pytest.mark.parametrize("content, fragment", [c[1:] for c in BAD_BATCHING], ids=[c[0] for c in BAD_BATCHING])
def test_bad_batching_file_is_one_line_exit_2(tmp_path, capsys, content, fragment):
    """A bad --batching_parameters_file: exit 2 with one line naming the file, before serving."""
    path = tmp_path / "batching.config"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as raised:
        devserver.main(["--model_base_path=/nonexistent", "--enable_batching", f"--batching_parameters_file={path}"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and fragment in err


def test_largest_batching_timeout_and_threads_are_accepted(tmp_path):
    """A batch timeout of a day (MAX_SECONDS) and MAX_BATCH_THREADS threads are the largest values."""
    path = tmp_path / "batching.config"
    path.write_text(f"batch_timeout_micros {{ value: {MAX_SECONDS * 1_000_000} }} "
                    f"num_batch_threads {{ value: {MAX_BATCH_THREADS} }}")
    options = read_batching_parameters(str(path))
    assert (options.batch_timeout_micros, options.num_batch_threads) == (86_400_000_000, 1024)


def test_batching_file_without_enable_batching_is_refused(capsys):
    """--batching_parameters_file without --enable_batching is an error, as in tensorflow_model_server."""
    with pytest.raises(SystemExit) as raised:
        devserver.main(["--model_base_path=/nonexistent", "--batching_parameters_file=serving/batching.config"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without --enable_batching" in err


class XlaDoubler(tf.Module):
    """serving_default doubles x, compiled with XLA (as export.jit_compile exports are)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")], jit_compile=True)
    def double(self, x):
        return {"y": 2.0 * x}


def test_a_model_that_compiles_with_xla_needs_the_xla_flag(tmp_path):
    """Like tensorflow_model_server, the devserver serves an XLA model only with
    --xla_cpu_compilation_enabled; the refusal names the flag and leaves nothing loaded."""
    module = XlaDoubler()
    path = tmp_path / "xla" / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.double})
    with pytest.raises(ValueError, match="--xla_cpu_compilation_enabled=true"):
        Servable("xla", 1, str(path))
    servable = Servable("xla", 1, str(path), xla_enabled=True)
    np.testing.assert_allclose(servable.predict("", {"x": np.array([1.5, -2.0], np.float32)})["y"], [3.0, -4.0])
    assert devserver.parse_args(["--model_base_path=/m", "--xla_cpu_compilation_enabled=true"]).xla_cpu_compilation_enabled
    assert not devserver.parse_args(["--model_base_path=/m"]).xla_cpu_compilation_enabled
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    refused = ModelManager("xla", str(tmp_path / "xla"), policy, max_load_retries=1)
    refused.poll()
    assert refused.loaded_versions() == []
    served = ModelManager("xla", str(tmp_path / "xla"), policy, xla_enabled=True)
    served.poll()
    assert served.loaded_versions() == [1]


def toy_devserver(staged, tmp_path):
    """(a devserver subprocess serving the toy's version 1 as "toy", its REST port), once it answers."""
    base_path = tmp_path / "toy"
    install_version(staged[1], str(base_path), 1)
    rest_port = free_port()
    process = start_devserver([f"--port={free_port()}", f"--rest_api_port={rest_port}", "--model_name=toy",
                               f"--model_base_path={base_path}"], f"http://127.0.0.1:{rest_port}/v1/models/toy")
    return process, rest_port


def test_sigterm_lets_a_rest_request_in_flight_finish(staged, tmp_path):
    """A REST request whose body is still arriving when SIGTERM comes is answered before the models
    unload (as gRPC calls are, within the grace period); its connection threads used to die with
    the process."""
    process, rest_port = toy_devserver(staged, tmp_path)
    body = json.dumps({"inputs": {"question": [QA_EXAMPLES[0]["question"]],
                                  "context": [QA_EXAMPLES[0]["context"]]}}).encode("utf-8")
    with socket.create_connection(("127.0.0.1", rest_port), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body[:10])
        time.sleep(0.5)  # the request is in flight
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        connection.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"Content-Length: (\d+)", answer).group(1)):
            chunk = connection.recv(65536)
            assert chunk, f"the connection closed after {answer!r}"
            answer += chunk
    returncode, stderr = stop_devserver(process, signal.SIGTERM)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in answer, answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"]["answer"] == [EXPECTED_ANSWERS[1][0]]
    assert returncode == 0, stderr


def test_sigterm_waits_for_an_unfinished_rest_request_only_the_grace_period(staged, tmp_path):
    """A body that never arrives holds the stop for the 5 s grace period, which the log names, not
    for --rest_timeout_seconds (10 s), after which the request would have ended as a 408."""
    process, rest_port = toy_devserver(staged, tmp_path)
    with socket.create_connection(("127.0.0.1", rest_port), timeout=30) as connection:
        connection.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.5)
        started = time.monotonic()
        returncode, stderr = stop_devserver(process, signal.SIGTERM)
    assert returncode == 0, stderr
    assert time.monotonic() - started < 20
    assert "stopping with 1 REST request(s) unanswered after the 5s grace period" in stderr
