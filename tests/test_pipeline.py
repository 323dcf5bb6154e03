"""The TFX pipeline end to end on tiny synthetic data, and malformed input (caching: test_pipeline_gate)."""

import dataclasses
import json
import os
import shutil
import socket
import sqlite3

import pytest
import tensorflow as tf

from conftest import one_error_line
from ml_metadata.proto import metadata_store_pb2
from pipelines import configs, local_runner
from pipelines.data import SPLITS
from road_tf import train
from road_tf.config import dump_yaml, load_config
from road_tf.data import sources
from road_tf.data.examples import Answer, QAExample
from road_tf.data.records import read_records
from road_tf.data.squad import read_squad_json, write_squad_json
from road_tf.errors import NO_TOKEN, RoadError
from road_tf.files import fixed_temp
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


def refusal(args, capsys):
    """Runs local_runner.main, which must exit with code 2; returns its one line of stderr."""
    with pytest.raises(SystemExit) as exit_info:
        local_runner.main(args)
    return one_error_line(capsys, exit_info)


def squad_file(path, titles):
    """Writes a valid SQuAD 2.0 file at `path`: one article per title, each with two questions; returns `path`."""
    context = "The Velden river flows through Marrow."
    write_squad_json(path, [QAExample(f"{title}-{kind}", f"{kind}?", context, answers, title) for title in titles
                            for kind, answers in (("where", (Answer("Marrow", 31),)), ("who", ()))])
    return path


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
    assert refusal(runner_args(tmp_path, "--data", str(bad)), capsys).startswith(f"error: {bad}")
    assert not (tmp_path / "tfx" / "pipeline").exists() and not (tmp_path / "serving").exists()


@pytest.mark.parametrize("titles, advice", [
    (["Velden"], "; give the eval questions with --eval-data"),
    (["Velden", "Marrow"], "; lower --min-dev-questions (now 1000) or give the eval questions with --eval-data"),
])
def test_a_split_that_leaves_no_training_questions_stops_before_any_component(tmp_path, capsys, titles, advice):
    good = squad_file(tmp_path / "good.json", titles)
    error = refusal(runner_args(tmp_path, "--data", str(good)), capsys)
    assert error == (f"error: {good}: the article split leaves no training questions: all {len(titles)} article(s) "
                     f"({2 * len(titles)} questions) go to the dev half, which takes articles until it holds "
                     f"--min-dev-questions questions{advice}")
    assert not (tmp_path / "tfx" / "data" / "examples").exists() and not (tmp_path / "tfx" / "pipeline").exists()
    if len(titles) > 1:  # the advice holds: with a lower --min-dev-questions, one article is left to train on
        args = runner_args(tmp_path, "--data", str(good), "--min-dev-questions=2", "--prepare-only")
        assert local_runner.main(args) == 0


@pytest.mark.parametrize("eval_data", [False, True], ids=["split", "eval file"])
def test_a_context_above_max_context_bytes_is_refused_naming_the_users_file(tmp_path, capsys, eval_data):
    good = squad_file(tmp_path / "good.json", ["Velden", "Marrow"])
    dev = squad_file(tmp_path / "dev.json", ["Marrow"])
    extra = ["--eval-data", str(dev)] if eval_data else ["--min-dev-questions=2"]
    error = refusal(runner_args(tmp_path, "--data", str(good), *extra, "--prepare-only",
                                overrides=["data.max_context_bytes=20"]), capsys)
    assert error.startswith(f"error: {good}: record Velden-where: text of ")
    assert error.endswith("bytes is longer than data.max_context_bytes (20)")
    assert not (tmp_path / "tfx" / "data" / "examples").exists()


@pytest.mark.parametrize("eval_data", [False, True], ids=["split", "eval file"])
def test_a_question_the_tokenizer_reads_as_empty_is_refused_naming_the_users_file(tmp_path, capsys, eval_data):
    """The exported model refuses it, so the run would (naming its own copy, inside a component)."""
    squad_file(tmp_path / "good.json", ["Velden", "Marrow"])
    bad = squad_file(tmp_path / "dev.json", ["Marrow"]) if eval_data else tmp_path / "good.json"
    examples = read_squad_json(bad)
    write_squad_json(bad, [*examples[:-1], dataclasses.replace(examples[-1], question="\u200b\u2060")])
    extra = ["--eval-data", str(bad)] if eval_data else ["--min-dev-questions=2"]
    error = refusal(runner_args(tmp_path, "--data", str(tmp_path / "good.json"), *extra, "--prepare-only"), capsys)
    assert error == f"error: {bad}: record {examples[-1].qid}: question {NO_TOKEN}"
    assert not (tmp_path / "tfx" / "data" / "examples").exists()


@pytest.mark.parametrize("spelling", ["same path", "relative path", "symbolic link", "hard link"])
def test_the_data_file_as_eval_data_is_refused_before_anything_is_written(tmp_path, monkeypatch, spelling):
    """--data F --eval-data F passed: the gate scored the model on the questions it trained on and
    blessed it on them. Another spelling of F's path, or a (symbolic or hard) link to it, is F too."""
    good = squad_file(tmp_path / "good.json", ["Velden", "Marrow"])
    monkeypatch.chdir(tmp_path)
    if spelling == "symbolic link":
        (tmp_path / "dev.json").symlink_to(good)
    if spelling == "hard link":
        (tmp_path / "dev.json").hardlink_to(good)
    eval_data = {"same path": str(good), "relative path": "./good.json"}.get(spelling, "dev.json")
    with pytest.raises(RoadError) as refused:
        local_runner.parse_args(runner_args(tmp_path, "--data", str(good), "--eval-data", eval_data))
    assert str(refused.value) == (
        f"--eval-data {eval_data}: is the --data file; the gate would score the model on the questions it trained "
        "on; give a held-out file, or leave --eval-data out and the run splits --data by article into train and "
        "eval halves")


def test_tfds_without_network_stops_at_once_with_one_line(tmp_path, capsys, monkeypatch):
    """--data tfds reads data.tfds_name, squad/v2.0 when empty (not ""), and checks that TFDS can
    download it: unreachable (a closed port stands in for the network), one line, not minutes of
    retries."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(sources, "TFDS_HOST", closed.getsockname())
    error = refusal(runner_args(tmp_path, "--data", "tfds", "--prepare-only"), capsys)
    assert error.startswith("error: --data tfds: squad/v2.0 is not downloaded here and 127.0.0.1 is unreachable (")
    assert error.endswith("no network: use --data FILE.json with a local SQuAD 2.0 file")
    assert not (tmp_path / "tfx" / "data" / "examples").exists()


def test_an_unknown_tfds_name_is_refused_with_one_line(tmp_path, capsys):
    error = refusal(runner_args(tmp_path, "--data", "tfds", "--prepare-only",
                                overrides=["data.source=tfds", "data.tfds_name=no_such_set"]), capsys)
    assert error.startswith("error: data.tfds_name: TFDS cannot open 'no_such_set' (DatasetNotFoundError")


def test_a_file_without_questions_is_refused_naming_its_split(tmp_path, capsys):
    good, empty = squad_file(tmp_path / "good.json", ["Velden"]), tmp_path / "empty.json"
    empty.write_text('{"data": []}')
    for data, eval_data, split in ((empty, good, "train"), (good, empty, "eval")):
        error = refusal(runner_args(tmp_path, "--data", str(data), "--eval-data", str(eval_data), "--prepare-only"),
                        capsys)
        assert error == f"error: {empty}: holds no usable questions for the {split} split"


def test_a_corrupt_examples_file_under_root_is_rewritten_and_an_intact_one_kept(tmp_path, capsys):
    good, dev = squad_file(tmp_path / "good.json", ["Velden"]), squad_file(tmp_path / "dev.json", ["Marrow"])
    args = runner_args(tmp_path, "--data", str(good), "--eval-data", str(dev), "--prepare-only")
    records = tmp_path / "tfx" / "data" / "examples" / "Split-train" / "data.tfrecord"
    records.parent.mkdir(parents=True)
    records.write_bytes(os.urandom(64))
    assert local_runner.main(args) == 0
    assert read_records([records], compression_type="") == read_squad_json(good)
    written = records.stat().st_mtime_ns
    os.utime(records, ns=(written - 10**9, written - 10**9))
    assert local_runner.main(args) == 0 and records.stat().st_mtime_ns == written - 10**9, "an intact file is kept"
    leftover = fixed_temp(records)  # a write killed before its rename: ImportExampleGen would read it too
    leftover.write_bytes(os.urandom(64))
    assert local_runner.main(args) == 0
    assert sorted(p.name for p in records.parent.iterdir()) == ["data.tfrecord"]
    leftover.mkdir()
    assert refusal(args, capsys) == (f"error: {leftover}: a folder where the examples are written first; remove it "
                                     "or use a fresh --root")


def test_a_folder_in_place_of_an_examples_file_is_refused_with_one_line(tmp_path, capsys):
    good, dev = squad_file(tmp_path / "good.json", ["Velden"]), squad_file(tmp_path / "dev.json", ["Marrow"])
    folder = tmp_path / "tfx" / "data" / "examples" / "Split-eval" / "data.tfrecord"
    folder.mkdir(parents=True)
    error = refusal(runner_args(tmp_path, "--data", str(good), "--eval-data", str(dev), "--prepare-only"), capsys)
    assert error == f"error: {folder}: a folder, not an examples file; remove it or use a fresh --root"


@pytest.mark.parametrize("blocked", ["data", "data/examples/Split-train", "data/split", "data/synthetic", "pipeline",
                                     "metadata.db", "metadata.db garbage"])
def test_a_root_whose_layout_is_blocked_is_refused_before_the_data_is_read(tmp_path, capsys, blocked):
    """A file where the run writes a folder, a folder or a file other than SQLite's where its metadata
    store goes: these stopped the run half-way with a traceback (NotADirectoryError,
    FileExistsError, MLMD's 'Cannot connect sqlite3 database')."""
    root = tmp_path / "tfx"
    path = root / blocked.split()[0]
    path.parent.mkdir(parents=True)
    if blocked == "metadata.db":
        path.mkdir()
    else:
        path.write_text("not sqlite")
    kind = "a folder" if blocked == "metadata.db" else "a file"
    error = refusal(runner_args(tmp_path, "--prepare-only"), capsys)
    if blocked == "metadata.db garbage":
        assert error == (f"error: --root {root}: {path} is not an SQLite database (the pipeline's metadata store); "
                         "move it away or choose another --root")
    elif blocked == "metadata.db":
        assert error == (f"error: --root {root}: {path} is a folder, not the pipeline's metadata file; move it away "
                         "or choose another --root")
    else:
        assert error == f"error: --root {root}: {path} is {kind}, not a folder; move it away or choose another --root"
    assert sorted(p.name for p in root.iterdir()) == [path.relative_to(root).parts[0]]


@pytest.fixture
def pipe_of():
    """pipe_of(payload): a /dev/fd path of a pipe that yields `payload` once and then ends, like bash's
    `<(cat FILE)` (so a second read finds it empty); the pipes are closed after the test."""
    read_ends = []

    def make(payload):
        read_end, write_end = os.pipe()
        os.write(write_end, payload)  # a few hundred bytes: the pipe's buffer holds them all
        os.close(write_end)
        read_ends.append(read_end)
        return f"/dev/fd/{read_end}"

    yield make
    for read_end in read_ends:
        os.close(read_end)


def test_a_pipe_is_read_once_to_split_and_as_a_train_file(tmp_path, pipe_of):
    good = squad_file(tmp_path / "good.json", ["Velden", "Marrow"])
    records = [tmp_path / "tfx" / "data" / "examples" / f"Split-{split}" / "data.tfrecord" for split in SPLITS]
    assert local_runner.main(runner_args(tmp_path, "--data", str(good), "--min-dev-questions=2", "--prepare-only")) == 0
    from_file = [read_records([path], compression_type="") for path in records]
    assert all(from_file)
    shutil.rmtree(tmp_path / "tfx")
    args = runner_args(tmp_path, "--data", pipe_of(good.read_bytes()), "--min-dev-questions=2", "--prepare-only")
    assert local_runner.main(args) == 0
    assert [read_records([path], compression_type="") for path in records] == from_file
    args = runner_args(tmp_path, "--data", pipe_of(good.read_bytes()), "--eval-data", str(good), "--prepare-only")
    assert local_runner.main(args) == 0
    assert read_records([records[0]], compression_type="") == read_squad_json(good)


def test_bad_override_fails_with_one_line_like_road_tf_train(tmp_path, capsys):
    error = refusal(runner_args(tmp_path, overrides=["train.steps=abc"]), capsys)
    assert error.startswith("error: train.steps: expected an integer")


@pytest.mark.parametrize("name", ["data/split/train.json", "data/split/eval.json",
                                  "data/examples/Split-train/data.tfrecord"])
def test_an_input_the_run_would_overwrite_under_root_is_refused_and_kept(tmp_path, capsys, name):
    """A --data file that is one of the files the run writes under --root (the halves of its last
    split) was read, then replaced by its own train or eval half: refused by name, left as it was."""
    root = tmp_path / "tfx"
    data = squad_file(root / name, ["Velden", "Marrow", "Tarn"])
    before = data.read_bytes()
    error = refusal(runner_args(tmp_path, "--data", str(data), "--min-dev-questions=2", "--prepare-only"), capsys)
    assert error == f"error: --root's {name} {data}: is the --data file, which it would overwrite"
    assert data.read_bytes() == before


def test_a_serving_model_dir_holding_other_files_is_refused(tmp_path, capsys):
    """The Pusher puts version folders into --serving-model-dir; a folder of other files (a home
    folder) was accepted, as export.base_dir's model folder once was."""
    serving = tmp_path / "serving"
    serving.mkdir()
    (serving / "notes.txt").write_text("mine\n")
    error = refusal(runner_args(tmp_path, "--prepare-only"), capsys)
    assert error == (f"error: --serving-model-dir {serving}: a folder holding other files (notes.txt) and no numbered "
                     "versions, not a model folder; choose another --serving-model-dir")
    assert [path.name for path in serving.iterdir()] == ["notes.txt"] and not (tmp_path / "tfx").exists()


@pytest.mark.parametrize("root, serving", [("m", "m"), ("m", "m/pipeline"), ("m/tfx", "m")],
                         ids=["same", "serving-in-root", "root-in-serving"])
def test_a_serving_model_dir_that_is_root_holds_it_or_lies_in_it_is_refused(tmp_path, capsys, root, serving):
    """With --root and --serving-model-dir one folder, a run's data, pipeline and metadata.db went
    into the model folder, and the next identical run refused it as a folder of other files."""
    root, serving = tmp_path / root, tmp_path / serving
    error = refusal(["--root", str(root), "--serving-model-dir", str(serving), "--prepare-only"], capsys)
    assert error == (f"error: --serving-model-dir {serving}: is, holds or lies in --root {root}, where the run keeps "
                     "its data, pipeline and metadata; give them separate folders")
    assert list(tmp_path.iterdir()) == []


def test_the_halves_of_an_earlier_split_may_be_the_train_and_eval_files(tmp_path):
    """With --eval-data nothing is split, so the halves an earlier run wrote under --root are read, not written."""
    good = squad_file(tmp_path / "good.json", ["Velden", "Marrow"])
    assert local_runner.main(runner_args(tmp_path, "--data", str(good), "--min-dev-questions=2", "--prepare-only")) == 0
    halves = [tmp_path / "tfx" / "data" / "split" / f"{split}.json" for split in SPLITS]
    before = [half.read_bytes() for half in halves]
    args = runner_args(tmp_path, "--data", str(halves[0]), "--eval-data", str(halves[1]), "--prepare-only")
    assert local_runner.main(args) == 0 and [half.read_bytes() for half in halves] == before


def test_the_trainer_trains_a_recipe_that_splits_its_own_dev_file(tmp_path):
    """squad2_minilm sets data.split_dev_questions; the Trainer reads the pipeline's two splits instead
    (it set data.dev_path beside the split, a conflict that stopped the Trainer after the data components)."""
    args = local_runner.parse_args(["--config", "squad2_minilm", "--root", str(tmp_path / "tfx"),
                                    "--serving-model-dir", str(tmp_path / "serving")])
    assert local_runner.resolve_config(args).data.split_dev_questions == 1000
    trained = configs.trainer_config(dump_yaml(local_runner.resolve_config(args)), tmp_path)
    assert (trained.data.split_dev_questions, trained.data.dev_path) == (0, str(tmp_path / "dev.json"))


def test_a_missing_chained_run_stops_the_pipeline_before_any_component_runs(tmp_path, capsys, monkeypatch):
    """squad2_minilm starts from runs/squad1_minilm, which only the Trainer read: the data components
    ran first and the Trainer failed without saying how to make the run."""
    monkeypatch.chdir(tmp_path)
    error = refusal(["--config", "squad2_minilm", "--root", str(tmp_path / "tfx"), "--serving-model-dir",
                     str(tmp_path / "serving")], capsys)
    assert error == ("error: model.pretrained runs/squad1_minilm: no such checkpoint folder or run directory; train "
                     "it first: python -m road_tf.train --config squad1_minilm --output-dir runs/squad1_minilm")
    assert not (tmp_path / "tfx" / "data").exists()


def test_a_recipe_the_trainer_cannot_load_stops_before_anything_is_written(tmp_path, capsys, monkeypatch):
    """The runner loads the recipe with the Trainer's settings up front: a conflict is one line before any
    component runs or any example is written."""
    settings = configs.trainer_overrides
    monkeypatch.setattr(configs, "trainer_overrides", lambda scratch: [*settings(scratch), "data.split_dev_questions=5"])
    error = refusal(runner_args(tmp_path, "--prepare-only"), capsys)
    assert error.startswith("error: data.dev_path: is not read when data.split_dev_questions > 0")
    assert not (tmp_path / "tfx" / "data").exists()


def test_the_inputs_stamp_follows_the_files_of_a_pretrained_run_folder(tmp_path):
    """A cached Trainer holds only the path of a run folder it read: the stamp must change with the
    files it reads there (size, time, a new file) and stay put while they and other folders' files do not."""
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    (run / "config.yaml").write_text("task: squad2\n")
    weights = run / "student" / "encoder.weights.h5"
    weights.write_bytes(b"one")
    config = load_config(None, [f"model.pretrained={run}"])
    first = configs.inputs_stamp(config)
    (run / "train.log").write_text("a line another run appended\n")
    assert configs.inputs_stamp(config) == first
    os.utime(weights, ns=(1, 1))
    touched = configs.inputs_stamp(config)
    (run / "metrics.json").write_text("{}")
    assert len({first, touched, configs.inputs_stamp(config)}) == 3
    (run / "config.yaml").unlink()  # now a plain folder: every file in it counts
    plain_folder = configs.inputs_stamp(config)
    (run / "train.log").write_text("changed\n")
    assert configs.inputs_stamp(config) != plain_folder
    shutil.rmtree(run)
    assert configs.inputs_stamp(config) not in {first, touched, plain_folder}
    assert configs.recipe_paths(load_config(None, [])) == {}


def test_the_inputs_stamp_of_a_folder_it_cannot_read_is_a_token_not_a_traceback(tmp_path, monkeypatch):
    config = load_config(None, [f"model.pretrained={tmp_path}"])
    (tmp_path / "model.safetensors").write_bytes(b"x")

    def vanished(path, *args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(configs.os, "stat", vanished)
    assert configs._stat_lines(tmp_path) == ["unreadable: No such file or directory"]
    assert len(configs.inputs_stamp(config)) == 64


@pytest.mark.slow
def test_a_retrained_pretrained_run_reruns_a_cached_trainer(tmp_path, capsys):
    """The Trainer reruns when the run folder its recipe starts from changes, and only then."""
    base = tmp_path / "base"
    flags = [item for pair in [*TINY, "export.enabled=false"] for item in ("--set", pair)]
    assert train.main(["--output-dir", str(base), *flags]) == 0
    sizes_of_base = [pair for pair in TINY if not pair.startswith("model.")]
    args = ["--root", str(tmp_path / "tfx"), "--serving-model-dir", str(tmp_path / "serving"), "--margin=-100",
            *[item for pair in [*sizes_of_base, f"model.pretrained={base}"] for item in ("--set", pair)]]
    run_main(args, capsys)
    run_main(args, capsys)
    weights = base / "student" / "encoder.weights.h5"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    run_main(args, capsys)
    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    states = executions(tmp_path)
    assert states["Trainer"] == [complete, cached, complete]
    assert states["ImportExampleGen"] == [complete, cached, cached]
