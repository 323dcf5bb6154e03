"""Atomic file writes: readers see the old file or the whole new one, never half of one."""

import os
import pathlib
import tempfile


def write_atomic(path, payload):
    """Writes `payload` (bytes, or str as UTF-8) to `path` (mode 644) via a temporary file and a rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as tmp_file:
            tmp_file.write(payload)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise
