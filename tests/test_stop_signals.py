"""Ctrl-C and SIGTERM end predict, cache_teacher, export and experiments, as they end train
(tests/test_train_cli.py), with one line on stderr and the shell's exit code (130, 143), not a
traceback or no word at all, and leave no partial file.

predict and cache_teacher are stopped while they wait for their data from a named pipe, having passed
their checks (a fake SavedModel or teacher checkpoint passes them, being loaded only after the data);
experiments is stopped in the run of a tiny table's row. Each is also stopped while TensorFlow loads
(its first import held: helpers_signals.HOLDING_TENSORFLOW), once its quick checks passed (a fake
finished run passes export's).
"""

import os

import pytest

from helpers_fuzz import FINISHED, GOOD_SQUAD, fake_run, fake_saved_model, write_json
from helpers_signals import STOP_IDS, STOPS, pipe_writer, started, stop_command, wait_until


def files_under(folder):
    """The paths of everything under `folder`, relative to it, sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def teacher_overrides(tmp_path, train):
    """cache_teacher's --set flags for one teacher whose checkpoint (a file with the signature of a
    Keras weights file, checked before the data loads) never loads, and the training data `train`."""
    checkpoint = tmp_path / "teacher.weights.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n")
    model = "{num_layers: 1, hidden_dim: 16, num_heads: 2, intermediate_dim: 32}"
    teacher = f"{{model: {model}, checkpoint: {checkpoint}}}"
    overrides = ["data.source=json", f"data.train_path={train}", f"data.cache_dir={tmp_path / 'cache'}",
                 f"distillation.teachers=[{teacher}]"]
    return [arg for pair in overrides for arg in ("--set", pair)]


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_predict_stopped_says_nothing_was_written(tmp_path, stop, word, code):
    version = fake_saved_model(tmp_path / "models" / "m" / "1")
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
    train = tmp_path / "train.json"
    os.mkfifo(train)
    overrides = teacher_overrides(tmp_path, train)
    before = files_under(tmp_path)
    with started("road_tf.cache_teacher", *overrides, "--output", tmp_path / "logits.tfrecord") as process, \
            pipe_writer(train) as reading:
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


def commands_past_their_checks(tmp_path):
    """{module: (its flags, what the one line says became of its work)} of the commands that write
    nothing before TensorFlow loads, with files under `tmp_path` that pass their quick checks."""
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    version = fake_saved_model(tmp_path / "models" / "m" / "1")
    run = fake_run(tmp_path / "run", write_json(FINISHED))
    return {
        "road_tf.predict": (["--model", version, "--data", data, "--output", tmp_path / "p.json"],
                            "nothing was written"),
        "road_tf.cache_teacher": ([*teacher_overrides(tmp_path, data), "--output", tmp_path / "logits.tfrecord"],
                                  "the teacher logits were not cached; rerun the command to cache them"),
        "road_tf.export": (["--run-dir", run, "--base", tmp_path / "models", "--model-name", "m"],
                           "no version was written; rerun the command to export the run"),
    }


def stopped_while_tensorflow_loads(tmp_path, stop, module, *argv):
    """(exit code, stderr lines) of `python -m module argv...` stopped by `stop` while its first import
    of tensorflow is held (`started`'s `held_at`)."""
    hold = tmp_path / "hold"
    os.mkfifo(hold)
    with started(module, *argv, held_at=hold) as process, pipe_writer(hold) as loading:
        wait_until(process, loading)
        return stop_command(process, stop)


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
@pytest.mark.parametrize("module", ["road_tf.predict", "road_tf.cache_teacher", "road_tf.export"])
def test_a_command_stopped_while_tensorflow_loads_says_so_in_one_line(tmp_path, module, stop, word, code):
    """Each loaded TensorFlow as its module was imported, before its stop handling began: a Ctrl-C
    was a traceback, a SIGTERM ended it without a word."""
    argv, outcome = commands_past_their_checks(tmp_path)[module]
    before = files_under(tmp_path)
    assert stopped_while_tensorflow_loads(tmp_path, stop, module, *argv) == (code, [f"{word}: {outcome}"])
    assert files_under(tmp_path) == sorted([*before, "hold"])


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_experiments_stopped_while_tensorflow_loads_say_how_to_resume(tmp_path, stop, word, code):
    out = tmp_path / "tables"
    assert stopped_while_tensorflow_loads(tmp_path, stop, "road_tf.experiments", "final", "--scale", "tiny",
                                          "--rows", "baseline", "--output", out) == (code, [
        f"{word}: the same command resumes the tables in {out} (finished runs are reused, a stopped run goes on "
        "from its last checkpoint)"])
