"""The pipeline's gate (floor, no regression against this pipeline's blessed model) and its data split."""

import json

import pytest

from pipelines import local_runner
from pipelines.gate import eval_fingerprint, gate_decision, no_answer_f1
from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import read_squad_json, split_by_article
from conftest import shared_file
from ml_metadata.proto import metadata_store_pb2
from test_pipeline import executions, run_main, runner_args

EXAMPLES = [
    QAExample("q1", "Who?", "Ann met Bob.", (Answer("Ann", 0),)),
    QAExample("q2", "Whom?", "Ann met Bob.", (Answer("Bob", 8),)),
    QAExample("q3", "When?", "Ann met Bob.", ()),
]


def test_no_answer_f1_scores_only_the_unanswerable_questions():
    assert no_answer_f1(EXAMPLES) == pytest.approx(100 / 3)


def test_eval_fingerprint_ignores_order_but_not_answers():
    assert eval_fingerprint(EXAMPLES) == eval_fingerprint(EXAMPLES[::-1])
    changed = [EXAMPLES[0], QAExample("q2", "Whom?", "Ann met Bob.", (Answer("Ann", 0),)), EXAMPLES[2]]
    assert eval_fingerprint(changed) != eval_fingerprint(EXAMPLES)


def test_floor_is_the_no_answer_f1_plus_the_margin_and_must_be_exceeded():
    report = gate_decision(36.0, 35.0, margin=1.0, tolerance=0.5)
    assert not report["blessed"] and report["floor"] == 36.0 and report["floor_rule"] == "failed"
    assert "floor FAILED: dev F1 36.00 <= no-answer F1 35.00 + margin 1.00 = 36.00" in report["reason"]
    report = gate_decision(36.01, 35.0, margin=1.0, tolerance=0.5)
    assert report["blessed"] and report["regression_rule"] == "skipped"


def test_regression_rule_compares_with_the_blessed_f1_minus_the_tolerance():
    baseline = {"f1": 50.0, "model": "m1", "same_split": True, "same_model": False}
    report = gate_decision(49.5, 30.0, margin=1.0, tolerance=0.5, baseline=baseline)
    assert report["blessed"] and report["baseline_f1"] == 50.0 and report["regression_rule"] == "passed"
    report = gate_decision(49.4, 30.0, margin=1.0, tolerance=0.5, baseline=baseline)
    assert not report["blessed"] and report["floor_rule"] == "passed" and report["regression_rule"] == "failed"
    assert "no regression FAILED: dev F1 49.40 < blessed F1 50.00 - tolerance 0.50 = 49.50" in report["reason"]
    other_split = gate_decision(10.0, 5.0, margin=1.0, tolerance=0.5, baseline={**baseline, "same_split": False})
    assert other_split["blessed"] and "scored on another eval split" in other_split["reason"]
    itself = gate_decision(50.0, 30.0, margin=1.0, tolerance=0.5, baseline={**baseline, "same_model": True})
    assert not itself["blessed"] and "already pushed" in itself["reason"]


def article(title, questions):
    return {"title": title, "paragraphs": [{"context": "c", "qas": [{"id": f"{title}{i}"} for i in range(questions)]}]}


def test_split_by_article_takes_dev_articles_in_sha256_title_order():
    # sha256 hex order of the titles: Delta 1883.. < Beta 7033.. < Gamma a8ab.. < Alpha b1a9..
    document = {"version": "v2.0", "data": [article("Alpha", 2), article("Beta", 3), article("Gamma", 1),
                                            article("Delta", 2)]}
    train, dev = split_by_article(document, min_dev_questions=4)
    assert [a["title"] for a in dev["data"]] == ["Beta", "Delta"]
    assert [a["title"] for a in train["data"]] == ["Alpha", "Gamma"] and train["version"] == "v2.0"
    assert [a["title"] for a in split_by_article(document, 1)[1]["data"]] == ["Delta"]
    assert split_by_article(document, 100)[0]["data"] == []


def test_one_real_squad_file_is_split_by_article(tmp_path, capsys):
    path = shared_file("data/squad2-dev/squad2-dev-public.json.gz")
    from road_tf.data.records import read_records

    assert local_runner.main(["--prepare-only", "--root", str(tmp_path), "--data", str(path)]) == 0
    examples = tmp_path / "data" / "examples"
    assert capsys.readouterr().out.strip() == f"examples: {examples}"
    train = read_records([examples / "Split-train" / "*"], compression_type="")
    evaluation = read_records([examples / "Split-eval" / "*"], compression_type="")
    assert len(train) + len(evaluation) == 6134 and len(evaluation) >= 1000
    # The records keep every gold answer (3,087 of these questions have several).
    by_id = {example.qid: example for example in read_squad_json(path)}
    assert all(by_id[example.qid] == example for example in train + evaluation)
    assert not {e.title for e in train} & {e.title for e in evaluation}
    dev = json.loads((tmp_path / "data" / "split" / "eval.json").read_text())
    assert [a["title"] for a in dev["data"]] == sorted({e.title for e in evaluation}, key=[
        a["title"] for a in dev["data"]].index)


@pytest.mark.slow
def test_gate_refuses_below_the_floor_and_regressions_and_pushes_improvements_with_caching(tmp_path, capsys):
    """Five runs on one pipeline metadata store; each candidate's quality is set by its decoding.

    decode.null_score_diff_threshold=-1e9 makes the model answer "" everywhere (its F1 is then the
    no-answer F1 exactly); +1e9 makes it always answer a span, which a 12-step model gets mostly
    wrong (a lower F1, checked below).
    """
    never, always = "decode.null_score_diff_threshold=-1e9", "decode.null_score_diff_threshold=1e9"

    def gate_run(*extra, overrides):
        gate, pushed = run_main(runner_args(tmp_path, *extra, overrides=overrides), capsys)
        blessings = sorted((tmp_path / "tfx" / "pipeline").glob("SquadGate/blessing/*/gate.json"),
                           key=lambda p: int(p.parent.name))
        return gate, pushed, json.loads(blessings[-1].read_text())

    gate, pushed, report = gate_run("--margin=0", overrides=[never])
    assert pushed == "pushed: nothing" and report["candidate_f1"] == report["no_answer_f1"]
    assert "floor FAILED" in gate and f"no-answer F1 {report['no_answer_f1']:.2f} + margin 0.00" in gate

    gate, pushed, weak = gate_run("--margin=-100", overrides=[always])
    assert pushed != "pushed: nothing" and "no regression skipped" in gate
    assert weak["candidate_f1"] < report["no_answer_f1"] - 0.5, "the always-answering model must be the weaker one"

    # Another seed, so that a new model is trained: TFX's LatestBlessedModelStrategy picks the
    # newest blessed *model*, and a cached (older) one blessed again would not be the newest.
    gate, pushed, better = gate_run("--margin=-100", overrides=[never, "train.seed=1"])
    assert pushed != "pushed: nothing" and better["regression_rule"] == "passed"
    # MLMD's sqlite store keeps a float property to 6 decimals (3.333333 for 10/3); gate.json keeps them all.
    assert better["baseline_f1"] == pytest.approx(weak["candidate_f1"], abs=1e-6)
    assert better["baseline_model"] == weak["current_model"]

    gate, pushed, worse = gate_run("--margin=-100", "--tolerance=0.5", overrides=[always])
    assert pushed == "pushed: nothing" and worse["regression_rule"] == "failed"
    assert worse["baseline_f1"] == pytest.approx(better["candidate_f1"], abs=1e-6)
    assert (f"no regression FAILED: dev F1 {weak['candidate_f1']:.2f} < blessed F1 {better['candidate_f1']:.2f} "
            f"- tolerance 0.50") in gate
    assert len([p for p in (tmp_path / "serving").iterdir() if p.name.isdigit()]) == 2

    # Caching: the data components ran once; the Trainer ran once per distinct configuration.
    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    states = executions(tmp_path)
    for component in ("ImportExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator"):
        assert states[component] == [complete] + [cached] * 3, (component, states[component])
    assert states["Trainer"] == [complete, complete, complete, cached]
    # An identical rerun of the third run reuses everything; its candidate is the blessed model itself.
    gate, pushed, again = gate_run("--margin=-100", overrides=[never, "train.seed=1"])
    assert pushed == "pushed: nothing" and "the candidate IS the latest blessed model" in gate
    assert executions(tmp_path)["Trainer"][-1] == cached
