"""Training losses as pure tensor functions: hard labels, knowledge distillation, hidden states.

Every loss returns PER-EXAMPLE values of shape [B]; the caller reduces them with
`tf.nn.compute_average_loss(per_example, global_batch_size=...)`, which divides by the global
batch and so stays right under `tf.distribute` (a plain `reduce_mean` would not).

All inputs are cast to float32 before the loss is computed, so mixed-precision logits are safe.
The distillation losses apply `tf.stop_gradient` to every teacher input themselves: no gradient
ever reaches a teacher through them, whether or not the caller stops it.

Masking: the KD losses over QA span logits take no mask. Padding positions must already hold a
very negative logit in both student and teacher (e.g. -1e4, as the QA head writes them); their
probability is then ~0 and they add nothing to `kd_kl`/`kd_ce`. `-inf` is also safe for
`kd_kl`/`kd_ce` but not for `kd_mse`, which compares logits directly and needs both models to
write the SAME finite value at padding positions.

`LOSSES` maps the `distillation.kd_loss` names ("kl", "ce", "mse") to KD functions that all
take `(student_logits, teacher_logits, temperature)`.
"""

import tensorflow as tf

from road_tf.errors import ConfigError

SCHEDULES = ("constant", "linear")
ENSEMBLE_MODES = ("probs", "logits")


def _float(x):
    """Returns `x` as a float32 tensor."""
    return tf.cast(x, tf.float32)


def _mean_per_example(values):
    """Averages `values` [B, ...] over every axis but the first -> [B] (a [B] input is unchanged)."""
    batch = tf.shape(values)[0]
    return tf.reduce_mean(tf.reshape(values, [batch, -1]), axis=1)


def span_ce(start_logits, end_logits, start_positions, end_positions):
    """Hard-label loss of extractive QA.

    Args:
        start_logits, end_logits: [B, L] scores of each position being the answer start / end.
        start_positions, end_positions: [B] int gold positions (0, the [CLS] token, for
            unanswerable windows in SQuAD 2.0).

    Returns:
        [B]: the mean of the start and end sparse softmax cross-entropies.
    """
    start = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(start_positions, tf.int32), logits=_float(start_logits))
    end = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(end_positions, tf.int32), logits=_float(end_logits))
    return 0.5 * (start + end)


def class_ce(logits, labels):
    """Hard-label loss of classification: logits [B, C], int labels [B] -> sparse CE [B]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=_float(logits))


def soften(teacher_logits, temperature):
    """Teacher distribution softmax(teacher_logits / T) over the last axis, gradients stopped."""
    return tf.nn.softmax(tf.stop_gradient(_float(teacher_logits)) / _float(temperature), axis=-1)


def kd_kl(student_logits, teacher_probs, temperature):
    """Distillation loss T^2 * KL(teacher_probs || softmax(student_logits / T)).

    Args:
        student_logits: [B, ..., C] student scores.
        teacher_probs: [B, ..., C] teacher distribution over the last axis (already softened
            at temperature T, e.g. from `ensemble_teacher_probs`); gradients are stopped.
        temperature: T > 0, a Python float or a scalar tensor (e.g. from `schedule_value`).

    Returns:
        [B]: KL summed over the classes C, averaged over any middle axes, times T^2 (so the
        gradient scale does not shrink as T grows). Zero-probability teacher classes add 0.
    """
    temperature = _float(temperature)
    probs = tf.stop_gradient(_float(teacher_probs))
    log_q = tf.nn.log_softmax(_float(student_logits) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.math.xlogy(probs, probs) - tf.math.multiply_no_nan(log_q, probs), axis=-1)
    return temperature ** 2 * _mean_per_example(kl)


def kd_kl_logits(student_logits, teacher_logits, temperature):
    """`kd_kl` with the teacher given as logits [B, ..., C]: teacher probs = softmax(t / T). -> [B]."""
    return kd_kl(student_logits, soften(teacher_logits, temperature), temperature)


def kd_soft_ce(student_logits, teacher_probs, temperature):
    """Soft cross-entropy T^2 * -sum_c teacher_probs_c * log softmax(s/T)_c.

    Args:
        student_logits: [B, ..., C] student scores.
        teacher_probs: [B, ..., C] teacher distribution over the last axis (already softened at
            temperature T, e.g. from `ensemble_teacher_probs`); gradients are stopped.
        temperature: T > 0, float or scalar tensor.

    Returns:
        [B], averaged over any middle axes. It equals `kd_kl` plus the teacher's entropy (times
        T^2), so its gradient w.r.t. the student is the same.
    """
    temperature = _float(temperature)
    probs = tf.stop_gradient(_float(teacher_probs))
    log_q = tf.nn.log_softmax(_float(student_logits) / temperature, axis=-1)
    ce = -tf.reduce_sum(tf.math.multiply_no_nan(log_q, probs), axis=-1)
    return temperature ** 2 * _mean_per_example(ce)


def kd_ce(student_logits, teacher_logits, temperature):
    """`kd_soft_ce` with the teacher given as logits [B, ..., C]: probs = softmax(t / T). -> [B]."""
    return kd_soft_ce(student_logits, soften(teacher_logits, temperature), temperature)


def kd_mse(student_logits, teacher_logits, temperature=None):
    """Squared error between student and teacher logits [B, ..., C] -> [B]: summed over the
    classes C (the last axis), averaged over any middle axes.

    Summed rather than averaged over C so that positions where both models write the same padding
    logit add nothing: the loss of a span batch does not change when `train.trim_padding` cuts its
    padding. `temperature` is accepted for a uniform signature and ignored (MSE on raw logits);
    gradients to the teacher are stopped.
    """
    del temperature
    diff = _float(student_logits) - tf.stop_gradient(_float(teacher_logits))
    return _mean_per_example(tf.reduce_sum(tf.square(diff), axis=-1))


def hidden_mse(student_hidden, teacher_hidden, mask):
    """Hidden-state distillation loss over unmasked positions.

    Args:
        student_hidden: [B, S, Dt] student states, already projected to the teacher's width.
        teacher_hidden: [B, S, Dt] teacher states; gradients are stopped.
        mask: [B, S], 1 (or True) for real tokens, 0 for padding.

    Returns:
        [B]: sum of squared errors over unmasked positions and features, divided by
        (number of unmasked positions * Dt); 0 for an example with no unmasked position.
    """
    student = _float(student_hidden)
    teacher = tf.stop_gradient(_float(teacher_hidden))
    mask = _float(mask)
    squared = tf.reduce_sum(tf.square(student - teacher), axis=-1) * mask
    width = tf.cast(tf.shape(teacher)[-1], tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(squared, axis=-1), tf.reduce_sum(mask, axis=-1) * width)


def combine(hard, kd, kd_weight):
    """(1 - kd_weight) * hard + kd_weight * kd, elementwise on [B] losses (kd_weight: float or scalar)."""
    kd_weight = _float(kd_weight)
    return (1.0 - kd_weight) * _float(hard) + kd_weight * _float(kd)


def schedule_value(kind, start, end, step, total_steps):
    """A scheduled scalar (the KD weight or the temperature) at `step`, as a float32 tensor.

    Args:
        kind: "constant" (always `start`) or "linear" (from `start` at step 0 to `end` at
            `total_steps`, clamped outside that range).
        start, end: Python floats.
        step: int or scalar tensor (e.g. `optimizer.iterations`).
        total_steps: positive Python int (only read by "linear").
    """
    if kind not in SCHEDULES:
        raise ConfigError(f"schedule: unknown kind {kind!r}; known: {', '.join(SCHEDULES)}")
    if kind == "constant":
        return tf.constant(start, tf.float32)
    if total_steps <= 0:
        raise ConfigError(f"schedule: a linear schedule needs total_steps > 0, got {total_steps}")
    fraction = tf.clip_by_value(_float(step) / float(total_steps), 0.0, 1.0)
    return start + (end - start) * fraction


def ensemble_teacher_logits(teacher_logits, weights):
    """Weighted average of teachers' logits: list of [B, ..., C] + weights -> [B, ..., C].

    Weights are normalized to sum to 1; gradients are stopped. Its output can be passed to any
    `LOSSES` function as a single teacher's logits.
    """
    weights = _normalized(teacher_logits, weights)
    return tf.add_n([w * tf.stop_gradient(_float(t)) for w, t in zip(weights, teacher_logits)])


def ensemble_teacher_probs(teacher_logits, weights, temperature, mode):
    """Softened distribution of a teacher ensemble, for `kd_kl` and `kd_soft_ce`.

    Args:
        teacher_logits: list of [B, ..., C] logits, one per teacher.
        weights: one positive weight per teacher, normalized here to sum to 1.
        temperature: T > 0, float or scalar tensor.
        mode: "probs": sum_i w_i * softmax(t_i / T); "logits": softmax(sum_i w_i * t_i / T).

    Returns:
        [B, ..., C] probabilities, gradients stopped.
    """
    if mode not in ENSEMBLE_MODES:
        raise ConfigError(f"ensemble: unknown mode {mode!r}; known: {', '.join(ENSEMBLE_MODES)}")
    if mode == "logits":
        return soften(ensemble_teacher_logits(teacher_logits, weights), temperature)
    weights = _normalized(teacher_logits, weights)
    return tf.add_n([w * soften(t, temperature) for w, t in zip(weights, teacher_logits)])


def _normalized(teacher_logits, weights):
    """Checks one positive weight per teacher and returns them as floats summing to 1."""
    weights = [float(w) for w in weights]
    if not teacher_logits or len(weights) != len(teacher_logits):
        raise ConfigError(f"ensemble: need one weight per teacher, got {len(weights)} weights "
                          f"for {len(teacher_logits)} teachers")
    if any(w <= 0 for w in weights):
        raise ConfigError(f"ensemble: teacher weights must be positive, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


LOSSES = {"kl": kd_kl_logits, "ce": kd_ce, "mse": kd_mse}

PROBABILITY_LOSSES = {"kl": kd_kl, "ce": kd_soft_ce}
"""The KD losses that compare distributions, each taking (student_logits, teacher_probs, T): with
several teachers they read `ensemble_teacher_probs`, so `distillation.ensemble` applies to them."""


def get_loss(name):
    """Returns the KD loss `LOSSES[name]`, a function (student_logits, teacher_logits, T) -> [B]."""
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
