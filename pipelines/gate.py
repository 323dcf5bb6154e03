"""The evaluation gate: blesses the Trainer's model when its dev F1 reaches a threshold.

Training already scores the model on the eval split with the official SQuAD 2.0 rules and
writes them to the run's metrics.json; the gate reads them instead of re-running the model in
TFMA (whose metrics do not include SQuAD's span EM/F1).
"""

import json
import os

from tfx import v1 as tfx
from tfx.types import standard_artifacts

BLESSED_FILE, NOT_BLESSED_FILE = "BLESSED", "NOT_BLESSED"


def gate_decision(metrics, min_f1):
    """(blessed, reason) for a metrics.json dict and a threshold in %."""
    f1 = metrics["final"]["f1"]
    if f1 >= min_f1:
        return True, f"dev f1 {f1:.2f} >= {min_f1:.2f}"
    return False, f"dev f1 {f1:.2f} < {min_f1:.2f}"


@tfx.dsl.components.component
def SquadF1Gate(
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    model_run: tfx.dsl.components.InputArtifact[standard_artifacts.ModelRun],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing],
    min_f1: tfx.dsl.components.Parameter[float],
) -> None:
    """Marks `blessing` blessed (custom property blessed=1, as Evaluator does) when dev F1 >= min_f1."""
    with open(os.path.join(model_run.uri, "metrics.json")) as handle:
        blessed, reason = gate_decision(json.load(handle), min_f1)
    with open(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), "w") as handle:
        handle.write(reason + "\n")
    blessing.set_int_custom_property("blessed", int(blessed))
    blessing.set_string_custom_property("reason", reason)
    blessing.set_string_custom_property("current_model", model.uri)
