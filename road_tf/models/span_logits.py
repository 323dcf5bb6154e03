"""A task model's span logits as one lean inference graph: what exports and run evaluation compute.

The Keras task model computes span logits through keras-hub layers: EinsumDense projections with
separate bias adds, mask merging, a 3-D attention mask and every hidden state. `SpanLogits` reads
the same weights (the encoder's and the span head's) and computes the same logits with 2-D
matmuls (query, key and value in one), bias adds and GELU that oneDNN fuses into them, and, with
`jit_compile=True`, one XLA computation per input shape. MiniLM on 2 cores of a Xeon with AMX
(fastest of 30 calls, one window of 154 tokens; three of 160 in brackets): exported weights as
graph constants, float32 22.5 ms (53.0), bfloat16 13.1 ms (26.8); the same weights in variables
27.8 (60.9) and 22.2 (44.5); XLA with variables 23.6 (51.5) and 14.9 (31.9).

Numerics follow keras-hub's BERT/ELECTRA backbones: post-layer-norm transformer blocks, layer
norms computed in float32 (as Keras does for 16-bit inputs), softmax masked with -1e9, the span
head's mask (only [CLS] and context tokens can win; others get -1e4)."""

import math

import tensorflow as tf

from road_tf.data.features import PADDING_MASK, SEGMENT_IDS, TOKEN_IDS
from road_tf.errors import ConfigError
from road_tf.models.heads import NEG_INF
from road_tf.models.task_model import encoder_of

MASKED_SCORE = -1e9
EVAL_DTYPE = "float32"  # run evaluation's SpanLogits: the dtype a run's dev metrics are measured in
MODEL_SPEC = [tf.TensorSpec([None, None], tf.int32)] * 3
# The embedding tables are only gathered from, so a frozen copy keeps them in variables, named as
# keras-hub names them: the devserver reads their rows to check token inputs (serving/servables.py).
TABLE_VARIABLES = {"token": "token_embedding/embeddings", "segment": "segment_embedding/embeddings",
                   "position": "position_embedding/embeddings"}


def _layer_norm(x, weights, prefix, epsilon, dtype):
    """Layer norm of x [..., D] with weights[prefix + "gamma"/"beta"] (float32), returned in `dtype`."""
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    normed = tf.nn.batch_normalization(x, mean, variance, weights[prefix + "beta"], weights[prefix + "gamma"], epsilon)
    return tf.cast(normed, dtype)


def _dense(x, weights, prefix):
    """x [N, D_in] @ weights[prefix + "kernel"] [D_in, D_out] + weights[prefix + "bias"] -> [N, D_out]."""
    return tf.nn.bias_add(tf.matmul(x, weights[prefix + "kernel"]), weights[prefix + "bias"])


def _encoder_layers(encoder):
    """{name: layer} of a task model's hidden-states encoder, and its transformer layers in order.

    Raises:
        ConfigError: not a keras-hub BERT or ELECTRA encoder with post-norm transformer layers.
    """
    layers = {layer.name: layer for layer in encoder.layers}
    blocks = []
    while f"transformer_layer_{len(blocks)}" in layers:
        blocks.append(layers[f"transformer_layer_{len(blocks)}"])
    needed = {"token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"}
    if not needed <= set(layers) or not blocks or any(block.normalize_first for block in blocks):
        raise ConfigError(f"{encoder.name}: the answer graph supports keras-hub BERT and ELECTRA encoders only")
    return layers, blocks


def _kernel(layer, dtype, rows=None):
    """A Dense/EinsumDense kernel as a matrix [rows, D_out] (rows: its first axis by default), in `dtype`."""
    return tf.reshape(tf.cast(layer.kernel, dtype), [rows or layer.kernel.shape[0], -1])


def _bias(layer, dtype):
    """A Dense/EinsumDense bias as a vector [D_out], in `dtype`."""
    return tf.reshape(tf.cast(layer.bias, dtype), [-1])


def _read_weights(layers, blocks, head, dtype):
    """Every weight the graph uses, read from the model -> {name: tensor}.

    Matrices and vectors are in `dtype`, layer-norm weights in float32; each block's query, key and
    value projections are one [D, 3D] matrix (`block<i>_qkv_*`).
    """
    def dense(prefix, layer, rows=None):
        return {prefix + "kernel": _kernel(layer, dtype, rows), prefix + "bias": _bias(layer, dtype)}

    def norm(prefix, layer):
        return {prefix + "gamma": tf.cast(layer.gamma, tf.float32), prefix + "beta": tf.cast(layer.beta, tf.float32)}

    weights = {"token": tf.cast(layers["token_embedding"].embeddings, dtype),
               "position": tf.cast(layers["position_embedding"].position_embeddings, dtype),
               "segment": tf.cast(layers["segment_embedding"].embeddings, dtype),
               **norm("embeddings_norm_", layers["embeddings_layer_norm"]), **dense("head_", head)}
    if "embeddings_projection" in layers:
        weights.update(dense("projection_", layers["embeddings_projection"]))
    for i, block in enumerate(blocks):
        attention = block._self_attention_layer
        projections = (attention.query_dense, attention.key_dense, attention.value_dense)
        weights[f"block{i}_qkv_kernel"] = tf.concat([_kernel(layer, dtype) for layer in projections], 1)
        weights[f"block{i}_qkv_bias"] = tf.concat([_bias(layer, dtype) for layer in projections], 0)
        width = attention.output_dense.kernel.shape[-1]
        weights.update(dense(f"block{i}_attention_output_", attention.output_dense, rows=width))
        weights.update(dense(f"block{i}_intermediate_", block._feedforward_intermediate_dense))
        weights.update(dense(f"block{i}_output_", block._feedforward_output_dense))
        weights.update(norm(f"block{i}_attention_norm_", block._self_attention_layer_norm))
        weights.update(norm(f"block{i}_output_norm_", block._feedforward_layer_norm))
    return weights


class SpanLogits(tf.Module):
    """{token_ids, segment_ids, padding_mask} int32 [G, L] -> (start, end) logits, float32 [G, L].

    Args:
        model: a task model (`build_task_model`) with a keras-hub BERT or ELECTRA encoder.
        head_name: the span head's layer name (`<task>_span_head`).
        dtype: the compute dtype of matmuls, attention and activations ("float32" or
            "bfloat16"); layer norms run in float32.
        jit_compile: compile the graph with XLA, once per input shape.
        length_multiple: inputs are padded (masked) to a multiple of this many positions before
            the graph runs and the logits cut back, so XLA compiles one graph per group size and
            multiple instead of one per length.
        frozen: True copies the weights now (what an export saves); False reads the model's
            variables at every call, so evaluation during training sees the current weights.
            Without XLA a frozen copy holds all but the embedding tables as constants of the graph
            (`weights_in_graph`) when they take at most `max_constant_bytes`: oneDNN then lays out
            each matmul's weights for its kernels once instead of at every call (MiniLM, one
            window of 154 tokens, 2 cores: float32 22.5 against 27.8 ms, bfloat16 13.1 against
            22.2 ms), but a process holds such constants many times over (`export.max_constant_mib`).
            Otherwise, and with XLA (which would embed a copy in every shape it compiles), in
            the module's own variables.
        max_constant_bytes: see `frozen`; 0 keeps every weight in variables.

    Without XLA, `logits` is a function its callers do not inline (`_noinline`). Inlined into the
    answer graph's loop over window groups, grappler hoists its constants out of the loop, and then
    neither caches the weights nor fuses GELU and the attention scale into the matmuls (one
    question, float32: 26.3 against 24.8 ms; bfloat16 20.2 against 17.3 ms).
    """

    def __init__(self, model, head_name, dtype=EVAL_DTYPE, jit_compile=False, length_multiple=1, frozen=True,
                 max_constant_bytes=0):
        super().__init__(name="span_logits")
        layers, blocks = _encoder_layers(encoder_of(model))
        self.compute_dtype = tf.as_dtype(dtype)
        self.num_heads = blocks[0]._self_attention_layer.num_heads
        self.epsilons = {"embeddings_norm_": float(layers["embeddings_layer_norm"].epsilon)}
        for i, block in enumerate(blocks):
            self.epsilons[f"block{i}_attention_norm_"] = float(block._self_attention_layer_norm.epsilon)
            self.epsilons[f"block{i}_output_norm_"] = float(block._feedforward_layer_norm.epsilon)
        self.activations = [block._feedforward_intermediate_dense.activation for block in blocks]
        self.has_projection = "embeddings_projection" in layers
        head = model.get_layer(head_name).dense
        self.weights_in_graph = False
        if frozen:
            arrays = {name: value.numpy() for name, value in
                      _read_weights(layers, blocks, head, self.compute_dtype).items()}
            matrices = {name: array for name, array in arrays.items() if name not in TABLE_VARIABLES}
            self.weights_in_graph = not jit_compile and 0 < sum(a.nbytes for a in matrices.values()) <= max_constant_bytes
            in_graph = matrices if self.weights_in_graph else {}
            self.frozen_weights = {name: tf.Variable(array, trainable=False, name=TABLE_VARIABLES.get(name, name))
                                   for name, array in arrays.items() if name not in in_graph}
            self.weights = lambda: {**self.frozen_weights,
                                    **{name: tf.constant(array, name=name) for name, array in in_graph.items()}}
        else:
            self.weights = lambda: _read_weights(layers, blocks, head, self.compute_dtype)
        self.length_multiple = length_multiple
        self.max_length = int(layers["position_embedding"].position_embeddings.shape[0])
        self.logits = tf.function(self._logits, input_signature=MODEL_SPEC, jit_compile=jit_compile,
                                  experimental_attributes=None if jit_compile else {"_noinline": True})
        self.forward = tf.function(self._forward, input_signature=MODEL_SPEC)

    def __call__(self, inputs, training=False):
        """The task model's calling convention: a dict of MODEL_INPUTS -> (start, end)."""
        return self.forward(inputs[TOKEN_IDS], inputs[SEGMENT_IDS], inputs[PADDING_MASK])

    def _forward(self, token_ids, segment_ids, padding_mask):
        """`_logits` on inputs padded to a multiple of `length_multiple` (at most the position table)."""
        length, multiple = tf.shape(token_ids)[1], self.length_multiple
        padded = tf.maximum(tf.minimum((length + multiple - 1) // multiple * multiple, self.max_length), length)
        padding = [[0, 0], [0, padded - length]]
        start, end = self.logits(*(tf.pad(tensor, padding) for tensor in (token_ids, segment_ids, padding_mask)))
        return start[:, :length], end[:, :length]

    def _logits(self, token_ids, segment_ids, padding_mask):
        weights, dtype = self.weights(), self.compute_dtype
        groups, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        x = (tf.gather(weights["token"], token_ids) + weights["position"][:length]
             + tf.gather(weights["segment"], segment_ids))
        x = _layer_norm(x, weights, "embeddings_norm_", self.epsilons["embeddings_norm_"], dtype)
        x = tf.reshape(x, [groups * length, x.shape[-1]])
        if self.has_projection:
            x = _dense(x, weights, "projection_")
        mask_bias = tf.cast(1 - padding_mask, dtype)[:, None, None, :] * MASKED_SCORE
        for i, activation in enumerate(self.activations):
            x = self._block(x, weights, f"block{i}_", activation, groups, length, mask_bias)
        logits = tf.cast(tf.reshape(_dense(x, weights, "head_"), [groups, length, 2]), tf.float32)
        allowed = ((segment_ids == 1) & (padding_mask == 1)) | (tf.range(length)[None, :] == 0)
        logits = tf.where(allowed[..., None], logits, NEG_INF)
        return logits[..., 0], logits[..., 1]

    def _block(self, x, weights, prefix, activation, groups, length, mask_bias):
        """One post-norm transformer layer on x [G * L, D] -> [G * L, D]."""
        width, dtype = x.shape[-1], self.compute_dtype
        head_dim = width // self.num_heads
        qkv = tf.reshape(_dense(x, weights, prefix + "qkv_"), [groups, length, 3, self.num_heads, head_dim])
        query, key, value = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))
        scores = tf.matmul(query * tf.cast(1.0 / math.sqrt(head_dim), dtype), key, transpose_b=True) + mask_bias
        context = tf.transpose(tf.matmul(tf.nn.softmax(scores), value), [0, 2, 1, 3])
        attended = _dense(tf.reshape(context, [groups * length, width]), weights, prefix + "attention_output_")
        norm = prefix + "attention_norm_"
        x = _layer_norm(x + attended, weights, norm, self.epsilons[norm], dtype)
        hidden = activation(_dense(x, weights, prefix + "intermediate_"))
        norm = prefix + "output_norm_"
        return _layer_norm(x + _dense(hidden, weights, prefix + "output_"), weights, norm, self.epsilons[norm], dtype)
