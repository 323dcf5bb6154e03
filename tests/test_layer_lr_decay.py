"""Layer-wise learning-rate decay: which factor each variable gets, and that the optimizer applies it."""

import keras
import numpy as np
import pytest

from road_tf import train, training
from road_tf.models.task_model import layer_lr_scales
from helpers_models import tiny_model
from test_runs import tiny_args

LR = 1e-2


def factor_by_rule(path, layers, decay):
    """The documented factor: layer i at decay**(layers - i), embeddings decay**(layers + 1), heads 1."""
    if path.startswith("transformer_layer_"):
        return decay ** (layers - int(path.split("/")[0].rsplit("_", 1)[1]))
    return 1.0 if "_head/" in path else decay ** (layers + 1)


def one_step(optimizer, model, gradient_seed=0):
    """Applies one step of random gradients (|g| in [0.5, 1.5)); returns {path: change of the variable}."""
    rng = np.random.default_rng(gradient_seed)
    optimizer.build(model.trainable_variables)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    gradients = [keras.ops.convert_to_tensor((rng.choice([-1.0, 1.0], size=v.shape) * (0.5 + rng.random(v.shape)))
                                             .astype("float32")) for v in model.trainable_variables]
    optimizer.apply(gradients, model.trainable_variables)
    return {v.path: v.numpy() - before[v.path] for v in model.trainable_variables}


def test_each_layer_gets_its_factor_and_the_head_the_full_rate():
    model = tiny_model(layers=3)
    scales = layer_lr_scales(model, 0.5)
    head = {v.path for v in model.trainable_variables if "_head/" in v.path}
    assert head and not head & scales.keys(), "the head keeps the full rate"
    assert scales.keys() == {v.path for v in model.trainable_variables} - head
    for path, factor in scales.items():
        assert factor == pytest.approx(factor_by_rule(path, 3, 0.5)), path
    assert scales["transformer_layer_2/feedforward_output_dense/kernel"] == 0.5
    assert scales["token_embedding/embeddings"] == 0.5 ** 4
    assert layer_lr_scales(model, 1.0) == {}


def test_the_first_adam_step_of_each_variable_is_its_scaled_rate():
    model = tiny_model(layers=2)
    scales = layer_lr_scales(model, 0.5)
    optimizer = training.make_optimizer(LR, 10, 0.0, 0.0, scales)
    assert isinstance(optimizer, training.LayerwiseAdamW)
    for path, change in one_step(optimizer, model).items():
        # Adam's first step moves every coordinate by the rate times the gradient's sign.
        np.testing.assert_allclose(np.abs(change), LR * scales.get(path, 1.0), rtol=1e-3, err_msg=path)


def test_unit_factors_train_exactly_like_adamw_weight_decay_included():
    scaled, plain = tiny_model(seed=0), tiny_model(seed=0)
    ones = {v.path: 1.0 for v in scaled.trainable_variables}
    layerwise = training.make_optimizer(LR, 10, 0.0, 0.05, ones)
    adamw = training.make_optimizer(LR, 10, 0.0, 0.05)
    for step in range(3):
        got, expected = one_step(layerwise, scaled, step), one_step(adamw, plain, step)
        for path in expected:
            np.testing.assert_allclose(got[path], expected[path], rtol=1e-5, atol=1e-8, err_msg=path)


def test_weight_decay_follows_each_variables_rate():
    model = tiny_model(layers=1)
    scales = layer_lr_scales(model, 0.5)
    optimizer = training.make_optimizer(LR, 10, 0.0, 0.1, scales)
    optimizer.build(model.trainable_variables)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply([keras.ops.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    for v in model.trainable_variables:
        expected = before[v.path] * (1 - 0.1 * LR * scales.get(v.path, 1.0))
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-6, err_msg=v.path)


def test_the_optimizer_config_round_trips():
    model = tiny_model(layers=2)
    optimizer = training.make_optimizer(LR, 10, 0.1, 0.01, layer_lr_scales(model, 0.8))
    again = training.LayerwiseAdamW.from_config(optimizer.get_config())
    assert again.lr_scales == optimizer.lr_scales and again.decoupled_weight_decay == 0.01
    assert again.get_config() == optimizer.get_config()


def test_a_run_applies_the_decay_in_the_multitask_and_fine_tuning_stages(tmp_path, monkeypatch):
    made = []
    original = training.make_optimizer

    def recording(*args):
        made.append(args[4] if len(args) > 4 else None)
        return original(*args)

    monkeypatch.setattr(training, "make_optimizer", recording)
    args = tiny_args(tmp_path, "train.layer_lr_decay=0.5", "multitask.steps=2", "multitask.k=2",
                     "export.enabled=false")
    assert train.main(args + ["--output-dir", str(tmp_path / "run")]) == 0
    assert len(made) == 2, "one optimizer for the multi-task stage, one for fine-tuning"
    for scales in made:
        # model.num_layers=1: the layer at 0.5, the embeddings at 0.5 ** 2.
        assert scales and min(scales.values()) == pytest.approx(0.25) and max(scales.values()) == 0.5
