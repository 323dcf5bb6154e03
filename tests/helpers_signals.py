"""Commands started as from a terminal and stopped by Ctrl-C (SIGINT) or SIGTERM once at work, or
while TensorFlow loads, for the tests that each such stop ends a command with one line on stderr and
the shell's exit code."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time

from conftest import REPO
from road_tf.errors import INTERRUPTED_EXIT, TERMINATED_EXIT

STOPS = [(signal.SIGINT, "interrupted", INTERRUPTED_EXIT), (signal.SIGTERM, "terminated", TERMINATED_EXIT)]
"""(signal, the first word of the line a command stopped by it prints, its exit code), for parametrize."""
STOP_IDS = ["ctrl-c", "sigterm"]

# The command starts as from a terminal, with Ctrl-C's default action and unblocked, whatever the test
# worker inherited: a suite started in the background of a script (`make test &`) runs with SIGINT
# ignored, as POSIX shells start background jobs, Python then keeps ignoring it, and the command went on.
FROM_A_TERMINAL = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                   "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[1:]])")
# As FROM_A_TERMINAL, but the command runs in this process as `python -m` runs it (runpy), and its first
# import of tensorflow, wherever the command makes it, first waits to read the named pipe sys.argv[1]:
# a stop sent once `pipe_writer` sees the pipe opened lands while TensorFlow loads.
HOLDING_TENSORFLOW = """\
import runpy, signal, sys, types
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
pipe, module, sys.argv = sys.argv[1], sys.argv[2], sys.argv[2:]

def hold(name, path=None, target=None):
    if name == "tensorflow":
        with open(pipe) as held:
            held.read()

sys.meta_path.insert(0, types.SimpleNamespace(find_spec=hold))
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@contextlib.contextmanager
def started(module, *argv, held_at=None):
    """Yields the process of `python -m module argv...` in the repository, started as from a terminal,
    its stderr piped and its stdout discarded; kills it at the end if it still runs (a failed test).

    Args:
        held_at: a named pipe whose read holds the command's first import of tensorflow
            (HOLDING_TENSORFLOW), or None.
    """
    launch = [FROM_A_TERMINAL] if held_at is None else [HOLDING_TENSORFLOW, held_at]
    process = subprocess.Popen([sys.executable, "-c", *launch, module, *map(str, argv)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_until(process, at_work, seconds=120):
    """Waits until `at_work()` is true, which shows that `process` is at work; fails the test when
    the process ends first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while not at_work():
        if process.poll() is not None:
            raise AssertionError(f"the command ended (exit code {process.returncode}) before it was stopped: "
                                 f"{process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the command was not at work after {seconds} s")
        time.sleep(0.05)


@contextlib.contextmanager
def pipe_writer(path):
    """Yields a `wait_until` condition: whether a process opened the named pipe `path` to read it
    (it then waits for data), found by opening its writing end, which stays open (no end of file)
    until the block ends."""
    ends = []

    def opened():
        try:
            ends.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as error:
            if error.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        return bool(ends)

    try:
        yield opened
    finally:
        for end in ends:
            os.close(end)


def stop_command(process, signum):
    """Sends `signum` to `process` -> (its exit code, its stderr's lines)."""
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr.splitlines()
