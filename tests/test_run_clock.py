"""The run clock: a run's training minutes add up over the invocations that trained it, survive a
kill (through its heartbeat records), and finished or unstarted runs are left untouched."""

import json
import time

import pytest

from road_tf.errors import RoadError
from road_tf.run_clock import TIME_FILE, RunClock, read_record, recorded_minutes


def _record(run_dir, **record):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / TIME_FILE).write_text(json.dumps(record))


def test_a_finished_invocation_adds_to_the_minutes_of_the_killed_ones(tmp_path):
    _record(tmp_path, minutes=5.0, finished=False)
    with RunClock(tmp_path, heartbeat=60):
        time.sleep(0.06)
    record = read_record(tmp_path)
    assert record["finished"] and 5.001 <= record["minutes"] < 5.05
    assert recorded_minutes(tmp_path) == record["minutes"]


def test_a_running_clock_leaves_heartbeat_records(tmp_path):
    with RunClock(tmp_path, heartbeat=0.02) as clock:
        deadline = time.monotonic() + 10
        while read_record(tmp_path) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        beat = read_record(tmp_path)
        assert beat is not None and not beat["finished"] and 0 < beat["minutes"] <= clock.minutes()
    assert read_record(tmp_path)["finished"]


def test_a_failed_invocation_leaves_its_minutes_unfinished_for_the_next(tmp_path):
    with pytest.raises(KeyboardInterrupt), RunClock(tmp_path, heartbeat=60):
        time.sleep(0.03)
        raise KeyboardInterrupt
    first = read_record(tmp_path)
    assert not first["finished"] and first["minutes"] > 0
    with RunClock(tmp_path, heartbeat=60):
        pass
    assert read_record(tmp_path)["minutes"] >= first["minutes"]


def test_a_finished_record_starts_a_retrained_run_from_zero(tmp_path):
    _record(tmp_path, minutes=30.0)
    with RunClock(tmp_path, heartbeat=60):
        pass
    assert read_record(tmp_path)["minutes"] < 1


def test_a_run_with_metrics_is_not_timed_again(tmp_path):
    _record(tmp_path, minutes=7.0)
    (tmp_path / "metrics.json").write_text("{}")
    with RunClock(tmp_path, heartbeat=0.01):
        time.sleep(0.05)
    assert read_record(tmp_path) == {"minutes": 7.0, "finished": True}


def test_the_clock_never_creates_the_run_folder(tmp_path):
    run_dir = tmp_path / "runs" / "student-x"
    with pytest.raises(ValueError), RunClock(run_dir, heartbeat=0.01):
        time.sleep(0.05)
        raise ValueError("failed its checks")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text", ["{", "[]", '{"minutes": "5"}', '{"minutes": -1}', '{"minutes": NaN}', "{}",
                                  '{"minutes": true}', '{"minutes": 1e999}', '{"minutes": -1e999}',
                                  '{"minutes": 1' + "0" * 400 + "}",
                                  pytest.param("[" * 100_000 + "]" * 100_000, id="nested-100000-deep")])
def test_a_damaged_record_names_its_file(tmp_path, text):
    (tmp_path / TIME_FILE).write_text(text)
    with pytest.raises(RoadError, match=f"{TIME_FILE}: not a run time record"):
        recorded_minutes(tmp_path)
