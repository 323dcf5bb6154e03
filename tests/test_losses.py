"""Losses against hand-computed values, gradient flow, and the name map."""

import math

import numpy as np
import pytest
import tensorflow as tf

from road_tf import losses
from road_tf.errors import ConfigError

LN3 = math.log(3.0)


def close(actual, expected, atol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected, dtype=np.float32), atol=atol, rtol=1e-5)


def test_span_ce_is_mean_of_start_and_end_per_example():
    start = tf.constant([[0.0, 0.0, 0.0, 0.0], [LN3, 0.0, 0.0, 0.0]])
    end = tf.constant([[LN3, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # Example 0: start uniform over 4 -> ln 4; end softmax [1/2, 1/6, 1/6, 1/6] at 0 -> ln 2.
    # Example 1: start softmax [1/2, 1/6, ...] at 1 -> ln 6; end uniform -> ln 4.
    loss = losses.span_ce(start, end, tf.constant([2, 1]), tf.constant([0, 3]))
    assert loss.shape == (2,)
    close(loss, [(math.log(4) + math.log(2)) / 2, (math.log(6) + math.log(4)) / 2])


def test_class_ce():
    loss = losses.class_ce(tf.constant([[1.0, 1.0], [math.log(9.0), 0.0]]), tf.constant([0, 1]))
    close(loss, [math.log(2), math.log(10)])


def test_kd_kl_with_temperature_and_zero_probability_classes():
    teacher = tf.constant([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    student = tf.constant([[2 * LN3, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # T=2: q = softmax([ln 3, 0, 0]) = [3/5, 1/5, 1/5];
    # KL([1/2, 1/2, 0] || q) = 1/2 ln(5/6) + 1/2 ln(5/2) = 1/2 ln(25/12); times T^2 = 4.
    loss = losses.kd_kl(student, teacher, 2.0)
    close(loss, [2 * math.log(25 / 12), 0.0])


def test_kd_kl_averages_middle_axes():
    student = tf.zeros([1, 2, 3])
    teacher = tf.constant([[[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]]])
    close(losses.kd_kl(student, teacher, 1.0), [math.log(1.5) / 2])


def test_kd_logit_losses_by_hand():
    student = tf.constant([[0.0, 0.0]])
    teacher = tf.constant([[2 * LN3, 0.0]])
    # T=2: p = softmax([ln 3, 0]) = [3/4, 1/4], q = [1/2, 1/2].
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    close(losses.kd_kl_logits(student, teacher, 2.0), [4 * kl])
    close(losses.kd_ce(student, teacher, 2.0), [4 * math.log(2)])
    close(losses.kd_ce(student, teacher, 2.0) - losses.kd_kl_logits(student, teacher, 2.0), [4 * entropy])
    mse = losses.kd_mse(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[1.0, 0.0], [0.0, 0.0]]), 2.0)
    close(mse, [4.0, 25.0])
    close(losses.kd_mse(tf.ones([1, 2, 3]), tf.zeros([1, 2, 3])), [3.0])  # summed over classes, averaged over the rest


def test_padding_logits_add_nothing_and_stay_finite():
    padded_student = tf.constant([[1.0, 2.0, -1e4, -np.inf]])
    padded_teacher = tf.constant([[0.5, 1.5, -1e4, -np.inf]])
    trimmed = losses.kd_kl_logits(padded_student[:, :2], padded_teacher[:, :2], 2.0)
    with tf.GradientTape() as tape:
        tape.watch(padded_student)
        loss = losses.kd_kl_logits(padded_student, padded_teacher, 2.0)
    grad = tape.gradient(loss, padded_student)
    close(loss, trimmed)
    assert np.all(np.isfinite(grad.numpy()))
    close(losses.kd_ce(padded_student, padded_teacher, 2.0), losses.kd_ce(padded_student[:, :2], padded_teacher[:, :2], 2.0))
    # mse compares logits: a padding position holds the same finite logit in both models. Averaged over the
    # positions, trimming half the padding (train.trim_padding) doubled the loss.
    student, teacher = tf.constant([[1.0, 2.0, -1e4, -1e4]]), tf.constant([[0.0, 0.0, -1e4, -1e4]])
    close(losses.kd_mse(student, teacher), losses.kd_mse(student[:, :2], teacher[:, :2]))


def test_soft_ce_of_an_ensembles_probabilities_is_kl_plus_its_entropy():
    """kd_loss ce with several teachers reads their averaged probabilities (distillation.ensemble),
    as kl does; it once averaged their logits whatever ensemble said."""
    student = tf.constant([[0.3, -1.0, 2.0]])
    probs = losses.ensemble_teacher_probs([tf.constant([[4.0, 0.0, -8.0]]), tf.constant([[-8.0, 0.0, 4.0]])],
                                          [1.0, 1.0], 1.0, "probs")
    entropy = -tf.reduce_sum(probs * tf.math.log(probs), axis=-1)
    close(losses.kd_soft_ce(student, probs, 1.0), losses.kd_kl(student, probs, 1.0) + entropy)
    assert set(losses.PROBABILITY_LOSSES) == {"kl", "ce"}


def test_kd_kl_gradient_is_t_times_q_minus_p():
    student = tf.constant([[0.3, -1.0, 2.0]])
    teacher = tf.constant([[1.0, 0.0, -0.5]])
    temperature = 3.0
    with tf.GradientTape() as tape:
        tape.watch(student)
        loss = losses.kd_kl_logits(student, teacher, temperature)
    q = tf.nn.softmax(student / temperature)
    p = tf.nn.softmax(teacher / temperature)
    close(tape.gradient(loss, student), temperature * (q - p))


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_kd_losses_stop_teacher_gradients_themselves(name):
    student = tf.Variable([[0.3, -1.0, 2.0], [0.0, 1.0, 0.0]])
    teacher = tf.Variable([[1.0, 0.0, -0.5], [2.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.get_loss(name)(student, teacher, 2.0))
    student_grad, teacher_grad = tape.gradient(loss, [student, teacher])
    assert teacher_grad is None
    assert np.abs(student_grad.numpy()).sum() > 1e-3


def test_kd_kl_probs_and_ensembles_stop_teacher_gradients():
    student = tf.Variable([[0.3, -1.0]])
    teachers = [tf.Variable([[1.0, 0.0]]), tf.Variable([[0.0, 2.0]])]
    with tf.GradientTape() as tape:
        probs = losses.ensemble_teacher_probs(teachers, [1.0, 1.0], 2.0, "probs")
        loss = tf.reduce_sum(losses.kd_kl(student, probs, 2.0))
    grads = tape.gradient(loss, [student] + teachers)
    assert grads[1] is None and grads[2] is None
    assert np.abs(grads[0].numpy()).sum() > 1e-3


def test_hidden_mse_counts_only_unmasked_positions():
    student = tf.constant([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    teacher = tf.zeros([2, 3, 2])
    mask = tf.constant([[1, 1, 0], [0, 0, 0]])
    # Example 0: (1 + 1 + 4 + 4) / (2 positions * 2 features); example 1 has no real token.
    close(losses.hidden_mse(student, teacher, mask), [2.5, 0.0])
    student_var = tf.Variable(student)
    teacher_var = tf.Variable(teacher)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.hidden_mse(student_var, teacher_var, mask))
    student_grad, teacher_grad = tape.gradient(loss, [student_var, teacher_var])
    assert teacher_grad is None
    close(student_grad[0, 2], [0.0, 0.0])
    close(student_grad[0, 1], [1.0, 1.0])  # d/ds (s^2 / 4) at s = 2


def test_combine():
    close(losses.combine(tf.constant([4.0, 0.0]), tf.constant([0.0, 8.0]), 0.25), [3.0, 2.0])


def test_schedules_with_a_step_tensor_in_tf_function():
    step = tf.Variable(0, dtype=tf.int64)
    linear = tf.function(lambda: losses.schedule_value("linear", 1.0, 0.0, step, 10))
    seen = []
    for value in (0, 5, 10, 20):
        step.assign(value)
        seen.append(float(linear()))
    close(seen, [1.0, 0.5, 0.0, 0.0])
    close(losses.schedule_value("constant", 2.0, 9.0, step, 10), 2.0)
    with pytest.raises(ConfigError, match="cosine"):
        losses.schedule_value("cosine", 1.0, 0.0, 0, 10)
    with pytest.raises(ConfigError, match="total_steps"):
        losses.schedule_value("linear", 1.0, 0.0, 0, 0)


def test_ensemble_probs_and_logits_modes():
    teachers = [tf.constant([[0.0, LN3]]), tf.constant([[0.0, 0.0]])]
    # Weights [1, 3] -> [1/4, 3/4]. probs: 1/4 [1/4, 3/4] + 3/4 [1/2, 1/2].
    close(losses.ensemble_teacher_probs(teachers, [1.0, 3.0], 1.0, "probs"), [[0.4375, 0.5625]])
    # logits: softmax([0, ln 3 / 4]) = [1, 3^(1/4)] / (1 + 3^(1/4)).
    root = 3 ** 0.25
    close(losses.ensemble_teacher_probs(teachers, [1.0, 3.0], 1.0, "logits"), [[1 / (1 + root), root / (1 + root)]])
    close(losses.ensemble_teacher_logits(teachers, [2.0, 6.0]), [[0.0, LN3 / 4]])
    with pytest.raises(ConfigError, match="mean"):
        losses.ensemble_teacher_probs(teachers, [1.0, 1.0], 1.0, "mean")
    with pytest.raises(ConfigError, match="one weight per teacher"):
        losses.ensemble_teacher_probs(teachers, [1.0], 1.0, "probs")
    with pytest.raises(ConfigError, match="positive"):
        losses.ensemble_teacher_probs(teachers, [1.0, 0.0], 1.0, "probs")


def test_full_kd_objective_inside_tf_function_reduces_by_global_batch():
    @tf.function
    def objective(student_start, student_end, teacher_start, teacher_end, starts, ends, step):
        temperature = losses.schedule_value("linear", 4.0, 1.0, step, 100)
        kd_weight = losses.schedule_value("constant", 0.5, 0.5, step, 100)
        kd_fn = losses.get_loss("kl")
        kd = 0.5 * (kd_fn(student_start, teacher_start, temperature) + kd_fn(student_end, teacher_end, temperature))
        per_example = losses.combine(losses.span_ce(student_start, student_end, starts, ends), kd, kd_weight)
        return per_example, tf.nn.compute_average_loss(per_example, global_batch_size=4)

    rng = np.random.default_rng(0)
    logits = [tf.constant(rng.normal(size=(2, 6)), tf.float32) for _ in range(4)]
    per_example, average = objective(*logits, tf.constant([1, 2]), tf.constant([3, 4]), tf.constant(50))
    assert per_example.shape == (2,)
    close(average, per_example.numpy().sum() / 4)


def test_get_loss_names_unknown_loss_and_lists_known():
    assert losses.get_loss("kl") is losses.kd_kl_logits
    with pytest.raises(ConfigError, match=r"'kld'.*ce, kl, mse"):
        losses.get_loss("kld")
