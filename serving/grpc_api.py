"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus). Classify, Regress, MultiInference and HandleReloadConfigRequest answer
UNIMPLEMENTED (the generated base classes' default).
"""

import functools
import logging
from concurrent import futures

import grpc
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.apis import model_spec, signature_def_map, status_response
from serving.errors import ServingError, invalid
from serving.servables import DEFAULT_SIGNATURE

LOG = logging.getLogger("serving.devserver")


def _rpc(method):
    """Turns ServingError into the matching gRPC status and logs unexpected errors as INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as error:
            context.abort(getattr(grpc.StatusCode, error.code), error.message)
        except Exception as error:  # a bug must not reach the client as a bare UNKNOWN
            LOG.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}")

    return wrapper


def _requested_version(spec):
    """A ModelSpec's version (int) or None for the newest; version labels are refused."""
    if spec.WhichOneof("version_choice") == "version_label":
        raise invalid("version labels are not supported by the devserver; ask for a version number")
    return spec.version.value if spec.HasField("version") else None


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata over a ModelRegistry."""

    def __init__(self, registry):
        self._registry = registry

    @_rpc
    def Predict(self, request, context):  # noqa: N802  (the generated API's naming)
        """PredictRequest -> PredictResponse (outputs as TensorProtos, filtered by output_filter)."""
        servable = self._registry.get(request.model_spec.name, _requested_version(request.model_spec))
        signature_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        outputs = servable.predict_protos(signature_name, request.inputs, request.output_filter)
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


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus over a ModelRegistry."""

    def __init__(self, registry):
        self._registry = registry

    @_rpc
    def GetModelStatus(self, request, context):  # noqa: N802
        """GetModelStatusRequest -> GetModelStatusResponse (every loaded version, or the one asked)."""
        return status_response(self._registry, request.model_spec.name, _requested_version(request.model_spec))


def build_server(registry, max_request_bytes, max_threads):
    """A grpc.Server (not started, no port yet) with both services registered."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        # so_reuseport off: otherwise a second server binds the same port and silently shares it.
        options=[("grpc.max_receive_message_length", max_request_bytes), ("grpc.so_reuseport", 0)],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)
    return server
