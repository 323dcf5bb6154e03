"""The `python -m road_tf.train` entry point: errors, --help, and the end-to-end slice."""

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf
import yaml

from conftest import REPO, one_error_line
from helpers_signals import STOP_IDS, STOPS, started, stop_command, wait_until
from road_tf import experiment, export, files, train
from road_tf.errors import INTERRUPTED_EXIT, ConfigError, RoadError
from road_tf.config import dump_yaml, load_config
from road_tf.data import sources
from road_tf.models.task_model import build_model

TINY = [
    "train.steps=12", "train.batch_size=8", "train.checkpoint_every=6",
    "data.synthetic_train_size=60", "data.synthetic_dev_size=20",
    "data.max_seq_length=64", "data.doc_stride=24", "data.max_query_length=16",
    "model.hidden_dim=16", "model.intermediate_dim=32", "model.num_layers=1",
]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "road_tf.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, field", [
    (["--set", "train.steps=abc"], "train.steps"),
    (["--set", "no.such.key=1"], "no"),
    (["--config", "no_such_recipe"], "--config"),
])
def test_bad_arguments_fail_with_one_line_and_exit_2(args, field):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}")
    assert "Traceback" not in result.stderr


def test_help_lists_recipes():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout and "--set" in result.stdout


def test_end_to_end_slice(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    base = tmp_path / "saved_models"
    args = ["--output-dir", str(out)]
    for pair in TINY + [f"export.base_dir={base}", f"data.cache_dir={tmp_path / 'cache'}"]:
        args += ["--set", pair]
    assert train.main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    final = metrics["final"]
    assert final["task"] == "squad2" and final["split"] == "dev"
    assert 0.0 <= final["f1"] <= 100.0 and final["total"] == 20
    assert set(metrics) == {"final", "stages", "export", "environment"}
    environment = metrics["environment"]
    assert environment["tensorflow"] == tf.__version__ and environment["accelerators"] == []
    assert environment["cores"] >= 1 and environment["intra_op_threads"] >= 1
    assert final["exact"] == metrics["stages"]["student"]["exact"]
    predictions = json.loads((out / "student" / "predictions.json").read_text())
    na_probs = json.loads((out / "student" / "na_probs.json").read_text())
    nbest = json.loads((out / "student" / "nbest.json").read_text())
    assert len(predictions) == len(na_probs) == len(nbest) == 20
    assert all(answer == "" or answer == nbest[qid][0]["text"] for qid, answer in predictions.items())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["steps"] == 12
    assert (out / "student" / "logs").is_dir() and not (out / "student" / "checkpoints").exists()
    assert (base / "road_default" / "1" / "saved_model.pb").is_file()
    assert (tmp_path / "cache" / "synthetic-0" / "squad" / "train.json").is_file()
    printed = capsys.readouterr().out
    assert "student" in printed and "f1" in printed
    # Rerunning the finished command neither retrains nor exports again.
    assert train.main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert sorted(p.name for p in (base / "road_default").iterdir()) == ["1"]
    # Nor does a run killed after its export, before metrics.json: the version it wrote records the run.
    (out / "metrics.json").unlink()
    assert train.main(args) == 0
    assert sorted(p.name for p in (base / "road_default").iterdir()) == ["1"]
    assert json.loads((out / "metrics.json").read_text())["export"] == str(base / "road_default" / "1")
    # The export command re-exports a finished run under another name.
    assert export.main(["--run-dir", str(out), "--model-name", "again", "--base", str(base)]) == 0
    assert (base / "again" / "1" / "saved_model.pb").is_file()
    capsys.readouterr()
    check_export_refuses_damaged_runs(out, tmp_path, capsys, monkeypatch)


def check_export_refuses_damaged_runs(out, tmp_path, capsys, monkeypatch):
    """`export` on copies of the finished run `out` with one part damaged: one line, exit 2, no version;
    only damaged weights cost a model build (metrics.json and --base are checked first)."""
    built = []
    monkeypatch.setattr("road_tf.models.task_model.build_model", lambda *args: built.append(args) or build_model(*args))
    def damaged(name, change):
        copy = tmp_path / name
        shutil.copytree(out, copy)
        change(copy)
        return copy

    def metrics_with(**final):
        return lambda run: (run / "metrics.json").write_text(json.dumps(
            {**json.loads((out / "metrics.json").read_text()), "final": final}))

    weights = "student/model.weights.h5"
    cases = [
        (damaged("random_bytes", lambda run: (run / weights).write_bytes(b"\x00" * 64)), [], "does not load into"),
        (damaged("nan_threshold", metrics_with(task="squad2", f1=50.0, null_score_diff_threshold=float("nan"))), [],
         "not the metrics.json of a finished road_tf run"),
        (damaged("final_a_list", lambda run: (run / "metrics.json").write_text('{"final": [1], "stages": {}}')), [],
         "not the metrics.json of a finished road_tf run"),
        (out, ["--base", str(out / "config.yaml")], "is a file, not a folder"),
    ]
    for run, extra, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            export.main(["--run-dir", str(run), "--model-name", "damaged", *(extra or ["--base", str(tmp_path / "sm")])])
        assert message in one_error_line(capsys, exit_info), run
        assert len(built) == (extra == [] and run.name == "random_bytes"), run
        built.clear()
    assert not (tmp_path / "sm").exists() and not (out / "config.yaml" / "damaged").exists()
    nameless = damaged("nameless", lambda run: (run / "config.yaml").write_text(
        (out / "config.yaml").read_text().replace("model_name: road_default", "model_name: ''")))
    (tmp_path / "sm" / "road_demo").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--run-dir", str(nameless), "--base", str(tmp_path / "sm")])
    assert one_error_line(capsys, exit_info).startswith("error: export.model_name: empty, so the model has no folder")
    assert not built and [p.name for p in (tmp_path / "sm").iterdir()] == ["road_demo"]


def test_export_of_a_folder_that_is_not_a_run_fails_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--run-dir", str(tmp_path), "--model-name", "x", "--base", str(tmp_path / "sm")])
    assert exit_info.value.code == 2
    assert "not a finished run" in capsys.readouterr().err


@pytest.mark.parametrize("entry,message", [("file", "a file, not a run folder"), ("missing", "no such run folder")])
def test_export_of_a_file_or_of_nothing_says_so_in_one_line(tmp_path, capsys, entry, message):
    (tmp_path / "file").write_text("not a run")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--run-dir", str(tmp_path / entry), "--base", str(tmp_path / "sm")])
    assert one_error_line(capsys, exit_info) == f"error: {tmp_path / entry}: {message}"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("record", ["{bad", "{}", '{"stages": {}, "final": {"task": "squad2", "f1": "x"}}',
                                    '{"stages": {}, "final": {"task": "squad2"}, "export": 5}',
                                    '{"stages": {}, "final": {"task": "squad2", "f1": 1%s}}' % ("0" * 400),
                                    pytest.param("[" * 100_000 + "]" * 100_000, id="nested-too-deeply")])
def test_an_output_dir_whose_metrics_json_no_run_wrote_fails_with_one_line(tmp_path, capsys, record):
    (tmp_path / "metrics.json").write_text(record)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(tmp_path), *sum((["--set", pair] for pair in TINY), [])])
    assert one_error_line(capsys, exit_info) == (f"error: {tmp_path / 'metrics.json'}: not the metrics.json of a "
                                                 "finished road_tf run; move it away or choose another --output-dir")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize("name, what, kind", [
    ("metrics.json", "metrics", "a folder"), ("config.yaml", "configuration", "a folder"),
    ("train.log", "log", "a folder"), ("train.log", "log", "a device or pipe"), ("summary.md", "summary", "a folder"),
    ("experiment_time.json", "training time", "a folder"),
])
def test_a_non_file_named_as_a_run_file_stops_the_run_before_it_trains(tmp_path, capsys, name, what, kind):
    """A folder or a pipe where the run writes one of its files: one line before anything is loaded
    or written (a pipe named train.log made the run wait for a reader for ever)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / name).mkdir() if kind == "a folder" else os.mkfifo(run / name)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(run), *sum((["--set", pair] for pair in TINY), []),
                    "--set", f"export.base_dir={tmp_path / 'sm'}"])
    assert one_error_line(capsys, exit_info) == (f"error: {run / name}: is {kind}, where the run would write its "
                                                 f"{what}; move it away or choose another --output-dir")
    assert sorted(path.name for path in run.iterdir()) == [name]


BAD_SQUAD = {
    "offset past the context": '{"data": [{"title": "t", "paragraphs": [{"context": "abc", "qas": [{"id": "q1", '
                               '"question": "?", "answers": [{"text": "c", "answer_start": 9}]}]}]}]}',
    "truncated": '{"data": [{"title": "t", "paragraphs": [',
}


@pytest.mark.parametrize("problem", sorted(BAD_SQUAD))
def test_bad_training_file_fails_with_one_line_naming_it(tmp_path, problem):
    bad = tmp_path / "bad.json"
    bad.write_text(BAD_SQUAD[problem])
    result = run_cli("--set", "data.source=json", "--set", f"data.train_path={bad}", "--set", f"data.dev_path={bad}",
                     "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in result.stderr


def test_an_article_split_that_leaves_nothing_to_train_on_fails_with_one_line(tmp_path, capsys):
    data = tmp_path / "two_articles.json"
    data.write_text(json.dumps({"data": [
        {"title": title, "paragraphs": [{"context": "Ada wrote it.", "qas": [
            {"id": title, "question": "Who wrote it?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}
        for title in ("A", "B")]}))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(tmp_path / "run"), "--set", "data.source=json", "--set", f"data.train_path={data}",
                    "--set", "data.split_dev_questions=1000", "--set", f"data.cache_dir={tmp_path / 'cache'}"])
    assert one_error_line(capsys, exit_info) == (
        f"error: {data}: the article split leaves no training questions: all 2 article(s) (2 questions) go to the dev "
        "half, which takes articles until it holds data.split_dev_questions questions; lower data.split_dev_questions "
        "(now 1000) or give data.dev_path with data.split_dev_questions=0")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.json"))


ARTICLE = {"title": "A", "paragraphs": [{"context": "Ada wrote it.", "qas": [
    {"id": "q1", "question": "Who wrote it?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}


@pytest.mark.parametrize("document, problem", [
    ([ARTICLE], "the top level must be an object, got a list"),
    ({"version": "v2.0"}, "the top level has no 'data' field"),
    ({"data": [{**ARTICLE, "title": 5}]}, "record data[0]: article.title must be a string, got a number"),
    ({"data": [{**ARTICLE, "paragraphs": [{"context": "Ada wrote it.", "qas": 7}]}]},
     "record data[0].paragraphs[0]: paragraph.qas must be a list, got a number"),
    ({"data": [ARTICLE, {"title": "B", "paragraphs": [{"context": "Ada wrote it.", "qas": [
        {"id": "q2", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 50}]}]}]}]},
     "record q2: answers[0] span [50, 53) lies outside the context (13 characters)"),
])
def test_the_file_split_by_article_is_checked_first_naming_it(tmp_path, document, problem):
    """data.split_dev_questions splits the user's file: a malformed one is refused naming that file and
    the record, before any half is written (not a traceback, nor an error naming a half in the cache)."""
    data = tmp_path / "mine.json"
    data.write_text(json.dumps(document))
    config = load_config(None, ["data.source=json", f"data.train_path={data}", "data.split_dev_questions=1",
                                f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(RoadError) as error:
        sources.local_split_paths(config.data)
    assert str(error.value) == f"{data}: {problem}"
    assert not (tmp_path / "cache").exists()


def test_a_file_where_the_article_split_is_cached_fails_with_one_line(tmp_path, capsys):
    """The split's folder under data.cache_dir was made by write_atomic's mkdir: a FileExistsError traceback."""
    data = tmp_path / "articles.json"
    data.write_text(json.dumps({"data": [
        {"title": title, "paragraphs": [{"context": "Ada wrote it.", "qas": [
            {"id": title, "question": "Who wrote it?", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}
        for title in ("A", "B", "C")]}))
    flags = ["--set", "data.source=json", "--set", f"data.train_path={data}", "--set", "data.split_dev_questions=1",
             "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    split = pathlib.Path(sources.local_split_paths(load_config(None, flags[1::2]).data)[0]).parent
    shutil.rmtree(split)
    split.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(tmp_path / "run"), *flags])
    assert one_error_line(capsys, exit_info) == f"error: {split} is a file, not a folder; move it away"
    assert not (tmp_path / "run").exists()


def test_bad_tsv_fails_with_one_line_naming_the_line(tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_text("sentence\tlabel\ngood film\t1\nbad film\tmaybe\n")
    result = run_cli("--set", "task=sentiment", "--set", "data.source=json", "--set", f"data.train_path={bad}",
                     "--set", f"data.dev_path={bad}", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "line 3" in lines[0]


def test_missing_task_file_fails_with_one_line_naming_it(tmp_path):
    absent = tmp_path / "absent.tsv.gz"
    result = run_cli("--set", "multitask.tasks=[squad2, sentiment]", "--set", "multitask.steps=5",
                     "--set", f"multitask.task_files=[{{task: sentiment, train_path: {absent}, split_dev: 10}}]",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "export.enabled=false",
                     "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(absent) in lines[0] and "Traceback" not in result.stderr


def tiny_pairs(*pairs):
    """TINY with `pairs` on top; without TINY's model sizes when `pairs` set model.pretrained (the
    encoder it names has its own, and Config refuses sizes beside it)."""
    pretrained = any(pair.startswith("model.pretrained=") for pair in pairs)
    return [*(pair for pair in TINY if not (pretrained and pair.startswith("model."))), *pairs]


def tiny_argv(output_dir, tmp_path, *pairs):
    """train.main's argv of a TINY run into `output_dir` (cache under `tmp_path`, no export) with `pairs` on top."""
    pairs = tiny_pairs("export.enabled=false", f"data.cache_dir={tmp_path / 'cache'}", *pairs)
    return ["--output-dir", str(output_dir), *sum((["--set", pair] for pair in pairs), [])]


def test_a_run_stopped_by_its_batch_size_leaves_no_folder_and_a_fixed_rerun_trains(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path, "train.batch_size=10000"))
    assert one_error_line(capsys, exit_info).startswith("error: train.batch_size: 10000 is larger than the ")
    assert not out.exists()
    assert train.main(tiny_argv(out, tmp_path)) == 0
    assert (out / "metrics.json").is_file()
    assert "squad2/train: 60 examples from synthetic" in (out / "train.log").read_text()


def test_a_run_stopped_by_its_batch_size_leaves_an_existing_folder_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    argv = tiny_argv(out, tmp_path, "train.batch_size=10000")
    out.mkdir()
    earlier = {"config.yaml": dump_yaml(train.resolve_run(train.parse_args(argv))[0]), "train.log": "an earlier run\n"}
    for name, text in earlier.items():
        (out / name).write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert "train.batch_size" in one_error_line(capsys, exit_info)
    assert {path.name: path.read_text() for path in out.iterdir()} == earlier


def test_warnings_before_the_run_starts_come_out_in_the_run_s_log_format(tmp_path):
    """A skipped record is warned about while the data is checked, before the run folder exists:
    in the format of the run's other lines, on stdout (not Python's default `WARNING:root:` on stderr)."""
    question = {"id": "q0", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]}
    long_context = {"context": "Ada " * 20, "qas": [{**question, "id": "long"}]}
    bad_offset = {"context": "Ada wrote it.", "qas": [{**question, "id": "offset",
                                                      "answers": [{"text": "Ada", "answer_start": 99}]}]}
    good = {"context": "Ada wrote it.", "qas": [question]}
    data = tmp_path / "train.json"
    data.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [good, long_context, bad_offset]}]}))
    result = run_cli("--set", "data.source=json", "--set", f"data.train_path={data}",
                     "--set", f"data.dev_path={tmp_path / 'absent.json'}", "--set", "data.max_context_bytes=40",
                     "--skip-bad-records", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "absent.json" in result.stderr
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING skipping bad "
    assert re.search(rf"^{stamp}question: {re.escape(str(data))}: record offset: ", result.stdout, re.M), result.stdout
    assert re.search(rf"^{stamp}record: {re.escape(str(data))}: record long: ", result.stdout, re.M), result.stdout
    assert not (tmp_path / "run").exists()


def test_an_unexpected_error_while_loading_the_data_keeps_its_traceback_in_train_log(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug")

    monkeypatch.setattr(experiment, "load_task_data", broken)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path))
    assert one_error_line(capsys, exit_info) == "error: stage data failed: ValueError: a bug"
    assert "Traceback" in (out / "train.log").read_text()


def test_an_output_dir_holding_other_files_is_refused_before_the_run_writes_there(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path))
    assert one_error_line(capsys, exit_info) == (
        f"error: --output-dir {out}: a folder holding other files (todo.txt), not a road_tf run (no config.yaml or "
        "train.log); choose a new or empty folder")
    assert [path.name for path in out.iterdir()] == ["todo.txt"]


@pytest.mark.parametrize("field", ["model", "distillation.teachers[0].model"])
def test_a_pretrained_path_that_is_no_folder_is_refused_naming_the_setting(tmp_path, capsys, field):
    """The encoder's loader named only the path ("/etc/passwd: a file, not a checkpoint folder")."""
    (tmp_path / "weights.bin").write_bytes(b"x")
    for path, problem in ((tmp_path / "weights.bin", "a file, not a"), (tmp_path / "missing", "no such"),
                          ("/dev/null", "a device or pipe, not a")):
        setting = (f"model.pretrained={path}" if field == "model"
                   else f"distillation.teachers=[{{model: {{pretrained: {path}}}}}]")
        with pytest.raises(SystemExit) as exit_info:
            train.main(tiny_argv(tmp_path / "run", tmp_path, setting))
        assert one_error_line(capsys, exit_info) == (
            f"error: {field}.pretrained {path}: {problem} checkpoint folder or run directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]


def test_an_export_folder_holding_other_files_is_refused_before_the_run_starts(tmp_path, capsys, monkeypatch):
    """export.base_dir=~ with export.model_name=Documents trained, then put a version folder `1/`
    among the files there."""
    def refuse(config, output_dir):
        raise AssertionError("the run started")

    monkeypatch.setattr(experiment, "prepare_run", refuse)
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "todo.txt").write_text("mine\n")
    out = tmp_path / "run"
    argv = [*tiny_argv(out, tmp_path, f"export.base_dir={tmp_path}", "export.model_name=Documents")]
    argv[argv.index("export.enabled=false")] = "export.enabled=true"
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert one_error_line(capsys, exit_info) == (
        f"error: export.base_dir {documents}: a folder holding other files (todo.txt) and no numbered versions, "
        "not a model folder; choose another export.base_dir or export.model_name")
    assert [path.name for path in documents.iterdir()] == ["todo.txt"] and not out.exists()


def test_a_model_folder_of_versions_an_empty_or_a_new_one_takes_an_export(tmp_path):
    for name in ("versions", "empty"):
        (tmp_path / name).mkdir()
    (tmp_path / "versions" / "3").mkdir()
    (tmp_path / "versions" / "notes.txt").write_text("kept\n")
    (tmp_path / "empty" / ".gitkeep").write_text("")
    for name in ("versions", "empty", "new"):
        files.check_model_folder(tmp_path / name, "export.base_dir")


@pytest.mark.parametrize("run, cache, base, named", [
    ("models/road_default", "cache", "models", ("--output-dir", "export.base_dir's model folder")),
    ("run", "cache", "run/exports", ("--output-dir", "export.base_dir's model folder")),
    ("run", "run", "models", ("--output-dir", "data.cache_dir")),
    ("run", "models/road_default/cache", "models", ("data.cache_dir", "export.base_dir's model folder")),
], ids=["run-is-model-folder", "exports-in-run", "cache-is-run", "cache-in-model-folder"])
def test_a_run_whose_folders_overlap_is_refused_before_it_starts(tmp_path, capsys, monkeypatch, run, cache, base,
                                                                 named):
    """A run folder among a model folder's versions, or a model folder or feature cache inside a run
    folder (deleted with it): each ran, its files mixed with the other's."""
    monkeypatch.setattr(experiment, "prepare_run", lambda *args: pytest.fail("the run started"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(tmp_path / run), *sum((["--set", pair] for pair in TINY), []),
                    "--set", f"data.cache_dir={tmp_path / cache}", "--set", f"export.base_dir={tmp_path / base}"])
    line = one_error_line(capsys, exit_info)
    first, second = named
    assert line.startswith(f"error: {first} ") and f": lies in or holds {second} " in line
    assert line.endswith("; give them separate folders")


@pytest.mark.parametrize("value", ["data.skip_bad_records=false", "data.skip_bad_records=true",
                                   "data={skip_bad_records: false}"])
def test_skip_bad_records_given_twice_is_refused(capsys, value):
    """--skip-bad-records beside --set data.skip_bad_records=false: the flag won silently."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--skip-bad-records", "--set", value])
    assert one_error_line(capsys, exit_info) == (
        "error: --skip-bad-records: sets data.skip_bad_records, which --set sets too; give one of them")


def test_the_repository_root_as_output_dir_is_refused(capsys, monkeypatch):
    def refuse(config, output_dir):
        raise AssertionError("the run started in the repository's root")

    monkeypatch.setattr(experiment, "prepare_run", refuse)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output-dir", str(REPO), "--set", "export.enabled=false"])
    assert one_error_line(capsys, exit_info).startswith(f"error: --output-dir {REPO}: a folder holding other files")


def test_an_output_dir_of_bytes_that_are_not_utf8_is_refused_before_training(tmp_path):
    """TensorFlow writes checkpoints only to UTF-8 paths: such a run used to fail at its first checkpoint."""
    out = os.fsencode(tmp_path) + b"/run-\xff"
    program = "import os, sys; os.execv(sys.executable, [sys.executable, '-m', 'road_tf.train', *sys.argv[1:]])"
    result = subprocess.run([sys.executable, "-c", program, "--output-dir", out, "--set", "train.steps=1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    where = len(f"{tmp_path}/run-")
    assert result.stderr.splitlines() == [f"error: --output-dir '{tmp_path}/run-\\udcff': not UTF-8 text (byte 0xff "
                                          f"at character {where}); give a name in UTF-8"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("stop, word, code", STOPS, ids=STOP_IDS)
def test_a_stopped_run_ends_with_one_line_saying_how_to_resume(tmp_path, stop, word, code):
    """Ctrl-C and SIGTERM (a scheduler's stop) each end a run with one line and the shell's exit code."""
    out = tmp_path / "run"
    with started("road_tf.train", *tiny_argv(out, tmp_path, "train.steps=400", "train.checkpoint_every=1")) as process:
        # The first checkpoint's state file, not its folder: the run is then past its setup.
        wait_until(process, (out / "student" / "checkpoints" / "checkpoint").is_file)
        assert stop_command(process, stop) == (code, [f"{word}: the same command resumes {out} from its last "
                                                      "checkpoint"])


def test_a_pretrained_encoder_that_does_not_load_stops_the_run_before_its_folder_is_made(tmp_path, capsys):
    not_a_checkpoint = tmp_path / "notes"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "passwd").write_text("root:x:0:0\n")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path, f"model.pretrained={not_a_checkpoint}"))
    assert one_error_line(capsys, exit_info) == (
        f"error: {not_a_checkpoint}/config.json: missing; a Hugging Face checkpoint folder needs config.json and "
        "model.safetensors (a road_tf run directory, config.yaml)")
    assert not out.exists()


@pytest.mark.parametrize("batch, message", [
    (3, "multitask.batch_size: 3 must split into multitask.k=2 equal passes"),
    (128, "multitask.batch_size: 128 makes multitask.k=2 passes of 64 rows, more than the 60 training rows of task "
          "'synthetic_nli'"),
], ids=["split", "rows"])
def test_a_run_the_multitask_stage_s_checks_stop_leaves_no_folder_and_an_existing_one_as_it_was(tmp_path, capsys,
                                                                                                batch, message):
    """The stage checked its batch split and the other tasks' data itself: the run folder had been
    made (and was removed again), or a folder that was there got the refused run's log lines."""
    multitask = ["multitask.steps=2", "multitask.tasks=[squad2, synthetic_nli]", "multitask.k=2",
                 f"multitask.batch_size={batch}"]
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path, *multitask))
    assert one_error_line(capsys, exit_info) == f"error: {message}"
    assert not out.exists()
    out.mkdir()
    (out / "train.log").write_text("an earlier run\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(out, tmp_path, *multitask))
    assert one_error_line(capsys, exit_info) == f"error: {message}"
    assert {path.name: path.read_text() for path in out.iterdir()} == {"train.log": "an earlier run\n"}


def test_an_output_dir_holding_a_run_of_other_settings_is_refused_not_resumed_or_reported(tmp_path, capsys):
    out = tmp_path / "run"
    argv = tiny_argv(out, tmp_path)
    config, _ = train.resolve_run(train.parse_args(argv))
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"final": {"task": "squad2", "f1": 1.0}, "stages": {}, "export": None}))
    other = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=5))
    (out / "config.yaml").write_text(dump_yaml(other))
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert one_error_line(capsys, exit_info) == (
        f"error: --output-dir {out}: holds a run of another configuration (it differs in train.steps); give the settings it "
        "was started with to resume it, or choose another --output-dir")
    (out / "config.yaml").write_text("train: {steps: [1]}\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert one_error_line(capsys, exit_info).startswith(
        f"error: --output-dir {out}: not a road_tf run's config.yaml ({out / 'config.yaml'}: train.steps: expected an integer")
    (out / "config.yaml").write_text(dump_yaml(config))
    assert train.main(argv) == 0
    assert "already finished" in capsys.readouterr().out


def test_new_with_an_output_dir_that_holds_files_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.log").write_text("an earlier run\n")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--new", *tiny_argv(out, tmp_path)])
    assert one_error_line(capsys, exit_info) == (f"error: --new: --output-dir {out} is not new (it holds files); "
                                                 "choose a new folder")


def test_ctrl_c_before_the_run_started_says_so(tmp_path, capsys, monkeypatch):
    def interrupted(config, output_dir):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "prepare_run", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        train.main(tiny_argv(tmp_path / "run", tmp_path))
    assert exit_info.value.code == INTERRUPTED_EXIT
    assert capsys.readouterr().err == "interrupted: the run had not started\n"


@pytest.fixture
def root_handlers():
    """Restores the root logger's handlers and level after a test that sets up a run's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_lines_held_for_a_finished_run_do_not_reach_the_next_run_s_log(tmp_path, root_handlers):
    """road_tf.experiments meets finished and new runs in one process: what was logged while a
    finished run was checked is not written into the train.log of the run after it."""
    config = train.resolve_run(train.parse_args(tiny_argv(tmp_path / "done", tmp_path)))[0]
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "config.yaml").write_text(dump_yaml(config))
    metrics = {"final": {"task": "squad2", "split": "dev", "f1": 50.0}, "stages": {}, "export": None}
    (tmp_path / "done" / "metrics.json").write_text(json.dumps(metrics))
    train.setup_logging()
    logging.warning("while checking the finished run")
    assert train.train_run(config, tmp_path / "done") == (metrics, False)
    train.setup_logging()
    logging.warning("the next run's first line")
    train.start_log_file(tmp_path / "next", config.train)
    log = (tmp_path / "next" / "train.log").read_text()
    assert "the next run's first line" in log and "finished run" not in log


def test_a_worker_other_than_the_chief_logs_apart_from_the_run_s_train_log(tmp_path, root_handlers, monkeypatch):
    """Every multi-worker task runs the same command; only the chief's lines go to <run>/train.log,
    another task's to its own log beside it, which keeps the traceback of a failure on that task."""
    config = load_config(None, ["train.strategy=multi_worker"])
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    train.setup_logging()
    logging.warning("a line of worker 1")
    train.start_log_file(tmp_path / "run", config.train)
    try:
        raise MemoryError("on worker 1 only")
    except MemoryError:
        logging.exception("stage student failed")
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["train.worker-1.log"]
    log = (tmp_path / "run" / "train.worker-1.log").read_text()
    assert "a line of worker 1" in log and "Traceback" in log and "MemoryError: on worker 1 only" in log


def test_lines_held_for_a_run_its_checks_stopped_do_not_reach_the_next_run_s_log(tmp_path, root_handlers):
    """A caller that retries with a fixed config in the same process: the refused run's lines stay
    out of the train.log of the run after it."""
    config = train.resolve_run(train.parse_args(tiny_argv(tmp_path / "refused", tmp_path, "train.batch_size=10000")))[0]
    train.setup_logging()
    logging.warning("while checking the refused run")
    with pytest.raises(ConfigError, match="train.batch_size"):
        train.train_run(config, tmp_path / "refused")
    train.setup_logging()
    logging.warning("the next run's first line")
    train.start_log_file(tmp_path / "next", config.train)
    log = (tmp_path / "next" / "train.log").read_text()
    assert "the next run's first line" in log and "refused run" not in log


def test_a_folder_holding_only_hidden_entries_lost_found_or_a_run_s_clock_is_taken_for_a_run(tmp_path):
    """A fresh volume's lost+found, a .gitkeep, or road_tf.experiments' clock file do not make a
    folder one "holding other files"; anything else does."""
    for name in ("lost+found", ".gitkeep", "experiment_time.json"):
        (tmp_path / name).mkdir() if name == "lost+found" else (tmp_path / name).write_text("")
    train.check_run_folder(tmp_path)
    (tmp_path / "experiment_time.json").unlink()
    (tmp_path / "notes.txt").write_text("mine\n")
    with pytest.raises(RoadError, match=r"a folder holding other files \(notes.txt\)"):
        train.check_run_folder(tmp_path)


def test_an_output_dir_that_cannot_be_listed_is_one_line_also_with_new(tmp_path, capsys, monkeypatch):
    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(tmp_path), "iterdir", refuse)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--new", *tiny_argv(tmp_path, tmp_path)])
    assert one_error_line(capsys, exit_info) == f"error: --output-dir {tmp_path}: cannot list it (Permission denied)"


def test_the_resume_hint_of_a_run_started_with_new_names_its_folder(tmp_path):
    assert train.resume_hint(tmp_path / "absent", new=True) == "the run had not started"
    assert train.resume_hint(tmp_path, new=False) == f"the same command resumes {tmp_path} from its last checkpoint"
    assert train.resume_hint(tmp_path, new=True) == (f"rerun with --output-dir {tmp_path} and without --new to resume "
                                                     "it from its last checkpoint")


def test_every_weights_file_of_a_run_is_saved_through_files_save_weights(tmp_path, monkeypatch):
    """The multi-task stage's encoder, the best weights kept while training and each stage's model and
    encoder are written through a temporary file and a rename (they were saved in place: a kill left
    half a file for a resumed run or model.pretrained=runs/X)."""
    from road_tf import training
    from road_tf.multitask import trainer

    saved = []

    def recording(model, path):
        saved.append(pathlib.Path(path).relative_to(out).as_posix())
        files.save_weights(model, path)

    for module in (experiment, training, trainer):
        monkeypatch.setattr(module, "save_weights", recording)
    out = tmp_path / "run"
    train.main(tiny_argv(out, tmp_path, "multitask.steps=2", "multitask.tasks=[squad2, synthetic_nli]",
                         "multitask.k=2", "train.eval_every=6", "train.keep=best"))
    assert sorted(set(saved)) == ["multitask/encoder.weights.h5", "student/best.weights.h5",
                                  "student/encoder.weights.h5", "student/model.weights.h5"]
    assert not [path for path in out.rglob(".*weights.h5*")], "a temporary weights file was left behind"
