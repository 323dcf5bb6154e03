"""Loaded model versions, the version policy, and polling a base path for new versions.

A model's base path holds one SavedModel per integer-named directory
(`<base_path>/<version>/saved_model.pb`, the name base-10 ASCII digits); other names (such as
`.tmp-3-ab12` during an atomic export, or `²`, which str.isdigit() accepts) are not versions.
The ModelManager loads the versions its policy wants, then swaps them in under a lock:
requests that already hold a Servable finish on it. With a BatchScheduler (--enable_batching),
each batchable signature of a Servable gets a BatchQueue; a queued request keeps its Servable
alive, so a version swap drops none.
"""

import functools
import logging
import os
import threading
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the exported graphs use)
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import error_codes_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from road_tf.errors import RoadError, first_line, tf_error_summary
from road_tf.files import MAX_VERSION, SAVED_MODEL_FILE, holds_saved_model, version_names, version_number
from serving.batching import batchable
from serving.codec import VALUE_FIELDS
from serving.errors import HTTP_STATUS, ServingError, invalid, not_found
from serving.limits import RequestLimits

LOG = logging.getLogger("serving.devserver")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000
"""TF Serving replays at most this many warmup records per version."""

TOKEN_INPUTS = ("token_ids", "segment_ids", "padding_mask")
"""The inputs of road_tf's serve_token_ids signature, which must share one shape."""
EMBEDDING_TABLES = {"token_ids": "token_embedding/embeddings", "segment_ids": "segment_embedding/embeddings"}
"""Input name -> the variable (keras-hub's layer names) whose rows are the input's valid ids."""
POSITION_TABLE = "position_embedding/embeddings"
"""The variable whose rows bound the sequence length (dim 1) of the token inputs."""

def check_names(given, expected):
    """Raises INVALID_ARGUMENT unless the set of input names `given` equals the set `expected`."""
    missing, extra = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing:
        raise invalid(f"missing input(s) {', '.join(missing)}; expected {', '.join(sorted(expected))}")
    if extra:
        raise invalid(f"unknown input(s) {', '.join(extra)}; expected {', '.join(sorted(expected))}")


def check_same_rows(inputs, specs):
    """Raises INVALID_ARGUMENT when inputs whose spec has an unknown dim 0 (the batch) disagree
    on it: the graph would broadcast a 1-row input over the others.

    Args:
        inputs: {name: np.ndarray}; specs: {name: tf.TensorSpec} of the same names.
    """
    rows = {name: array.shape[0] for name, array in sorted(inputs.items())
            if specs[name].shape.rank and specs[name].shape[0] is None}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in rows.items())
        raise invalid(f"inputs have different batch sizes (dim 0); got {listed}")


def check_input(name, array, spec):
    """Raises INVALID_ARGUMENT unless np.ndarray `array` suits the tf.TensorSpec `spec`: its
    dtype (np object for tf.string), its shape, and a non-empty batch when dim 0 is the batch."""
    expected = np.dtype(object) if spec.dtype == tf.string else np.dtype(spec.dtype.as_numpy_dtype)
    if array.dtype != expected:
        raise invalid(f"input {name!r} expects dtype {spec.dtype.name}, got {array.dtype.name}")
    if not spec.shape.is_compatible_with(array.shape):
        raise invalid(f"input {name!r} expects shape {spec.shape}, got {list(array.shape)}")
    if spec.shape.rank and spec.shape[0] is None and array.shape[0] == 0:
        raise invalid(f"empty batch: input {name!r} has no examples")


def output_array(tensor):
    """An output tf.Tensor -> np.ndarray, strings as an object array of bytes (the .numpy() of a
    0-d string tensor is bytes, not an array)."""
    return np.asarray(tensor.numpy(), dtype=object if tensor.dtype == tf.string else None)


def model_failure(error):
    """A ServingError for a tf.errors.OpError a model raised while running: the error's own status code, as
    TF Serving answers it (UNKNOWN for a code outside HTTP_STATUS), and its explanatory lines ("the model
    rejected the inputs: ..." for INVALID_ARGUMENT, "the model failed: ..." for the others)."""
    code = error_codes_pb2.Code.Name(error.error_code)
    what = "rejected the inputs" if code == "INVALID_ARGUMENT" else "failed"
    message = f"the model {what}: {tf_error_summary(error.message)}"
    return ServingError(code if code in HTTP_STATUS else "UNKNOWN", message)


def _dtype_name(enum):
    """A DataType enum value -> its TF name ("float32"), or a note that it is not a dtype."""
    try:
        return tf.dtypes.as_dtype(enum).name
    except TypeError:
        return f"invalid dtype enum {enum}"


def _declared_values(proto, where, limits):
    """How many values a TensorProto carries (tensor_content or its dtype's value field),
    checking each string's length against limits.max_string_bytes; nothing is decoded."""
    dtype = _dtype_name(proto.dtype)
    if dtype not in VALUE_FIELDS:
        raise invalid(f"{where}: dtype {dtype} is not supported by the devserver")
    if proto.dtype == types_pb2.DT_STRING:
        if proto.tensor_content:
            raise invalid(f"{where}: string tensors carry their values in string_val, not tensor_content")
        for value in proto.string_val:
            limits.check_string(len(value), where)
        return len(proto.string_val)
    if proto.tensor_content:
        itemsize = tf.dtypes.as_dtype(proto.dtype).size
        if len(proto.tensor_content) % itemsize:
            raise invalid(f"{where}: tensor_content of {len(proto.tensor_content)} bytes is not a whole number "
                          f"of {itemsize}-byte values")
        return len(proto.tensor_content) // itemsize
    return len(getattr(proto, VALUE_FIELDS[dtype]))


def tensor_proto_to_array(name, proto, spec, budget):
    """A TensorProto input -> np.ndarray.

    Its dtype is checked against the tf.TensorSpec, and its declared shape against the request's
    RequestBudget, before anything is allocated; it must carry exactly one value per element
    (TensorFlow would repeat the last value to fill a larger shape).

    Raises:
        ServingError(INVALID_ARGUMENT): wrong dtype, unknown rank, a size above the limits, or a
        value count that differs from the shape's element count.
    """
    where = f"input {name!r}"
    if proto.dtype != spec.dtype.as_datatype_enum:
        raise invalid(f"{where} expects dtype {spec.dtype.name}, got {_dtype_name(proto.dtype)}")
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"{where}: the tensor_shape has an unknown rank")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    elements = budget.take(shape, where)
    values = _declared_values(proto, where, budget.limits)
    if values != elements:
        raise invalid(f"{where}: shape {shape} needs {elements} values, the tensor holds {values}")
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise invalid(f"{where}: bad TensorProto: {error}") from None


def read_serve_meta_graph(path):
    """A SavedModel directory -> its MetaGraphDef tagged "serve"."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, SAVED_MODEL_FILE), "rb") as stream:
        saved_model.ParseFromString(stream.read())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path}: no MetaGraph tagged 'serve'")


def compiles_with_xla(meta_graph):
    """Whether a MetaGraphDef holds a function that must compile with XLA (tf.function(jit_compile=True))."""
    return any(function.attr["_XlaMustCompile"].b for function in meta_graph.graph_def.library.function)


def variable_shapes(meta_graph):
    """A MetaGraphDef -> {variable name: list of dims} for every variable of its object graph."""
    return {
        node.variable.name: [dim.size for dim in node.variable.shape.dim]
        for node in meta_graph.object_graph_def.nodes
        if node.WhichOneof("kind") == "variable"
    }


class TokenInputRules:
    """What road_tf's token inputs (TOKEN_INPUTS) may hold in one model.

    padding_mask holds 0 or 1; token_ids and segment_ids are ids into an embedding table, so
    they lie in [0, rows of the table) when the model has the table (EMBEDDING_TABLES), and are
    at least 0 otherwise (keras' take() would wrap a negative id to the end of the table). The
    three share one shape, whose dim 1 is at most the rows of the position table.

    Args:
        shapes: {variable name: dims} of the model (variable_shapes).
    """

    def __init__(self, shapes):
        self.ranges = {"padding_mask": (0, 2, "a padding mask holds 0 or 1")}
        for name, table in EMBEDDING_TABLES.items():
            rows = shapes[table][0] if shapes.get(table) else None
            reason = f"the model's {table} has {rows} rows" if rows else "ids are not negative"
            self.ranges[name] = (0, rows, reason)
        self.max_length = shapes[POSITION_TABLE][0] if shapes.get(POSITION_TABLE) else None

    def check(self, inputs):
        """Raises INVALID_ARGUMENT unless the token inputs among `inputs` ({name: integer
        np.ndarray}) share one shape, fit the position table and hold valid values."""
        present = {name: inputs[name] for name in TOKEN_INPUTS if name in inputs}
        shapes = {name: list(array.shape) for name, array in present.items()}
        if len({str(shape) for shape in shapes.values()}) > 1:
            listed = ", ".join(f"{name}: {shape}" for name, shape in shapes.items())
            raise invalid(f"{', '.join(present)} must have the same shape; got {listed}")
        for name, array in present.items():
            if self.max_length and array.ndim == 2 and array.shape[1] > self.max_length:
                raise invalid(f"input {name!r} has {array.shape[1]} positions; the model takes at most "
                              f"{self.max_length}")
            low, high, reason = self.ranges[name]
            bad = array < low if high is None else (array < low) | (array >= high)
            if bad.any():
                allowed = f">= {low}" if high is None else f"in [{low}, {high})"
                raise invalid(f"input {name!r} holds {array[bad].flat[0]} at {np.argwhere(bad)[0].tolist()}; "
                              f"values must be {allowed} ({reason})")


class Servable:
    """One loaded model version.

    Args:
        name: the model name; version: its integer version; path: the SavedModel directory.
        scheduler: a BatchScheduler to batch the batchable signatures with, or None (no batching).
        xla_enabled: --xla_cpu_compilation_enabled; without it a model that compiles with XLA is
            refused, as tensorflow_model_server fails its first request (and so its warm-up).

    Raises:
        ValueError: the model compiles with XLA and `xla_enabled` is False.
    """

    def __init__(self, name, version, path, scheduler=None, xla_enabled=False):
        self.name = name
        self.version = version
        self.path = path
        meta_graph = read_serve_meta_graph(path)
        if compiles_with_xla(meta_graph) and not xla_enabled:
            raise ValueError(f"{path} compiles with XLA (export.jit_compile): start the server with "
                             "--xla_cpu_compilation_enabled=true (tensorflow_model_server needs it too)")
        self.signature_defs = dict(meta_graph.signature_def)
        self._token_rules = TokenInputRules(variable_shapes(meta_graph))
        self._loaded = tf.saved_model.load(path)
        self._functions = dict(self._loaded.signatures)
        self._queues = {}
        if scheduler is not None:
            self._queues = {
                key: scheduler.queue(functools.partial(self._run, key))
                for key, function in self._functions.items()
                if batchable(list(self.input_specs(key).values()), tf.nest.flatten(function.structured_outputs))
            }
        self.warmup_requests = self._warm_up()

    def batched_signatures(self):
        """The names of the signatures whose requests are batched (sorted list)."""
        return sorted(self._queues)

    def input_specs(self, signature_name):
        """{input name: tf.TensorSpec} of a signature; INVALID_ARGUMENT if it does not exist."""
        function = self._function(signature_name)
        return dict(function.structured_input_signature[1])

    def _function(self, signature_name):
        """The ConcreteFunction for `signature_name` ("" means serving_default)."""
        name = signature_name or DEFAULT_SIGNATURE
        if name not in self._functions:
            raise invalid(
                f"signature {name!r} not found in model {self.name} version {self.version}; "
                f"it has {', '.join(sorted(self._functions)) or 'no signatures'}"
            )
        return self._functions[name]

    def _warm_up(self):
        """Replays assets.extra/tf_serving_warmup_requests (PredictionLog TFRecords) as TF Serving
        does before a version goes live; returns how many requests ran.

        Raises:
            ValueError: a record that is not a predict_log, or more than MAX_WARMUP_RECORDS.
            ServingError: a warmup request the model refuses (the version then fails to load).
        """
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(path):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            if kind != "predict_log":
                raise ValueError(f"{path}: the devserver replays only predict_log warmup records, got {kind}")
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warmup records")
            request = log.predict_log.request
            self.predict_protos(request.model_spec.signature_name, request.inputs, request.output_filter)
        return count

    def predict_protos(self, signature_name, tensor_protos, output_filter=(), limits=RequestLimits()):
        """Like predict, with {input name: TensorProto} inputs (gRPC requests, warmup records),
        whose declared sizes must stay within `limits` (serving.limits.RequestLimits)."""
        specs = self.input_specs(signature_name)
        check_names(tensor_protos, specs)
        budget = limits.budget()
        arrays = {name: tensor_proto_to_array(name, proto, specs[name], budget)
                  for name, proto in sorted(tensor_protos.items())}
        return self.predict(signature_name, arrays, tuple(output_filter))

    def predict(self, signature_name, inputs, output_filter=()):
        """Validates inputs against the signature, then runs it: in a batch with other
        requests when the signature is batched, directly otherwise.

        Args:
            signature_name: the signature to run ("" means serving_default).
            inputs: {input name: np.ndarray}, e.g. question/context object arrays of bytes [B].
            output_filter: output names to return; empty means all.

        Returns:
            {output name: np.ndarray}, sorted by name.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature or output, missing/extra
            inputs, a wrong dtype or shape, an empty batch, inputs whose batch dims differ,
            token inputs of different shapes or with invalid values (TokenInputRules), a TF
            InvalidArgumentError while running, or (batched) more rows than max_batch_size;
            UNAVAILABLE (batched) when the batch queue is full or the server is stopping.
        """
        name = signature_name or DEFAULT_SIGNATURE
        function = self._function(name)
        specs = self.input_specs(name)
        check_names(inputs, specs)
        for key, array in inputs.items():
            check_input(key, array, specs[key])
        check_same_rows(inputs, specs)
        self._token_rules.check(inputs)
        output_names = sorted(function.structured_outputs)
        unknown = sorted(set(output_filter) - set(output_names))
        if unknown:
            raise invalid(
                f"output_filter names unknown output(s) {', '.join(unknown)}; "
                f"the signature has {', '.join(output_names)}"
            )
        queue = self._queues.get(name)
        outputs = queue.submit(inputs) if queue is not None else self._run(name, inputs)
        return {key: outputs[key] for key in sorted(output_filter or outputs)}

    def _run(self, signature_name, inputs):
        """Runs a signature once.

        Args:
            signature_name: an existing signature's name.
            inputs: {input name: np.ndarray [B, ...]}, already checked against the signature.

        Returns:
            {output name: np.ndarray [B, ...]}.

        Raises:
            ServingError: the model raised a tf.errors.OpError (`model_failure`; INVALID_ARGUMENT for
                tf.errors.InvalidArgumentError).
        """
        specs = self.input_specs(signature_name)
        tensors = {key: tf.constant(array, dtype=specs[key].dtype) for key, array in inputs.items()}
        try:
            outputs = self._functions[signature_name](**tensors)
        except tf.errors.OpError as error:  # the model's own failure, not the server's: no traceback, no "internal"
            raise model_failure(error) from None
        return {key: output_array(tensor) for key, tensor in outputs.items()}


class ModelManager:
    """Keeps the versions of one model that its version policy asks for, loaded and swappable.

    Args:
        name: the model name clients use.
        base_path: the directory holding integer-named version directories.
        policy: a FileSystemStoragePathSourceConfig.ServableVersionPolicy proto
            (latest {num_versions}, all {}, or specific {versions}); unset means latest 1.
        max_load_retries: how many times a version whose load failed is tried again, on later
            polls, before it is given up (0: it is tried once), as in TF Serving.
        scheduler: the BatchScheduler that batches the loaded versions' requests, or None.
        xla_enabled: --xla_cpu_compilation_enabled (see `Servable`).
    """

    def __init__(self, name, base_path, policy, max_load_retries=5, scheduler=None, xla_enabled=False):
        self.name = name
        self.base_path = base_path
        self._policy = policy
        self._max_load_retries = max_load_retries
        self._scheduler = scheduler
        self._xla_enabled = xla_enabled
        self._servables = {}
        self._lock = threading.Lock()
        self._failures = {}
        self._last_problem = None
        self._ignored = set()
        self._missing = set()

    def available_versions(self):
        """{version: its directory's name} of the version directories under base_path that hold a
        saved_model.pb, or None when base_path cannot be listed (logged).

        Other directories are ignored; each such name is logged once (hidden ones, such as the
        exporter's `.tmp-*` folders, silently). Of two names of one version ("7", "007") the one
        `road_tf.files.version_names` takes is served, as `road_tf.files.versions` takes it, and
        the other logged once as ignored.
        """
        try:
            names = os.listdir(self.base_path)
        except OSError as error:
            self._report_problem(f"cannot list base path {self.base_path}: {error.strerror}")
            return None
        for name in sorted(names):
            if version_number(name) is None:
                self._report_ignored(name, "a version directory is named by a base-10 integer (ASCII digits "
                                           f"0-9, at most {MAX_VERSION})")
        chosen, repeated = version_names(names, lambda name: holds_saved_model(os.path.join(self.base_path, name)))
        for name in repeated:
            version = version_number(name)
            self._report_ignored(name, f"{chosen[version]} names version {version} too")
        versions = {version: name for version, name in chosen.items()
                    if holds_saved_model(os.path.join(self.base_path, name))}
        if not versions:
            self._report_problem(f"no versions found under base path {self.base_path}")
        return versions

    def _report_ignored(self, name, why):
        """Logs once that directory `name` under base_path is not served, and `why`."""
        if name in self._ignored or name.startswith(".") or not os.path.isdir(os.path.join(self.base_path, name)):
            return
        self._ignored.add(name)
        LOG.warning("model %s: ignoring %s: %s", self.name, ascii(os.path.join(self.base_path, name)), why)

    def _report_problem(self, problem):
        """Logs a polling problem once, not on every poll."""
        if problem != self._last_problem:
            LOG.warning("model %s: %s", self.name, problem)
            self._last_problem = problem

    def _report_missing(self, available):
        """Logs once (and again when the set changes) the versions a `specific` policy names that are
        not among `available`: such a policy serves nothing until they appear."""
        missing = set()
        if self._policy.WhichOneof("policy_choice") == "specific":
            missing = set(self._policy.specific.versions) - set(available)
        if missing and missing != self._missing:
            LOG.warning("model %s: model_version_policy names version(s) %s, not (or not completely) under base "
                        "path %s: not served until they appear", self.name,
                        ", ".join(str(version) for version in sorted(missing)), self.base_path)
        self._missing = missing

    def wanted_versions(self, available):
        """The versions the policy wants among `available` (version ints, or a dict keyed by them)."""
        kind = self._policy.WhichOneof("policy_choice")
        if kind == "all":
            return set(available)
        if kind == "specific":
            return set(available) & set(self._policy.specific.versions)
        count = self._policy.latest.num_versions if kind == "latest" else 1
        return set(sorted(available)[-max(count, 1):])

    def poll(self):
        """Loads wanted versions that are not loaded yet, then unloads unwanted ones.

        Unwanted versions stay loaded until at least one wanted version is loaded, so a
        model whose newest version fails to load keeps serving the one it has. The failed loads of a
        version that is no longer on disk are forgotten: copied in again, it is loaded anew (as TF
        Serving does with a version that leaves and re-enters its aspired versions). A base path that
        cannot be listed changes nothing: what is loaded stays, and so do the counts of failed loads.
        """
        available = self.available_versions()
        if available is None:
            return
        if available:
            self._last_problem = None
        self._failures = {version: count for version, count in self._failures.items() if version in available}
        wanted = self.wanted_versions(available)
        self._report_missing(available)
        for version in sorted(wanted - set(self._servables)):
            self._load(version, available[version])
        with self._lock:
            if not wanted & set(self._servables):
                return
            dropped = sorted(set(self._servables) - wanted)
            self._servables = {v: s for v, s in self._servables.items() if v in wanted}
        for version in dropped:
            LOG.info("unloaded model %s version %d", self.name, version)

    def _load(self, version, name):
        """Loads one version from its directory `name` fully, then publishes it; logs failures and counts retries."""
        if self._failures.get(version, 0) > self._max_load_retries:
            return
        path = os.path.join(self.base_path, name)
        started = time.monotonic()
        try:
            servable = Servable(self.name, version, path, self._scheduler, self._xla_enabled)
        except Exception as error:  # any load failure must leave the old version serving
            self._failures[version] = self._failures.get(version, 0) + 1
            given_up = self._failures[version] > self._max_load_retries
            LOG.error(
                "failed to load model %s version %d from %s (attempt %d%s): %s",
                self.name, version, path, self._failures[version],
                ", giving up" if given_up else "", first_line(error) or type(error).__name__,
            )
            return
        with self._lock:
            self._servables = {**self._servables, version: servable}
        LOG.info(
            "loaded model %s version %d from %s in %.2f s (%d warmup requests)",
            self.name, version, path, time.monotonic() - started, servable.warmup_requests,
        )
        if self._scheduler is not None:
            LOG.info(
                "model %s version %d batches signature(s): %s", self.name, version,
                ", ".join(servable.batched_signatures()) or "none (no signature has a batch dim 0 everywhere)",
            )

    def unload_all(self):
        """Drops every loaded version (at shutdown), logging each."""
        with self._lock:
            dropped, self._servables = sorted(self._servables), {}
        for version in dropped:
            LOG.info("unloaded model %s version %d", self.name, version)

    def loaded_versions(self):
        """The loaded versions, ascending (list of ints)."""
        with self._lock:
            return sorted(self._servables)

    def get(self, version=None):
        """The Servable for `version`, or the newest loaded one when version is None.

        Raises:
            ServingError(NOT_FOUND): nothing loaded, or that version is not loaded.
        """
        with self._lock:
            servables = self._servables
        if version is None:
            if not servables:
                raise not_found(f"Servable not found for request: Latest({self.name})")
            return servables[max(servables)]
        if version not in servables:
            raise not_found(f"Servable not found for request: Specific({self.name}, {version})")
        return servables[version]


class ModelRegistry:
    """All served models by name, and the thread that polls their base paths.

    Args:
        managers: ModelManager objects (distinct names).
        poll_wait_seconds: seconds between polls; 0 polls only once, at start().
    """

    def __init__(self, managers, poll_wait_seconds):
        self._managers = {manager.name: manager for manager in managers}
        self._poll_wait_seconds = poll_wait_seconds
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        """Loads every model's wanted versions (blocking), then starts polling if enabled.

        Raises:
            RoadError: polling is off and a model has no version loaded: it would never serve.
        """
        self.poll_all()
        if self._poll_wait_seconds > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)
            self._thread.start()
            return
        for manager in self._managers.values():
            if not manager.loaded_versions():
                raise RoadError(f"model {manager.name}: no version loaded from {manager.base_path} (the log above "
                                "says why), and --file_system_poll_wait_seconds 0 never looks again")

    def poll_all(self):
        """Polls every model once."""
        for manager in self._managers.values():
            manager.poll()

    def _poll_loop(self):
        """Polls until stop(); a failing poll is logged and retried next time."""
        while not self._stop.wait(self._poll_wait_seconds):
            try:
                self.poll_all()
            except Exception:  # the poller must survive anything a file system throws
                LOG.exception("polling for new model versions failed")

    def stop(self):
        """Stops polling and unloads every model."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for manager in self._managers.values():
            manager.unload_all()

    def manager(self, name):
        """The ModelManager for `name`; NOT_FOUND if no such model is configured."""
        if name not in self._managers:
            raise not_found(f"Servable not found for request: model {name!r} is not served")
        return self._managers[name]

    def get(self, name, version=None):
        """The Servable of model `name` at `version` (None: newest); raises NOT_FOUND."""
        return self.manager(name).get(version)

