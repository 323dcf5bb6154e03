"""`python -m road_tf.predict`: the exported model answers what the run's evaluation recorded; bad input.

A tiny run trains on the synthetic corpus and exports; predict on its dev file with that export
must give the answers of `student/predictions.json`, no-answer probabilities within 1e-5 of
`student/na_probs.json`, and `road_tf.evaluate` on them must give metrics.json's numbers.
"""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, one_error_line
from road_tf import evaluate, predict, train
from road_tf.errors import NO_TOKEN
from test_train_cli import TINY

METRIC_KEYS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_f1", "best_exact")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run: (run dir, dev file, saved_models base)."""
    root = tmp_path_factory.mktemp("predict")
    out, base = root / "run", root / "saved_models"
    args = ["--output-dir", str(out)]
    for pair in TINY + [f"export.base_dir={base}", f"data.cache_dir={root / 'cache'}", "decode.null_score_diff_threshold=-1.0"]:
        args += ["--set", pair]
    assert train.main(args) == 0
    return out, root / "cache" / "synthetic-0" / "squad" / "dev.json", base


@pytest.mark.parametrize("model_arg", ["run", "version", "model folder"])
def test_predict_reproduces_the_runs_answers_and_metrics(run, tmp_path, capsys, model_arg):
    out, dev, base = run
    metrics = json.loads((out / "metrics.json").read_text())
    model = {"run": out, "version": metrics["export"], "model folder": base / "road_default"}[model_arg]
    preds, na = tmp_path / "preds.json", tmp_path / "na.json"
    assert predict.main(["--model", str(model), "--data", str(dev), "--output", str(preds), "--na-probs", str(na)]) == 0
    recorded = json.loads((out / "student" / "predictions.json").read_text())
    got = json.loads(preds.read_text())
    assert got == recorded and len(got) == 20
    recorded_na, got_na = json.loads((out / "student" / "na_probs.json").read_text()), json.loads(na.read_text())
    assert recorded_na.keys() == got_na.keys()
    assert max(abs(recorded_na[q] - got_na[q]) for q in got_na) <= 1e-5
    capsys.readouterr()
    assert evaluate.main(["squad2", str(dev), str(preds), "--na-probs", str(na)]) == 0
    scored = json.loads(capsys.readouterr().out)
    for key in METRIC_KEYS:
        assert scored[key] == pytest.approx(metrics["final"][key], abs=1e-9), key
    assert metrics["final"]["null_score_diff_threshold"] == -1.0


def test_outputs_named_gz_are_gzipped_and_evaluate_reads_them(run, tmp_path, capsys):
    """predict wrote plain JSON under a .gz name, which evaluate (and every reader) took for corrupt gzip."""
    out, dev, _ = run
    preds, na = tmp_path / "preds.json.gz", tmp_path / "na.json.gz"
    assert predict.main(["--model", str(out), "--data", str(dev), "--output", str(preds), "--na-probs", str(na)]) == 0
    assert json.loads(gzip.decompress(preds.read_bytes())) == json.loads((out / "student" / "predictions.json").read_text())
    capsys.readouterr()
    assert evaluate.main(["squad2", str(dev), str(preds), "--na-probs", str(na)]) == 0
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert json.loads(capsys.readouterr().out)["f1"] == pytest.approx(final["f1"], abs=1e-9)


@pytest.mark.parametrize("context, question, reason", [
    ("word " * 20_001, "Which word?", "context is 100005 bytes, above the limit of 100000 bytes (data.max_context_bytes)"),
    ("Ann met Bob.", "\u200b\u2060", f"question {NO_TOKEN}"),  # the data reader lets it through
])
def test_a_question_the_model_refuses_is_named(run, tmp_path, capsys, context, question, reason):
    """A context above the exported data.max_context_bytes (100,000 bytes) or a question of
    zero-width characters only, not first in a later batch: the model's "error" for its row, and
    predict names the question; nothing is written."""
    out, dev, _ = run
    document = json.loads(dev.read_text())
    document["data"][1]["paragraphs"].append({"context": context, "qas": [
        {"id": "odd one", "question": question, "answers": [], "is_impossible": True}]})
    before = sum(len(paragraph["qas"]) for article in document["data"][:2] for paragraph in article["paragraphs"]) - 1
    assert before > 4 and before % 4
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(document))
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(out), "--data", str(data), "--output", str(tmp_path / "p.json"),
                      "--batch-size", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (tmp_path / "p.json").exists()
    assert err.splitlines()[-1] == (
        f"error: {data}: record odd one: --model {json.loads((out / 'metrics.json').read_text())['export']} "
        f"refuses it: {reason}")


def test_help_names_every_flag():
    result = subprocess.run([sys.executable, "-m", "road_tf.predict", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--model", "--data", "--output", "--na-probs", "--batch-size"):
        assert flag in result.stdout


def bad_cases(run, tmp_path):
    """(argv, expected message part) pairs of malformed invocations."""
    out, dev, base = run
    version = json.loads((out / "metrics.json").read_text())["export"]
    truncated = tmp_path / "truncated.json"
    truncated.write_text(dev.read_text()[:500])
    wrong_shape = tmp_path / "list.json"
    wrong_shape.write_text("[1, 2, 3]")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": "v2.0", "data": []}))
    bad_gzip = tmp_path / "bad.json.gz"
    bad_gzip.write_bytes(gzip.compress(b"{not json")[:-6])
    no_export = tmp_path / "run_without_export"
    no_export.mkdir()
    (no_export / "config.yaml").write_text("task: squad2\n")
    finished = {"stages": {}, "final": {"task": "squad2"}}
    (no_export / "metrics.json").write_text(json.dumps({**finished, "export": None}))
    odd_exports = []
    for name, exported in (("export_missing", str(tmp_path / "gone")), ("export_itself", None)):
        odd = tmp_path / name
        odd.mkdir()
        (odd / "config.yaml").write_text("task: squad2\n")
        (odd / "metrics.json").write_text(json.dumps({**finished, "export": exported or str(odd.resolve())}))
        odd_exports.append(odd)
    broken_model = tmp_path / "broken" / "1"
    broken_model.mkdir(parents=True)
    (broken_model / "saved_model.pb").write_bytes(b"not a protobuf")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    good = ["--data", str(dev), "--output", str(tmp_path / "p.json")]
    return [
        (["--model", str(tmp_path / "nope"), *good], "no such folder"),
        (["--model", str(blocker), *good], "a_file: a file, not a folder"),
        (["--model", str(tmp_path), *good], "not a SavedModel"),
        (["--model", str(no_export), *good], "exported no model"),
        (["--model", str(broken_model), *good], "cannot load"),
        *((["--model", str(odd), *good], "its metrics.json names no exported SavedModel folder") for odd in odd_exports),
        (["--model", version, "--data", str(tmp_path / "missing.json"), "--output", str(tmp_path / "p.json")], "missing.json"),
        (["--model", version, "--data", str(truncated), "--output", str(tmp_path / "p.json")], "truncated.json"),
        (["--model", version, "--data", str(wrong_shape), "--output", str(tmp_path / "p.json")], "list.json"),
        (["--model", version, "--data", str(empty), "--output", str(tmp_path / "p.json")], "no questions"),
        (["--model", version, "--data", str(bad_gzip), "--output", str(tmp_path / "p.json")], "bad.json.gz"),
        (["--model", version, "--data", "/dev/zero", "--output", str(tmp_path / "p.json")], "/dev/zero: a device"),
        (["--model", version, "--data", str(dev), "--output", str(blocker / "p.json")], "is a file, not a folder"),
        (["--model", version, "--data", str(dev), "--output", "/proc/road_tf/p.json"], "cannot write there"),
        (["--model", version, "--data", str(dev), "--na-probs", "/proc/na.json", "--output", str(tmp_path / "p.json")],
         "cannot write there"),
        (["--model", version, "--data", str(dev), "--output", str(tmp_path)], "is a folder"),
        (["--model", version, "--data", str(dev), "--output", str(pipe)], "pipe: is a device or pipe, not a file name"),
        (["--model", version, "--data", str(dev), "--output", str(tmp_path / "p.json"), "--na-probs", "/dev/null"],
         "/dev/null: is a device or pipe"),
        (["--model", version, "--data", str(dev), "--output", str(dev)], "is the --data file"),
        (["--model", version, "--data", str(dev), "--output", str(tmp_path / "p.json"), "--na-probs",
          str(tmp_path / "." / "p.json")], "is the --output file"),
    ]


def test_malformed_inputs_give_one_line_and_no_output(run, tmp_path, capsys):
    for argv, message in bad_cases(run, tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(SystemExit) as exit_info:
            predict.main(argv)
        line = one_error_line(capsys, exit_info)
        assert message in line, (argv, line)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, argv


@pytest.mark.parametrize("complete", [True, False], ids=["older_complete", "none_complete"])
def test_a_model_folder_whose_newest_version_is_unfinished_is_named(tmp_path, capsys, complete):
    """A model folder whose newest version holds no saved_model.pb (a copy in progress) was called
    "not ... a model folder with numbered versions"; the message names that version, and the newest
    one that holds a saved_model.pb, which a server keeps serving."""
    model = tmp_path / "model"
    (model / "2").mkdir(parents=True)
    if complete:
        (model / "1").mkdir()
        (model / "1" / "saved_model.pb").write_bytes(b"")
    dev = tmp_path / "dev.json"
    dev.write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(model), "--data", str(dev), "--output", str(tmp_path / "p.json")])
    hint = f"; the newest version that holds one is {model / '1'}" if complete else ""
    assert one_error_line(capsys, exit_info) == (
        f"error: --model {model}: its newest version, 2, holds no saved_model.pb (a copy or export not finished, "
        f"or a damaged one){hint}")
    assert not (tmp_path / "p.json").exists()


def model_files(folder):
    """{path relative to `folder`: its bytes} of every file under `folder`."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("model_arg, output", [
    ("1", "2/variables/variables.index"), ("model folder", "1/saved_model.pb"), ("model folder", "3"),
    ("link to 1", "2/variables/variables.index"), ("1", "preds.json"),
], ids=["version-other-version", "model-folder-older-version", "model-folder-next-version-number",
        "link-to-version-other-version", "version-beside-versions"])
def test_predict_writes_nothing_into_the_model_folder_of_the_model_it_reads(run, tmp_path, capsys, model_arg, output):
    """Only outputs inside the version folder read were refused: an --output in another version
    replaced its files (version 2's variables.index, and a server then served a broken model), and
    one named `3` beside the versions took the next export's version number."""
    out, dev, _ = run
    models = tmp_path / "models" / "road_default"
    for version in ("1", "2"):
        shutil.copytree(json.loads((out / "metrics.json").read_text())["export"], models / version)
    (tmp_path / "current").symlink_to(models / "1")
    model = {"1": models / "1", "model folder": models, "link to 1": tmp_path / "current"}[model_arg]
    before, target = model_files(models), models / output
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(model), "--data", str(dev), "--output", str(target)])
    assert one_error_line(capsys, exit_info) == (
        f"error: --output {target}: lies in the model folder {models.resolve()} that holds the SavedModel --model "
        "reads, whose versions a server serves; write it elsewhere")
    assert model_files(models) == before


@pytest.mark.parametrize("flag", ["--output", "--na-probs"])
def test_an_output_below_a_file_is_named_as_given(tmp_path, capsys, flag):
    """The message named the file in the way (the output's folder) as if it were the value given."""
    data = tmp_path / "good.json"
    data.write_text("{}")
    outputs = {"--output": str(tmp_path / "p.json"), flag: str(data / "x")}
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(tmp_path / "model"), "--data", str(data), *sum(outputs.items(), ())])
    assert one_error_line(capsys, exit_info) == f"error: {flag} {data / 'x'}: {data} is a file, not a folder"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["good.json"]


def test_an_output_in_another_subfolder_of_the_model_folder_is_written(run, tmp_path):
    """Only the versions and their folder itself are guarded: a subfolder not named by a version
    number (answers/) is no version a server reads."""
    out, dev, _ = run
    models = tmp_path / "models" / "road_default"
    shutil.copytree(json.loads((out / "metrics.json").read_text())["export"], models / "1")
    (models / "answers").mkdir()
    assert predict.main(["--model", str(models / "1"), "--data", str(dev), "--output", str(models / "answers" / "p.json")]) == 0
    assert json.loads((models / "answers" / "p.json").read_text())
