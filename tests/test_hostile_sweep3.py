"""Hostile input, third sweep: predict, export, evaluate and the writable-path checks.

Each case is refused with one line on stderr, exit code 2 and nothing written, without loading a
model: the checks run before TensorFlow loads a SavedModel or builds a student.
"""

import contextlib
import json
import os
import shutil
import signal
import types

import pytest
import tensorflow as tf

from conftest import one_error_line
from helpers_fuzz import FINISHED, GOOD_SQUAD, fake_run, fake_saved_model, write_json
from road_tf import cache_teacher, evaluate, export, files, predict
from road_tf.errors import ConfigError, RoadError
from road_tf.evaluation.qa_eval import answer_questions
from road_tf.experiment import load_teacher_weights

DEEP = "[" * 100_000


@contextlib.contextmanager
def deadline(seconds):
    """Raises TimeoutError in the test when its body takes longer than `seconds` (a read that never ends)."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def refused(main, argv, capsys):
    """The one error line of `main(argv)`, which must exit 2 within 20 seconds."""
    with deadline(20), pytest.raises(SystemExit) as exit_info:
        main(argv)
    return one_error_line(capsys, exit_info)


METRICS_CASES = {
    "missing": (lambda path: None, "no metrics.json; the run has not finished"),
    "pipe": (os.mkfifo, "its metrics.json is a device or pipe"),
    "device link": (lambda path: path.symlink_to("/dev/null"), "its metrics.json is a device or pipe"),
    "folder": (lambda path: path.mkdir(), "its metrics.json is a folder"),
    "nested too deeply": (write_json(DEEP), "not the metrics.json of a finished road_tf run"),
    "no final section": (write_json({"export": "/models/m/1"}), "not the metrics.json of a finished road_tf run"),
    "export a number": (write_json({**FINISHED, "export": 5}), "not the metrics.json of a finished road_tf run"),
    "not UTF-8": (lambda path: path.write_bytes(b"\xff{}"), "not the metrics.json of a finished road_tf run"),
    "export a name too long": (write_json({**FINISHED, "export": "/" + "n" * 300}),
                               "its metrics.json names no exported SavedModel folder"),
}


@pytest.mark.parametrize("case", sorted(METRICS_CASES))
def test_predict_checks_a_run_directory_as_train_does(case, tmp_path, capsys):
    make, message = METRICS_CASES[case]
    run = fake_run(tmp_path / "run", make)
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    line = refused(predict.main, ["--model", str(run), "--data", str(data), "--output", str(tmp_path / "p.json")],
                   capsys)
    assert line.startswith(f"error: --model {run}: ") and message in line, line
    assert "--output-dir" not in line
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("case", ["pipe", "nested too deeply", "no final section"])
def test_export_refuses_a_damaged_metrics_json_without_a_traceback(case, tmp_path, capsys):
    make, message = METRICS_CASES[case]
    run = fake_run(tmp_path / "run", make)
    base = tmp_path / "models"
    line = refused(export.main, ["--run-dir", str(run), "--base", str(base)], capsys)
    assert line.startswith(f"error: {run}: ") and message in line, line
    assert "--output-dir" not in line
    assert not base.exists()


@pytest.mark.parametrize("flag,inside", [("--output", "saved_model.pb"), ("--na-probs", "variables/na.json"),
                                         ("--output", "preds.json")])
@pytest.mark.parametrize("model_arg", ["version", "model folder"])
def test_predict_never_writes_into_the_model_it_reads(flag, inside, model_arg, tmp_path, capsys):
    version = fake_saved_model(tmp_path / "models" / "m" / "1")
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    outputs = {"--output": str(tmp_path / "p.json"), flag: str(version / inside)}
    model = version if model_arg == "version" else version.parent
    argv = ["--model", str(model), "--data", str(data)] + [arg for pair in outputs.items() for arg in pair]
    line = refused(predict.main, argv, capsys)
    assert f"{flag} {version / inside}: lies in the SavedModel folder" in line, line
    assert (version / "saved_model.pb").read_bytes() == b"the model"
    assert sorted(path.name for path in version.rglob("*")) == ["saved_model.pb", "variables"]
    assert not (tmp_path / "p.json").exists()


LONG = "n" * 300


def test_paths_too_long_to_create_are_refused_up_front(tmp_path):
    for path in (tmp_path / LONG, tmp_path / "missing" / LONG / "p.json", tmp_path / "deep" / "/".join(["d" * 200] * 21)):
        with pytest.raises(RoadError, match="^--output .*(longer than 255 bytes|longer than 4095 bytes)"):
            files.check_writable_file(path, "--output")
        with pytest.raises(RoadError, match="^--base .*(longer than 255 bytes|longer than 4095 bytes)"):
            files.check_writable_dir(path, "--base")
    assert files.entry_kind(tmp_path / LONG) is None
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command,argv,message", [
    ("predict", ["--model", "{dir}/model", "--output", "{dir}/" + LONG], "longer than 255 bytes"),
    ("predict", ["--model", "{dir}/model", "--output", "{dir}/missing/" + LONG], "longer than 255 bytes"),
    ("predict", ["--model", "{dir}/" + LONG, "--output", "{dir}/p.json"], f"--model {{dir}}/{LONG}: no such folder"),
    ("export", ["--run-dir", "{dir}/" + LONG], f"{{dir}}/{LONG}: no such run folder"),
    ("export", ["--run-dir", "{dir}/run", "--base", "{dir}/missing/" + LONG], "longer than 255 bytes"),
    ("cache_teacher", ["--output", "{dir}/missing/" + LONG], "longer than 255 bytes"),
], ids=["predict-output", "predict-output-in-new-folder", "predict-model", "export-run-dir", "export-base",
        "cache_teacher-output"])
def test_commands_refuse_names_too_long_with_one_line(command, argv, message, tmp_path, capsys):
    fake_saved_model(tmp_path / "model")
    fake_run(tmp_path / "run", write_json(FINISHED))
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    before = sorted(tmp_path.rglob("*"))
    argv = [arg.replace("{dir}", str(tmp_path)) for arg in argv] + (["--data", str(data)] if command == "predict" else [])
    main = {"predict": predict.main, "export": export.main, "cache_teacher": cache_teacher.main}[command]
    line = refused(main, argv, capsys)
    assert message.replace("{dir}", str(tmp_path)) in line, line
    assert sorted(tmp_path.rglob("*")) == before


NOT_UTF8 = os.fsdecode(b"\xffname")


@pytest.mark.parametrize("command", ["export", "cache_teacher"])
def test_paths_tensorflow_cannot_take_are_refused_before_any_work(command, tmp_path, capsys):
    """Bytes that are not UTF-8 in a path TensorFlow writes (a SavedModel, TFRecords) failed with a
    traceback at the end, after the model was built or the teacher had run."""
    target = tmp_path / NOT_UTF8
    if command == "export":
        run = fake_run(tmp_path / "run", write_json(FINISHED))
        flag, path = "--base", target
        line = refused(export.main, ["--run-dir", str(run), flag, str(path)], capsys)
    else:
        flag, path = "--output", target / "t.tfrecord"
        line = refused(cache_teacher.main, [flag, str(path)], capsys)
    assert line.startswith(f"error: {flag} {str(path)!r}: not UTF-8 text (byte 0xff at character "), line
    assert not target.exists()


class OddReader(tf.Module):
    """A SavedModel whose serving_default takes question/context strings but returns `outputs(question)`."""

    def __init__(self, outputs):
        super().__init__()
        self._outputs = outputs

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def answer(self, question, context):
        return self._outputs(question)


def _rows(question, value, extra=0):
    return tf.fill([tf.shape(question)[0] + extra], value)


ODD_MODELS = {
    "no answer output": (lambda q: {"text": q, "no_answer_probability": _rows(q, 0.5)},
                         "serving_default has no output 'answer' of one string per question"),
    "answer a number": (lambda q: {"answer": _rows(q, 3), "no_answer_probability": _rows(q, 0.5)},
                        "serving_default has no output 'answer' of one string per question"),
    "scalar outputs": (lambda q: {"answer": tf.constant("x"), "no_answer_probability": tf.constant(0.5)},
                       "serving_default has no output 'answer' of one string per question"),
    "one row too many": (lambda q: {"answer": _rows(q, "x", 1), "no_answer_probability": _rows(q, 0.5, 1)},
                         "serving_default returned answer of shape [3] for 2 questions"),
    "NaN probability": (lambda q: {"answer": q, "no_answer_probability": _rows(q, float("nan"))},
                        "the no-answer probability nan, not a number in [0, 1]"),
    "probability above 1": (lambda q: {"answer": q, "no_answer_probability": _rows(q, 1.5)},
                            "the no-answer probability 1.5, not a number in [0, 1]"),
    "answer not UTF-8": (lambda q: {"answer": _rows(q, b"\xff"), "no_answer_probability": _rows(q, 0.5)},
                         "serving_default returned an answer that is not UTF-8"),
    "error a number": (lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5), "error": _rows(q, 0)},
                       "serving_default has no output 'error' of one string per question"),
    "one error too many": (lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5), "error": _rows(q, "", 1)},
                           "serving_default returned error of shape [3] for 2 questions"),
}


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    """{case: version folder} of the ODD_MODELS SavedModels."""
    root = tmp_path_factory.mktemp("odd_models")
    folders = {}
    for index, (case, (outputs, _)) in enumerate(sorted(ODD_MODELS.items())):
        reader = OddReader(outputs)
        folders[case] = root / str(index) / "1"
        tf.saved_model.save(reader, str(folders[case]), signatures={"serving_default": reader.answer})
    return folders


@pytest.mark.parametrize("case", sorted(ODD_MODELS))
def test_predict_refuses_a_model_that_breaks_the_serving_contract(case, odd_models, tmp_path, capsys):
    """Such models gave a traceback (KeyError, UnicodeDecodeError), or wrote NaN (not JSON) or answers
    shifted against their questions."""
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    argv = ["--model", str(odd_models[case]), "--data", str(data), "--output", str(tmp_path / "p.json"),
            "--na-probs", str(tmp_path / "na.json")]
    line = refused(predict.main, argv, capsys)
    assert line.startswith(f"error: --model {odd_models[case]}: ") and ODD_MODELS[case][1] in line, line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dev.json"]


def test_predict_reads_only_the_outputs_it_writes(tmp_path):
    """Every output was decoded: one predict does not write that was not UTF-8 stopped it with a traceback."""
    reader = OddReader(lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5), "note": _rows(q, b"\xff")})
    folder = tmp_path / "model" / "1"
    tf.saved_model.save(reader, str(folder), signatures={"serving_default": reader.answer})
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    assert predict.main(["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json")]) == 0
    questions = {qa["id"]: qa["question"] for article in json.loads(GOOD_SQUAD)["data"]
                 for paragraph in article["paragraphs"] for qa in paragraph["qas"]}
    assert json.loads((tmp_path / "p.json").read_text()) == questions


def test_answers_that_are_not_utf8_stop_at_the_first_batch_that_holds_one():
    """Each answer is decoded once, as its batch arrives: predict stops there, not after every question."""
    calls = []

    def answer_fn(question, context):
        calls.append(len(question))
        return {"answer": tf.fill([len(question)], b"\xff"), "no_answer_probability": tf.fill([len(question)], 0.5)}

    examples = [types.SimpleNamespace(question=f"q{i}", context="c") for i in range(5)]
    with pytest.raises(UnicodeDecodeError):
        answer_questions(answer_fn, examples, 2)
    assert calls == [2]


def predict_failure(reader, folder, tmp_path, capsys, batch_size="32"):
    """Saves `reader` (its `answer` as serving_default) to `folder` and runs predict with it over
    GOOD_SQUAD -> the lines it printed on stderr; it must exit 2 within 20 seconds, writing nothing."""
    tf.saved_model.save(reader, str(folder), signatures={"serving_default": reader.answer})
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    with deadline(20), pytest.raises(SystemExit) as exit_info:
        predict.main(["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json"),
                      "--batch-size", batch_size])
    assert exit_info.value.code == 2 and not (tmp_path / "p.json").exists()
    return capsys.readouterr().err.split("\n")[:-1]


@pytest.mark.parametrize("batch_size", ["1", "32"])
def test_predict_names_the_question_a_model_refuses(tmp_path, capsys, batch_size):
    """A question the model answers with an "error" (the road_tf export's reason for a question or
    context above its data.max_context_bytes): one line naming the question, second in the file
    (first of the second batch, or second of the first), and the reason; nothing is written."""
    reader = OddReader(lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5),
                                  "error": tf.where(tf.strings.regex_full_match(q, "Why.*"), "too long", "")})
    model = tmp_path / "model" / "1"
    lines = predict_failure(reader, model, tmp_path, capsys, batch_size)
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1] == f"error: {tmp_path / 'dev.json'}: record q2: --model {model} refuses it: too long"


def test_predict_refuses_a_model_with_an_unknown_op(odd_models, tmp_path, capsys):
    """TensorFlow raises RuntimeError for an op this binary lacks; it gave a traceback."""
    from tensorflow.core.protobuf import saved_model_pb2

    folder = tmp_path / "unknown_op" / "1"
    shutil.copytree(odd_models["NaN probability"], folder)
    proto = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
    proto.meta_graphs[0].graph_def.library.function[0].node_def[0].op = "RoadNoSuchOp"
    (folder / "saved_model.pb").write_bytes(proto.SerializeToString())
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    line = refused(predict.main, ["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json")],
                   capsys)
    assert "cannot load the SavedModel's serving_default signature (Op type not registered 'RoadNoSuchOp'" in line
    assert len(line) < 400 and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("signatures, names", [({"answer": "answer"}, "answer"), ({}, "none")],
                         ids=["another_name", "no_signature"])
def test_predict_names_a_missing_serving_default_signature(signatures, names, tmp_path, capsys):
    """A SavedModel without serving_default was refused as "cannot load the SavedModel's serving_default
    signature ('serving_default')", the KeyError's text, which does not say that the signature is missing."""
    reader = OddReader(lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5)})
    folder = tmp_path / "other" / "1"
    tf.saved_model.save(reader, str(folder),
                        signatures={key: getattr(reader, value) for key, value in signatures.items()})
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    line = refused(predict.main, ["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json")],
                   capsys)
    assert line == (f"error: --model {folder}: the SavedModel has no serving_default signature (its signatures: "
                    f"{names}); not a road_tf QA model")


@pytest.mark.parametrize("batch_size, batch", [("1", "question q2"), ("2", "questions q1 to q2")])
def test_predict_names_the_batch_a_model_fails_on(batch_size, batch, tmp_path, capsys):
    """A model that raised a TensorFlow error while answering (here a failed assertion in its graph) ended
    in an InvalidArgumentError traceback."""
    why = lambda q: tf.strings.regex_full_match(q, "Why.*")  # noqa: E731  (the second question of GOOD_SQUAD)

    def outputs(question):
        check = tf.debugging.assert_equal(tf.reduce_any(why(question)), False, message="no why questions")
        with tf.control_dependencies([check]):
            return {"answer": tf.identity(question), "no_answer_probability": _rows(question, 0.5)}

    folder = tmp_path / "asserts" / "1"
    lines = predict_failure(OddReader(outputs), folder, tmp_path, capsys, batch_size)
    assert "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith(f"error: --model {folder}: serving_default failed on {batch}: "
                                "assertion failed: [no why questions]")


class WrongInputs(tf.Module):
    """serving_default functions that take a question and a context of another dtype or shape."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="question"),
                                  tf.TensorSpec([None], tf.int32, name="context")])
    def numbers(self, question, context):
        return {"answer": tf.strings.as_string(question), "no_answer_probability": tf.zeros(tf.shape(question))}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="context")])
    def pairs(self, question, context):
        return {"answer": question[:, 0], "no_answer_probability": tf.zeros(tf.shape(context))}


@pytest.mark.parametrize("function, taken", [
    ("numbers", "context: int32 of shape (None,), question: int32 of shape (None,)"),
    ("pairs", "context: string of shape (None,), question: string of shape (None, 2)"),
])
def test_predict_refuses_question_and_context_inputs_that_are_not_strings(function, taken, tmp_path, capsys):
    """Only the input names were checked: int32 inputs, or questions of shape [None, 2], ended in an
    InvalidArgumentError traceback at the first batch."""
    module = WrongInputs()
    folder = tmp_path / function / "1"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": getattr(module, function)})
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    line = refused(predict.main, ["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json")],
                   capsys)
    assert line == (f"error: --model {folder}: serving_default takes {taken}, not question and context strings, "
                    "one per question; not a road_tf QA model")


@pytest.mark.parametrize("flag", ["--model_name", "--model_base_path", "--host"])
def test_devserver_refuses_flags_that_are_not_utf8(flag, tmp_path, capsys):
    """They went into a protobuf or gRPC's address and failed with a UnicodeEncodeError traceback."""
    from serving import devserver

    argv = {"--model_name": "m", "--model_base_path": str(tmp_path), "--port": "0", "--rest_api_port": "0",
            flag: NOT_UTF8}
    line = refused(devserver.main, [f"{name}={value}" for name, value in argv.items()], capsys)
    assert line == f"error: {flag} '\\udcffname': not UTF-8 text (byte 0xff at character 0); give a name in UTF-8"


def test_an_error_after_the_first_batch_gets_a_line_of_its_own(tmp_path, capsys):
    """The progress line ("\\r  answered 1/2 questions") had no line end, so the error message ran on after it."""
    why = lambda q: tf.strings.regex_full_match(q, "Why.*")  # noqa: E731  (the second question of GOOD_SQUAD)
    reader = OddReader(lambda q: {"answer": q, "no_answer_probability": tf.where(why(q), float("nan"), 0.5)})
    model = tmp_path / "late_nan" / "1"
    lines = predict_failure(reader, model, tmp_path, capsys, batch_size="1")
    assert lines[-1].startswith(f"error: --model {model}: serving_default returned the no-answer probability nan")
    assert lines[:-1] == ["\r  answered 1/2 questions"]


EVALUATE_FILES = {"dev.json": GOOD_SQUAD.decode(), "preds.json": '{"q1": "Paris", "q2": ""}',
                  "na.json": '{"q1": 0.1, "q2": 0.9}', "gold.json": '{"a": 1, "b": 0}', "labels.json": '{"a": 1, "b": 0}'}
REPEATED_IDS = {"preds.json": ('{"q1": "Bob", "q1": "Paris", "q2": ""}', "q1"),
                "na.json": ('{"q1": 0.1, "q1": 0.95, "q2": 0.9}', "q1"),
                "gold.json": ('{"a": 1, "b": 1, "b": 0}', "b"),
                "labels.json": ('{"a": 1, "b": 0, "b": 1}', "b")}


@pytest.mark.parametrize("name", sorted(REPEATED_IDS))
def test_evaluate_refuses_an_id_given_twice(name, tmp_path, capsys):
    """JSON keeps the last of two values of one key: a predictions file holding two answers to one
    question was scored on the last one without a word (a TSV gold file's repeated guid is refused)."""
    text, key = REPEATED_IDS[name]
    for file_name, content in {**EVALUATE_FILES, name: text}.items():
        (tmp_path / file_name).write_text(content)
    if name in ("preds.json", "na.json"):
        argv = ["squad2", str(tmp_path / "dev.json"), str(tmp_path / "preds.json"), "--na-probs", str(tmp_path / "na.json")]
    else:
        argv = ["classification", str(tmp_path / "gold.json"), str(tmp_path / "labels.json")]
    line = refused(evaluate.main, argv, capsys)
    assert line == f"error: {tmp_path / name}: record {key}: the id is given 2 times; give each id once"


def test_folders_numbered_above_int64_are_not_versions(tmp_path, caplog):
    """TF Serving (and the devserver) ignore them, but an export numbered its version past such a
    stray folder (100000000000000000000), which was then never served."""
    from road_tf.files import next_version
    from road_tf.files import newest_version

    INT64_MAX = 2**63 - 1  # noqa: N806

    for name in ("3", str(INT64_MAX + 1), "99999999999999999999"):
        fake_saved_model(tmp_path / "m" / name)
    assert sorted(files.versions(tmp_path / "m")) == [3]
    assert next_version(tmp_path / "m") == 4 and newest_version(tmp_path / "m") == tmp_path / "m" / "3"
    assert "ignoring 2 entries that are not version folders" in caplog.text
    fake_saved_model(tmp_path / "m" / str(INT64_MAX))
    with pytest.raises(RoadError, match=f"holds version {INT64_MAX}, the highest TF Serving takes"):
        next_version(tmp_path / "m")
    # Up front too: the export once found it only after tracing and writing the whole SavedModel.
    with pytest.raises(RoadError, match=f"holds version {INT64_MAX}, the highest TF Serving takes; choose another"):
        files.check_model_folder(tmp_path / "m", "--base")


def test_predict_refuses_a_model_whose_variables_are_cut_short(tmp_path, capsys):
    """A truncated variables.data file raised IndexError ("Read less bytes than requested") from TensorFlow."""
    folder = tmp_path / "cut" / "1"
    reader = OddReader(lambda q: {"answer": q, "no_answer_probability": _rows(q, 0.5)})
    reader.table = tf.Variable(tf.zeros([1000]))
    tf.saved_model.save(reader, str(folder), signatures={"serving_default": reader.answer})
    data_file = next((folder / "variables").glob("variables.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])
    data = tmp_path / "dev.json"
    data.write_bytes(GOOD_SQUAD)
    line = refused(predict.main, ["--model", str(folder), "--data", str(data), "--output", str(tmp_path / "p.json")],
                   capsys)
    assert line.startswith(f"error: --model {folder}: cannot load the SavedModel's serving_default signature (")
    assert not (tmp_path / "p.json").exists()


CONFIG_ENTRY = 'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" }} }}\n'


@pytest.mark.parametrize("name,base_path,flags,message", [
    ("m", "/models/m\\000x", [], "model m: base_path holds a NUL character"),
    ("m\\nx", "/models/m", [], "model 'm\\nx': a model name must be printable"),
    (None, None, ["--model_name=a\nb", "--model_base_path=/models/m"], "--model_name 'a\\nb': a model name must be printable"),
], ids=["config base_path with NUL", "config name with line break", "flag name with line break"])
def test_devserver_refuses_model_names_and_paths_it_cannot_serve(name, base_path, flags, message, tmp_path, capsys):
    """A NUL in a config's base_path crashed the start-up (ValueError in os.listdir); a line break in
    a model name split the devserver's log lines."""
    from serving import devserver

    if name is not None:
        config = tmp_path / "models.config"
        config.write_text(CONFIG_ENTRY.format(name=name, base_path=base_path))
        flags = [f"--model_config_file={config}"]
    line = refused(devserver.main, ["--port=0", "--rest_api_port=0", *flags], capsys)
    assert message in line, line


@pytest.mark.parametrize("kind, make", [
    ("is a folder, not a weights file", lambda path: path.mkdir()),
    ("is a device or pipe, not a weights file", lambda path: os.mkfifo(path)),
    ("no such file", lambda path: None),
    (r"not a Keras weights file (its first bytes are not b'\x89HDF\r\n\x1a\n')",
     lambda path: path.write_text("notes")),
])
def test_a_teacher_checkpoint_that_is_not_a_weights_file_is_named_for_what_it_is(tmp_path, kind, make):
    """A folder or pipe given as a teacher's checkpoint was reported as "no such file"; a file that is
    no weights file reached Keras (the teacher here is None: it must not be loaded into)."""
    checkpoint = tmp_path / "teacher.weights.h5"
    make(checkpoint)
    with pytest.raises(ConfigError) as caught:
        load_teacher_weights(None, checkpoint, 1)
    assert str(caught.value) == f"distillation.teachers[1].checkpoint: {checkpoint}: {kind}"


@pytest.mark.parametrize("name", ["metrics.json", "config.yaml", "student/model.weights.h5"])
@pytest.mark.parametrize("flag", ["--output", "--na-probs"])
def test_predict_refuses_to_overwrite_any_file_of_the_run_it_reads(tmp_path, capsys, name, flag):
    """`--model RUN --output RUN/metrics.json` replaced the run's metrics.json with predictions, and
    any other file of the run (its weights) was not protected at all."""
    run = tmp_path / "run"
    (run / "student").mkdir(parents=True)
    record = {"config.yaml": "task: squad2\n", "metrics.json": json.dumps(FINISHED),
              "student/model.weights.h5": "weights"}
    for file_name, text in record.items():
        (run / file_name).write_text(text)
    outputs = {"--output": str(tmp_path / "preds.json"), flag: str(run / name)}
    line = refused(predict.main, ["--model", str(run), "--data", str(tmp_path / "dev.json"),
                                  *[part for pair in outputs.items() for part in pair]], capsys)
    assert line == f"error: {flag} {run / name}: is the --model run's {name} file, which it would overwrite"
    assert {str(path.relative_to(run)): path.read_text() for path in run.rglob("*") if path.is_file()} == record


@pytest.mark.parametrize("output, na_probs", [("a/preds.json", "a"), ("a", "a/b/na.json")])
def test_predict_refuses_an_output_in_the_place_of_the_other_s_folder(tmp_path, capsys, output, na_probs):
    """`--output D/a/preds.json --na-probs D/a` wrote the predictions, then refused the second file."""
    line = refused(predict.main, ["--model", str(tmp_path / "model"), "--data", str(tmp_path / "dev.json"),
                                  "--output", str(tmp_path / output), "--na-probs", str(tmp_path / na_probs)], capsys)
    assert line == (f"error: --na-probs {tmp_path / na_probs}: lies in or holds the path of --output; give two files "
                    "side by side")
    assert list(tmp_path.iterdir()) == []


def test_predict_may_write_a_metrics_json_into_a_model_folder_that_is_no_run(tmp_path, capsys):
    """A model folder of versions is no run: its metrics.json is not protected as a run's record
    (the check that refuses it there is that it holds no SavedModel)."""
    model = tmp_path / "model"
    model.mkdir()
    line = refused(predict.main, ["--model", str(model), "--data", str(tmp_path / "dev.json"),
                                  "--output", str(model / "metrics.json")], capsys)
    assert "run's" not in line and "not a SavedModel" in line


def test_train_names_a_teacher_checkpoint_that_is_a_pipe_instead_of_waiting_for_it(tmp_path):
    """Opening a pipe waits for a writer: train's check of teacher checkpoints hung on one."""
    pipe = tmp_path / "teacher.weights.h5"
    os.mkfifo(pipe)
    with deadline(20), pytest.raises(ConfigError, match=r"teachers\[0\].checkpoint: .*: is a device or pipe, not a weights file"):
        files.check_weights_file(pipe, "distillation.teachers[0].checkpoint")


@pytest.mark.parametrize("name", ["\udcffname", "a/b", ".hidden", "line\nbreak", " ", "road "])
def test_export_checks_model_name_as_export_model_name_is_checked(tmp_path, capsys, name):
    """--model-name was used unchecked: a name that is not UTF-8 was blamed on --base; a name of
    spaces (or ending in one) made a folder named " " under saved_models."""
    line = refused(export.main, ["--run-dir", str(tmp_path), "--model-name", name], capsys)
    assert line.startswith("error: argument --model-name: must be a folder name (printable, at most 200 bytes")
