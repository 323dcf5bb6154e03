"""Reading the devserver's text proto config files (--model_config_file, --batching_parameters_file)."""

from google.protobuf import text_format

from road_tf.errors import ConfigError
from road_tf.files import non_file_kind

MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file read (1 MiB); TF Serving's config files take a few hundred bytes."""


def read_text_proto(path, message, what):
    """Parses the text proto file at `path` into `message` and returns it.

    Args:
        path: the file; it must be a regular file (a device such as /dev/zero never ends).
        message: an empty proto message of the file's type.
        what: the file's role in error messages ("model config", "batching parameters").

    Raises:
        ConfigError naming `path`: a folder, device or pipe, an unreadable file, one above
        MAX_CONFIG_BYTES, not UTF-8 text, or not a text proto of the message's type.
    """
    try:
        kind = non_file_kind(path)
        if kind:
            raise ConfigError(f"{path}: {kind}, not a {what} file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES:,} bytes, too large for a {what} file")
    try:
        return text_format.Parse(data.decode("utf-8"), message)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except text_format.ParseError as error:
        raise ConfigError(f"{path}: not a {message.DESCRIPTOR.name} text proto: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a {message.DESCRIPTOR.name} text proto: nested too deeply") from None
