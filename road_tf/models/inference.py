"""Batched forward passes of a task model over in-memory features."""

import numpy as np
import tensorflow as tf

from road_tf.data.features import MODEL_INPUTS


def eval_dataset(features, batch_size):
    """In-order batches of features (last batch kept)."""
    return tf.data.Dataset.from_tensor_slices(features).batch(batch_size).prefetch(2)


def predict_outputs(model, features, keys, batch_size=64):
    """Runs `model` (a task model) over features; returns {key: np.ndarray [N, ...]} for `keys`."""
    inputs = {key: features[key] for key in MODEL_INPUTS}
    results = {key: [] for key in keys}
    infer = tf.function(lambda x: {key: model(x, training=False)[key] for key in keys})
    for batch in eval_dataset(inputs, batch_size):
        out = infer(batch)
        for key in keys:
            results[key].append(out[key].numpy())
    return {key: np.concatenate(values) if values else np.zeros((0,)) for key, values in results.items()}
