"""Runs the way users expect: resume by rerunning, model names, evaluation during training, outputs, modes."""

import json
import os
import pathlib
import stat

import h5py
import numpy as np
import pytest

from road_tf import predict, train, training
from road_tf.errors import INTERRUPTED_EXIT
from test_train_cli import tiny_pairs


def tiny_args(tmp_path, *pairs, output_dir=None):
    args = ["--output-dir", str(output_dir)] if output_dir else []
    for pair in tiny_pairs(f"export.base_dir={tmp_path / 'sm'}", f"data.cache_dir={tmp_path / 'cache'}", *pairs):
        args += ["--set", pair]
    return args


def weights(path):
    """{dataset path: array} of a Keras weights file."""
    found = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None)
    return found


def assert_same_weights(path, expected_path):
    """Asserts that two Keras weights files hold the same datasets with equal values."""
    got, expected = weights(path), weights(expected_path)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_rerunning_a_killed_command_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = tiny_args(tmp_path, "model.dropout=0.2")
    reference = tmp_path / "reference"
    assert train.main(args + ["--output-dir", str(reference), "--set", "export.enabled=false"]) == 0

    original = training._Checkpointer.on_epoch_end
    state = {"saves": 0}

    def killed_after_first_checkpoint(self, epoch, logs=None):
        original(self, epoch, logs)
        state["saves"] += 1
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(training._Checkpointer, "on_epoch_end", killed_after_first_checkpoint)
    with pytest.raises(SystemExit) as exit_info:  # what Ctrl-C ends the command with
        train.main(args)
    assert exit_info.value.code == INTERRUPTED_EXIT
    monkeypatch.setattr(training._Checkpointer, "on_epoch_end", original)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("default-") and not (runs[0] / "metrics.json").exists()
    assert (runs[0] / "student" / "checkpoints").is_dir()
    assert train.main(args) == 0
    assert list((tmp_path / "runs").iterdir()) == runs, "the rerun found the killed run instead of starting anew"
    assert_same_weights(runs[0] / "student" / "model.weights.h5", reference / "student" / "model.weights.h5")
    capsys.readouterr()
    versions = sorted(p.name for p in (tmp_path / "sm" / "road_default").iterdir())
    assert train.main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "sm" / "road_default").iterdir()) == versions, "no retraining, no export"
    fresh = train.resolve_run(train.parse_args(args + ["--new"]))[1]
    assert fresh.parent == pathlib.Path("runs") and fresh.name.startswith(runs[0].name + "-") and not fresh.exists()


def test_a_run_killed_between_stages_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    args = tiny_args(tmp_path, "model.dropout=0.2", "multitask.steps=4", "multitask.k=2", "export.enabled=false")
    reference = tmp_path / "reference"
    assert train.main(args + ["--output-dir", str(reference)]) == 0

    original = training.fit

    def killed_when_the_student_starts(model, features, train_config, steps, stage_dir, **kwargs):
        if pathlib.Path(stage_dir).name == "student":
            raise KeyboardInterrupt("killed")
        return original(model, features, train_config, steps, stage_dir, **kwargs)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(training, "fit", killed_when_the_student_starts)
    with pytest.raises(SystemExit) as exit_info:
        train.main(args + ["--output-dir", str(resumed)])
    assert exit_info.value.code == INTERRUPTED_EXIT
    monkeypatch.setattr(training, "fit", original)
    assert (resumed / "multitask" / "stage.json").is_file() and not (resumed / "student" / "checkpoints").exists()
    assert train.main(args + ["--output-dir", str(resumed)]) == 0
    assert_same_weights(resumed / "student" / "model.weights.h5", reference / "student" / "model.weights.h5")


def test_each_recipe_exports_under_its_own_name():
    config, folder = train.resolve_run(train.parse_args(["--config", "kd_logits", "--set", "train.steps=3"]))
    assert config.export.model_name == "road_kd_logits" and folder.name.startswith("kd_logits-")
    config, _ = train.resolve_run(train.parse_args(["--config", "demo"]))
    assert config.export.model_name == "road_demo"
    config, _ = train.resolve_run(train.parse_args(["--config", "demo", "--set", "export.model_name=mine"]))
    assert config.export.model_name == "mine"
    assert train.resolve_run(train.parse_args(["--config", "demo"]))[1] != train.resolve_run(
        train.parse_args(["--config", "demo", "--set", "train.steps=3"]))[1]


@pytest.mark.parametrize("served, kept", [("decode", "f1"), ("best", "tuned_f1")])
def test_eval_during_training_keeps_the_best_step_and_writes_usable_outputs(tmp_path, capsys, served, kept):
    out = tmp_path / "run"
    assert train.main(tiny_args(tmp_path, "train.eval_every=4", "train.keep=best", f"export.null_threshold={served}",
                                output_dir=out)) == 0
    stage = out / "student"
    evals = json.loads((stage / "evals.json").read_text())
    assert [entry["step"] for entry in evals] == [4, 8, 12]
    assert all(entry["value"] == entry["metrics"][kept] for entry in evals)
    best = max(evals, key=lambda entry: (entry["value"], -entry["step"]))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["step"] == best["step"]
    assert metrics["final"]["f1"] == pytest.approx(best["metrics"][kept], abs=1e-9)
    assert 0 <= metrics["final"]["held_out_tuned_f1"] <= 100, "the 20 dev questions span several articles"
    assert 0 <= metrics["final"]["HasAns_span_f1"] <= 100 and 0 <= metrics["final"]["no_answer_auc"] <= 1
    kept, chosen = weights(stage / "model.weights.h5"), weights(stage / training.BEST_WEIGHTS)
    assert all(np.array_equal(kept[key], chosen[key]) for key in chosen)
    assert list((stage / "logs" / "eval").glob("events.out.tfevents.*")), "dev F1 logged to TensorBoard"
    for name in ("predictions.json", "na_probs.json", "nbest.json"):
        assert len(json.loads((stage / name).read_text())) == 20, name
    assert not (stage / "checkpoints").exists(), "a finished stage drops its checkpoints"
    summary = (out / "summary.md").read_text()
    assert "| student |" in summary and "f1" in summary
    printed = capsys.readouterr().out
    assert "dev at step 4" in printed and "serve it: python -m serving.devserver" in printed
    assert "Epoch" not in printed


def test_exported_files_are_readable_by_other_users_and_named_by_an_absolute_path(tmp_path, monkeypatch):
    """export.base_dir is relative to the training command's folder; metrics.json names the version
    absolutely, so predict --model RUN from another folder finds it (it had resolved saved_models/...
    against its own folder)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    assert train.main(tiny_args(tmp_path, "export.base_dir=models", output_dir=out)) == 0
    version = json.loads((out / "metrics.json").read_text())["export"]
    assert version == str(tmp_path / "models" / "road_default" / "1")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert predict.resolve_model(out) == pathlib.Path(version)
    for path in [pathlib.Path(version), *pathlib.Path(version).rglob("*")]:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    recorded = json.loads((pathlib.Path(version) / "road_tf_metrics.json").read_text())
    assert recorded["f1"] == json.loads((out / "metrics.json").read_text())["final"]["f1"]


def test_tfds_without_network_fails_fast_with_one_line(tmp_path):
    import subprocess
    import sys
    import time

    from conftest import REPO

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "road_tf.train", "--output-dir", str(tmp_path / "run"),
                             "--set", "data.source=tfds", "--set", f"data.cache_dir={tmp_path / 'cache'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")})
    elapsed = time.monotonic() - started
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "data.source" in lines[0] and "json" in lines[0], lines[0]
    assert elapsed < 30, f"took {elapsed:.0f} s"
