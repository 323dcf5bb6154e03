"""Fuzzing `python -m road_tf.train` and `python -m road_tf.evaluate` with malformed data files and settings.

Every case (tests/helpers_fuzz.py) must end with exit status 2 and exactly one stderr line,
`error: ...`, that names the bad file or field and holds no traceback, and must leave its folder
(the run, model and cache folders are inside it) exactly as it was. Most cases run in-process
through the CLIs' `main(argv)`, with the training step replaced by a failure so that a case the
checks miss cannot start training; a few run as real subprocesses to prove the entry points.
Also here: the stop at the first non-finite loss or weight, the refusal to export non-finite
weights, version-folder names, stale temporary exports and the context-length limit.
"""

import json
import logging
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import helpers_fuzz
from conftest import REPO
from road_tf import evaluate, experiment, files, saved_model, train, training
from road_tf.config import load_config
from road_tf.data import sources
from road_tf.errors import RoadError
from road_tf.registry import task_spec
from road_tf.tasks import get_task

DATA_CASES = helpers_fuzz.data_cases()
SETTING_CASES = helpers_fuzz.setting_cases()
EVALUATE_COMMANDS = ("squad2", "classification")


def tree(folder):
    """{relative path: size or None for folders} of everything under `folder`."""
    return {str(path.relative_to(folder)): None if path.is_dir() else path.stat().st_size
            for path in folder.rglob("*")}


def assert_refused(code, stderr, expect):
    """Exit 2, one `error:` line on stderr holding `expect`, no traceback."""
    lines = stderr.splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    assert expect in lines[0], lines[0]


@pytest.fixture()
def no_training(monkeypatch):
    """Makes reaching the training run itself (its TensorFlow checks and data loading first) a test failure."""

    def refuse(config, output_dir):
        raise AssertionError("the run started: the case was not refused up front")

    monkeypatch.setattr(experiment, "prepare_run", refuse)


def run_case_in_process(case, folder, capsys):
    """Runs `case` through its CLI's `main` in this process; asserts it is refused and changes nothing."""
    argv, expect = case.materialize(folder)
    before = tree(folder)
    main = evaluate.main if argv[0] in EVALUATE_COMMANDS else train.main
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert_refused(exit_info.value.code, capsys.readouterr().err, expect)
    assert tree(folder) == before


def test_the_suite_is_big_enough():
    assert len(DATA_CASES) >= 200 and len(SETTING_CASES) >= 100
    assert len({case.name for case in DATA_CASES + SETTING_CASES}) == len(DATA_CASES) + len(SETTING_CASES)


@pytest.mark.parametrize("case", DATA_CASES, ids=lambda case: case.name)
def test_malformed_data_file_is_refused(case, tmp_path, capsys, no_training):
    run_case_in_process(case, tmp_path, capsys)


@pytest.mark.parametrize("case", SETTING_CASES, ids=lambda case: case.name)
def test_malformed_setting_is_refused(case, tmp_path, capsys, no_training):
    run_case_in_process(case, tmp_path, capsys)


SUBPROCESS_CASES = ["train-squad-question.question=lone-surrogate", "train-squad-deep-lists",
                    "train-mnli-duplicate-id", "setting-learning-rate-inf", "setting-seed-minus-1",
                    "setting-base-dir-proc", "evaluate-predictions-file-deep", "evaluate-gold-tsv-label-7",
                    "evaluate-na-probs-7.5"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_real_entry_points_refuse_in_about_a_second(name, tmp_path):
    case = next(case for case in DATA_CASES + SETTING_CASES if case.name == name)
    argv, expect = case.materialize(tmp_path)
    module = "road_tf.evaluate" if argv[0] in EVALUATE_COMMANDS else "road_tf.train"
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "ROAD_TF_QUIET")}
    before = tree(tmp_path)
    completed = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=120)
    assert_refused(completed.returncode, completed.stderr, expect)
    assert tree(tmp_path) == before


def test_train_refuses_bad_data_without_loading_tensorflow(tmp_path):
    case = next(case for case in DATA_CASES if case.name == "train-squad-duplicate-ids-across-paragraphs")
    argv, _ = case.materialize(tmp_path)
    script = ("import sys\nfrom road_tf import train\ntry:\n    train.main(sys.argv[1:])\nexcept SystemExit as e:\n"
              "    print(e.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    completed = subprocess.run([sys.executable, "-c", script, *argv], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
    assert completed.stdout.split()[-3:] == ["2", "False", "False"], completed.stdout + completed.stderr


# ---- non-finite training and weights ----


def tiny_regressor(learning_rate):
    """A built Dense(1) regressor on 2 inputs with plain SGD."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="dense")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def test_stop_on_non_finite_names_the_step_the_cause_and_the_setting():
    model = tiny_regressor(0.1)
    stop = training.StopOnNonFinite("student")
    stop.set_model(model)
    stop.on_train_begin()
    stop.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(RoadError, match=r"stage student: training diverged at step 0: the loss is nan; .*"
                                        r"lower train\.learning_rate"):
        stop.on_train_batch_end(0, {"loss": float("nan")})
    model.layers[0].kernel.assign([[np.inf], [0.0]])
    with pytest.raises(RoadError, match=r"weight \S+/dense/kernel is not finite \(a non-finite gradient\)"):
        stop.on_train_batch_end(0, {"loss": 0.5})
    multitask = training.StopOnNonFinite("multitask")
    multitask.set_model(model)
    multitask.on_train_begin()
    with pytest.raises(RoadError, match=r"lower multitask\.learning_rate"):
        multitask.on_train_batch_end(0, {"loss": 0.5})


def test_a_non_finite_loss_at_the_first_step_is_not_blamed_on_the_learning_rate():
    """distillation.hidden_weight=1e38 made the first step's loss infinite, and the run said "lower
    train.learning_rate", which had not yet been applied."""
    model = tiny_regressor(0.1)
    stop = training.StopOnNonFinite("student")
    stop.set_model(model)
    stop.on_train_begin()
    model.optimizer.iterations.assign(1)
    with pytest.raises(RoadError) as error:
        stop.on_train_batch_end(0, {"loss": float("inf")})
    assert str(error.value).startswith("stage student: the loss of its first step is inf, computed from the weights ")
    assert "distillation.*" in str(error.value) and "lower" not in str(error.value)
    model.optimizer.iterations.assign(2)
    with pytest.raises(RoadError, match=r"training diverged at step 2: the loss is inf; .* lower train\.learning_rate"):
        stop.on_train_batch_end(0, {"loss": float("inf")})


def test_fit_stops_within_the_first_steps_of_a_diverging_run():
    model = tiny_regressor(1e30)
    x = np.ones((64, 2), np.float32)
    with pytest.raises(RoadError, match=r"diverged at step [1-3]:"):
        model.fit(x, 1e3 * x[:, :1], batch_size=8, epochs=1, verbose=0, callbacks=[training.StopOnNonFinite("student")])
    assert training.first_non_finite(model.trainable_variables) is not None


def test_non_finite_weights_are_never_exported(tmp_path):
    model = tiny_regressor(0.1)
    training.check_finite_weights(model)
    model.layers[0].bias.assign([np.nan])
    with pytest.raises(RoadError, match=r"weight \S+/dense/bias holds NaN or infinite values"):
        training.check_finite_weights(model)
    base = tmp_path / "models"
    with pytest.raises(RoadError, match="dense/bias"):
        saved_model.export_qa_model(model, get_task("squad2"), None, load_config(), base_dir=base, model_name="m")
    assert not base.exists()


def test_only_ascii_integer_folders_are_versions(tmp_path, caplog):
    for name in ("1", "3", "\u00b2", "\u0663", "10a", ".tmp-abc"):
        (tmp_path / name).mkdir()
    with caplog.at_level(logging.WARNING):
        assert files.next_version(tmp_path) == 4
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "'\u00b2'" in warned and "'\u0663'" in warned and "'10a'" in warned and ".tmp-abc" not in warned
    assert files.next_version(tmp_path / "absent") == 1
    (tmp_path / "7").write_text("not a folder")
    assert files.next_version(tmp_path) == 8  # a file still takes its number
    assert files.newest_version(tmp_path) == tmp_path / "3"  # but is not a version to load
    assert files.newest_version(tmp_path / "absent") is None


def test_stale_temporary_exports_are_removed(tmp_path):
    old, fresh = tmp_path / ".tmp-old", tmp_path / ".tmp-fresh"
    for folder in (old, fresh):
        (folder / "variables").mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    saved_model.remove_stale_tmp(tmp_path)
    assert not old.exists() and fresh.is_dir()


@pytest.mark.parametrize("qid, question, context, size", [
    ("long", "What?", "x " * 100, 200),
    ("long question", "What " * 30, "x", 150),
])
def test_over_long_contexts_and_questions_are_skipped_with_skip_bad_records(tmp_path, qid, question, context, size):
    """A question counts as its context does: the exported model refuses either above the limit."""
    document = helpers_fuzz.squad_doc()
    document["data"][0]["paragraphs"].append(
        {"context": context, "qas": [{"id": qid, "question": question, "answers": [], "is_impossible": True}]})
    path = tmp_path / "train.json"
    path.write_text(json.dumps(document))
    settings = ["data.source=json", f"data.train_path={path}", "data.max_context_bytes=100"]
    refusal = rf"record {qid}: text of {size} bytes is longer than data.max_context_bytes \(100\)"
    with pytest.raises(RoadError, match=refusal):
        sources.load_split(task_spec("squad2"), load_config(None, settings).data, "train")
    config = load_config(None, settings + ["data.skip_bad_records=true"])
    examples = sources.load_split(task_spec("squad2"), config.data, "train")
    assert [example.qid for example in examples] == ["q1", "q2"]


TINY = ["train.steps=12", "train.batch_size=8", "train.checkpoint_every=6", "data.synthetic_train_size=60",
        "data.synthetic_dev_size=20", "data.max_seq_length=64", "data.doc_stride=24", "data.max_query_length=16",
        "model.hidden_dim=16", "model.intermediate_dim=32", "model.num_layers=1"]


@pytest.mark.slow
def test_a_diverging_run_stops_at_the_first_non_finite_step_and_exports_nothing(tmp_path, capsys):
    base = tmp_path / "models"
    args = ["--output-dir", str(tmp_path / "run")]
    for pair in TINY + ["train.learning_rate=1e30", f"export.base_dir={base}", f"data.cache_dir={tmp_path / 'cache'}"]:
        args += ["--set", pair]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert_refused(exit_info.value.code, capsys.readouterr().err, "stage student: training diverged at step ")
    assert not base.exists()
    assert not (tmp_path / "run" / "student" / "model.weights.h5").exists()
