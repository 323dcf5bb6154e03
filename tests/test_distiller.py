"""The Distiller's train step: loss terms, frozen teachers, gradients, strategies."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from road_tf.config import DistillationConfig, LayerMatch, TeacherConfig
from road_tf.errors import ConfigError
from road_tf.distillation.distiller import Distiller
from road_tf.experiment import teacher_layer_matches
from road_tf import losses
from road_tf.data.features import MODEL_INPUTS
from road_tf.tasks import get_task
from helpers_models import random_span_features, tiny_model


SQUAD = get_task("squad2")


def kd_config(**overrides):
    values = dict(teachers=(TeacherConfig(),), kd_weight=0.5, temperature=2.0)
    values.update(overrides)
    return DistillationConfig(**values)


def compiled(distiller, lr=0.1):
    distiller.compile(optimizer=keras.optimizers.SGD(lr))
    distiller.optimizer.build(distiller.trained_variables())
    return distiller


def inputs(data):
    return {key: data[key] for key in MODEL_INPUTS}


def batch(rows=8, seed=0):
    return {k: tf.constant(v) for k, v in random_span_features(rows, seed).items()}


def test_without_teachers_the_loss_is_hard_ce():
    student = tiny_model()
    distiller = compiled(Distiller(student, SQUAD))
    data = batch()
    total, terms = distiller.compute_losses(data, training=False)
    out = student(inputs(data), training=False)
    expected = losses.span_ce(out["squad2/start_logits"], out["squad2/end_logits"], data["start_positions"],
                              data["end_positions"])
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-6)
    assert set(terms) == {"hard_loss"}


def test_logits_kd_total_is_weighted_sum_and_terms_are_logged():
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    distiller = compiled(Distiller(student, SQUAD, kd_config(kd_weight=0.3), teachers=[teacher]))
    data = batch()
    total, terms = distiller.compute_losses(data, training=False)
    s, t = student(inputs(data)), teacher(inputs(data))
    hard = losses.span_ce(s["squad2/start_logits"], s["squad2/end_logits"], data["start_positions"], data["end_positions"])
    kd = 0.5 * (losses.kd_kl_logits(s["squad2/start_logits"], t["squad2/start_logits"], 2.0)
                + losses.kd_kl_logits(s["squad2/end_logits"], t["squad2/end_logits"], 2.0))
    np.testing.assert_allclose(total.numpy(), (0.7 * hard + 0.3 * kd).numpy(), rtol=1e-5)
    assert {"kd_loss", "weighted_kd_loss", "weighted_hard_loss", "temperature", "kd_weight"} <= set(terms)


def test_evaluate_reports_the_losses_of_a_batch_without_training():
    """Distiller is a Keras model: evaluate() (its test_step) gives compute_losses' loss and terms with
    dropout off, and changes no weight."""
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    distiller = compiled(Distiller(student, SQUAD, kd_config(kd_weight=0.3), teachers=[teacher]))
    data = batch()
    total, terms = distiller.compute_losses(data, training=False)
    before = [w.numpy() for w in student.weights]
    result = distiller.evaluate(tf.data.Dataset.from_tensors(data), return_dict=True, verbose=0)
    np.testing.assert_allclose(result["loss"], float(tf.reduce_mean(total)), rtol=1e-5)
    np.testing.assert_allclose(result["kd_loss"], float(terms["kd_loss"]), rtol=1e-5)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, student.weights))


def test_losses_are_the_same_on_a_batch_cut_after_its_longest_row():
    """train.trim_padding drops positions that are padding in every row: logits KD, hidden KD and the
    hard loss must not change."""
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    matches = (LayerMatch(1, 1, 1.0), LayerMatch(0, 0, 0.5))
    distiller = compiled(Distiller(student, SQUAD, kd_config(hidden_loss="mse", layer_map="last"),
                                   teachers=[teacher], layer_matches=(matches,)))
    data = random_span_features(8, seed=4)
    for key in ("token_ids", "segment_ids", "padding_mask"):
        data[key][:, 10:] = 0
    full, full_terms = distiller.compute_losses({k: tf.constant(v) for k, v in data.items()}, training=False)
    cut = {k: tf.constant(v[:, :12] if v.ndim > 1 else v) for k, v in data.items()}
    trimmed, trimmed_terms = distiller.compute_losses(cut, training=False)
    np.testing.assert_allclose(trimmed.numpy(), full.numpy(), rtol=1e-5, atol=1e-6)
    for name in ("hard_loss", "kd_loss", "hidden_loss"):
        np.testing.assert_allclose(trimmed_terms[name].numpy(), full_terms[name].numpy(), rtol=1e-5, atol=1e-6)


def test_teacher_never_changes_and_student_and_projection_do():
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    matches = (LayerMatch(1, 1, 1.0), LayerMatch(0, 0, 0.5))
    distiller = compiled(Distiller(student, SQUAD, kd_config(hidden_loss="mse", layer_map="last"),
                                   teachers=[teacher], layer_matches=(matches,)))
    before_teacher = [w.numpy().copy() for w in teacher.weights]
    before_student = [w.numpy().copy() for w in student.trainable_weights]
    before_projection = [w.numpy().copy() for w in distiller.projections[0][0].weights]
    data = batch()
    with tf.GradientTape() as tape:
        total, terms = distiller.compute_losses(data)
    grads = tape.gradient(tf.reduce_mean(total), teacher.trainable_weights + teacher.non_trainable_weights)
    assert all(g is None for g in grads)
    for _ in range(3):
        logs = distiller.train_step(data)
    assert "hidden_loss_1_1" in logs and "weighted_hidden_loss" in logs
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before_teacher, teacher.weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before_student, student.trainable_weights))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before_projection, distiller.projections[0][0].weights))
    assert distiller.projections[0][0].kernel.shape == (8, 16)


def test_hidden_kd_from_teachers_of_different_depths_uses_one_map_per_teacher():
    """kd_ensemble + hidden MSE: each teacher gets its own layer map and projections (widths 16 and 24)."""
    student = tiny_model(seed=0, layers=1)
    teachers = [tiny_model(seed=1, layers=2, hidden=16, name="deep"), tiny_model(seed=2, layers=4, hidden=24, name="deeper")]
    config = kd_config(teachers=(TeacherConfig(), TeacherConfig()), hidden_loss="mse", layer_map="uniform")
    matches = teacher_layer_matches(config, teachers, student)
    assert matches == ((LayerMatch(0, 0), LayerMatch(2, 1)), (LayerMatch(0, 0), LayerMatch(4, 1)))
    distiller = compiled(Distiller(student, SQUAD, config, teachers=teachers, layer_matches=matches))
    assert [[p.kernel.shape for p in group] for group in distiller.projections] == [[(8, 16)] * 2, [(8, 24)] * 2]
    data = batch()
    total, terms = distiller.compute_losses(data, training=False)
    s, outs = student(inputs(data)), [t(inputs(data)) for t in teachers]
    expected = []
    for group, pairs, out in zip(distiller.projections, matches, outs):
        expected.append(sum(losses.hidden_mse(proj(s["hidden_states"][m.student_layer]),
                                              out["hidden_states"][m.teacher_layer], data["padding_mask"])
                            for proj, m in zip(group, pairs)))
    np.testing.assert_allclose(terms["hidden_loss"].numpy(), tf.reduce_mean((expected[0] + expected[1]) / 2).numpy(),
                               rtol=1e-5)
    assert {"hidden_loss_t0_2_1", "hidden_loss_t1_4_1"} <= set(terms)
    assert np.all(np.isfinite(total.numpy()))


def test_uniform_hidden_kd_between_depths_that_do_not_divide():
    """3 -> 2 layers (the small scale's 6 -> 4 in miniature): the rounded uniform map trains."""
    student, teacher = tiny_model(seed=0, layers=2), tiny_model(seed=1, layers=3, hidden=16, name="teacher")
    config = kd_config(hidden_loss="mse", layer_map="uniform")
    matches = teacher_layer_matches(config, [teacher], student)
    assert matches == ((LayerMatch(0, 0), LayerMatch(2, 1), LayerMatch(3, 2)),)
    distiller = compiled(Distiller(student, SQUAD, config, teachers=[teacher], layer_matches=matches))
    logs = distiller.train_step(batch())
    assert {"hidden_loss_0_0", "hidden_loss_2_1", "hidden_loss_3_2"} <= set(logs)
    assert np.isfinite(float(logs["loss"]))


def test_layer_matches_must_name_every_online_teacher():
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    with pytest.raises(ValueError, match="one tuple per online teacher"):
        Distiller(student, SQUAD, kd_config(hidden_loss="mse"), teachers=[teacher, teacher],
                  layer_matches=((LayerMatch(1, 1),),))


def test_offline_teacher_logits_give_the_same_loss_as_online():
    student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
    data = batch()
    online = compiled(Distiller(student, SQUAD, kd_config(), teachers=[teacher]))
    out = teacher(inputs(data))
    offline_data = dict(data)
    offline_data["teacher_logits/0/0"] = out["squad2/start_logits"]
    offline_data["teacher_logits/0/1"] = out["squad2/end_logits"]
    offline = compiled(Distiller(student, SQUAD, kd_config(mode="offline"), num_offline_teachers=1))
    np.testing.assert_allclose(online.compute_losses(data, False)[0].numpy(),
                               offline.compute_losses(offline_data, False)[0].numpy(), rtol=1e-6)


def test_ensemble_weights_matter():
    student = tiny_model(seed=0)
    teachers = [tiny_model(seed=s, hidden=16, name=f"t{s}") for s in (1, 2)]
    data = batch()
    totals = []
    for weights in ((1.0, 1.0), (3.0, 1.0)):
        config = kd_config(teachers=tuple(TeacherConfig(weight=w) for w in weights), kd_weight=1.0)
        distiller = compiled(Distiller(student, SQUAD, config, teachers=teachers))
        totals.append(distiller.compute_losses(data, False)[0].numpy())
    assert not np.allclose(totals[0], totals[1])


@pytest.mark.parametrize("ensemble", ["probs", "logits"])
def test_soft_ce_distills_from_the_ensemble_distillation_ensemble_names(ensemble):
    """kd_loss ce reads the teachers' averaged probabilities under ensemble=probs (it averaged their
    logits whatever ensemble said), and their averaged logits under ensemble=logits."""
    student = tiny_model(seed=0)
    teachers = [tiny_model(seed=s, hidden=16, name=f"t{s}") for s in (1, 2)]
    config = kd_config(teachers=(TeacherConfig(weight=1.0), TeacherConfig(weight=3.0)), kd_weight=1.0, kd_loss="ce",
                       ensemble=ensemble)
    data = batch()
    total, _ = compiled(Distiller(student, SQUAD, config, teachers=teachers)).compute_losses(data, False)
    s = student(inputs(data))
    outputs = [teacher(inputs(data)) for teacher in teachers]
    expected = 0.0
    for key in ("squad2/start_logits", "squad2/end_logits"):
        probs = losses.ensemble_teacher_probs([t[key] for t in outputs], [1.0, 3.0], 2.0, ensemble)
        expected += 0.5 * losses.kd_soft_ce(s[key], probs, 2.0)
    np.testing.assert_allclose(total.numpy(), expected.numpy(), rtol=1e-5)


def test_two_replicas_match_one_device(two_replicas):
    """MirroredStrategy over 2 logical CPUs gives the same weights as one device (global-batch scaling)."""
    data = random_span_features(8, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(8).repeat(3)
    reference = tiny_model(seed=5)
    initial = [w.numpy() for w in reference.weights]
    results = []
    for strategy in (tf.distribute.OneDeviceStrategy("/cpu:0"), two_replicas):
        with strategy.scope():
            student = tiny_model(seed=5)
            student.set_weights(initial)
            distiller = compiled(Distiller(student, SQUAD), lr=0.5)
        distiller.fit(dataset, epochs=1, verbose=0)
        results.append([w.numpy() for w in student.trainable_weights])
    assert any(not np.allclose(a, b) for a, b in zip(initial, results[0]))
    for one, two in zip(*results):
        np.testing.assert_allclose(one, two, atol=2e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_steps_train_with_float32_weights(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        student, teacher = tiny_model(seed=0), tiny_model(seed=1, hidden=16, name="teacher")
        distiller = Distiller(student, SQUAD, kd_config(), teachers=[teacher])
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
        if policy == "mixed_float16":
            assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
        before = [w.numpy().copy() for w in student.trainable_weights]
        dataset = tf.data.Dataset.from_tensor_slices(random_span_features(16)).batch(8)
        history = distiller.fit(dataset, epochs=2, verbose=0)
        assert all(np.isfinite(v) for v in history.history["loss"])
        assert all(w.dtype == "float32" for w in student.trainable_weights)
        assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, student.trainable_weights))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_identity_projections_start_from_the_students_own_states():
    """projection_init=identity: a student distilled from a copy of itself starts at hidden loss 0;
    a wider teacher gets the first dims of each student state (eye [8, 16])."""
    student, twin = tiny_model(seed=0), tiny_model(seed=0, name="twin")
    matches = ((LayerMatch(0, 0), LayerMatch(1, 1)),)
    identity = kd_config(hidden_loss="mse", layer_map="custom", layer_matches=matches[0], projection_init="identity")
    distiller = compiled(Distiller(student, SQUAD, identity, teachers=[twin], layer_matches=matches))
    _, terms = distiller.compute_losses(batch(), training=False)
    assert float(terms["hidden_loss"]) == 0.0
    random = compiled(Distiller(student, SQUAD, kd_config(hidden_loss="mse", layer_map="custom",
                                                          layer_matches=matches[0]),
                                teachers=[twin], layer_matches=matches))
    assert float(random.compute_losses(batch(), training=False)[1]["hidden_loss"]) > 0.0
    wide = Distiller(student, SQUAD, identity, teachers=[tiny_model(seed=1, hidden=16, name="wide")], layer_matches=matches)
    np.testing.assert_array_equal(wide.projections[0][1].kernel.numpy(), np.eye(8, 16))


def test_unknown_projection_init_is_a_config_error():
    with pytest.raises(ConfigError, match="distillation.projection_init: must be random or identity"):
        kd_config(projection_init="orthogonal").validate()
