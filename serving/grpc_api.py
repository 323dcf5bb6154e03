"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus). Other methods (Classify, Regress, MultiInference, HandleReloadConfigRequest)
answer UNIMPLEMENTED.

A message that does not parse (e.g. invalid UTF-8 in a string field) answers INVALID_ARGUMENT;
at most 2 x --grpc_max_threads calls are taken at once, further ones get RESOURCE_EXHAUSTED.
Every refused call logs one line.
"""

import functools
import logging
from concurrent import futures

import grpc
import tensorflow as tf
from google.protobuf import any_pb2, message
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from serving.apis import model_spec, signature_def_map, status_response
from serving.errors import ServingError, invalid, printable, status_message
from serving.servables import DEFAULT_SIGNATURE

LOG = logging.getLogger("serving.devserver")

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"


class _Undecodable:
    """Stands for a request message that failed to parse (the handler answers INVALID_ARGUMENT)."""

    def __init__(self, message_class, error):
        self.problem = f"the request is not a valid {message_class.DESCRIPTOR.full_name}: {error}"


def _parser(message_class):
    """A request deserializer for `message_class` that returns _Undecodable instead of raising
    (gRPC would answer INTERNAL and log a traceback)."""

    def parse(data):
        try:
            return message_class.FromString(data)
        except message.DecodeError as error:
            return _Undecodable(message_class, error)

    return parse


def _rpc(method):
    """Turns ServingError (and undecodable requests) into the matching gRPC status with one log
    line, and logs unexpected errors as INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            if isinstance(request, _Undecodable):
                raise invalid(request.problem)
            return method(self, request, context)
        except ServingError as error:
            LOG.info("rejected gRPC %s from %s: %s: %s", method.__name__, printable(context.peer()), error.code,
                     printable(error.message))
            context.abort(getattr(grpc.StatusCode, error.code), status_message(error.message))
        except Exception as error:  # a bug must not reach the client as a bare UNKNOWN
            LOG.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, status_message(f"internal error: {type(error).__name__}: {error}"))

    return wrapper


def _requested_version(spec):
    """A ModelSpec's version (int) or None for the newest; version labels are refused."""
    if spec.WhichOneof("version_choice") == "version_label":
        raise invalid("version labels are not supported by the devserver; ask for a version number")
    return spec.version.value if spec.HasField("version") else None


class PredictionServicer:
    """Predict and GetModelMetadata over a ModelRegistry.

    Args:
        registry: the ModelRegistry; limits: the serving.limits.RequestLimits of every request.
        in_flight: the serving.batching.InFlight that counts each Predict call while it runs.
    """

    def __init__(self, registry, limits, in_flight):
        self._registry = registry
        self._limits = limits
        self._in_flight = in_flight

    @_rpc
    def Predict(self, request, context):  # noqa: N802  (the generated API's naming)
        """PredictRequest -> PredictResponse (outputs as TensorProtos, filtered by output_filter)."""
        with self._in_flight:
            return self._predict(request)

    def _predict(self, request):
        """Predict's work, counted in flight."""
        servable = self._registry.get(request.model_spec.name, _requested_version(request.model_spec))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        outputs = servable.predict_protos(signature_name, request.inputs, request.output_filter, self._limits)
        response = predict_pb2.PredictResponse(model_spec=model_spec(servable, signature_name))
        for name, array in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(array))
        return response

    @_rpc
    def GetModelMetadata(self, request, context):  # noqa: N802
        """GetModelMetadataRequest -> response with metadata["signature_def"] = Any(SignatureDefMap)."""
        fields = set(request.metadata_field)
        if not fields:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        if fields != {"signature_def"}:
            raise invalid(f"metadata field(s) {', '.join(sorted(fields - {'signature_def'}))} are not supported")
        servable = self._registry.get(request.model_spec.name, _requested_version(request.model_spec))
        packed = any_pb2.Any()
        packed.Pack(signature_def_map(servable))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec(servable))
        response.metadata["signature_def"].CopyFrom(packed)
        return response


class ModelServicer:
    """GetModelStatus over a ModelRegistry."""

    def __init__(self, registry):
        self._registry = registry

    @_rpc
    def GetModelStatus(self, request, context):  # noqa: N802
        """GetModelStatusRequest -> GetModelStatusResponse (every loaded version, or the one asked)."""
        return status_response(self._registry, request.model_spec.name, _requested_version(request.model_spec))


def _handler(function, request_class, response_class):
    """A unary-unary method handler with a lenient request parser (_parser)."""
    return grpc.unary_unary_rpc_method_handler(
        function, request_deserializer=_parser(request_class), response_serializer=response_class.SerializeToString
    )


def build_server(registry, max_request_bytes, max_threads, limits, in_flight):
    """A grpc.Server (not started, no port yet) with both services registered.

    Args:
        registry: the ModelRegistry; max_request_bytes: the largest message accepted;
        max_threads: worker threads (2 x max_threads calls are taken at once);
        limits: serving.limits.RequestLimits for predict requests;
        in_flight: the serving.batching.InFlight that counts Predict calls.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        # so_reuseport off: otherwise a second server binds the same port and silently shares it.
        options=[("grpc.max_receive_message_length", max_request_bytes), ("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=2 * max_threads,
    )
    prediction, models = PredictionServicer(registry, limits, in_flight), ModelServicer(registry)
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler(PREDICTION_SERVICE, {
            "Predict": _handler(prediction.Predict, predict_pb2.PredictRequest, predict_pb2.PredictResponse),
            "GetModelMetadata": _handler(prediction.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest,
                                         get_model_metadata_pb2.GetModelMetadataResponse),
        }),
        grpc.method_handlers_generic_handler(MODEL_SERVICE, {
            "GetModelStatus": _handler(models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest,
                                       get_model_status_pb2.GetModelStatusResponse),
        }),
    ])
    return server
