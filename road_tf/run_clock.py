"""The wall time a run took to train, summed over the invocations that trained it.

`python -m road_tf.experiments` times each run it trains with a `RunClock`. While the run trains,
`<run>/experiment_time.json` holds `{"minutes": m, "finished": false}`, rewritten every
`HEARTBEAT_SECONDS`; an invocation killed part-way thus leaves its minutes (less at most one
heartbeat) for the invocation that resumes the run to add to. The one that finishes the run writes
`{"minutes": total, "finished": true}`. Records written before the clock existed hold `minutes`
only and count as finished.
"""

import json
import math
import pathlib
import threading
import time

from road_tf.config import RUN_METRICS_FILE
from road_tf.errors import RoadError, first_line
from road_tf.files import write_atomic

TIME_FILE = "experiment_time.json"
HEARTBEAT_SECONDS = 30.0


def read_record(run_dir):
    """The run's time record (a dict with `minutes` and `finished`), or None when it has none.

    Raises:
        RoadError: the record is not a JSON object with a number of minutes.
    """
    path = pathlib.Path(run_dir) / TIME_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        minutes = record["minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 <= minutes < math.inf:
            raise ValueError(f"minutes is {minutes!r}, not a finite number ≥ 0")
        return {"minutes": float(minutes), "finished": record.get("finished", True) is not False}
    except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as error:  # also UnicodeDecodeError
        raise RoadError(f"{path}: not a run time record ({type(error).__name__}: {first_line(error)}); "
                        f"delete it to count the run's minutes from its next command") from None


def recorded_minutes(run_dir):
    """Training minutes recorded for a finished run (0 when it was trained outside a clock)."""
    record = read_record(run_dir)
    return record["minutes"] if record else 0.0


class RunClock:
    """Context manager timing the training of the run in `run_dir` (see the module docstring).

    A run whose `metrics.json` exists on entry has finished: the clock stays idle and writes nothing.
    The clock never creates `run_dir`: while the folder does not exist (the run has not started, or
    failed its checks) it records nothing.

    Args:
        run_dir: the run's folder. heartbeat: seconds between the records written while it trains.
    """

    def __init__(self, run_dir, heartbeat=HEARTBEAT_SECONDS):
        self.run_dir = pathlib.Path(run_dir)
        self.heartbeat = heartbeat
        self.idle = True
        self.before = self.started = 0.0
        self.stopped = threading.Event()
        self.beats = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self.idle = (self.run_dir / RUN_METRICS_FILE).is_file()
        if not self.idle:
            record = read_record(self.run_dir)
            self.before = record["minutes"] if record and not record["finished"] else 0.0
            self.started = time.monotonic()
            self.beats.start()
        return self

    def __exit__(self, exc_type, exc, traceback):
        if not self.idle:
            self.stopped.set()
            self.beats.join()
            self._write(finished=exc_type is None)
        return False

    def minutes(self):
        """Minutes of training so far: earlier invocations' plus this one's."""
        return self.before + (time.monotonic() - self.started) / 60

    def _beat(self):
        while not self.stopped.wait(self.heartbeat):
            self._write(finished=False)

    def _write(self, finished):
        if self.run_dir.is_dir():
            write_atomic(self.run_dir / TIME_FILE, json.dumps({"minutes": self.minutes(), "finished": finished}) + "\n")
