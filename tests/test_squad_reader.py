"""SQuAD reading: the real public dev half, fuzzed bad files, skip_bad_records, the TFDS path."""

import copy
import dataclasses
import gzip
import json
import logging
import pathlib

import pytest

from road_tf.config import load_config
from road_tf.data import json_files, sources
from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import load_squad_tfds, read_squad_json, write_squad_json
from road_tf.data.tokenizer import load_tokenizer
from road_tf.errors import NO_TOKEN, DataError
from road_tf.registry import task_spec
from road_tf.tasks import get_task
from road_tf.tasks.task import load_task_data
from helpers_tfds import squad_tfds_dataset

SQUAD_DEV = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "squad2-dev" / "squad2-dev-public.json.gz"

CONTEXT = "The Normans were in Normandy, a region in France. Rollo led them."
GOOD = {
    "version": "v2.0",
    "data": [{
        "title": "Normans",
        "paragraphs": [{
            "context": CONTEXT,
            "qas": [
                {"id": "q1", "question": "Where is Normandy?", "is_impossible": False,
                 "answers": [{"text": "France", "answer_start": 42}, {"text": "in France", "answer_start": 39}]},
                {"id": "q2", "question": "Who led the Danes?", "is_impossible": True, "answers": [],
                 "plausible_answers": [{"text": "Rollo", "answer_start": 50}]},
                {"id": "q3", "question": "Who led them?", "is_impossible": False,
                 "answers": [{"text": "Rollo", "answer_start": 50}]},
            ],
        }],
    }],
}


def _qa(doc, index):
    return doc["data"][0]["paragraphs"][0]["qas"][index]


def _write(tmp_path, doc, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def public_dev():
    if not SQUAD_DEV.exists():
        pytest.skip(f"public SQuAD 2.0 dev half not found at {SQUAD_DEV} (shared/ data is absent)")
    return read_squad_json(SQUAD_DEV)


def test_public_half_counts_match_its_readme(public_dev):
    assert len(public_dev) == 6134
    assert sum(not example.is_impossible for example in public_dev) == 3088
    assert sum(example.is_impossible for example in public_dev) == 3046
    assert len({example.title for example in public_dev}) == 18
    assert len({example.context for example in public_dev}) == 631
    first = public_dev[0]
    assert (first.qid, first.question, first.title) == ("56ddde6b9a695914005b9628", "In what country is Normandy located?", "Normans")
    assert "France" in [answer.text for answer in first.answers]
    for example in public_dev:
        for answer in example.answers:
            assert example.context[answer.start:answer.start + len(answer.text)] == answer.text


@pytest.mark.parametrize("name", ["dev.json", "dev.json.gz"])
def test_write_then_read_gives_back_the_public_half(public_dev, tmp_path, name):
    path = tmp_path / name
    write_squad_json(path, public_dev)
    assert read_squad_json(path) == public_dev
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_question_without_is_impossible_is_unanswerable_exactly_when_it_has_no_answers(tmp_path):
    """As the official evaluation script reads it (has_ans = bool(answers)): such files (SQuAD 2.0
    exported without the field) were refused as "answerable question ... has no answers"."""
    doc = copy.deepcopy(GOOD)
    for qa in doc["data"][0]["paragraphs"][0]["qas"]:
        qa.pop("is_impossible")
    examples = read_squad_json(_write(tmp_path, doc))
    assert [example.is_impossible for example in examples] == [False, True, False]


def test_good_file_reads_answers_and_ignores_extra_fields(tmp_path):
    examples = read_squad_json(_write(tmp_path, GOOD, "good.json"))
    assert [example.qid for example in examples] == ["q1", "q2", "q3"]
    assert examples[0].answers == (Answer("France", 42), Answer("in France", 39))
    assert examples[1].is_impossible and examples[1].answers == ()
    assert examples[2] == QAExample("q3", "Who led them?", CONTEXT, (Answer("Rollo", 50),), "Normans")


def test_white_space_around_an_answer_is_left_out_of_its_span(tmp_path):
    """An answer " in France" (a space first) fits no window's tokens: it was trained as "no answer"."""
    doc = copy.deepcopy(GOOD)
    _qa(doc, 0)["answers"] = [{"text": " in France", "answer_start": 38}, {"text": "Rollo led ", "answer_start": 50}]
    examples = read_squad_json(_write(tmp_path, doc))
    assert examples[0].answers == (Answer("in France", 39), Answer("Rollo led", 50))


def _set(path_in_doc, value):
    """A mutation that sets doc[...path...] = value."""
    def mutate(doc):
        target = doc
        for key in path_in_doc[:-1]:
            target = target[key]
        target[path_in_doc[-1]] = value
    return mutate


QA0 = ("data", 0, "paragraphs", 0, "qas", 0)
QA1 = ("data", 0, "paragraphs", 0, "qas", 1)
P0 = ("data", 0, "paragraphs", 0)

FUZZ = {
    "answer_start_is_string": (_set(QA0 + ("answers", 0, "answer_start"), "42"), "q1", "answer_start must be an integer, got a string"),
    "answer_start_is_bool": (_set(QA0 + ("answers", 0, "answer_start"), True), "q1", "must be an integer, got a boolean"),
    "qas_not_a_list": (_set(P0 + ("qas",), {"id": "q1"}), "data[0].paragraphs[0]", "paragraph.qas must be a list, got an object"),
    "offset_past_context": (_set(QA0 + ("answers", 0, "answer_start"), len(CONTEXT) - 2), "q1", "outside the context"),
    "negative_offset": (_set(QA0 + ("answers", 0, "answer_start"), -1), "q1", "outside the context"),
    "answer_text_mismatch": (_set(QA0 + ("answers", 0, "text"), "Francia"), "q1", "does not match the context"),
    "answer_only_white_space": (_set(QA0 + ("answers", 0), {"text": " ", "answer_start": 41}), "q1",
                                "answers[0].text is empty or only whitespace"),
    "empty_context": (_set(P0 + ("context",), ""), "q1", "context is empty"),
    "context_not_string": (_set(P0 + ("context",), ["x"]), "q1", "paragraph.context must be a string, got a list"),
    "missing_question": (lambda doc: _qa(doc, 2).pop("question"), "q3", "has no 'question' field"),
    "id_not_string": (_set(QA0 + ("id",), 7), "data[0].paragraphs[0].qas[0]", "id must be a string, got a number"),
    "duplicate_id": (_set(QA1 + ("id",), "q1"), "q1", "duplicate question id"),
    "id_with_line_break": (_set(QA0 + ("id",), "q\n\x1b[2Kerror: fake"), "data[0].paragraphs[0].qas[0]",
                           "question.id holds the control character '\\n'"),
    "impossible_with_answers": (_set(QA1 + ("answers",), [{"text": "Rollo", "answer_start": 50}]), "q2", "is_impossible is true"),
    "answerable_without_answers": (_set(QA0 + ("answers",), []), "q1", "has no answers"),
    "is_impossible_not_bool": (_set(QA0 + ("is_impossible",), "no"), "q1", "is_impossible must be a boolean"),
    "answers_not_list": (_set(QA0 + ("answers",), "France"), "q1", "answers must be a list"),
    "data_not_list": (_set(("data",), {}), None, "data must be a list, got an object"),
    "paragraphs_missing": (lambda doc: doc["data"][0].pop("paragraphs"), "data[0]", "article has no 'paragraphs' field"),
}


@pytest.mark.parametrize("case", sorted(FUZZ))
def test_bad_record_raises_data_error_naming_file_and_record(tmp_path, case):
    mutate, record, problem = FUZZ[case]
    doc = copy.deepcopy(GOOD)
    mutate(doc)
    path = _write(tmp_path, doc)
    with pytest.raises(DataError) as caught:
        read_squad_json(path)
    assert caught.value.record == record
    assert problem in caught.value.problem
    assert str(path) in str(caught.value)
    if record is not None:
        assert f"record {record}:" in str(caught.value)


def _raw_bytes_cases():
    good = json.dumps(GOOD).encode("utf-8")
    gz = gzip.compress(good, mtime=0)
    flipped = bytearray(gz)
    flipped[len(gz) // 2] ^= 0xFF
    bad_utf8 = good.replace(b"Rollo led them.", b"Rollo led th\xffm.")
    return {
        "truncated_json": ("bad.json", good[: len(good) // 2], "invalid JSON at line 1"),
        "top_level_list": ("bad.json", b"[1, 2]", "the top level must be an object, got a list"),
        "non_utf8": ("bad.json", bad_utf8, "not valid UTF-8: byte 0xff"),
        "truncated_gzip": ("bad.json.gz", gz[: len(gz) - 20], "corrupt gzip data"),
        "flipped_gzip": ("bad.json.gz", bytes(flipped), "corrupt gzip data"),
        "gz_name_plain_bytes": ("bad.json.gz", good, "corrupt gzip data"),
        "empty_file": ("bad.json", b"", "invalid JSON"),
    }


@pytest.mark.parametrize("case", sorted(_raw_bytes_cases()))
def test_broken_file_bytes_raise_data_error_naming_file(tmp_path, case):
    name, payload, problem = _raw_bytes_cases()[case]
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(DataError) as caught:
        read_squad_json(path)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read file"):
        read_squad_json(tmp_path / "absent.json")


def test_gzipped_file_detected_by_magic_bytes(tmp_path):
    path = tmp_path / "dev.data"
    path.write_bytes(gzip.compress(json.dumps(GOOD).encode("utf-8")))
    assert len(read_squad_json(path)) == 3


def test_skip_bad_records_logs_skips_and_counts(tmp_path, caplog):
    doc = copy.deepcopy(GOOD)
    _qa(doc, 0)["answers"][0]["answer_start"] = 3
    _qa(doc, 2)["id"] = "q2"
    doc["data"].append({"title": "Empty", "paragraphs": [{"context": "", "qas": [
        {"id": "e1", "question": "?", "answers": [], "is_impossible": True},
        {"id": "e2", "question": "?", "answers": [], "is_impossible": True}]}]})
    doc["data"].append({"title": "Fine", "paragraphs": [{"context": "abc", "qas": [
        {"id": "f1", "question": "b?", "answers": [{"text": "b", "answer_start": 1}], "is_impossible": False}]}]})
    path = _write(tmp_path, doc)
    with caplog.at_level(logging.WARNING, logger="road_tf.data.examples"):
        examples = read_squad_json(path, skip_bad_records=True)
    assert [example.qid for example in examples] == ["q2", "f1"]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 5
    assert warnings[-1] == f"{path}: skipped 4 bad question(s), kept 2"
    assert any("record q1:" in message and "does not match" in message for message in warnings)
    assert any("record q2:" in message and "duplicate" in message for message in warnings)
    assert read_squad_json(path, skip_bad_records=True) == examples
    with pytest.raises(DataError, match="record q1:"):
        read_squad_json(path)


def test_skip_bad_records_still_fails_on_structural_errors(tmp_path):
    doc = copy.deepcopy(GOOD)
    doc["data"][0]["paragraphs"][0]["qas"] = "oops"
    with pytest.raises(DataError, match="qas must be a list"):
        read_squad_json(_write(tmp_path, doc), skip_bad_records=True)


TFDS_RECORDS = [
    {"id": "t1", "title": "Café", "context": "Le café est à Paris.", "question": "Où?", "is_impossible": False,
     "answers": [("Paris", 14), ("à Paris", 12)]},
    {"id": "t2", "title": "Café", "context": "Le café est à Paris.", "question": "Quand?", "is_impossible": True,
     "answers": [], "plausible": [("Paris", 14)]},
]


def test_load_squad_tfds_reads_the_v2_feature_layout():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(as_dataset_fn=lambda *args, **kwargs: squad_tfds_dataset(TFDS_RECORDS)):
        features = tfds.builder("squad/v2.0").info.features
        examples = load_squad_tfds("validation")
    assert set(features.keys()) == set(squad_tfds_dataset(TFDS_RECORDS).element_spec)
    assert set(features["answers"].feature.keys()) == {"text", "answer_start"}
    assert examples == [
        QAExample("t1", "Où?", "Le café est à Paris.", (Answer("Paris", 14), Answer("à Paris", 12)), "Café"),
        QAExample("t2", "Quand?", "Le café est à Paris.", (), "Café"),
    ]


def test_load_squad_tfds_checks_records():
    tfds = pytest.importorskip("tensorflow_datasets")
    bad = [dict(TFDS_RECORDS[0], answers=[("Lyon", 14)])]
    with tfds.testing.mock_data(as_dataset_fn=lambda *args, **kwargs: squad_tfds_dataset(bad)):
        with pytest.raises(DataError) as caught:
            load_squad_tfds("validation")
        assert str(caught.value).startswith("tfds:squad/v2.0/validation: record t1: ")
        assert load_squad_tfds("validation", skip_bad_records=True) == []


def test_training_reads_tfds_under_skip_bad_records(monkeypatch):
    """data.skip_bad_records reaches the TFDS loader of a run's split (road_tf.train ignored it for TFDS)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(sources, "check_tfds_available", lambda *args, **kwargs: None)
    records = [dict(TFDS_RECORDS[0], answers=[("Lyon", 14)]), TFDS_RECORDS[1]]
    with tfds.testing.mock_data(as_dataset_fn=lambda *args, **kwargs: squad_tfds_dataset(records)):
        data = load_config(None, ["data.source=tfds", "data.skip_bad_records=true"]).data
        assert [e.qid for e in sources.load_split(task_spec("squad2"), data, "dev")] == ["t2"]
        with pytest.raises(DataError, match="record t1: "):
            sources.load_split(task_spec("squad2"), dataclasses.replace(data, skip_bad_records=False), "dev")


def test_write_keeps_question_order_with_interleaved_titles(tmp_path):
    examples = [
        QAExample("a1", "?", "abc", (Answer("b", 1),), "A"),
        QAExample("b1", "?", "xyz", (), "B"),
        QAExample("a2", "?", "abc", (Answer("c", 2),), "A"),
        QAExample("a3", "?", "abcd", (Answer("d", 3),), "A"),
    ]
    path = tmp_path / "out.json"
    write_squad_json(path, examples)
    assert read_squad_json(path) == examples
    doc = json.loads(path.read_text())
    assert [article["title"] for article in doc["data"]] == ["A", "B", "A"]
    assert [len(article["paragraphs"]) for article in doc["data"]] == [1, 1, 2]
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("name", ["bomb.json.gz", "big.json"])
def test_a_file_beyond_the_size_limit_is_refused_without_reading_it_all(tmp_path, monkeypatch, name):
    """A small gzip file that unpacks to far more (here 100 kB from 200 bytes) stops at the limit
    instead of filling memory; a plain file above it is refused the same way."""
    monkeypatch.setattr(json_files, "MAX_JSON_BYTES", 1000)
    payload = b" " * 100_000
    path = tmp_path / name
    path.write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    with pytest.raises(DataError, match=r"holds more than 1,000 bytes.* the most road_tf reads from one data file"):
        read_squad_json(path)


def test_an_object_that_gives_a_key_twice_is_refused(tmp_path):
    """JSON keeps a repeated key's last value silently: the first "answers" of this question would be
    dropped and the question trained as unanswerable."""
    path = tmp_path / "twice.json"
    path.write_text('{"version": "v2.0", "data": [{"title": "A", "paragraphs": [{"context": "abc", "qas": '
                    '[{"id": "q1", "question": "?", "answers": [{"text": "b", "answer_start": 1}], "answers": [], '
                    '"is_impossible": false}]}]}]}')
    with pytest.raises(DataError, match=r"twice\.json: an object gives the key 'answers' 2 times; give each key once$"):
        read_squad_json(path)


def test_a_run_refuses_a_question_or_context_the_tokenizer_reads_as_empty(tmp_path, caplog):
    """The exported model refuses a question or context made only of characters the tokenizer drops;
    a run trained on such a question and scored it as "no answer" where `predict` stops. Now the
    run's data check names the file and question, or leaves it out under data.skip_bad_records."""
    doc = copy.deepcopy(GOOD)
    _qa(doc, 1)["question"] = "\u200b\u2060 "
    doc["data"].append({"title": "Marks", "paragraphs": [{"context": "\u0301\x07", "qas": [
        {"id": "m1", "question": "Which?", "answers": [], "is_impossible": True}]}]})
    paths = [_write(tmp_path, doc, name) for name in ("train.json", "dev.json")]
    config = load_config(None, ["data.source=json", f"data.train_path={paths[0]}", f"data.dev_path={paths[1]}",
                                "data.split_dev_questions=0"])
    tokenizer = load_tokenizer()
    with pytest.raises(DataError) as caught:
        load_task_data(get_task("squad2"), config, tokenizer)
    assert str(caught.value) == f"{paths[0]}: record q2: question {NO_TOKEN}"
    skipping = dataclasses.replace(config.data, skip_bad_records=True)
    with caplog.at_level(logging.WARNING, logger="road_tf.data.examples"):
        kept = sources.load_split(task_spec("squad2"), skipping, "dev", tokenizer=tokenizer)
    assert [example.qid for example in kept] == ["q1", "q3"]
    assert any(f"{paths[1]}: record m1: context {NO_TOKEN}" in record.getMessage() for record in caplog.records)
    assert len(sources.load_split(task_spec("squad2"), config.data, "dev")) == 4, "the readers alone let them through"
