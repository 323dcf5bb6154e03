"""`python -m pipelines.kubeflow_runner`: the pipeline compiled for Kubeflow Pipelines v2 / Vertex AI."""

import json
import sys

import pytest

from conftest import one_error_line
from pipelines import configs, kubeflow_runner
from road_tf import config as config_lib

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


def surrogate(text):
    """`text` as Python hands a command-line argument of those bytes (latin-1 here) to a program."""
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


# (argv after --image and --output, part of the message): each refused before anything is compiled.
BAD_FLAGS = [
    ([surrogate("--beam-arg=--x\xff")], "--beam-arg b'--x\\xff': not UTF-8 text (byte 0xff at character 3)"),
    ([surrogate("--pipeline-root=gs://\xff")], "--pipeline-root b'gs://\\xff': not UTF-8 text (byte 0xff at character 5)"),
    ([surrogate("--data-root=gs://b/\xff")], "--data-root b'gs://b/\\xff'"),
    ([surrogate("--serving-model-dir=/tmp/\xff")], "--serving-model-dir b'/tmp/\\xff'"),
    ([surrogate("--set=train.steps=\xff")], "--set b'train.steps=\\xff'"),
    ([surrogate("--config=\xff")], "--config b'\\xff'"),
    (["--beam-arg=--direct_num_workers=abc"], "argument --direct_num_workers: invalid int value: 'abc'"),
    (["--beam-arg=--direct_running_mode=fast"], "argument --direct_running_mode: invalid choice"),
    (["--beam-arg=--runner"], "argument --runner: expected one argument"),
    (["--beam-arg=--runner=Nonexistent"], "--runner=Nonexistent: not a Beam runner"),
    (["--beam-arg=--help"], "asks Beam for its help"),
    (["--beam-arg=--job_name=a\nb"], "holds a control character ('\\n')"),
    (["--beam-arg=--job_name=a\x00b"], "holds a control character"),
    (["--beam-arg=--job_name=a\tb"], "holds a control character ('\\t')"),
    *(([f"{flag}=rel/folder"], f"{flag} rel/folder: a relative path, which each container on the cluster would "
                               "resolve in its own working folder")
      for flag in ("--pipeline-root", "--data-root", "--serving-model-dir")),
    (["--pipeline-root=gs://"], "--pipeline-root gs://: names no bucket or host after gs://"),
    (["--data-root=gs:///"], "--data-root gs:///: names no bucket or host after gs://"),
    (["--data-root=gs:///folder"], "--data-root gs:///folder: names no bucket or host after gs://"),
    (["--serving-model-dir=gs://b/a\nb"], "--serving-model-dir 'gs://b/a\\nb': holds a control character ('\\n')"),
    (["--serving-model-dir=/models/a\tb"], "holds a control character ('\\t')"),
    (["--pipeline-root=gs://b/t", "--serving-model-dir=gs://b/t/"],
     "--serving-model-dir gs://b/t/: is, holds or lies in --pipeline-root gs://b/t, where the run keeps"),
    (["--pipeline-root=gs://b/t/p", "--serving-model-dir=gs://b/t"], "is, holds or lies in --pipeline-root"),
]


@pytest.mark.parametrize("path", ["gs://bucket/pipelines", "gs://bucket", "file:///mnt/shared/x", "/mnt/shared/x",
                                  "hdfs://namenode:8020/x"])
def test_cluster_paths_that_name_a_place_are_taken(path):
    kubeflow_runner.check_cluster_path(path, "--pipeline-root")


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=lambda value: repr(value))
def test_bad_flags_are_one_line_before_anything_is_compiled(argv, message, tmp_path, capsys):
    output = tmp_path / "p.json"
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", str(output), *argv])
    assert message in one_error_line(capsys, exit_info)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, setting, path", [
    ("distillation.teachers=[{checkpoint: teachers/t.weights.h5}]", "distillation.teachers[0].checkpoint",
     "teachers/t.weights.h5"),
    ("model.pretrained=runs/large", "model.pretrained", "runs/large"),
    ("data.vocab=vocab.txt", "data.vocab", "vocab.txt"),
    ("multitask.task_files=[{task: synthetic_sentiment, train_path: sst2.tsv, split_dev: 10}]",
     "multitask.task_files[0].train_path", "sst2.tsv"),
])
def test_a_recipe_path_the_containers_cannot_resolve_is_refused(override, setting, path, tmp_path, capsys,
                                                                monkeypatch):
    """The Trainer runs in a container on the cluster: a relative path in the recipe (a teacher's
    weights, a pretrained folder, a vocabulary) names nothing there, and was compiled in silently."""
    monkeypatch.setattr(kubeflow_runner, "compile_pipeline", lambda *args: pytest.fail("compiled"))
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", str(tmp_path / "p.json"), "--set", override,
                              "--set", "multitask.steps=10"])
    assert one_error_line(capsys, exit_info).startswith(f"error: {setting} {path}: a relative path, which each "
                                                        "container on the cluster would resolve")


def test_absolute_recipe_paths_and_bundled_names_pass():
    config = config_lib.load_config(None, ["distillation.teachers=[{checkpoint: /models/t.weights.h5}]",
                                           "model.pretrained=minilm"])
    assert configs.recipe_paths(config) == {"distillation.teachers[0].checkpoint": "/models/t.weights.h5"}


def test_an_offline_recipe_s_teacher_checkpoints_are_read_too():
    """Offline, the Trainer reads the teachers' cached logits, and their checkpoints to check that they
    made the cache (and fit their models)."""
    config = config_lib.load_config(None, ["distillation.teachers=[{checkpoint: t.weights.h5}]",
                                           "distillation.mode=offline", "distillation.cache_path=/cache/t.tfrecord"])
    assert configs.recipe_paths(config) == {"distillation.cache_path": "/cache/t.tfrecord",
                                                    "distillation.teachers[0].checkpoint": "t.weights.h5"}


@pytest.mark.parametrize("recipe", ["file", "name"])
def test_an_output_that_is_the_config_recipe_is_refused_and_kept(tmp_path, capsys, monkeypatch, recipe):
    """--output equal to the --config recipe (a YAML file, or the file a recipe name resolves to,
    e.g. `--config demo --output configs/demo.yaml`) replaced the recipe with the compiled spec."""
    path = tmp_path / "recipe.yaml"
    path.write_text("train:\n  steps: 10\n")
    if recipe == "name":
        monkeypatch.setattr(config_lib, "CONFIG_DIR", tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", str(path),
                              "--config", str(path) if recipe == "file" else "recipe"])
    assert one_error_line(capsys, exit_info) == f"error: --output {path}: is the --config file, which it would overwrite"
    assert path.read_text() == "train:\n  steps: 10\n"


def test_an_output_that_is_not_utf8_is_refused(tmp_path, capsys):
    output = surrogate(f"{tmp_path}/p\xff.json")
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", output])
    assert "--output b'" in one_error_line(capsys, exit_info) and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("beam_args", [["--runner=DataflowRunner", "--direct_num_workers=2"], ["--runner=dataflow"],
                                       ["--runner=my_package.runners.MyRunner"], ["--some_plugin_flag=x y"]])
def test_beam_args_beam_accepts_pass_the_check(beam_args, tmp_path):
    args = kubeflow_runner.parse_args(["--image", IMAGE, "--output", str(tmp_path / "p.json"),
                                       *[f"--beam-arg={flag}" for flag in beam_args]])
    assert args.beam_args == beam_args


@pytest.mark.parametrize("links", [{"p.json": "p.json"}, {"p.json": "q.json", "q.json": "p.json"}],
                         ids=["self", "pair"])
@pytest.mark.parametrize("inside", [False, True], ids=["the link", "a file in it"])
def test_an_output_in_a_loop_of_symbolic_links_is_refused_and_left_alone(links, inside, tmp_path, capsys):
    for name, target in links.items():
        (tmp_path / name).symlink_to(target)
    output = tmp_path / "p.json" / "spec.json" if inside else tmp_path / "p.json"
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", str(output)])
    assert "a loop of symbolic links" in one_error_line(capsys, exit_info)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(links)
    assert all((tmp_path / name).is_symlink() for name in links)


@pytest.mark.parametrize("name", ["missing/..", "spec.json/.."])
def test_an_output_that_goes_up_out_of_no_folder_is_one_line(name, tmp_path, capsys):
    """`missing/..` passed the checks (nothing stands there) and failed in the compiler with a
    FailedPreconditionError traceback ('/tmp/...; Is a directory')."""
    (tmp_path / "spec.json").write_text("kept")
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", str(tmp_path / name)])
    assert f"--output {tmp_path / name}: goes up ('..') out of " in one_error_line(capsys, exit_info)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spec.json"]
    assert (tmp_path / "spec.json").read_text() == "kept"


@pytest.mark.parametrize("name", ["spec.json/", "spec.json/.", "new.json/"])
def test_an_output_that_names_a_folder_is_refused(name, tmp_path, capsys):
    """A trailing '/' or '/.' names a folder; the runner wrote the compiled spec to the file without
    it, replacing spec.json or making new.json."""
    (tmp_path / "spec.json").write_text("kept")
    output = f"{tmp_path}/{name}"
    with pytest.raises(SystemExit) as exit_info:
        kubeflow_runner.main(["--image", IMAGE, "--output", output])
    assert one_error_line(capsys, exit_info) == (f"error: --output {output}: ends in '/' or '/.', so it names a "
                                                 "folder, not a file; give a file name")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["spec.json"]
    assert (tmp_path / "spec.json").read_text() == "kept"
