"""Task samplers: distributions, reproducibility, resume, sampling without replacement."""

import numpy as np
import pytest

from road_tf.errors import ConfigError
from road_tf.multitask.samplers import TaskSampler

SIZES = {"squad2": 8000, "nli": 4000, "para": 1000, "sentiment": 500}
# Chi-square critical value for 3 degrees of freedom at p = 0.001.
CHI2_3DF_999 = 16.27


def chi_square(observed, expected):
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    return float(np.sum((observed - expected) ** 2 / expected))


def slot_counts(sampler, steps, slot=None):
    """Counts per task over `steps` steps: all slots, or only slot `slot`."""
    plan = sampler.plan(0, steps)
    picked = plan.ravel() if slot is None else plan[:, slot]
    return np.bincount(picked, minlength=len(sampler.names))


@pytest.mark.parametrize("kind, expected", [
    ("uniform", [0.25, 0.25, 0.25, 0.25]),
    ("proportional", [8 / 13.5, 4 / 13.5, 1 / 13.5, 0.5 / 13.5]),
])
def test_closed_form_probabilities(kind, expected):
    sampler = TaskSampler(kind, SIZES, k=2, replacement=True)
    np.testing.assert_allclose(sampler.probability_vector(0), expected, rtol=1e-12)
    assert sampler.names == tuple(SIZES)


def test_temperature_is_size_to_the_one_over_t():
    sizes = np.array(list(SIZES.values()), float)
    for temperature in (1.0, 2.0, 5.0):
        sampler = TaskSampler("temperature", SIZES, k=1, temperature=temperature)
        expected = sizes ** (1 / temperature) / np.sum(sizes ** (1 / temperature))
        np.testing.assert_allclose(sampler.probability_vector(0), expected, rtol=1e-12)
    hot = TaskSampler("temperature", SIZES, k=1, temperature=1000.0).probability_vector(0)
    np.testing.assert_allclose(hot, 0.25, atol=2e-3)


def test_annealed_moves_from_proportional_towards_uniform():
    total = 101
    sampler = TaskSampler("annealed", SIZES, k=1, total_steps=total)
    proportional = TaskSampler("proportional", SIZES, k=1).probability_vector(0)
    np.testing.assert_allclose(sampler.probability_vector(0), proportional, rtol=1e-12)
    sizes = np.array(list(SIZES.values()), float)
    np.testing.assert_allclose(sampler.probability_vector(total - 1), sizes ** 0.2 / np.sum(sizes ** 0.2), rtol=1e-12)
    np.testing.assert_allclose(sampler.exponent(50), 1 - 0.8 * 0.5)
    largest = [sampler.probability_vector(step)[0] for step in range(0, total, 10)]
    assert all(a > b for a, b in zip(largest, largest[1:])), "the largest task's share must shrink"
    assert sampler.probability_vector(10 * total)[0] == pytest.approx(largest[-1]), "clamped after the end"


@pytest.mark.parametrize("kind", ["uniform", "proportional", "temperature", "annealed"])
def test_frequencies_with_replacement_match_the_distribution(kind):
    steps, k = 3000, 2
    sampler = TaskSampler(kind, SIZES, k=k, replacement=True, seed=3, total_steps=steps, temperature=2.0)
    expected = np.sum([sampler.probability_vector(step) for step in range(steps)], axis=0) * k
    assert chi_square(slot_counts(sampler, steps), expected) < CHI2_3DF_999
    if kind != "uniform":
        assert chi_square(slot_counts(sampler, steps), np.full(4, steps * k / 4)) > CHI2_3DF_999, "test has no power"


def test_without_replacement_tasks_are_distinct_and_first_slot_follows_p():
    steps = 3000
    sampler = TaskSampler("proportional", SIZES, k=3, replacement=False, seed=5)
    plan = sampler.plan(0, steps)
    assert all(len(set(row)) == 3 for row in plan.tolist())
    expected = sampler.probability_vector(0) * steps
    assert chi_square(slot_counts(sampler, steps, slot=0), expected) < CHI2_3DF_999
    every = TaskSampler("uniform", SIZES, k=4, replacement=False, seed=5).plan(0, 50)
    assert all(sorted(row) == [0, 1, 2, 3] for row in every.tolist())


def test_with_replacement_can_repeat_a_task_in_a_step():
    sampler = TaskSampler("proportional", SIZES, k=4, replacement=True, seed=0)
    assert any(len(set(row)) < 4 for row in sampler.plan(0, 50).tolist())


def test_same_seed_same_sequence_other_seed_other_sequence():
    a = TaskSampler("uniform", SIZES, k=2, seed=11)
    b = TaskSampler("uniform", SIZES, k=2, seed=11)
    c = TaskSampler("uniform", SIZES, k=2, seed=12)
    assert [a.indices_for_step(s) for s in range(200)] == [b.indices_for_step(s) for s in range(200)]
    assert a.plan(0, 200).tolist() != c.plan(0, 200).tolist()


def test_resume_continues_the_sequence_without_state():
    steps = 120
    full = TaskSampler("annealed", SIZES, k=2, seed=7, total_steps=steps)
    uninterrupted = [full.indices_for_step(step) for step in range(steps)]
    resumed = TaskSampler("annealed", SIZES, k=2, seed=7, total_steps=steps)
    assert [resumed.indices_for_step(step) for step in range(45, steps)] == uninterrupted[45:]
    np.testing.assert_array_equal(np.concatenate([full.plan(0, 45), resumed.plan(45, steps)]), full.plan(0, steps))
    counts = resumed.counts(0, 45)
    assert sum(counts.values()) == 90
    assert counts == {name: sum(row.count(i) for row in uninterrupted[:45]) for i, name in enumerate(SIZES)}


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="multitask.k"):
        TaskSampler("uniform", SIZES, k=5, replacement=False)
    with pytest.raises(ConfigError, match="multitask.sampler"):
        TaskSampler("softmax", SIZES, k=1)
    with pytest.raises(ConfigError, match="'nli' has no training rows"):
        TaskSampler("uniform", {"squad2": 5, "nli": 0}, k=1)
    with pytest.raises(ConfigError, match="multitask.temperature"):
        TaskSampler("temperature", SIZES, k=1, temperature=0.0)
    assert len(TaskSampler("uniform", SIZES, k=8, replacement=True).indices_for_step(0)) == 8


@pytest.mark.parametrize("temperature", [1e-4, 1e-308, 5e-324])
def test_a_temperature_near_zero_draws_the_largest_tasks_first(temperature):
    # n_i ** (1 / T) leaves float64's range: the tasks left after the largest ones were chosen once
    # all had probability 0, and `multitask.temperature=1e-4` stopped the stage with "probabilities contain NaN"
    sizes = {"squad2": 1200, "nli": 1000, "para": 900, "sentiment": 1200}
    sampler = TaskSampler("temperature", sizes, k=4, temperature=temperature)
    np.testing.assert_array_equal(sampler.probability_vector(0), [0.5, 0, 0, 0.5])
    assert all(sorted(row[:2]) == [0, 3] and row[2:] == [1, 2] for row in sampler.plan(0, 20).tolist())
