"""Tiny models and random features shared by the training tests."""

import keras
import numpy as np

from road_tf.config import ModelConfig, TrainConfig
from road_tf.models.backbones import build_backbone
from road_tf.models.task_model import build_task_model
from road_tf.tasks import get_task

VOCAB = 120
SEQ = 16


def tiny_model(task="squad2", layers=1, hidden=8, seed=0, dropout=0.0, name="tiny"):
    """A one-head task model (`task`: a registry name) with a tiny random BERT (vocab 120, sequences of 16)."""
    keras.utils.set_random_seed(seed)
    config = ModelConfig(num_layers=layers, num_heads=2, hidden_dim=hidden, intermediate_dim=2 * hidden, dropout=dropout)
    backbone = build_backbone(config, VOCAB, SEQ)
    return build_task_model(backbone, [get_task(task)], dropout=dropout, name=name)


def dropout_rates(model):
    """The set of rates of every keras Dropout layer inside `model` (its nested layers included)."""
    return {layer.rate for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.Dropout)}


def random_span_features(rows=16, seed=0):
    """Features shaped like featurize_qa output: question in positions 1-4, context after."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, SEQ + 1, size=rows)
    positions = np.arange(SEQ)[None, :]
    padding = (positions < lengths[:, None]).astype(np.int32)
    segments = ((positions >= 5) & (padding == 1)).astype(np.int32)
    starts = rng.integers(5, 8, size=rows)
    starts[: rows // 4] = 0
    return {
        "token_ids": (rng.integers(5, VOCAB, size=(rows, SEQ)) * padding).astype(np.int32),
        "segment_ids": segments,
        "padding_mask": padding,
        "start_positions": starts.astype(np.int32),
        "end_positions": np.where(starts > 0, starts + 1, 0).astype(np.int32),
    }


def train_config(**overrides):
    values = dict(steps=6, batch_size=4, learning_rate=1e-2, warmup_fraction=0.0, checkpoint_every=2)
    values.update(overrides)
    return TrainConfig(**values)
