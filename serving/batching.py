"""Request batching for the devserver, as `tensorflow_model_server --enable_batching` does it.

Concurrent predict requests for one signature of one loaded model version wait in that
signature's BatchQueue. A BatchScheduler's `num_batch_threads` threads (one pool for every
model, as TF Serving's shared batch scheduler) take the queues' batches in turn: each batch
holds up to `max_batch_size` rows (dim 0 of the inputs; a request is never split), runs the
signature ONCE on its requests' inputs concatenated along dim 0, and hands every request its
own rows of every output.

A batch is run when it is full, when a request does not fit in it (the request opens the next
batch), or `batch_timeout_micros` after its first request arrived, whichever comes first. Given
an InFlight count of the requests the server is handling (the devserver passes one), a batch
also runs at once when every request in flight is already in it: waiting could only add
latency, as no request is on its way to join it (a single client never waits for the timeout).
A request that would open a batch beyond `max_enqueued_batches` waiting ones is refused
(UNAVAILABLE); so is one larger than `max_batch_size` (INVALID_ARGUMENT).

With `pad_variable_length_inputs`, requests whose inputs differ in dims after 0 (e.g.
`token_ids` [1, 12] and [1, 30]) share a batch: each input is padded at the end of every such
dim to the largest in the batch, with that request's own first element of the input, as TF
Serving pads. Outputs are split along dim 0 only, so they may come back padded too (TF Serving
does the same). Without it such requests go into separate batches (TF Serving instead fails
the mixed batch with FAILED_PRECONDITION).

BatchingParameters fields, and the value used when a field is absent (TF Serving's batch
scheduler defaults):
    max_batch_size              1000
    batch_timeout_micros        0 (a batch runs as soon as a thread is free)
    max_enqueued_batches        10 (per signature of each loaded version)
    num_batch_threads           the number of CPU cores this process may run on
    pad_variable_length_inputs  false
    allowed_batch_sizes         checked as TF Serving checks it (increasing, the last entry equal
                                to max_batch_size), then unused: TF Serving pads each batch up to
                                the next allowed size, which changes no answer
    thread_pool_name            accepted and unused
"""

import collections
import dataclasses
import threading
import time
from concurrent import futures

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

from road_tf.cluster import usable_cores
from road_tf.errors import ConfigError
from serving.errors import ServingError, invalid, unavailable
from serving.limits import MAX_SECONDS
from serving.textproto import read_text_proto

_FIELD = descriptor_pb2.FieldDescriptorProto
_PROTO_FIELDS = [
    # (name, number, label, type, message type); numbers as in TF Serving's session_bundle_config.proto
    ("max_batch_size", 1, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("batch_timeout_micros", 2, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("max_enqueued_batches", 3, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("num_batch_threads", 4, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_MESSAGE, ".google.protobuf.Int64Value"),
    ("thread_pool_name", 5, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_MESSAGE, ".google.protobuf.StringValue"),
    ("allowed_batch_sizes", 6, _FIELD.LABEL_REPEATED, _FIELD.TYPE_INT64, None),
    ("pad_variable_length_inputs", 7, _FIELD.LABEL_OPTIONAL, _FIELD.TYPE_BOOL, None),
]
MAX_BATCH_THREADS = 1024
"""The most num_batch_threads accepted: every batch thread starts with the server."""
_INT_FIELDS = {
    "max_batch_size": (1, None),
    "batch_timeout_micros": (0, MAX_SECONDS * 1_000_000),
    "max_enqueued_batches": (1, None),
    "num_batch_threads": (1, MAX_BATCH_THREADS),
}
"""The Int64Value fields of BatchingOptions -> their (smallest, largest or None) allowed values."""


def _batching_parameters_class():
    """A message class for tensorflow.serving.BatchingParameters, which the
    tensorflow-serving-api wheel does not ship (it has no session_bundle_config_pb2)."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="road_tf/serving/batching_parameters.proto", package="tensorflow.serving", syntax="proto3",
        dependency=[wrappers.name],
    )
    message = file_proto.message_type.add(name="BatchingParameters")
    for name, number, label, kind, type_name in _PROTO_FIELDS:
        message.field.add(name=name, number=number, label=label, type=kind, type_name=type_name)
    pool.Add(file_proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


BatchingParameters = _batching_parameters_class()
"""TF Serving's BatchingParameters message (the fields in _PROTO_FIELDS)."""


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """The batching parameters in force; the defaults are TF Serving's (see the module docstring)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(default_factory=usable_cores)  # TF Serving's default
    pad_variable_length_inputs: bool = False

    def describe(self):
        """One line naming every option and its value, for the log."""
        return ", ".join(f"{field.name}={getattr(self, field.name)}" for field in dataclasses.fields(self))


def batching_options(params, where):
    """A BatchingParameters message -> BatchingOptions, absent fields at their defaults.

    Raises:
        ConfigError naming `where`: a value below its minimum (TF Serving refuses it) or above
        its maximum (a wait beyond MAX_SECONDS, more than MAX_BATCH_THREADS threads), or
        allowed_batch_sizes that do not increase or do not end at max_batch_size (TF Serving
        refuses them too).
    """
    values = {}
    for name, (minimum, maximum) in _INT_FIELDS.items():
        if params.HasField(name):
            values[name] = getattr(params, name).value
            if values[name] < minimum:
                raise ConfigError(f"{where}: {name} must be at least {minimum}, got {values[name]}")
            if maximum is not None and values[name] > maximum:
                raise ConfigError(f"{where}: {name} must be at most {maximum:,}, got {values[name]}")
    options = BatchingOptions(**values, pad_variable_length_inputs=params.pad_variable_length_inputs)
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != options.max_batch_size):
        raise ConfigError(
            f"{where}: allowed_batch_sizes must increase and end at max_batch_size "
            f"({options.max_batch_size}), got {sizes}"
        )
    return options


def read_batching_parameters(path):
    """A BatchingParameters text proto file -> BatchingOptions.

    Raises:
        ConfigError: a file read_text_proto refuses, or a value batching_options refuses.
    """
    return batching_options(read_text_proto(path, BatchingParameters(), "batching parameters"), path)


def batchable(input_specs, output_specs):
    """True when a signature can be batched: it has inputs, and every input and output
    tf.TensorSpec has a known rank of at least 1 and an unknown dim 0 (the batch dim)."""
    specs = [*input_specs, *output_specs]
    return bool(input_specs) and all(spec.shape.rank and spec.shape[0] is None for spec in specs)


def request_rows(inputs, max_batch_size):
    """The rows (dim 0) of one request's inputs {name: np.ndarray [rows, ...]}.

    Raises:
        ServingError(INVALID_ARGUMENT): the inputs' dim 0 differ, or exceed max_batch_size.
    """
    sizes = {name: array.shape[0] for name, array in sorted(inputs.items())}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise invalid(f"with batching, every input must have the same dim 0 (rows); got {listed}")
    rows = next(iter(sizes.values()))
    if rows > max_batch_size:
        raise invalid(
            f"the request has {rows} rows, more than the server's max_batch_size of {max_batch_size}; "
            f"send at most {max_batch_size} rows per request"
        )
    return rows


def _pad_to(array, inner_shape):
    """np.ndarray [rows, d1, ...] -> [rows, *inner_shape], the new cells holding the array's
    first element (TF Serving's padding value). INVALID_ARGUMENT if there is no such element."""
    if array.shape[1:] == inner_shape:
        return array
    if array.size == 0:
        raise invalid("an input with no elements cannot be padded to batch with other requests")
    padded = np.full((array.shape[0], *inner_shape), array.flat[0], dtype=array.dtype)
    padded[tuple(slice(0, size) for size in array.shape)] = array
    return padded


def merge_inputs(requests):
    """Concatenates requests' inputs along dim 0, padding dims after 0 to the largest.

    Args:
        requests: one {input name: np.ndarray [rows_i, ...]} per request, same names and ranks.

    Returns:
        {input name: np.ndarray [sum of rows_i, ...]}.
    """
    merged = {}
    for name in requests[0]:
        arrays = [inputs[name] for inputs in requests]
        inner_shape = tuple(max(sizes) for sizes in zip(*(array.shape[1:] for array in arrays)))
        merged[name] = np.concatenate([_pad_to(array, inner_shape) for array in arrays])
    return merged


def split_outputs(outputs, rows):
    """Splits batched outputs {name: np.ndarray [sum(rows), ...]} along dim 0 -> one
    {name: np.ndarray [rows_i, ...]} per entry of `rows`.

    Raises:
        RuntimeError: an output whose dim 0 is not the batch's row count (a model bug: INTERNAL).
    """
    total = sum(rows)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise RuntimeError(
                f"batched output {name!r} has shape {list(array.shape)}; expected dim 0 to be the batch's {total} rows"
            )
    bounds = np.cumsum([0, *rows])
    return [{name: array[start:end] for name, array in outputs.items()} for start, end in zip(bounds, bounds[1:])]


def _same_inner_shapes(first, second):
    """True when every input of two requests has the same dims after dim 0."""
    return all(first[name].shape[1:] == second[name].shape[1:] for name in first)


class InFlight:
    """The number of requests a server's front ends are handling, each counted from its arrival
    until its answer is ready to send (`with in_flight:` around the handling)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watchers = []
        self.count = 0

    def notify_on_leave(self, condition):
        """Has every request that leaves notify_all() `condition` (a threading.Condition)."""
        self._watchers.append(condition)

    def __enter__(self):
        with self._lock:
            self.count += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self.count -= 1
        for condition in self._watchers:
            with condition:
                condition.notify_all()
        return False


class _Task:
    """One queued request: inputs {name: np.ndarray [rows, ...]}, its rows, and a Future for
    its outputs {name: np.ndarray [rows, ...]} (or its ServingError)."""

    def __init__(self, inputs, rows):
        self.inputs = inputs
        self.rows = rows
        self.future = futures.Future()


class _Batch:
    """Tasks that will run as one call, in arrival order.

    Args:
        task: the first task; opened: time.monotonic() when it arrived (the timeout counts from it).
    """

    def __init__(self, task, opened):
        self.tasks = [task]
        self.rows = task.rows
        self.opened = opened
        self.closed = False

    def fits(self, task, options):
        """True when `task` may join: the rows fit, and the shapes match unless padding is on."""
        return self.rows + task.rows <= options.max_batch_size and (
            options.pad_variable_length_inputs or _same_inner_shapes(self.tasks[0].inputs, task.inputs)
        )

    def add(self, task):
        """Appends `task` (which fits)."""
        self.tasks.append(task)
        self.rows += task.rows


class BatchQueue:
    """The waiting requests of one signature of one loaded version, as a queue of batches.

    Only the last batch is open to new requests; the others are closed and ready to run.
    The scheduler's lock guards the batches.

    Args:
        scheduler: the BatchScheduler whose threads run these batches.
        run: callable({input name: np.ndarray [B, ...]}) -> {output name: np.ndarray [B, ...]},
            the signature; raises ServingError(INVALID_ARGUMENT) when the model rejects inputs.
    """

    def __init__(self, scheduler, run):
        self._scheduler = scheduler
        self._options = scheduler.options
        self._run = run
        self._batches = collections.deque()

    def submit(self, inputs):
        """Queues one request and blocks until its batch has run.

        Args:
            inputs: {input name: np.ndarray [rows, ...]}, already checked against the signature.

        Returns:
            {output name: np.ndarray [rows, ...]}: this request's rows of every output.

        Raises:
            ServingError: INVALID_ARGUMENT (too many rows, unequal dim 0, or the model rejected
            this request), UNAVAILABLE (queue full, or shutting down). RuntimeError: a model bug.
        """
        task = _Task(inputs, request_rows(inputs, self._options.max_batch_size))
        self._scheduler._enqueue(self, task)
        return task.future.result()

    def _add(self, task, now):
        """Puts `task` in the open batch or opens a new one (call with the scheduler's lock held).

        Raises:
            ServingError(UNAVAILABLE): a new batch is needed and max_enqueued_batches wait already.
        """
        last = self._batches[-1] if self._batches else None
        if last is not None and not last.closed and last.fits(task, self._options):
            last.add(task)
        else:
            if len(self._batches) >= self._options.max_enqueued_batches:
                raise unavailable(
                    f"the batch queue is full ({self._options.max_enqueued_batches} batches wait "
                    "for this signature; max_enqueued_batches); retry later"
                )
            if last is not None:
                last.closed = True
            last = _Batch(task, now)
            self._batches.append(last)
        if last.rows >= self._options.max_batch_size:
            last.closed = True

    def _ready_in(self, now, flush):
        """Seconds until the first batch should run (<= 0: now); call with the lock held."""
        first = self._batches[0]
        in_flight = self._scheduler.in_flight
        if first.closed or flush or (in_flight is not None and len(first.tasks) >= in_flight.count):
            return 0.0
        return first.opened + self._options.batch_timeout_micros / 1e6 - now

    def _pop(self):
        """Removes the first batch (lock held) -> (that _Batch, whether more batches wait)."""
        batch = self._batches.popleft()
        return batch, bool(self._batches)

    def _run_batch(self, batch):
        """Runs a batch as one call and resolves its tasks (outside the lock). After a failure the
        request may be at fault for (HTTP 400: INVALID_ARGUMENT, or a model's FAILED_PRECONDITION or
        OUT_OF_RANGE) in a batch of several requests, runs each alone, so only the offending one fails."""
        try:
            outputs = split_outputs(self._run(merge_inputs([task.inputs for task in batch.tasks])),
                                    [task.rows for task in batch.tasks])
        except ServingError as error:
            if error.http_status != 400 or len(batch.tasks) == 1:
                _fail(batch.tasks, error)
                return
            for task in batch.tasks:
                self._run_batch(_Batch(task, batch.opened))
            return
        except Exception as error:  # whatever the model raises goes to its requests, not the thread
            _fail(batch.tasks, error)
            return
        for task, task_outputs in zip(batch.tasks, outputs):
            task.future.set_result(task_outputs)


def _fail(tasks, error):
    """Resolves every task with `error`."""
    for task in tasks:
        task.future.set_exception(error)


class BatchScheduler:
    """Threads that run the ready batches of every BatchQueue, taking the queues in turn.

    The threads start at construction; stop() runs what is queued, then ends them.

    Args:
        options: BatchingOptions.
        in_flight: the InFlight count of the server's requests, or None: then a batch that is not
            full always waits batch_timeout_micros, as in TF Serving.
    """

    def __init__(self, options, in_flight=None):
        self.options = options
        self.in_flight = in_flight
        self._condition = threading.Condition()
        if in_flight is not None:  # a request that leaves may leave a batch holding every one in flight
            in_flight.notify_on_leave(self._condition)
        self._waiting = []  # the BatchQueues that hold batches, in the order they are served
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"batch-{index}", daemon=True)
            for index in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def queue(self, run):
        """A new BatchQueue for one signature, run by these threads; see BatchQueue for `run`."""
        return BatchQueue(self, run)

    def stop(self):
        """Runs every queued batch without waiting for timeouts, then ends the threads.
        Requests submitted from now on get UNAVAILABLE."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join()

    def _enqueue(self, queue, task):
        """Adds `task` to `queue` and wakes the threads; UNAVAILABLE when stopping or full."""
        with self._condition:
            if self._stopping:
                raise unavailable("the server is shutting down")
            queue._add(task, time.monotonic())
            if queue not in self._waiting:
                self._waiting.append(queue)
            self._condition.notify_all()

    def _work(self):
        """A batch thread: runs ready batches until stop() and the queues are empty."""
        while True:
            with self._condition:
                taken = self._take()
            if taken is None:
                return
            queue, batch = taken
            queue._run_batch(batch)

    def _take(self):
        """Waits (lock held) for a ready batch -> (its queue, the batch), or None once stopping
        with nothing queued. The queue served goes to the back of the line."""
        while True:
            now, wait = time.monotonic(), None
            for queue in self._waiting:
                ready_in = queue._ready_in(now, self._stopping)
                if ready_in <= 0:
                    self._waiting.remove(queue)
                    batch, more = queue._pop()
                    if more:
                        self._waiting.append(queue)
                    return queue, batch
                wait = ready_in if wait is None else min(wait, ready_in)
            if self._stopping and not self._waiting:
                return None
            self._condition.wait(wait)
