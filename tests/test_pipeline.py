"""The TFX pipeline end to end on tiny synthetic data, and the evaluation gate's decision."""

import tensorflow as tf

from pipelines.gate import gate_decision
from test_train_cli import TINY


def test_gate_blesses_only_at_or_above_the_threshold():
    assert gate_decision({"final": {"f1": 42.0}}, 40.0)[0]
    assert gate_decision({"final": {"f1": 40.0}}, 40.0)[0]
    blessed, reason = gate_decision({"final": {"f1": 39.9}}, 40.0)
    assert not blessed and "39.90 < 40.00" in reason


def run_pipeline(tmp_path, min_f1):
    from pipelines import local_runner

    serving = tmp_path / "serving"
    local_runner.run(tmp_path / "tfx", serving, min_f1=min_f1, overrides=tuple(TINY), train_size=60, dev_size=20)
    return [p for p in serving.iterdir() if p.name.isdigit()] if serving.exists() else []


def test_pipeline_runs_and_pushes_a_servable_model(tmp_path):
    versions = run_pipeline(tmp_path, min_f1=0.0)
    assert len(versions) == 1
    loaded = tf.saved_model.load(str(versions[0]))
    context = "The Velden river flows through Marrow."
    out = loaded.signatures["serving_default"](question=tf.constant(["Where does it flow?"]),
                                               context=tf.constant([context]))
    answer = out["answer"].numpy()[0].decode()
    assert answer == "" or answer in context
    blessings = list((tmp_path / "tfx" / "pipeline").glob("SquadF1Gate/blessing/*/BLESSED"))
    assert len(blessings) == 1


def test_pipeline_does_not_push_a_model_below_the_gate(tmp_path):
    assert run_pipeline(tmp_path, min_f1=101.0) == []
    assert list((tmp_path / "tfx" / "pipeline").glob("SquadF1Gate/blessing/*/NOT_BLESSED"))
