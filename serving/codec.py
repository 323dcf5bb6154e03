"""JSON <-> numpy conversion following TF Serving's REST "JSON mapping" (numpy only, no TF).

Tensors travel as nested JSON lists. DT_STRING values are JSON strings (UTF-8), or
`{"b64": "..."}` objects for binary data; outputs whose name ends in `_bytes` are
always sent as `{"b64": ...}`. Floats may be NaN/Infinity (Python's json accepts them).
"""

import base64
import binascii

import numpy as np

from serving.errors import invalid
from serving.limits import MAX_RANK

NUMPY_DTYPES = {
    "string": np.object_,
    "bool": np.bool_,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
}
"""TF dtype name (tf.DType.name) -> numpy dtype, for every dtype the JSON mapping covers."""
VALUE_FIELDS = {
    "float32": "float_val", "float64": "double_val", "int32": "int_val", "int16": "int_val", "int8": "int_val",
    "uint8": "int_val", "uint16": "int_val", "int64": "int64_val", "uint32": "uint32_val", "uint64": "uint64_val",
    "bool": "bool_val", "string": "string_val", "float16": "half_val", "bfloat16": "half_val",
}
"""TF dtype name -> the TensorProto field holding its values when tensor_content is empty."""
JSON_DTYPES = frozenset(np.dtype(kind) for kind in NUMPY_DTYPES.values())
"""The numpy dtypes of the tensors JSON can carry (strings are object arrays of bytes)."""


def _shape_and_leaves(value, where, depth=0):
    """Nested lists -> (shape tuple, flat list of leaves); ragged nesting, or nesting deeper
    than MAX_RANK, is an error.

    A `{"b64": ...}` object is a leaf, as is any non-list value.
    """
    if not isinstance(value, list):
        return (), [value]
    if depth == MAX_RANK:
        raise invalid(f"{where}: lists nested deeper than {MAX_RANK} levels")
    if not value:
        return (0,), []
    shapes, leaves = set(), []
    for item in value:
        shape, item_leaves = _shape_and_leaves(item, where, depth + 1)
        shapes.add(shape)
        leaves.extend(item_leaves)
    if len(shapes) != 1:
        raise invalid(f"{where}: nested lists have different lengths (a ragged tensor)")
    return (len(value),) + shapes.pop(), leaves


def _string_leaf(leaf, where, limits):
    """A JSON string or {"b64": ...} -> bytes, at most limits.max_string_bytes long.

    Raises:
        ServingError(INVALID_ARGUMENT): another JSON type, bad base64, a lone surrogate (such as
        an escaped "\\ud800", which has no UTF-8 form), or a string above the limit.
    """
    if isinstance(leaf, str):
        try:
            value = leaf.encode("utf-8")
        except UnicodeEncodeError as error:
            raise invalid(f"{where}: a string holds the lone surrogate {leaf[error.start]!a}, which is not "
                          "valid Unicode text") from None
    elif isinstance(leaf, dict) and set(leaf) == {"b64"} and isinstance(leaf["b64"], str):
        try:
            value = base64.b64decode(leaf["b64"], validate=True)
        except (binascii.Error, ValueError) as error:
            raise invalid(f"{where}: bad base64 in {{'b64': ...}}: {error}") from None
    else:
        raise invalid(f"{where}: expects strings (dtype string), got {_json_kind(leaf)}")
    limits.check_string(len(value), where)
    return value


def _number_leaf(leaf, dtype_name, where):
    """A JSON number (an integer for integer dtypes; true/false for bool) -> Python scalar."""
    if dtype_name == "bool":
        if isinstance(leaf, bool):
            return leaf
        raise invalid(f"{where}: expects true/false (dtype bool), got {_json_kind(leaf)}")
    if isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
        raise invalid(f"{where}: expects numbers (dtype {dtype_name}), got {_json_kind(leaf)}")
    if dtype_name.startswith(("int", "uint")):
        if not isinstance(leaf, int):
            raise invalid(f"{where}: expects integers (dtype {dtype_name}), got {leaf!r}")
        limits = np.iinfo(NUMPY_DTYPES[dtype_name])
        if not limits.min <= leaf <= limits.max:
            raise invalid(f"{where}: {leaf} is out of range for dtype {dtype_name}")
    return leaf


def _json_kind(leaf):
    """A short description of a JSON value's type, for error messages."""
    if isinstance(leaf, bool):
        return "a boolean"
    if isinstance(leaf, (int, float)):
        return f"the number {leaf!r}"
    if isinstance(leaf, str):
        return "a string"
    if leaf is None:
        return "null"
    return "an object"


def json_to_array(value, dtype_name, where, budget):
    """A JSON tensor (nested lists of leaves) -> np.ndarray of the TF dtype `dtype_name`.

    Args:
        value: the decoded JSON value; a scalar gives a 0-d array.
        dtype_name: tf.DType.name of the signature input (e.g. "string", "int32").
        where: names the input in error messages (e.g. "input 'question'").
        budget: the request's serving.limits.RequestBudget; this tensor's size is taken from it.

    Raises:
        ServingError(INVALID_ARGUMENT): unsupported dtype, ragged lists, wrong leaf type, or a
        size above the request limits.
    """
    if dtype_name not in NUMPY_DTYPES:
        raise invalid(f"{where}: dtype {dtype_name} inputs are not supported over JSON")
    shape, leaves = _shape_and_leaves(value, where)
    budget.take(shape, where)
    if dtype_name == "string":
        converted = [_string_leaf(leaf, where, budget.limits) for leaf in leaves]
    else:
        converted = [_number_leaf(leaf, dtype_name, where) for leaf in leaves]
    array = np.empty(len(converted), dtype=NUMPY_DTYPES[dtype_name])
    array[:] = converted
    return array.reshape(shape)


def _json_leaf(value, name):
    """One numpy scalar -> a JSON-ready Python value (str, b64 object, int, float, bool)."""
    if isinstance(value, bytes):
        if name.endswith("_bytes"):
            return {"b64": base64.b64encode(value).decode("ascii")}
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (np.float16, np.float32)):
        return float(str(value))
    return value.item()


def array_to_json(array, name):
    """np.ndarray output tensor -> nested lists of JSON-ready values.

    float16/float32 values print with their shortest round-trip repr (0.1, not
    0.10000000149011612). Strings decode as UTF-8 unless `name` ends in `_bytes`.

    Raises:
        ServingError(INVALID_ARGUMENT): a dtype the JSON mapping does not cover (complex64,
        bfloat16, ...), as TF Serving answers "Failed to write JSON value for tensor type".
    """
    if array.dtype not in JSON_DTYPES:
        raise invalid(f"output {name!r} has dtype {array.dtype}, which the JSON mapping does not cover")
    leaves = np.empty(array.size, dtype=object)
    leaves[:] = [_json_leaf(value, name) for value in array.reshape(-1)]
    return leaves.reshape(array.shape).tolist()


def rows_to_columns(instances, input_names):
    """Row format ("instances") -> {input name: list of per-instance values}.

    With a single input the instances may be bare values; otherwise each instance is
    an object with exactly the signature's input names.

    Raises:
        ServingError(INVALID_ARGUMENT): not a list, empty, or instances with missing/extra names.
    """
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list, one item per example")
    if not instances:
        raise invalid("empty batch: 'instances' is an empty list")
    names = set(input_names)
    if len(names) == 1 and not all(isinstance(item, dict) and set(item) == names for item in instances):
        return {input_names[0]: instances}
    for index, item in enumerate(instances):
        if not isinstance(item, dict):
            raise invalid(f"instance {index} must be an object keyed by input name")
        missing, extra = sorted(names - set(item)), sorted(set(item) - names)
        if missing:
            raise invalid(f"instance {index} is missing input(s) {', '.join(missing)}")
        if extra:
            raise invalid(f"instance {index} has unknown input(s) {', '.join(extra)}")
    return {name: [item[name] for item in instances] for name in input_names}


def columns_to_rows(outputs):
    """{output name: JSON list over the batch} -> the row-format "predictions" value.

    A single output gives the bare list; several give one object per example.

    Raises:
        ServingError(INVALID_ARGUMENT): a scalar output (no 0-th dimension, as TF Serving's "has no
        shape information"), or outputs that do not share their 0-th dimension.
    """
    scalars = sorted(name for name, value in outputs.items() if not isinstance(value, list))
    if scalars:
        raise invalid(f"output {scalars[0]!r} has no batch dimension (a scalar); use the columnar format ('inputs')")
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    lengths = {name: len(value) for name, value in outputs.items()}
    if len(set(lengths.values())) != 1:
        raise invalid(
            f"outputs have different batch sizes {lengths}; use the columnar format ('inputs')"
        )
    batch = next(iter(lengths.values()))
    return [{name: value[row] for name, value in outputs.items()} for row in range(batch)]
