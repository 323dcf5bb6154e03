"""Checkpointed training: a killed run resumes to the same weights as an uninterrupted one."""

import numpy as np
import pytest
import keras

from road_tf import training
from road_tf.distillation.distiller import Distiller
from road_tf.tasks import get_task
from helpers_models import random_span_features, tiny_model, train_config


class Kill(keras.callbacks.Callback):
    """Simulates a crash after `at` optimizer steps."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at:
            raise KeyboardInterrupt("killed")


def run(stage_dir, config, seed, callbacks=(), dropout=0.0):
    student = tiny_model(seed=seed, dropout=dropout)
    distiller = Distiller(student, get_task("squad2"))
    distiller.compile(optimizer=training.make_optimizer(config.learning_rate, config.steps, 0.2, 0.01))
    distiller.optimizer.build(distiller.trained_variables())
    training.fit(distiller, random_span_features(24, seed=1), config, config.steps, stage_dir, callbacks)
    return student


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["no_dropout", "dropout"])
def test_kill_and_resume_gives_the_same_weights(tmp_path, dropout):
    config = train_config(steps=7, checkpoint_every=2)
    straight = run(tmp_path / "straight", config, seed=0, dropout=dropout)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", config, seed=0, callbacks=[Kill(5)], dropout=dropout)
    # The restart builds a model from a different seed: everything, the dropout masks' random
    # state included, must come from the checkpoint.
    resumed = run(tmp_path / "killed", config, seed=9, dropout=dropout)
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert (tmp_path / "killed" / "logs").is_dir()


def test_finished_stage_is_not_trained_again(tmp_path):
    config = train_config(steps=4, checkpoint_every=2)
    first = run(tmp_path / "s", config, seed=0)
    again = run(tmp_path / "s", config, seed=3)
    for a, b in zip(first.weights, again.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_batch_larger_than_data_is_a_config_error():
    from road_tf.errors import ConfigError

    with pytest.raises(ConfigError, match="train.batch_size"):
        training.train_dataset(random_span_features(4), batch_size=8, seed=0)
