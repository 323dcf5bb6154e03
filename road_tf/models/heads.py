"""Task heads: span start/end logits (no-answer at [CLS]) and sentence classification."""

import keras
from keras import ops

NEG_INF = -1e4


@keras.saving.register_keras_serializable(package="road_tf")
class SpanHead(keras.layers.Layer):
    """Start/end logits over positions; only [CLS] (position 0) and context tokens can win.

    Call args:
        sequence: float [B, S, D] last hidden state.
        segment_ids, padding_mask: int32 [B, S].
    Returns:
        (start_logits, end_logits), float32 [B, S]; masked positions hold -1e4.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2, name="span_logits", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, sequence, segment_ids, padding_mask):
        logits = ops.cast(self.dense(sequence), "float32")
        positions = ops.arange(ops.shape(segment_ids)[1])
        allowed = ops.logical_or(
            ops.logical_and(ops.equal(segment_ids, 1), ops.equal(padding_mask, 1)),
            ops.expand_dims(ops.equal(positions, 0), 0),
        )
        logits = ops.where(ops.expand_dims(allowed, -1), logits, NEG_INF)
        return logits[..., 0], logits[..., 1]


@keras.saving.register_keras_serializable(package="road_tf")
class ClassificationHead(keras.layers.Layer):
    """Class logits from the [CLS] hidden state: dropout -> dense(tanh) -> dropout -> dense.

    Call args:
        sequence: float [B, S, D].
    Returns:
        float32 [B, num_classes].
    """

    def __init__(self, num_classes, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dropout = dropout
        self.pool = None
        self.drop = keras.layers.Dropout(dropout)
        self.out = keras.layers.Dense(num_classes, name="logits", dtype=self.dtype_policy)

    def build(self, input_shape):
        width = input_shape[-1]
        self.pool = keras.layers.Dense(width, activation="tanh", name="pool", dtype=self.dtype_policy)
        self.pool.build((input_shape[0], width))
        self.out.build((input_shape[0], width))

    def call(self, sequence, training=None):
        pooled = self.pool(self.drop(sequence[:, 0, :], training=training))
        return ops.cast(self.out(self.drop(pooled, training=training)), "float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dropout": self.dropout}
