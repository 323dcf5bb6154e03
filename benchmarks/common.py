"""Shared pieces of every benchmark script: import path, quiet logs, timing, the result line.

Scripts run from the repository root as `.venv/bin/python benchmarks/<name>.py`; Python puts
`benchmarks/` on `sys.path`, so they `import common`, and importing it puts the repository root
on `sys.path` so that `road_tf` imports without installation.

Every script prints, as its last line, one JSON object made by `result_line`.

Baselines in PyTorch run in .venv-baseline (Python 3.11, made by benchmarks/setup_baseline.sh) as
worker subprocesses that speak one JSON object a line: `BaselineWorker` drives one from the
road_tf side, `serve_json_commands` is the worker's side. This module imports only the standard
library (and road_tf.errors), so both virtualenvs can import it.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as road_tf sets it: no CUDA-plugin noise on CPUs

from road_tf.cluster import usable_cores  # noqa: E402
from road_tf.errors import RoadError, whole_number  # noqa: E402

BASELINE_PYTHON = REPO / ".venv-baseline" / "bin" / "python"
SETUP_SCRIPT = REPO / "benchmarks" / "setup_baseline.sh"
# With glibc's default malloc PyTorch CPU training spends > 1 s a step in page faults (measured when the stack was chosen).
TUNED_MALLOC = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


MAX_REPEATS = 1000
"""The most rounds, passes, steps or warm-up calls a benchmark flag takes: more would run for hours or days."""
THREADS = "threads"
"""A `bounds` entry (see `parse_flags`): at least 1 and at most the CPU cores this process may use."""


def check_bounds(args, bounds):
    """RoadError naming the flag for the first integer flag of `args` outside its bounds.

    Args:
        args: an argparse.Namespace.
        bounds: {attribute name: (smallest, largest or None)} or {attribute name: THREADS}.
    """
    for name, limits in bounds.items():
        value, flag = getattr(args, name), f"--{name.replace('_', '-')}"
        if limits == THREADS:
            cores = usable_cores()
            if value < 1:
                raise RoadError(f"{flag} must be at least 1, got {value}")
            if value > cores:
                raise RoadError(f"{flag} {value}: more than the {cores} CPU cores this process may use")
            continue
        smallest, largest = limits
        if value < smallest:
            raise RoadError(f"{flag} must be at least {smallest}, got {value}")
        if largest is not None and value > largest:
            raise RoadError(f"{flag} must be at most {largest:,}, got {value}")


def parse_flags(parser, argv, bounds=None):
    """`parser.parse_known_args(argv)` with one-line errors: RoadError for a bad or unknown flag
    and for an integer flag outside its `bounds` (see `check_bounds`), before any work.

    Args:
        parser: an argparse.ArgumentParser made with exit_on_error=False.
        bounds: {attribute name: (smallest, largest or None) or THREADS}; every integer flag of
            a benchmark has an entry, with a largest value where a huge one would run for ever
            or exhaust memory.
    """
    try:
        args, unknown = parser.parse_known_args(argv)
    except argparse.ArgumentError as error:
        raise RoadError(f"{error} (see --help)") from None
    if unknown:
        raise RoadError(f"unrecognized arguments: {' '.join(unknown)} (see --help)")
    bounds = bounds or {}
    unbounded = [action.dest for action in parser._actions
                 if action.type in (whole_number, int) and action.dest not in bounds]
    if unbounded:
        raise ValueError(f"integer flags without bounds: {unbounded}")  # a bug in the script, not a usage error
    check_bounds(args, bounds)
    return args


def shared_file(relative):
    """The path of `relative` under ../shared beside the repository, or None when it is absent."""
    path = SHARED / relative
    return path if path.exists() else None


def time_once(function):
    """Calls `function()` once; returns (seconds of wall time, its return value)."""
    begin = time.perf_counter()
    value = function()
    return time.perf_counter() - begin, value


def interleaved_times(functions, rounds, warmup=1):
    """Times several callables in alternation (A, B, A, B, ...) so that machine drift hits all alike.

    Args:
        functions: dict {name: zero-argument callable}.
        rounds: timed calls of each callable.
        warmup: untimed calls of each callable first (tracing, caches, allocator).
    Returns:
        dict {name: list of `rounds` durations in seconds}.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            times[name].append(time_once(function)[0])
    return times


def median(values):
    """Median of a non-empty sequence of numbers."""
    return statistics.median(values)


def result_line(benchmark, value, goal, better, unit, **extra):
    """Prints the benchmark's result as one JSON object on one line (call it last).

    Args:
        benchmark: the benchmark's name.
        value: road_tf compared with the baseline measured in the same run (e.g. a ratio).
        goal: the value to reach.
        better: "lower" or "higher": which direction beats the goal.
        unit: unit of `value` and `goal`.
        extra: more JSON-serializable fields (raw timings, counts, settings).
    Returns:
        the printed dict, with `met` (whether value reaches goal) added.
    """
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    met = value <= goal if better == "lower" else value >= goal
    line = {"benchmark": benchmark, "value": round(value, 4), "goal": goal, "better": better, "unit": unit,
            "met": met, **extra}
    sys.stdout.flush()
    print(json.dumps(line), flush=True)
    return line


def ensure_baseline_venv():
    """Runs benchmarks/setup_baseline.sh (a no-op once .venv-baseline is installed and current)."""
    result = subprocess.run(["bash", str(SETUP_SCRIPT)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["(no output)"]
        raise RoadError(f"{SETUP_SCRIPT.name} failed (exit {result.returncode}): {lines[-1]}")


def cores_for(threads):
    """The first `threads` CPUs this process may run on (fewer if it has fewer)."""
    return sorted(os.sched_getaffinity(0))[:threads]


def child_env(threads, **extra):
    """This process's environment with every thread-count knob set to `threads`, plus `extra`."""
    count = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count, "TF_NUM_INTRAOP_THREADS": count,
            "TF_NUM_INTEROP_THREADS": count, **extra}


def cpu_has_bfloat16():
    """Whether this CPU has bfloat16 matmul instructions (AVX512_BF16 or AMX-BF16)."""
    flags = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


class BaselineWorker:
    """A benchmarks/ script running in .venv-baseline, driven over its stdin/stdout.

    The worker (see `serve_json_commands`) prints one JSON line when ready (kept as `info`), then
    answers every JSON command line with one JSON line. It runs pinned to `cores` with `threads`
    threads and TUNED_MALLOC, offline.

    Args:
        script: path of the worker script; args: its command-line arguments (strings).
    """

    def __init__(self, script, args, threads, cores):
        self.process = subprocess.Popen(
            [str(BASELINE_PYTHON), str(script), *args],
            cwd=REPO, env=child_env(threads, HF_HUB_OFFLINE="1", **TUNED_MALLOC),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
        self.info = self._reply()

    def _reply(self):
        """The worker's next JSON line; RoadError with its stderr if it died."""
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RoadError(f"the baseline worker exited: {self.process.stderr.read().strip()[-500:]}")
        return json.loads(line)

    def request(self, command):
        """Sends one command (a dict) and returns the worker's reply (a dict)."""
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self):
        """Ends the worker (end of input), killing it after 30 s."""
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def serve_json_commands(start, handle, keys):
    """The worker side of `BaselineWorker`; returns at the end of stdin.

    Protocol lines go to the original stdout; anything a library prints goes to stderr.

    Args:
        start: () -> dict, the set-up (model loading, warm-up); its result is the ready line.
        handle: (dict command) -> dict reply.
        keys: the integer fields every command must carry; RoadError for a command without them.
    """
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    print(json.dumps({"ready": True, **start()}), file=protocol, flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            command = {key: int(command[key]) for key in keys}
        except (ValueError, KeyError, TypeError):
            fields = ", ".join(f'"{key}"' for key in keys)
            raise RoadError(f"bad command {line.strip()!r}; expected {{{fields}}}") from None
        print(json.dumps(handle(command)), file=protocol, flush=True)
