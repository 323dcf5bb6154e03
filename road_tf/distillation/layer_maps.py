"""Which teacher layer each student layer imitates in hidden-state distillation, as data.

Layers are counted the TinyBERT way: 0 is the embedding output and k (1..depth) is the output of
transformer layer k, so a model of depth N has N + 1 hidden states. Every match built here has
weight 1.0 (a uniform map's matches are not divided by their count; scale the whole hidden
loss with `distillation.hidden_weight` instead). Custom matches keep their own weights.
"""

from road_tf.config import LayerMatch
from road_tf.errors import ConfigError

KINDS = ("uniform", "last", "custom")


def _check_depths(teacher_layers, student_layers):
    """Raises ConfigError unless both depths are positive integers."""
    for who, depth in (("teacher", teacher_layers), ("student", student_layers)):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"layer map: the {who} depth must be a positive integer, got {depth!r}")


def uniform_map(teacher_layers, student_layers):
    """TinyBERT's uniform map: student layer m <-> teacher layer m * (N / M), for m = 0..M.

    When N is not a multiple of M, m * N / M is rounded to the nearest layer, halves up, so both
    ends still match (embeddings to embeddings, last layer to last layer) and the layers between
    spread as evenly as whole layers allow: 6 -> 4 gives 0<->0, 2<->1, 3<->2, 5<->3, 6<->4.

    Args:
        teacher_layers: N, the teacher's number of transformer layers.
        student_layers: M, the student's.

    Returns:
        tuple of M + 1 `LayerMatch`, ordered by student layer (24 -> 12 gives 0<->0, 2<->1, ...,
        24<->12).
    """
    _check_depths(teacher_layers, student_layers)
    return tuple(LayerMatch((2 * m * teacher_layers + student_layers) // (2 * student_layers), m, 1.0)
                 for m in range(student_layers + 1))


def last_map(teacher_layers, student_layers):
    """Only the last hidden states: (LayerMatch(N, M, 1.0),)."""
    _check_depths(teacher_layers, student_layers)
    return (LayerMatch(teacher_layers, student_layers, 1.0),)


def _check_match(match, entry, teacher_layers, student_layers, names):
    """Raises ConfigError, naming `entry` (how errors name the match), unless `match` is a LayerMatch
    with indices in 0..depth and weight >= 0; `names`: (teacher, student) as errors name them."""
    if not isinstance(match, LayerMatch):
        raise ConfigError(f"{entry}: expected a LayerMatch, got {match!r}")
    for who, name, index, depth in (("teacher", names[0], match.teacher_layer, teacher_layers),
                                    ("student", names[1], match.student_layer, student_layers)):
        if index < 0:
            raise ConfigError(f"{entry}: {who}_layer {index} is negative (0 is the embedding output)")
        if index > depth:
            raise ConfigError(f"{entry}: {who}_layer {index} is beyond {name}'s {depth} layers")
    if match.weight < 0:
        raise ConfigError(f"{entry}: weight {match.weight} of match {match.teacher_layer}<->"
                          f"{match.student_layer} is negative")


def build_layer_map(kind, teacher_layers, student_layers, matches=(), field="matches",
                    names=("the teacher", "the student")):
    """The layer matches a `distillation.layer_map` setting names.

    Args:
        kind: "uniform" (`uniform_map`), "last" (`last_map`) or "custom" (`matches` as given).
        teacher_layers, student_layers: the two models' numbers of transformer layers.
        matches: `LayerMatch` entries; required for "custom" and refused for the other kinds,
            so a custom list is never silently ignored.
        field: how errors name `matches`; the i-th entry is `field[i]`.
        names: how errors name the teacher and the student, e.g. ("distillation.teachers[0]", "the student").

    Returns:
        tuple of `LayerMatch`, every index checked to lie in 0..depth.
    """
    if kind not in KINDS:
        raise ConfigError(f"layer map: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    _check_depths(teacher_layers, student_layers)
    matches = tuple(matches)
    if kind != "custom" and matches:
        raise ConfigError(f"layer map: {len(matches)} custom matches given but the kind is {kind!r}; "
                          "set layer_map: custom to use them")
    if kind == "uniform":
        return uniform_map(teacher_layers, student_layers)
    if kind == "last":
        return last_map(teacher_layers, student_layers)
    if not matches:
        raise ConfigError("layer map: custom needs at least one {teacher_layer, student_layer, weight} match")
    for i, match in enumerate(matches):
        _check_match(match, f"{field}[{i}]", teacher_layers, student_layers, names)
    return matches
