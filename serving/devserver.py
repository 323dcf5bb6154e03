"""A development stand-in for `tensorflow_model_server`: same flags, REST and gRPC APIs.

    python -m serving.devserver --port=8500 --rest_api_port=8501 \\
        --model_name=road_demo --model_base_path=$PWD/saved_models/road_demo
    python -m serving.devserver --model_config_file=serving/models.config

It loads the newest integer version under each base path (as the version policy asks),
polls every --file_system_poll_wait_seconds for new versions and swaps them in without
dropping requests. With --enable_batching it batches concurrent requests as TF Serving does
(serving/batching.py). The production path is the real TF Serving binary (see serving/README.md).
"""

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time

from tensorflow_serving.config import model_server_config_pb2

from road_tf.errors import ArgumentParser, ConfigError, RoadError, cli_main, finite_float, whole_number
from road_tf.files import check_utf8, entry_kind
from serving.batching import BatchingOptions, BatchScheduler, InFlight, read_batching_parameters
from serving.grpc_api import build_server
from serving.limits import (
    DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_INSTANCES, DEFAULT_MAX_STRING_BYTES, MAX_PORT, MAX_SECONDS, RequestLimits,
    host_port,
)
from serving.rest import RestServer
from serving.servables import LOG, ModelManager, ModelRegistry
from serving.textproto import read_text_proto

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
DEFAULT_REST_MAX_CONNECTIONS = 64
DEFAULT_REST_TIMEOUT_SECONDS = 10.0
MAX_GRPC_BYTES = 2**31 - 1
"""The largest --max_request_bytes: gRPC takes its message size limit as a C int."""
LIMIT_FLAGS = (
    ("max_request_elements", whole_number, DEFAULT_MAX_ELEMENTS,
     "tensor elements per predict request, all inputs together"),
    ("max_string_bytes", whole_number, DEFAULT_MAX_STRING_BYTES, "bytes per string element, e.g. one context"),
    ("max_request_instances", whole_number, DEFAULT_MAX_INSTANCES, "rows (questions) per predict request"),
    ("rest_max_connections", whole_number, DEFAULT_REST_MAX_CONNECTIONS,
     "REST connections served at once; more get 503"),
    ("rest_timeout_seconds", finite_float, DEFAULT_REST_TIMEOUT_SECONDS,
     "seconds (at most a day) a REST request may take to arrive whole, and a connection to stay idle"),
)
"""The devserver's own limits on requests and connections: (flag, type, default, help)."""
POSITIVE_FLAGS = ("grpc_max_threads", "max_request_bytes", "max_request_elements", "max_string_bytes",
                  "max_request_instances", "rest_max_connections", "rest_timeout_seconds")
MAXIMA = {"port": MAX_PORT, "rest_api_port": MAX_PORT, "max_request_bytes": MAX_GRPC_BYTES}
"""Flag -> its largest value."""
SECONDS_FLAGS = ("rest_timeout_seconds", "file_system_poll_wait_seconds")
MIN_POLL_SECONDS = 0.1
"""The shortest wait between polls of the model folders: a shorter one would list them in a busy loop."""
WILDCARD_HOSTS = ("0.0.0.0", "::")
"""Hosts that mean every address; gRPC listens on both IPv4 and IPv6 for either."""
PRINTABLE_NAME = "a model name must be printable (a line break or control character would split the log lines)"


def parse_bool(text):
    """A TF Serving boolean flag value ("true"/"false"/"1"/"0", in any case) -> bool."""
    lowered = text.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def unbracketed(host):
    """The --host value without the brackets of an IPv6 literal written as in a URL ("[::1]" -> "::1")."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_args(argv):
    """Command-line flags (tensorflow_model_server's names) -> argparse.Namespace."""
    parser = ArgumentParser(prog="python -m serving.devserver", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=whole_number, default=8500, help="gRPC port (default 8500)")
    parser.add_argument(
        "--rest_api_port", type=whole_number, default=8501, help="REST port; 0 disables REST (default 8501)"
    )
    parser.add_argument("--model_name", default="default", help="model name (ignored with a config file)")
    parser.add_argument("--model_base_path", default="", help="directory of integer version directories")
    parser.add_argument("--model_config_file", default="", help="ModelServerConfig text proto")
    parser.add_argument("--host", default="127.0.0.1", type=unbracketed,
                        help="address to listen on: a name, an IPv4 or an IPv6 address (default 127.0.0.1)")
    parser.add_argument(
        "--max_request_bytes",
        type=whole_number,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help=f"largest REST body / gRPC message accepted, at most {MAX_GRPC_BYTES:,} (default 4 MiB)",
    )
    for name, kind, default, text in LIMIT_FLAGS:
        parser.add_argument(f"--{name}", type=kind, default=default, help=f"{text} (default {default:,})")
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=finite_float,
        default=1.0,
        help=f"seconds between polls for new versions, from {MIN_POLL_SECONDS} to a day; 0 loads once and never "
             "polls (default 1)",
    )
    parser.add_argument(
        "--max_num_load_retries", type=whole_number, default=5,
        help="times a failed load is retried, on later polls (default 5)",
    )
    parser.add_argument("--grpc_max_threads", type=whole_number, default=32, help="gRPC worker threads (default 32)")
    parser.add_argument(
        "--enable_batching", type=parse_bool, nargs="?", const=True, default=False,
        help="batch concurrent predict requests (default false)",
    )
    parser.add_argument(
        "--xla_cpu_compilation_enabled", type=parse_bool, nargs="?", const=True, default=False,
        help="serve models that compile with XLA (export.jit_compile); refused without it (default false)",
    )
    parser.add_argument(
        "--batching_parameters_file", default="",
        help="BatchingParameters text proto (needs --enable_batching; default: TF Serving's defaults)",
    )
    args = parser.parse_args(argv)
    _check_args(args)
    return args


def _check_args(args):
    """Raises ConfigError for flag values out of range and combinations tensorflow_model_server would refuse."""
    if args.rest_api_port and args.rest_api_port == args.port:
        raise ConfigError(f"--port and --rest_api_port must differ (both are {args.port})")
    for flag in ("port", "rest_api_port", "file_system_poll_wait_seconds", "max_num_load_retries"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag} must not be negative, got {getattr(args, flag)}")
    for flag, maximum in MAXIMA.items():
        if getattr(args, flag) > maximum:
            raise ConfigError(f"--{flag} must be at most {maximum}, got {getattr(args, flag)}")
    for flag in POSITIVE_FLAGS:
        if not getattr(args, flag) > 0:
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if 0 < args.file_system_poll_wait_seconds < MIN_POLL_SECONDS:
        raise ConfigError(f"--file_system_poll_wait_seconds must be 0 (load once) or at least {MIN_POLL_SECONDS} "
                          f"seconds, got {args.file_system_poll_wait_seconds}")
    for flag in SECONDS_FLAGS:
        if getattr(args, flag) > MAX_SECONDS:
            raise ConfigError(f"--{flag} must be at most {MAX_SECONDS:,} seconds (a day), got {getattr(args, flag)}")
    for flag in ("model_name", "model_base_path", "host"):
        check_utf8(getattr(args, flag), f"--{flag}")
    if not args.host:
        raise ConfigError("--host: must not be empty (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    if not args.model_name.isprintable():
        raise ConfigError(f"--model_name {args.model_name!r}: {PRINTABLE_NAME}")
    if not args.model_config_file and not args.model_base_path:
        raise ConfigError("give --model_config_file, or --model_name and --model_base_path")
    if not args.model_config_file and not args.model_name:
        raise ConfigError("--model_name: must not be empty (no REST URL can name the model: /v1/models/:predict)")
    if args.batching_parameters_file and not args.enable_batching:
        raise ConfigError("--batching_parameters_file is set without --enable_batching (tensorflow_model_server "
                          "refuses this too)")


def batching_options(args):
    """The BatchingOptions --enable_batching asks for (from --batching_parameters_file, or TF
    Serving's defaults without one), or None without --enable_batching.

    Raises:
        ConfigError: an unreadable, unparsable or invalid batching parameters file.
    """
    if not args.enable_batching:
        return None
    if not args.batching_parameters_file:
        return BatchingOptions()
    return read_batching_parameters(args.batching_parameters_file)


def read_model_config(path):
    """A ModelServerConfig text proto file -> list of ModelConfig protos.

    Raises:
        ConfigError: a file read_text_proto refuses, custom_model_config, a model without a
        name or base_path, a non-TensorFlow platform, version_labels, or duplicate names.
    """
    config = read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "model config")
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{path}: needs a model_config_list (custom_model_config is not supported)")
    names = set()
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ConfigError(f"{path}: every config entry needs a name and a base_path")
        if not model.name.isprintable():
            raise ConfigError(f"{path}: model {model.name!r}: {PRINTABLE_NAME}")
        if "\x00" in model.base_path:
            raise ConfigError(f"{path}: model {model.name}: base_path holds a NUL character, which no path can")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{path}: model {model.name}: platform {model.model_platform!r} is not supported")
        if model.version_labels:
            raise ConfigError(f"{path}: model {model.name}: version_labels are not supported by the devserver")
        if model.name in names:
            raise ConfigError(f"{path}: model {model.name} is configured twice")
        names.add(model.name)
    if not names:
        raise ConfigError(f"{path}: the model_config_list is empty")
    return list(config.model_config_list.config)


def model_configs(args):
    """The models to serve, from --model_config_file or --model_name/--model_base_path.

    Raises:
        ConfigError: a base path that is there but is not a folder (it can never hold versions; a
        path not made yet may be, later, as with TF Serving).
    """
    if args.model_config_file:
        configs = read_model_config(args.model_config_file)
    else:
        configs = [model_server_config_pb2.ModelConfig(name=args.model_name, base_path=args.model_base_path)]
    for model in configs:
        kind = entry_kind(model.base_path)
        if kind not in (None, "a folder"):
            raise ConfigError(f"model {model.name}: base path {model.base_path}: is {kind}, not a folder, so it can "
                              "hold no versions")
    return configs


def request_limits(args):
    """The RequestLimits of the --max_request_elements/--max_string_bytes/--max_request_instances flags."""
    return RequestLimits(args.max_request_elements, args.max_string_bytes, args.max_request_instances)


class DevServer:
    """The gRPC and REST front ends over one ModelRegistry.

    Args:
        registry: the ModelRegistry (loaded and polled by start()).
        host: address to listen on; grpc_port / rest_port: ports (rest_port 0: no REST).
        max_request_bytes: largest REST body / gRPC message accepted.
        grpc_max_threads: gRPC worker threads.
        scheduler: the BatchScheduler the registry's models batch with (stopped by stop()), or None;
            the front ends count their requests in its InFlight, if it has one.
        limits: the serving.limits.RequestLimits of predict requests.
        rest_max_connections: REST connections served at once.
        rest_timeout_seconds: seconds a REST request may take to arrive, and a connection to idle.
    """

    def __init__(self, registry, host, grpc_port, rest_port, max_request_bytes, grpc_max_threads, scheduler=None,
                 limits=RequestLimits(), rest_max_connections=DEFAULT_REST_MAX_CONNECTIONS,
                 rest_timeout_seconds=DEFAULT_REST_TIMEOUT_SECONDS):
        self.registry = registry
        self.scheduler = scheduler
        self._host = host
        self._grpc_port = grpc_port
        self._rest_port = rest_port
        self._max_request_bytes = max_request_bytes
        self._grpc_max_threads = grpc_max_threads
        self._limits = limits
        self._rest_max_connections = rest_max_connections
        self._rest_timeout_seconds = rest_timeout_seconds
        self._in_flight = getattr(scheduler, "in_flight", None) or InFlight()
        self._grpc = None
        self._grpc_started = False
        self._rest = None
        self._rest_thread = None

    def start(self):
        """Checks both ports, loads the models, then listens and serves on both ports: as with TF
        Serving, a connection made while the models load is refused, not left waiting.

        Raises:
            RoadError: a port is in use (found before any model loads, which can take minutes), or
                was taken by another server while they loaded.
        """
        probes = reserve_port(self._host, self._grpc_port, "gRPC")
        try:
            if self._rest_port:
                self._rest = self._bound_rest_server()
            self.registry.start()
        finally:
            for probe in probes:
                probe.close()
        self._grpc = build_server(self.registry, self._max_request_bytes, self._grpc_max_threads, self._limits,
                                  self._in_flight)
        address = host_port(self._host, self._grpc_port)
        try:
            bound = self._grpc.add_insecure_port(address)
        except RuntimeError as error:
            raise listen_error("gRPC", self._host, self._grpc_port, error) from None
        if not bound:
            raise listen_error("gRPC", self._host, self._grpc_port)
        if self._rest is not None:
            try:
                self._rest.server_activate()
            except OSError as error:  # another server took the port while the models loaded
                raise listen_error("REST", self._host, self._rest_port, error.strerror or error) from None
        self._grpc.start()
        self._grpc_started = True
        LOG.info("gRPC API at %s", host_port(self._host, bound))
        if self._rest is not None:
            self._rest_thread = threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True)
            self._rest_thread.start()
            LOG.info("REST API at http://%s", host_port(self._host, self._rest.server_address[1]))

    def _bound_rest_server(self):
        """The RestServer, its port bound but not yet listening (`server_activate`)."""
        rest = None
        try:
            rest = RestServer((self._host, self._rest_port), self.registry, self._max_request_bytes, self._limits,
                              self._rest_max_connections, self._rest_timeout_seconds, self._in_flight)
            rest.server_bind()
        except OSError as error:  # the socket cannot be made (no IPv6 here) or bound
            if rest is not None:
                rest.server_close()
            raise listen_error("REST", self._host, self._rest_port, error.strerror or error) from None
        return rest

    def stop(self, grace_seconds=5.0):
        """Stops accepting connections, lets gRPC calls and REST requests in flight finish (within
        `grace_seconds` in all), unloads the models, then runs the batches still queued and ends the
        batch threads."""
        deadline = time.monotonic() + grace_seconds
        if self._rest is not None:
            self._rest.stopping.set()
            if self._rest_thread is not None:  # shutdown() waits for a serve_forever that has started
                self._rest.shutdown()
            self._rest.server_close()
        if self._grpc is not None:
            if not self._grpc_started:  # a bound port is released only by stopping a started server
                self._grpc.start()
            self._grpc.stop(grace_seconds).wait()
        if self._rest is not None:
            unanswered = self._rest.finish_answers(deadline - time.monotonic())
            if unanswered:
                LOG.warning("stopping with %d REST request(s) unanswered after the %gs grace period",
                            unanswered, grace_seconds)
        self.registry.stop()
        if self.scheduler is not None:
            self.scheduler.stop()


class _SignalWatch:
    """Turns SIGTERM/SIGINT into an Event, so shutdown runs in the main thread's normal flow."""

    def __init__(self):
        self.received = None
        self._event = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame):
        self.received = signal.Signals(signum).name
        self._event.set()

    def wait(self):
        """Blocks until a signal has arrived; returns its name (e.g. "SIGTERM")."""
        while not self._event.wait(0.5):
            pass
        return self.received


def listen_error(what, host, port, reason=None):
    """The RoadError "cannot listen for WHAT on HOST:PORT[: REASON]"."""
    return RoadError(f"cannot listen for {what} on {host_port(host, port)}" + (f": {reason}" if reason else ""))


def reserve_port(host, port, what):
    """Sockets bound (not listening) to `port` on each address `host` resolves to (both IPv4 and
    IPv6 for a wildcard host, as gRPC listens on both), which the caller closes just before the
    real server binds: a port another server listens on is found before the models load, and a
    client that connects meanwhile is refused. They check the port rather than hold it: another
    server may still take it while the models load (reported when the real server binds).
    [] for port 0 (any free port).

    Raises:
        RoadError: the host does not resolve, or an address is in use or not allowed (EADDRINUSE,
            EACCES). Other failures (e.g. IPv6 on a machine without it) are the real bind's to report.
    """
    if not port:
        return []
    try:
        addresses = socket.getaddrinfo(None if host in WILDCARD_HOSTS else host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise listen_error(what, host, port, error.strerror) from None
    probes = []
    try:
        for family, kind, protocol, _, address in addresses:
            try:
                probe = socket.socket(family, kind, protocol)
            except OSError:  # no such address family here
                continue
            probes.append(probe)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # the IPv4 address of a dual-stack host has a probe of its own
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    raise listen_error(what, host, port, error.strerror) from None
    except BaseException:
        for probe in probes:
            probe.close()
        raise
    return probes


@cli_main
def main(argv=None):
    """Runs the devserver until SIGTERM/SIGINT; returns 0 after a clean shutdown."""
    args = parse_args(argv)
    batching = batching_options(args)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s devserver: %(message)s"
    )
    configs = model_configs(args)
    scheduler = None
    if batching is not None:
        LOG.info("batching enabled: %s", batching.describe())
        scheduler = BatchScheduler(batching, InFlight())
    managers = [
        ModelManager(
            model.name, os.path.abspath(model.base_path), model.model_version_policy, args.max_num_load_retries,
            scheduler, args.xla_cpu_compilation_enabled,
        )
        for model in configs
    ]
    server = DevServer(
        ModelRegistry(managers, args.file_system_poll_wait_seconds),
        args.host, args.port, args.rest_api_port, args.max_request_bytes, args.grpc_max_threads, scheduler,
        request_limits(args), args.rest_max_connections, args.rest_timeout_seconds,
    )
    signals = _SignalWatch()
    try:
        server.start()
        LOG.info("shutting down on %s", signals.wait())
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
