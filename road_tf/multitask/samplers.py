"""Task samplers for multi-task training: which k tasks each optimizer step trains on.

A sampler's choice for a step is a pure function of (seed, step): every step draws from its own
generator `np.random.default_rng([seed, step])`, so a resumed run needs no sampler state and
replays exactly the sequence an uninterrupted run would have drawn.

Distributions over tasks i with n_i training rows:
  uniform        p_i = 1 / (number of tasks)
  proportional   p_i ∝ n_i
  temperature    p_i ∝ n_i ** (1 / T)   (T = 1 is proportional, T -> infinity approaches uniform)
  annealed       p_i ∝ n_i ** alpha(step), alpha = 1 - 0.8 * step / (total_steps - 1)
                 (Stickland & Murray, 2019: proportional at the first step, close to uniform at
                 the last; alpha = 1 throughout when total_steps is 1)

With replacement, each of the k slots of a step draws independently from p (a task may fill
several slots). Without replacement the k tasks are distinct: slot j draws from p restricted to
the tasks not chosen by slots 0..j-1 and renormalised (sequential sampling), so slot 0 follows p
exactly and later slots lean towards the remaining tasks.
"""

import numpy as np

from road_tf.errors import ConfigError

KINDS = ("uniform", "proportional", "temperature", "annealed")
ANNEAL_DROP = 0.8


class TaskSampler:
    """Chooses the tasks of each optimizer step.

    Args:
        kind: one of KINDS.
        sizes: dict {task name: number of training rows (> 0)}; its order is the task order.
        k: tasks per step (slots).
        replacement: whether a step may pick the same task more than once.
        seed: int seed; with the step, it fixes the draw.
        total_steps: length of training (the annealed schedule's horizon).
        temperature: T of the temperature sampler (> 0).
    """

    def __init__(self, kind, sizes, k, replacement=False, seed=0, total_steps=1, temperature=1.0):
        if kind not in KINDS:
            raise ConfigError(f"multitask.sampler: must be one of {', '.join(KINDS)}, got {kind!r}")
        if not sizes:
            raise ConfigError("multitask.tasks: at least one task is needed")
        for name, size in sizes.items():
            if size <= 0:
                raise ConfigError(f"multitask.tasks: task {name!r} has no training rows")
        if k < 1:
            raise ConfigError(f"multitask.k: must be positive, got {k}")
        if not replacement and k > len(sizes):
            raise ConfigError(f"multitask.k: k={k} distinct tasks per step needs at least k tasks, have {len(sizes)}")
        if temperature <= 0:
            raise ConfigError(f"multitask.temperature: must be positive, got {temperature}")
        self.kind = kind
        self.names = tuple(sizes)
        self.sizes = np.asarray([float(sizes[name]) for name in self.names])
        self.k = k
        self.replacement = replacement
        self.seed = int(seed)
        self.total_steps = max(int(total_steps), 1)
        self.temperature = float(temperature)

    def exponent(self, step):
        """The power applied to the task sizes at `step` (0 for uniform)."""
        if self.kind == "uniform":
            return 0.0
        if self.kind == "proportional":
            return 1.0
        if self.kind == "temperature":
            return 1.0 / self.temperature
        if self.total_steps == 1:
            return 1.0
        progress = min(max(step, 0), self.total_steps - 1) / (self.total_steps - 1)
        return 1.0 - ANNEAL_DROP * progress

    def probability_vector(self, step, left=None):
        """float64 [num_tasks] sampling probabilities at `step`, in `names` order; with `left` (a bool
        mask), those of the tasks it keeps, renormalised (the others 0).

        Computed from the logs of the sizes less the largest one kept, not from n_i ** exponent:
        that leaves float64's range at a small temperature (1 / T a huge exponent), and the kept
        tasks' probabilities, divided by their sum, could then all have underflowed to 0.
        """
        left = np.ones(len(self.names), bool) if left is None else left
        log_sizes = np.log(self.sizes)
        shifted = log_sizes - log_sizes[left].max()  # 0 for the largest tasks kept
        with np.errstate(over="ignore", invalid="ignore"):  # a huge exponent: the smaller tasks' weights 0
            weights = np.where(left, np.exp(np.where(shifted == 0, 0.0, self.exponent(step) * shifted)), 0.0)
        return weights / weights.sum()

    def indices_for_step(self, step):
        """The k task indices (into `names`) of `step`, in slot order; a pure function of (seed, step)."""
        rng = np.random.default_rng([self.seed, int(step)])
        if self.replacement:
            p = self.probability_vector(step)
            return [int(i) for i in rng.choice(len(p), size=self.k, p=p)]
        chosen = []
        left = np.ones(len(self.names), bool)
        for _ in range(self.k):
            index = int(rng.choice(len(left), p=self.probability_vector(step, left)))
            chosen.append(index)
            left[index] = False
        return chosen

    def plan(self, start, stop):
        """int32 [stop - start, k]: the task indices of steps start..stop-1."""
        rows = [self.indices_for_step(step) for step in range(start, stop)]
        return np.asarray(rows, dtype=np.int32).reshape(-1, self.k)

    def counts(self, start, stop):
        """{task name: slots it fills} over steps start..stop-1."""
        totals = np.bincount(self.plan(start, stop).ravel(), minlength=len(self.names))
        return dict(zip(self.names, totals.tolist()))
