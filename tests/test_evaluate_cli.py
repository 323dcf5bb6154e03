"""`python -m road_tf.evaluate`: official keys on stdout, clear one-line errors; classification metrics."""

import gzip
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import read_squad_json, write_squad_json
from road_tf.evaluation.classification import accuracy, class_f1, classification_metrics, macro_f1
from road_tf.evaluation.squad_metric import squad_v2_metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
SQUAD_DEV = REPO.parent / "shared" / "data" / "squad2-dev" / "squad2-dev-public.json.gz"
OFFICIAL_KEYS = ["exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total",
                 "NoAns_exact", "NoAns_f1", "NoAns_total"]
BEST_KEYS = ["best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"]

EXAMPLES = [
    QAExample("q1", "Where?", "In France.", (Answer("France", 3),), "T"),
    QAExample("q2", "Who?", "Rollo led.", (), "T"),
    QAExample("q3", "Who led?", "Rollo led.", (Answer("Rollo", 0),), "T"),
]


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "road_tf.evaluate", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture()
def small(tmp_path):
    data = tmp_path / "dev.json"
    write_squad_json(data, EXAMPLES)
    preds = _write_json(tmp_path / "preds.json", {"q1": "france", "q2": "Rollo", "q3": "Rollo led"})
    na = _write_json(tmp_path / "na.json", {"q1": 0.1, "q2": 0.8, "q3": 0.4})
    return data, preds, na


def test_squad2_prints_official_keys(small):
    data, preds, na = small
    plain = _run("squad2", data, preds)
    assert plain.returncode == 0, plain.stderr
    assert list(json.loads(plain.stdout)) == OFFICIAL_KEYS
    with_na = _run("squad2", data, preds, "--na-probs", na, "--na-prob-thresh", "0.5")
    assert with_na.returncode == 0, with_na.stderr
    result = json.loads(with_na.stdout)
    assert list(result) == OFFICIAL_KEYS + BEST_KEYS
    assert result == squad_v2_metrics(EXAMPLES, json.loads(preds.read_text()), json.loads(na.read_text()), 0.5)
    assert (result["exact"], result["NoAns_exact"], result["total"]) == (pytest.approx(200 / 3), 100.0, 3)


def _guess(index, example):
    """A deterministic mix of empty, gold and wrong predictions."""
    if index % 3 == 0:
        return ""
    return example.answers[-1].text if example.answers else example.context[:12]


def test_squad2_on_public_half_matches_library(tmp_path):
    if not SQUAD_DEV.exists():
        pytest.skip(f"public SQuAD 2.0 dev half not found at {SQUAD_DEV} (shared/ data is absent)")
    examples = read_squad_json(SQUAD_DEV)
    preds = {example.qid: _guess(index, example) for index, example in enumerate(examples)}
    na = {example.qid: (index % 7) / 7 for index, example in enumerate(examples)}
    completed = _run("squad2", SQUAD_DEV, _write_json(tmp_path / "p.json", preds), "--na-probs", _write_json(tmp_path / "n.json", na))
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result == squad_v2_metrics(examples, preds, na)
    assert result["total"] == 6134 and result["HasAns_total"] == 3088 and result["NoAns_total"] == 3046


def test_missing_predictions_warn_on_stderr_and_are_left_out(small, tmp_path):
    data, _, _ = small
    completed = _run("squad2", data, _write_json(tmp_path / "p.json", {"q1": "France", "zz": "x"}))
    assert completed.returncode == 0
    assert json.loads(completed.stdout)["total"] == 1
    assert completed.stderr.splitlines() == ["warning: Missing prediction for q2", "warning: Missing prediction for q3"]


BAD_SQUAD_CASES = {
    "data_truncated": (lambda d, p, n, t: [_truncate(d), p], "dev.json", "invalid JSON"),
    "data_missing": (lambda d, p, n, t: [t / "nope.json", p], "nope.json", "cannot read file"),
    "data_bad_answer": (lambda d, p, n, t: [_bad_answer(d), p], "record q1", "does not match"),
    "preds_not_json": (lambda d, p, n, t: [d, _raw(t / "p.json", b"{'q1': 'x'}")], "p.json", "invalid JSON"),
    "preds_not_utf8": (lambda d, p, n, t: [d, _raw(t / "p.json", b'{"q1": "\xff"}')], "p.json", "not valid UTF-8"),
    "preds_a_list": (lambda d, p, n, t: [d, _write_json(t / "p.json", ["France"])], "p.json", "must be a JSON object"),
    "preds_value_number": (lambda d, p, n, t: [d, _write_json(t / "p.json", {"q1": 3})], "record q1", "must be a string"),
    "preds_match_nothing": (lambda d, p, n, t: [d, _write_json(t / "p.json", {"x": "y"})], "p.json", "no prediction for any"),
    "na_value_string": (lambda d, p, n, t: [d, p, "--na-probs", _write_json(t / "n.json", {"q1": "0.5"})], "record q1", "finite number"),
    "na_value_nan": (lambda d, p, n, t: [d, p, "--na-probs", _raw(t / "n.json", b'{"q1": NaN}')], "record q1", "finite number"),
    "na_missing_qid": (lambda d, p, n, t: [d, p, "--na-probs", _write_json(t / "n.json", {"q1": 0.5})], "record q2", "no no-answer probability"),
    "preds_5000_digit_number": (lambda d, p, n, t: [d, _raw(t / "p.json", b'{"q1": ' + b"9" * 5000 + b"}")], "p.json", "invalid JSON"),
    "na_5000_digit_number": (lambda d, p, n, t: [d, p, "--na-probs", _raw(t / "n.json", b'{"q1": 1' + b"0" * 5000 + b"}")],
                             "n.json", "invalid JSON"),
}


def _raw(path, payload):
    path.write_bytes(payload)
    return path


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])
    return path


def _bad_answer(path):
    doc = json.loads(path.read_text())
    doc["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 0
    return _write_json(path, doc)


def _assert_one_line_error(completed, *fragments):
    assert completed.returncode == 2, (completed.stdout, completed.stderr)
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr
    assert "Traceback" not in completed.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize("case", sorted(BAD_SQUAD_CASES))
def test_bad_squad_files_exit_2_with_one_line(small, tmp_path, case):
    make_args, where, problem = BAD_SQUAD_CASES[case]
    data, preds, na = small
    _assert_one_line_error(_run("squad2", *make_args(data, preds, na, tmp_path)), where, problem)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full, a device whose writes fail")
def test_a_full_stdout_is_one_line_and_exit_2(small):
    data, preds, _ = small
    with open("/dev/full", "w") as full:
        completed = subprocess.run([sys.executable, "-m", "road_tf.evaluate", "squad2", str(data), str(preds)],
                                   cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=full,
                                   stderr=subprocess.PIPE, text=True, timeout=120)
    assert completed.returncode == 2
    assert completed.stderr.splitlines() == ["error: standard output: cannot write the metrics (No space left on device)"]


def test_a_threshold_without_no_answer_probabilities_is_refused(small):
    """--na-prob-thresh alone was ignored: the metrics came back as if it had not been given."""
    data, preds, _ = small
    _assert_one_line_error(_run("squad2", data, preds, "--na-prob-thresh", "0.5"), "--na-prob-thresh", "--na-probs")


def test_a_huge_record_id_is_cut_in_the_message(tmp_path):
    """A 200,000-character question id was echoed whole: an error line of 200 kB."""
    qid = "x" * 200_000
    data = tmp_path / "dev.json"
    write_squad_json(data, [QAExample("q1", "Who?", "Rollo led.", (Answer("Rollo", 0),), "T")])
    doc = json.loads(data.read_text())
    doc["data"][0]["paragraphs"][0]["qas"][0].update(id=qid, answers=[{"text": "Rollo", "answer_start": -5}])
    _write_json(data, doc)
    completed = _run("squad2", data, _write_json(tmp_path / "p.json", {qid: ""}))
    _assert_one_line_error(completed, f"record {qid[:50]}... (200000 characters): ", "answers[0]")
    assert len(completed.stderr) < 400


def test_usage_errors_exit_2(small):
    data, preds, _ = small
    assert _run("squad2", data).returncode == 2
    assert _run("squad2", data, preds, "--na-prob-thresh", "high").returncode == 2
    assert _run("bleu", data, preds).returncode == 2
    for classes in ("99999999999999999999999", "1000001", "1" * 5000):
        completed = _run("classification", data, preds, "--num-classes", classes)
        assert completed.returncode == 2 and "Traceback" not in completed.stderr
        assert "must be an integer in [2, 1000000]" in completed.stderr


# ---- classification ----

LABELS = [1, 1, 1, 0, 0, 2]
PREDS = [1, 0, 1, 0, 2, 2]


def test_classification_metrics_by_hand():
    assert accuracy(LABELS, PREDS) == pytest.approx(4 / 6)
    assert [class_f1(LABELS, PREDS, c) for c in (0, 1, 2)] == pytest.approx([0.5, 0.8, 2 / 3])
    assert macro_f1(LABELS, PREDS) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert "f1" not in classification_metrics(LABELS, PREDS)
    binary = classification_metrics([0, 1, 1, 0, 1], [0, 1, 0, 1, 1])
    assert binary == pytest.approx({"accuracy": 0.6, "macro_f1": (0.5 + 2 / 3) / 2, "f1": 2 / 3, "total": 5})
    assert classification_metrics([0, 0], [0, 0])["f1"] == 0.0
    with pytest.raises(ValueError, match="same non-zero length"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="integer array"):
        accuracy([0.5], [1])


def test_macro_f1_is_the_mean_of_class_f1_over_every_class_seen():
    """macro_f1 counts all classes in one pass: the same value as class_f1 class by class, also for
    sparse, negative and prediction-only labels."""
    rng = np.random.default_rng(1)
    labels = rng.choice([-7, 0, 3, 10**9], 300)
    preds = np.where(rng.random(300) < 0.5, labels, rng.choice([-7, 3, 5, 42], 300))
    classes = np.union1d(labels, preds)
    assert macro_f1(labels, preds) == pytest.approx(np.mean([class_f1(labels, preds, c) for c in classes]), abs=1e-15)


def test_classification_matches_sklearn_on_random_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for num_classes in (2, 3, 5):
        labels = rng.integers(0, num_classes, 500)
        preds = np.where(rng.random(500) < 0.6, labels, rng.integers(0, num_classes, 500))
        result = classification_metrics(labels, preds)
        assert result["accuracy"] == pytest.approx(metrics.accuracy_score(labels, preds))
        assert result["macro_f1"] == pytest.approx(metrics.f1_score(labels, preds, average="macro"))
        if num_classes == 2:
            assert result["f1"] == pytest.approx(metrics.f1_score(labels, preds))


@pytest.mark.parametrize("gold_name", ["gold.json", "GOLD.JSON", "gold.tsv", "gold.tsv.gz"])
def test_classification_cli(tmp_path, gold_name):
    guids = [f"dev-{i}" for i in range(5)]
    gold = tmp_path / gold_name
    if gold_name.lower().endswith(".json"):
        _write_json(gold, dict(zip(guids, [0, 1, 1, 0, 1])))
    else:
        text = "guid\tlabel\n" + "".join(f"{g}\t{l}\n" for g, l in zip(guids, [0, 1, 1, 0, 1]))
        gold.write_bytes(gzip.compress(text.encode()) if gold_name.endswith(".gz") else text.encode())
    preds = _write_json(tmp_path / "p.json", dict(zip(guids, [0, 1, 0, 1, 1])))
    completed = _run("classification", gold, preds)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == pytest.approx({"accuracy": 0.6, "macro_f1": (0.5 + 2 / 3) / 2, "f1": 2 / 3, "total": 5})


@pytest.mark.parametrize("gold_text, preds, fragments", [
    ("a\t1\nb\tx\n", {"a": 1, "b": 0}, ["gold.tsv: record line 2", "label must be an integer"]),
    ("a\t1\nb\n", {"a": 1, "b": 0}, ["gold.tsv: record line 2", "expected 2 tab-separated fields, found 1"]),
    ("a\t1\x0bb\t0\n", {"a": 1, "b": 0}, ["gold.tsv: record line 1", "expected 2 tab-separated fields, found 3"]),
    ("a\t1\na\t0\n", {"a": 1}, ["record line 2", "duplicate guid"]),
    ("a\t1\nb\t0\n", {"a": 1}, ["p.json: record b", "no prediction"]),
    ("a\t1\nb\t0\n", {"a": 1, "b": "0"}, ["p.json: record b", "integer label"]),
    ("guid\tlabel\n", {"a": 1}, ["gold.tsv", "has no labels"]),
    ("a\t--1\nb\t0\n", {"a": 1, "b": 0}, ["gold.tsv: record line 1", "label must be an integer"]),
    ("a\t" + "1" * 5000 + "\n", {"a": 1}, ["gold.tsv: record line 1", "label must be an integer label in [0, 2)"]),
    ("a\t1\n", {"a": 18446744073709551616}, ["p.json: record a", "integer label in [0, 2)"]),
])
def test_bad_classification_files_exit_2_with_one_line(tmp_path, gold_text, preds, fragments):
    gold = tmp_path / "gold.tsv"
    gold.write_text(gold_text)
    _assert_one_line_error(_run("classification", gold, _write_json(tmp_path / "p.json", preds)), *fragments)


@pytest.mark.parametrize("gold_name", ["gold.json", "gold.json.gz"])
def test_a_json_gold_file_without_labels_is_one_line(tmp_path, gold_name):
    """`{}` reached the metric, which raised ValueError ('labels must be a 1-D integer array') with a traceback."""
    gold = tmp_path / gold_name
    gold.write_bytes(gzip.compress(b"{}") if gold_name.endswith(".gz") else b"{}")
    _assert_one_line_error(_run("classification", gold, _write_json(tmp_path / "p.json", {})), gold_name, "has no labels")


def test_a_gold_tsv_line_ends_at_newline_only(tmp_path):
    """Lines were split by str.splitlines, also at \\x0b, \\x1c, \\x85 or \\u2028: a line of three fields
    ("a<TAB>1\\x0bb<TAB>0") was scored as two records, and a guid holding \\x85 was refused."""
    guids = ["x\x85y", "p\u2028q", "r\x1cs"]
    gold = tmp_path / "gold.tsv"
    gold.write_text("guid\tlabel\n" + "".join(f"{guid}\t{i % 2}\n" for i, guid in enumerate(guids)), encoding="utf-8")
    completed = _run("classification", gold, _write_json(tmp_path / "p.json", {guid: 1 for guid in guids}))
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["total"] == 3 and json.loads(completed.stdout)["accuracy"] == pytest.approx(1 / 3)
