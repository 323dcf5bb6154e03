"""Ctrl-C and SIGTERM end predict, cache_teacher and experiments, as they end train
(tests/test_train_cli.py), with one line on stderr and the shell's exit code (130, 143), not a
traceback or no word at all, and leave no partial file.

predict and cache_teacher are stopped while they wait for their data from a named pipe: each has
then loaded TensorFlow and passed its checks (a fake SavedModel or teacher checkpoint passes them,
being loaded only after the data); experiments is stopped in the run of a tiny table's row.
"""

import os

import pytest

from helpers_signals import STOP_IDS, STOPS, pipe_writer, started, stop_command, wait_until


def files_under(folder):
    """The paths of everything under `folder`, relative to it, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_predict_stopped_says_nothing_was_written(tmp_path, stop, word, code):
    version = tmp_path / "models" / "m" / "1"
    (version / "variables").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"never loaded: predict reads its data first")
    data = tmp_path / "dev.json"
    os.mkfifo(data)
    before = files_under(tmp_path)
    with started("road_tf.predict", "--model", version.parent, "--data", data, "--output", tmp_path / "p.json",
                 "--na-probs", tmp_path / "na.json") as process, pipe_writer(data) as reading:
        wait_until(process, reading)
        assert stop_command(process, stop) == (code, [f"{word}: nothing was written"])
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_cache_teacher_stopped_says_the_logits_were_not_cached(tmp_path, stop, word, code):
    checkpoint = tmp_path / "teacher.weights.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n")  # the signature checked before the data loads
    train = tmp_path / "train.json"
    os.mkfifo(train)
    model = "{num_layers: 1, hidden_dim: 16, num_heads: 2, intermediate_dim: 32}"
    teacher = f"{{model: {model}, checkpoint: {checkpoint}}}"
    overrides = ["data.source=json", f"data.train_path={train}", f"data.cache_dir={tmp_path / 'cache'}",
                 f"distillation.teachers=[{teacher}]"]
    before = files_under(tmp_path)
    with started("road_tf.cache_teacher", *(arg for pair in overrides for arg in ("--set", pair)),
                 "--output", tmp_path / "logits.tfrecord") as process, pipe_writer(train) as reading:
        wait_until(process, reading)
        assert stop_command(process, stop) == (
            code, [f"{word}: the teacher logits were not cached; rerun the command to cache them"])
    assert files_under(tmp_path) == before


@pytest.mark.slow
@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_experiments_stopped_in_a_run_say_how_to_resume(tmp_path, stop, word, code):
    out = tmp_path / "tables"
    with started("road_tf.experiments", "final", "--scale", "tiny", "--rows", "baseline", "--seeds", "1",
                 "--output", out) as process:
        wait_until(process, lambda: any((out / "runs").glob("student-*/train.log")))
        assert stop_command(process, stop) == (code, [
            f"{word}: the same command resumes the tables in {out} (finished runs are reused, a stopped run goes on "
            "from its last checkpoint)"])
