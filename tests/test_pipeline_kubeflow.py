"""`python -m pipelines.kubeflow_runner`: the pipeline compiled for Kubeflow Pipelines v2 / Vertex AI."""

import json
import sys

import pytest

from pipelines import kubeflow_runner

COMPONENTS = {"ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "SquadGate", "Pusher"}
IMAGE = "registry.example/road-tfx:7"
BEAM_ARGS = ["--runner=DataflowRunner", "--direct_num_workers=2"]


def test_compiled_spec_names_every_component_the_image_the_beam_args_and_the_strategy(tmp_path, capsys):
    pytest.importorskip("kfp.pipeline_spec", reason="kfp-pipeline-spec is not installed here "
                                                    "(requirements.txt pins it: rerun make setup)")
    output = tmp_path / "pipeline.json"
    args = ["--output", str(output), "--image", IMAGE, "--config", "demo", "--set", "train.strategy=multi_worker",
            *[f"--beam-arg={flag}" for flag in BEAM_ARGS]]
    assert kubeflow_runner.main(args) == 0
    assert capsys.readouterr().out.strip() == f"compiled: {output}"
    spec = json.loads(output.read_text())["pipelineSpec"]
    tasks = set(spec["root"]["dag"]["tasks"])
    assert COMPONENTS <= tasks and any("latest_blessed_model_resolver" in task for task in tasks)
    executors = spec["deploymentSpec"]["executors"]
    for component in COMPONENTS:
        container = executors[f"{component}_executor"]["container"]
        assert container["image"] == IMAGE
        assert all(flag in container["args"] for flag in BEAM_ARGS), component
    trainer = json.dumps(spec["root"]["dag"]["tasks"]["Trainer"]["inputs"])
    assert "strategy: multi_worker" in trainer and "train_steps: 900" in trainer  # the resolved demo recipe


def test_without_kfp_pipeline_spec_the_runner_fails_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "kfp.pipeline_spec", None)  # makes the import fail
    monkeypatch.delitem(sys.modules, "tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner", raising=False)
    monkeypatch.delattr("tfx.orchestration.kubeflow.v2.kubeflow_v2_dag_runner", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--output", str(tmp_path / "p.json"), "--image", IMAGE])
    assert exit_info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and "kfp-pipeline-spec" in errors[0] and not (tmp_path / "p.json").exists()
