"""Distillation runs through the entry points: online teachers, cached (offline) teachers, bad configs."""

import json
import shutil

import h5py
import numpy as np
import pytest

from road_tf import cache_teacher, train
from road_tf.data.features import write_feature_cache
from road_tf.files import file_sha256
from conftest import one_error_line
from test_train_cli import TINY

TEACHER = "{model: {num_layers: 1, hidden_dim: 32, num_heads: 2, intermediate_dim: 64}, train_steps: 12}"


def args_for(tmp_path, out, *pairs):
    args = ["--output-dir", str(out)]
    for pair in TINY + [f"export.base_dir={tmp_path / 'sm'}", f"data.cache_dir={tmp_path / 'cache'}", *pairs]:
        args += ["--set", pair]
    return args


def changed_copy(weights, path):
    """A copy of the Keras weights file `weights` at `path` with its first weight array doubled."""
    shutil.copyfile(weights, path)
    with h5py.File(path, "r+") as handle:
        arrays = []
        handle.visititems(lambda name, item: arrays.append(item) if isinstance(item, h5py.Dataset) else None)
        arrays[0][...] = 2 * arrays[0][...] + 1
    return path


def test_multitask_then_online_then_offline_distillation(tmp_path, capsys):
    online = tmp_path / "online"
    assert train.main(args_for(tmp_path, online, f"distillation.teachers=[{TEACHER}]", "export.enabled=false",
                               "multitask.steps=4", "multitask.k=2")) == 0
    stages = json.loads((online / "metrics.json").read_text())["stages"]
    assert {"multitask", "teacher_0", "student_no_kd", "student"} <= set(stages)
    per_task = stages["multitask"]["tasks"]
    assert set(per_task) == {"squad2", "synthetic_nli", "synthetic_para", "synthetic_sentiment"}
    assert "f1" in per_task["squad2"] and "accuracy" in per_task["synthetic_nli"]
    assert sum(stages["multitask"]["picks"].values()) == 4 * 2
    assert (online / "multitask" / "encoder.weights.h5").is_file()
    plain = tmp_path / "plain"
    assert train.main(args_for(tmp_path, plain, "export.enabled=false", "multitask.steps=4", "multitask.k=2")) == 0
    alone = json.loads((plain / "metrics.json").read_text())["stages"]
    assert alone["multitask"] == stages["multitask"], "training a teacher changed the multi-task stage"
    assert alone["student"] == stages["student_no_kd"], "the no-KD stage is not the run without teachers"
    weights = online / "teacher_0" / "model.weights.h5"
    teacher = TEACHER.replace("train_steps: 12", f"checkpoint: {weights}")
    cache = tmp_path / "teacher.tfrecord"
    base = args_for(tmp_path, tmp_path / "unused", f"distillation.teachers=[{teacher}]")[2:]
    assert cache_teacher.main(base + ["--output", str(cache)]) == 0
    assert cache.is_file() and cache.with_suffix(".json").is_file()
    offline = tmp_path / "offline"
    assert train.main(args_for(tmp_path, offline, f"distillation.teachers=[{teacher}]", "distillation.mode=offline",
                               f"distillation.cache_path={cache}", "distillation.compare_without_kd=false",
                               "export.enabled=false")) == 0
    metrics = json.loads((offline / "metrics.json").read_text())
    assert set(metrics["stages"]) == {"student"} and "f1" in metrics["final"]
    # The cache records its teachers: others (other weights, another count) were trained on silently.
    other = TEACHER.replace("train_steps: 12", f"checkpoint: {changed_copy(weights, tmp_path / 'other.weights.h5')}")
    for teachers, problem in ((f"[{other}]", "its teacher 0's logits come from other weights than "
                                              "distillation.teachers[0].checkpoint"),
                              (f"[{teacher}, {teacher}]", "it holds the logits of 1 teacher(s) and distillation.teachers "
                                                          "lists 2")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            train.main(args_for(tmp_path, tmp_path / "wrong", f"distillation.teachers={teachers}",
                                "distillation.mode=offline", f"distillation.cache_path={cache}"))
        assert exit_info.value.code == 2 and not (tmp_path / "wrong").exists()
        assert f"{cache}: {problem}" in one_error_line(capsys, exit_info)
    # A cache of this teacher over other training features.
    stale = tmp_path / "stale.tfrecord"
    write_feature_cache(stale, {"token_ids": np.zeros((3, 64), np.int32), "teacher_logits/0/0": np.zeros((3, 64), np.float32)},
                        {"teachers": [file_sha256(weights)]})
    with pytest.raises(SystemExit) as exit_info:
        train.main(args_for(tmp_path, tmp_path / "wrong", f"distillation.teachers=[{teacher}]", "distillation.mode=offline",
                            f"distillation.cache_path={stale}"))
    assert "different training features" in one_error_line(capsys, exit_info)
    assert not (tmp_path / "wrong").exists(), "the run folder was made before the cache was checked"


@pytest.mark.parametrize("pairs, message", [
    (["distillation.kd_loss=cosine"], "distillation.kd_loss: unknown loss 'cosine'"),
    ([f"distillation.teachers=[{TEACHER}]", "distillation.hidden_loss=mse", "distillation.layer_map=custom",
      "distillation.layer_matches=[{teacher_layer: 5, student_layer: 1}]"], "teacher_layer 5 is beyond"),
    ([f"distillation.teachers=[{TEACHER}]", "distillation.mode=offline"], "distillation.cache_path"),
    ([f"distillation.teachers=[{TEACHER}]", "distillation.mode=offline", "distillation.cache_path=x",
      "distillation.hidden_loss=mse"], "needs an online teacher"),
    ([f"distillation.teachers=[{TEACHER}]", "distillation.mode=offline", "distillation.cache_path=x"],
     "distillation.teachers[0].checkpoint: is required in offline mode"),
])
def test_bad_distillation_configs_fail_with_one_line(tmp_path, capsys, pairs, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args_for(tmp_path, tmp_path / "r", *pairs))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_teacher_vocabulary_mismatch_is_a_clear_error(tmp_path, capsys):
    from test_convert import VOCAB, tiny_checkpoint

    folder = tmp_path / "hf"
    tiny_checkpoint(folder, "bert", "bert.")
    teacher = "{model: {pretrained: %s}, train_steps: 2}" % folder
    with pytest.raises(SystemExit):
        train.main(args_for(tmp_path, tmp_path / "r", f"distillation.teachers=[{teacher}]"))
    err = capsys.readouterr().err
    assert f"vocabulary has {VOCAB} tokens" in err and "30522" in err


def test_cache_teacher_refuses_to_overwrite_its_inputs_and_unloadable_checkpoints(tmp_path, capsys):
    checkpoint = tmp_path / "t.weights.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n" + b"not an HDF5 file" * 8)
    teacher = TEACHER.replace("train_steps: 12", f"checkpoint: {checkpoint}")
    base = args_for(tmp_path, tmp_path / "unused", f"distillation.teachers=[{teacher}]")[2:]
    cases = [(str(checkpoint), "is the distillation.teachers[0].checkpoint file, which it would overwrite"),
             (str(tmp_path / "t.json"), "its .json sidecar would overwrite it"),
             (str(tmp_path / "t.weights.tfrecord"), "sidecar of --output"),
             (str(tmp_path / "ok.tfrecord"), "distillation.teachers[0].checkpoint: " + str(checkpoint) + " does not fit")]
    (tmp_path / "t.weights.json").symlink_to(checkpoint)
    for output, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            cache_teacher.main(base + ["--output", output])
        assert message in one_error_line(capsys, exit_info), output
    assert checkpoint.read_bytes().startswith(b"\x89HDF") and not (tmp_path / "ok.tfrecord").exists()


@pytest.mark.parametrize("name, content, problem", [
    ("absent.weights.h5", None, "no such file"),
    ("notes.weights.h5", b"not weights\n", r"not a Keras weights file (its first bytes are not b'\x89HDF\r\n\x1a\n')"),
])
def test_cache_teacher_checks_teacher_checkpoints_before_it_loads_the_data(tmp_path, capsys, monkeypatch, name,
                                                                           content, problem):
    """A checkpoint that is missing or no weights file was found only after the data had loaded (slow)."""
    def loaded(*args, **kwargs):
        raise AssertionError("the data loaded before the teacher checkpoints were checked")

    monkeypatch.setattr("road_tf.data.tokenizer.load_tokenizer", loaded)
    monkeypatch.setattr("road_tf.tasks.load_task_data", loaded)
    checkpoint = tmp_path / name
    if content is not None:
        checkpoint.write_bytes(content)
    teacher = TEACHER.replace("train_steps: 12", f"checkpoint: {checkpoint}")
    base = args_for(tmp_path, tmp_path / "unused", f"distillation.teachers=[{teacher}]")[2:]
    with pytest.raises(SystemExit) as exit_info:
        cache_teacher.main(base + ["--output", str(tmp_path / "t.tfrecord")])
    assert one_error_line(capsys, exit_info) == f"error: distillation.teachers[0].checkpoint: {checkpoint}: {problem}"


def test_cache_teacher_refuses_a_cache_dir_that_is_a_file_with_one_line(tmp_path, capsys):
    """It was a NotADirectoryError traceback once the synthetic corpus was written there."""
    checkpoint = tmp_path / "t.weights.h5"
    checkpoint.write_bytes(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "occupied").write_text("x")
    teacher = TEACHER.replace("train_steps: 12", f"checkpoint: {checkpoint}")
    base = args_for(tmp_path, tmp_path / "unused", f"distillation.teachers=[{teacher}]")[2:]
    with pytest.raises(SystemExit) as exit_info:
        cache_teacher.main([*base, "--set", f"data.cache_dir={tmp_path / 'occupied'}", "--output",
                            str(tmp_path / "t.tfrecord")])
    assert one_error_line(capsys, exit_info).startswith(f"error: data.cache_dir {tmp_path / 'occupied'}: ")
    assert (tmp_path / "occupied").read_text() == "x" and not (tmp_path / "t.tfrecord").exists()


@pytest.mark.parametrize("output, written", [("kd.yaml", "--output"), ("kd.tfrecord", "the .json sidecar of --output")])
def test_cache_teacher_refuses_an_output_that_is_its_config_recipe(tmp_path, capsys, output, written):
    """`--config kd.yaml --output kd.yaml` (or a recipe kd.json beside --output kd.tfrecord) went on
    to run the teachers and would have replaced the recipe with the cache."""
    recipe = tmp_path / ("kd.yaml" if output == "kd.yaml" else "kd.json")
    recipe.write_text("train: {steps: 10}\n")
    with pytest.raises(SystemExit) as exit_info:
        cache_teacher.main(["--config", str(recipe), "--output", str(tmp_path / output)])
    assert one_error_line(capsys, exit_info) == (f"error: {written} {recipe}: is the --config file, which it would "
                                                 "overwrite")
    assert recipe.read_text() == "train: {steps: 10}\n" and sorted(p.name for p in tmp_path.iterdir()) == [recipe.name]
