"""Model status and metadata answers shared by the REST and gRPC front ends (TF Serving protos)."""

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving.errors import not_found


def model_spec(servable, signature_name=""):
    """The ModelSpec proto naming a Servable's model, version and (optional) signature."""
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


def status_response(registry, name, version=None):
    """GetModelStatusResponse for one version, or for every loaded version when version is None.

    Raises:
        ServingError(NOT_FOUND): unknown model, version not loaded, or nothing loaded.
    """
    manager = registry.manager(name)
    if version is not None:
        versions = [manager.get(version).version]
    else:
        versions = manager.loaded_versions()
        if not versions:
            raise not_found(f"Could not find any versions of model {name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for loaded in versions:
        status = response.model_version_status.add(
            version=loaded, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE
        )
        status.status.SetInParent()
    return response


def signature_def_map(servable):
    """A Servable's SignatureDefs as the SignatureDefMap proto GetModelMetadata returns."""
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(signature)
    return signatures


def to_json(message):
    """A proto -> dict in TF Serving's REST rendering (proto field names, defaults included)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, including_default_value_fields=True
    )


def status_json(registry, name, version=None):
    """The REST model status body: {"model_version_status": [{"version": "3", ...}]}."""
    return to_json(status_response(registry, name, version))


def metadata_json(registry, name, version=None):
    """The REST metadata body: {"model_spec": {...}, "metadata": {"signature_def": {...}}}."""
    servable = registry.get(name, version)
    return {
        "model_spec": to_json(model_spec(servable)),
        "metadata": {"signature_def": to_json(signature_def_map(servable))},
    }
