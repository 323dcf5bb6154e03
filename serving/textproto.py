"""Reading the devserver's text proto config files (--model_config_file, --batching_parameters_file)."""

from google.protobuf import text_format

from road_tf.errors import ConfigError
from road_tf.files import read_config_bytes


def read_text_proto(path, message, what):
    """Parses the text proto file at `path` into `message` and returns it.

    Args:
        path: the file (read by `files.read_config_bytes`: a regular file of at most MAX_CONFIG_BYTES).
        message: an empty proto message of the file's type.
        what: the file's role in error messages ("model config", "batching parameters").

    Raises:
        ConfigError naming `path`: a folder, device or pipe, an unreadable file, one above
        MAX_CONFIG_BYTES, not UTF-8 text, or not a text proto of the message's type.
    """
    data = read_config_bytes(path, what)
    try:
        return text_format.Parse(data.decode("utf-8"), message)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except text_format.ParseError as error:
        raise ConfigError(f"{path}: not a {message.DESCRIPTOR.name} text proto: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a {message.DESCRIPTOR.name} text proto: nested too deeply") from None
