"""The TFX pipeline end to end on tiny synthetic data, and malformed input (caching: test_pipeline_gate)."""

import json
import sqlite3

import pytest
import tensorflow as tf

from pipelines import local_runner
from test_train_cli import BAD_SQUAD, TINY


def runner_args(tmp_path, *extra, overrides=()):
    """local_runner flags for a tiny run under tmp_path (pipeline state in tfx/, models in serving/)."""
    args = ["--root", str(tmp_path / "tfx"), "--serving-model-dir", str(tmp_path / "serving")]
    for pair in [*TINY, *overrides]:
        args += ["--set", pair]
    return [*args, *extra]


def run_main(args, capsys):
    """Runs local_runner.main; returns (the `gate:` line, the `pushed:` line)."""
    assert local_runner.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    return [line for line in lines if line.startswith("gate: ")][-1], [line for line in lines if line.startswith("pushed: ")][-1]


def executions(tmp_path):
    """{component class name: [execution state, ...] in run order} from the pipeline's MLMD (sqlite)."""
    with sqlite3.connect(tmp_path / "tfx" / "metadata.db") as db:
        rows = db.execute("SELECT Execution.last_known_state, Type.name FROM Execution "
                          "JOIN Type ON Execution.type_id = Type.id ORDER BY Execution.id").fetchall()
    found = {}
    for state, type_name in rows:
        found.setdefault(type_name.split(".")[-1], []).append(state)
    return found


def test_pipeline_pushes_a_servable_model(tmp_path, capsys):
    gate, pushed = run_main(runner_args(tmp_path, "--margin=-100"), capsys)
    assert gate.startswith("gate: BLESSED: floor passed") and "no regression skipped" in gate
    version = tmp_path / "serving" / pushed.split("/")[-1]
    assert pushed == f"pushed: {version}" and version.name.isdigit()
    loaded = tf.saved_model.load(str(version))
    context = "The Velden river flows through Marrow."
    out = loaded.signatures["serving_default"](question=tf.constant(["Where does it flow?"]),
                                               context=tf.constant([context]))
    assert out["answer"].dtype == tf.string and out["answer"].shape == (1,)
    report = json.loads(next((tmp_path / "tfx" / "pipeline").glob("SquadGate/blessing/*/gate.json")).read_text())
    assert report["blessed"] and report["eval_questions"] == 20
    assert sorted(executions(tmp_path)) == ["ExampleValidator", "ImportExampleGen", "Pusher", "Resolver", "SchemaGen",
                                            "SquadGate", "StatisticsGen", "Trainer"]


@pytest.mark.parametrize("problem", ["truncated", "offset past the context"])
def test_malformed_squad_file_stops_before_any_component_with_one_line(tmp_path, capsys, problem):
    bad = tmp_path / "bad.json"
    bad.write_text(BAD_SQUAD[problem])
    with pytest.raises(SystemExit) as exit_info:
        local_runner.main(runner_args(tmp_path, "--data", str(bad)))
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}")
    assert not (tmp_path / "tfx" / "pipeline").exists() and not (tmp_path / "serving").exists()


def test_bad_override_fails_with_one_line_like_road_tf_train(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        local_runner.main(runner_args(tmp_path, overrides=["train.steps=abc"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: train.steps: expected an integer")
