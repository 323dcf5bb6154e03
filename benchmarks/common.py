"""Shared pieces of every benchmark script: import path, quiet logs, timing, the result line.

Scripts run from the repository root as `.venv/bin/python benchmarks/<name>.py`; Python puts
`benchmarks/` on `sys.path`, so they `import common`, and importing it puts the repository root
on `sys.path` so that `road_tf` imports without installation.

Every script prints, as its last line, one JSON object made by `result_line`.
"""

import json
import os
import pathlib
import statistics
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
