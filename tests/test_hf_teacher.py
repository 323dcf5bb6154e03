"""Hugging Face question-answering checkpoints as road_tf span models and teachers, against PyTorch.

tests/fixtures/hf_qa/{bert,electra}/ hold tiny `BertForQuestionAnswering` /
`ElectraForQuestionAnswering` checkpoints saved by transformers, and `logits.npz` the start/end
logits PyTorch computed for padded question/context inputs (made by
tests/fixtures/make_hf_qa_fixture.py in .venv-baseline). road_tf masks every position but [CLS]
and the context to -1e4, so logits are compared there.
"""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import REPO, one_error_line
from road_tf import experiment, train
from road_tf.config import ModelConfig, load_config
from road_tf.data.tokenizer import load_tokenizer
from road_tf.errors import RoadError
from road_tf.models.backbones import build_backbone
from road_tf.models.convert import has_span_head, load_span_head
from road_tf.models.heads import NEG_INF
from road_tf.models.task_model import build_model, build_task_model
from road_tf.tasks import get_task, load_task_data
from test_train_cli import tiny_pairs

FIXTURES = REPO / "tests" / "fixtures" / "hf_qa"
FAMILIES = ("bert", "electra")
TASK = "squad2"
SQUAD = get_task(TASK)


def expected(family):
    """The fixture's inputs {token_ids, segment_ids, padding_mask} and PyTorch's (start, end) logits."""
    arrays = np.load(FIXTURES / family / "logits.npz")
    inputs = {key: arrays[key] for key in ("token_ids", "segment_ids", "padding_mask")}
    return inputs, (arrays["start_logits"], arrays["end_logits"])


def allowed_positions(inputs):
    """bool [B, S]: [CLS] and context positions, the ones SpanHead leaves unmasked."""
    allowed = (inputs["segment_ids"] == 1) & (inputs["padding_mask"] == 1)
    allowed[:, 0] = True
    return allowed


def span_logits(model, inputs):
    """(start, end) float32 [B, S] of the task model's span head."""
    outputs = model(inputs, training=False)
    return np.asarray(outputs[f"{TASK}/start_logits"]), np.asarray(outputs[f"{TASK}/end_logits"])


def assert_same_logits(model, family, atol=1e-4):
    """The model's logits equal PyTorch's at unmasked positions and are -1e4 elsewhere."""
    inputs, reference = expected(family)
    allowed = allowed_positions(inputs)
    for got, want in zip(span_logits(model, inputs), reference):
        np.testing.assert_allclose(got[allowed], want[allowed], atol=atol)
        assert (got[~allowed] == NEG_INF).all()


def hf_span_model(folder):
    """A span model built from the folder: its encoder and its qa_outputs in the span head."""
    return build_model(ModelConfig(pretrained=str(folder)), [SQUAD], 100, 64, "hf")


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_question_answering_checkpoint_gives_pytorch_logits(family):
    assert_same_logits(hf_span_model(FIXTURES / family), family)


def test_fixture_tells_the_activation_and_the_head_apart(tmp_path):
    """The fixture is sensitive: tanh GELU or start/end swapped are far from PyTorch's logits."""
    folder = tmp_path / "bert"
    shutil.copytree(FIXTURES / "bert", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, hidden_act="gelu_new")))
    inputs, reference = expected("bert")
    allowed = allowed_positions(inputs)
    tanh_start, _ = span_logits(hf_span_model(folder), inputs)
    # Measured: 5.0e-4 with tanh GELU, 2.2e-6 with exact GELU (the parity tests allow 1e-4).
    assert np.abs(tanh_start[allowed] - reference[0][allowed]).max() > 3e-4
    _, end = span_logits(hf_span_model(FIXTURES / "bert"), inputs)
    assert np.abs(end[allowed] - reference[0][allowed]).max() > 1e-1


def encoder_only(folder):
    """Writes the bert fixture into `folder` without its qa_outputs head (a teacher a KD run trains);
    returns `folder`."""
    shutil.copytree(FIXTURES / "bert", folder)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({name: value for name, value in tensors.items() if not name.startswith("qa_outputs.")},
              str(folder / "model.safetensors"))
    return folder


def test_encoder_only_checkpoints_have_no_span_head(tmp_path):
    folder = encoder_only(tmp_path / "encoder_only")
    assert has_span_head(FIXTURES / "electra") and not has_span_head(folder)
    assert not any(has_span_head(keyword) for keyword in ("none", "minilm", "preset"))
    backbone = build_backbone(ModelConfig(pretrained=str(folder)), 100, 64)
    with pytest.raises(RoadError, match=r"model.safetensors: no question-answering head \(qa_outputs.weight\)"):
        load_span_head(build_task_model(backbone, [SQUAD]), SQUAD.head_name, folder)


def run_pairs(tmp_path, folder, *pairs):
    """--set pairs of a tiny KD run on the synthetic data with the fixtures' vocabulary and the teacher in
    `folder`, `pairs` on top (`tiny_pairs`)."""
    teacher = f"{{model: {{pretrained: {folder}}}}}"
    return tiny_pairs(f"data.vocab={FIXTURES / 'vocab.txt'}", f"distillation.teachers=[{teacher}]",
                      f"data.cache_dir={tmp_path / 'cache'}", "export.enabled=false",
                      "distillation.compare_without_kd=false", *pairs)


def test_kd_run_teacher_is_the_hf_model_untrained(tmp_path):
    """The teacher a KD config names by folder is built with its head, evaluated, not retrained.

    ELECTRA only (its embedding projection is the harder case); both families share this path.
    """
    family = "electra"
    config = load_config(overrides=run_pairs(tmp_path, FIXTURES / family))
    tokenizer = load_tokenizer(config.data.vocab)
    task = get_task(config.task)
    data = load_task_data(task, config, tokenizer)
    stages = {}
    teachers = experiment.prepare_teachers(config, data, tokenizer, tmp_path / "run", stages)
    assert_same_logits(teachers[0], family)
    assert "f1" in stages["teacher_0"] and not (tmp_path / "run" / "teacher_0" / "model.weights.h5").exists()


@pytest.mark.slow
def test_kd_run_with_an_hf_teacher_trains_the_student(tmp_path):
    out = tmp_path / "run"
    args = ["--output-dir", str(out)]
    for pair in run_pairs(tmp_path, FIXTURES / "bert"):
        args += ["--set", pair]
    assert train.main(args) == 0
    stages = json.loads((out / "metrics.json").read_text())["stages"]
    assert set(stages) == {"teacher_0", "student"}
    assert not (out / "teacher_0" / "model.weights.h5").exists() and (out / "student" / "model.weights.h5").is_file()


@pytest.mark.parametrize("pairs, match, message", [
    ([], "{teacher_layer: 4, student_layer: 1}", "teacher_layer 4 is beyond distillation.teachers[0]'s 2 layers"),
    ([f"model.pretrained={FIXTURES / 'bert'}"], "{teacher_layer: 2, student_layer: 3}",
     "student_layer 3 is beyond the student's 2 layers"),
], ids=["teacher", "student"])
def test_a_layer_map_beyond_a_pretrained_encoder_stops_the_run_before_a_stage_trains(tmp_path, capsys, monkeypatch,
                                                                                     pairs, match, message):
    """A pretrained encoder's depth (2 layers here) is known once it is built: a custom match beyond
    it was refused only in the student's stage, after the run folder was made and the teacher trained."""
    trained = []

    def train_stage(stage_dir, *args, **kwargs):
        trained.append(stage_dir.name)
        raise AssertionError(f"{stage_dir.name} trained before the layer map was checked")

    monkeypatch.setattr(experiment, "train_stage", train_stage)
    out = tmp_path / "run"
    matches = f"[{{teacher_layer: 1, student_layer: 1}}, {match}]"
    args = ["--output-dir", str(out)]
    for pair in run_pairs(tmp_path, encoder_only(tmp_path / "encoder_only"), *pairs, "distillation.hidden_loss=mse",
                          "distillation.layer_map=custom", f"distillation.layer_matches={matches}"):
        args += ["--set", pair]
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert one_error_line(capsys, exit_info) == f"error: distillation.layer_matches[1]: {message}"
    assert trained == [] and not out.exists()
