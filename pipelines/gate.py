"""The evaluation gate: blesses the Trainer's model only when two rules pass.

1. Floor: the candidate's dev F1 must exceed the F1 of answering "no answer" to every question
   of the same eval split (computed here with the official SQuAD 2.0 metric) by `margin` points:
   candidate_f1 > no_answer_f1 + margin.
2. No regression: when this pipeline's metadata holds a blessed model (the latest one, found by
   TFX's LatestBlessedModelStrategy resolver) that was scored on the same eval split (same
   fingerprint), the candidate must reach its F1 minus `tolerance`:
   candidate_f1 >= baseline_f1 - tolerance. With no such model the rule is skipped, and says why.
   A candidate that is the blessed model itself (the Trainer's output reused from the cache) is
   not blessed again, so an identical rerun pushes no duplicate version.

The candidate's F1 is the one training recorded in the run's metrics.json ("final"), computed by
the decoder the served model runs. The decision is a standard ModelBlessing (custom property
`blessed`, and `current_model_id` for the resolver), which the Pusher reads. The artifact's
custom properties, its `gate.json` file and the log state every number and each rule's outcome.
"""

import hashlib
import json
import logging
import os

from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from road_tf.data.records import read_records
from road_tf.evaluation.squad_metric import squad_v2_metrics

BLESSED_FILE, NOT_BLESSED_FILE, REPORT_FILE = "BLESSED", "NOT_BLESSED", "gate.json"


def no_answer_f1(examples):
    """F1 (%) of predicting "" for every question of `examples` (list of QAExample), official rules."""
    return squad_v2_metrics(examples, {example.qid: "" for example in examples})["f1"]


def eval_fingerprint(examples):
    """sha256 hex of the eval questions (ids, texts, gold answers), independent of their order."""
    rows = sorted((e.qid, e.question, e.context, [(a.text, a.start) for a in e.answers]) for e in examples)
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


def gate_decision(candidate_f1, floor_f1, margin, tolerance, baseline=None):
    """Applies both rules.

    Args:
        candidate_f1: the candidate's dev F1 (%).
        floor_f1: the always-"no answer" F1 (%) of the same eval split.
        margin, tolerance: points (%).
        baseline: None, or {"f1", "model" (uri), "same_split", "same_model" (bools)} of the latest
            blessed model; same_model means it is the candidate itself (a cached Trainer output).
    Returns:
        dict: blessed (bool), every number, floor_rule / regression_rule ("passed", "failed" or
        "skipped"), and `reason`, one line that states the numbers behind each rule.
    """
    floor = floor_f1 + margin
    floor_passed = candidate_f1 > floor
    floor_text = (f"floor {'passed' if floor_passed else 'FAILED'}: dev F1 {candidate_f1:.2f} "
                  f"{'>' if floor_passed else '<='} no-answer F1 {floor_f1:.2f} + margin {margin:.2f} = {floor:.2f}")
    report = {"candidate_f1": candidate_f1, "no_answer_f1": floor_f1, "margin": margin, "floor": floor,
              "tolerance": tolerance, "floor_rule": "passed" if floor_passed else "failed"}
    if baseline is None:
        report["regression_rule"] = "skipped"
        regression_text = "no regression skipped: no blessed model in this pipeline's metadata"
    elif baseline["same_model"]:
        report["regression_rule"] = "failed"
        regression_text = ("no regression: the candidate IS the latest blessed model (the Trainer's output came "
                           "from the cache), already pushed")
    elif not baseline["same_split"]:
        report["regression_rule"] = "skipped"
        regression_text = (f"no regression skipped: the latest blessed model ({baseline['model']}) was scored on "
                           f"another eval split")
    else:
        bar = baseline["f1"] - tolerance
        passed = candidate_f1 >= bar
        report.update(baseline_f1=baseline["f1"], baseline_model=baseline["model"],
                      regression_rule="passed" if passed else "failed")
        regression_text = (f"no regression {'passed' if passed else 'FAILED'}: dev F1 {candidate_f1:.2f} "
                           f"{'>=' if passed else '<'} blessed F1 {baseline['f1']:.2f} - tolerance {tolerance:.2f} "
                           f"= {bar:.2f}")
    report["blessed"] = floor_passed and report["regression_rule"] != "failed"
    report["reason"] = f"{'BLESSED' if report['blessed'] else 'NOT BLESSED'}: {floor_text}; {regression_text}"
    return report


def baseline_of(blessing, fingerprint, model_id):
    """The `baseline` argument of gate_decision from the resolved latest blessing (None if none)."""
    if blessing is None:
        return None
    return {"f1": blessing.get_float_custom_property("candidate_f1"),
            "model": blessing.get_string_custom_property("current_model"),
            "same_split": blessing.get_string_custom_property("eval_fingerprint") == fingerprint,
            "same_model": blessing.get_int_custom_property("current_model_id") == model_id}


@tfx.dsl.components.component
def SquadGate(
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    model_run: tfx.dsl.components.InputArtifact[standard_artifacts.ModelRun],
    examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing],
    margin: tfx.dsl.components.Parameter[float],
    tolerance: tfx.dsl.components.Parameter[float],
    baseline_blessing: tfx.dsl.components.InputArtifact[standard_artifacts.ModelBlessing] = None,
) -> None:
    """Writes the ModelBlessing for `model` (see the module docstring); `baseline_blessing` is the resolver's."""
    with fileio.open(os.path.join(model_run.uri, "metrics.json")) as handle:
        candidate_f1 = json.load(handle)["final"]["f1"]
    eval_examples = read_records([os.path.join(examples.uri, "Split-eval", "*")])
    fingerprint = eval_fingerprint(eval_examples)
    report = gate_decision(candidate_f1, no_answer_f1(eval_examples), margin, tolerance,
                           baseline_of(baseline_blessing, fingerprint, model.id))
    report.update(eval_fingerprint=fingerprint, eval_questions=len(eval_examples), current_model=model.uri)
    logging.info("SquadGate %s", report["reason"])
    with fileio.open(os.path.join(blessing.uri, REPORT_FILE), "w") as handle:
        handle.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    with fileio.open(os.path.join(blessing.uri, BLESSED_FILE if report["blessed"] else NOT_BLESSED_FILE), "w") as handle:
        handle.write(report["reason"] + "\n")
    for key, value in report.items():
        if isinstance(value, (bool, int)):
            blessing.set_int_custom_property(key, int(value))
        elif isinstance(value, float):
            blessing.set_float_custom_property(key, float(value))
        else:
            blessing.set_string_custom_property(key, str(value))
    blessing.set_int_custom_property("current_model_id", model.id)
