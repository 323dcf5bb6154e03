"""Layer maps: TinyBERT uniform, last, custom, and their errors."""

import pytest

from road_tf.config import LayerMatch
from road_tf.distillation.layer_maps import build_layer_map, last_map, uniform_map
from road_tf.errors import ConfigError


def pairs(matches):
    return [(m.teacher_layer, m.student_layer) for m in matches]


def test_uniform_counts_the_embedding_output_as_layer_zero():
    matches = uniform_map(24, 12)
    assert len(matches) == 13
    assert pairs(matches)[:3] == [(0, 0), (2, 1), (4, 2)]
    assert pairs(matches)[-2:] == [(22, 11), (24, 12)]
    assert all(m.weight == 1.0 for m in matches)
    assert pairs(uniform_map(4, 2)) == [(0, 0), (2, 1), (4, 2)]
    assert pairs(uniform_map(6, 6)) == [(i, i) for i in range(7)]


def test_uniform_rounds_when_the_depths_do_not_divide():
    assert pairs(uniform_map(6, 4)) == [(0, 0), (2, 1), (3, 2), (5, 3), (6, 4)]
    assert pairs(uniform_map(12, 5)) == [(0, 0), (2, 1), (5, 2), (7, 3), (10, 4), (12, 5)]
    assert pairs(uniform_map(2, 4)) == [(0, 0), (1, 1), (1, 2), (2, 3), (2, 4)]
    with pytest.raises(ConfigError, match="student depth must be a positive integer"):
        uniform_map(12, 0)


def test_last_map():
    assert last_map(24, 6) == (LayerMatch(24, 6, 1.0),)


def test_build_layer_map_dispatches_and_validates_custom_matches():
    assert build_layer_map("uniform", 4, 2) == uniform_map(4, 2)
    assert build_layer_map("last", 4, 2) == last_map(4, 2)
    custom = (LayerMatch(4, 2, 0.5), LayerMatch(0, 0, 2.0))
    assert build_layer_map("custom", 4, 2, list(custom)) == custom


@pytest.mark.parametrize("kind, matches, message", [
    ("custom", (LayerMatch(30, 2),), "teacher_layer 30 is beyond the teacher's 24 layers"),
    ("custom", (LayerMatch(24, 7),), "student_layer 7 is beyond the student's 6 layers"),
    ("custom", (LayerMatch(-1, 0),), "teacher_layer -1 is negative"),
    ("custom", (LayerMatch(1, 1, -0.5),), "weight -0.5 of match 1<->1 is negative"),
    ("custom", (), "custom needs at least one"),
    ("uniform", (LayerMatch(24, 6),), "set layer_map: custom"),
    ("skip", (), "unknown kind 'skip'; known: uniform, last, custom"),
])
def test_build_layer_map_errors(kind, matches, message):
    with pytest.raises(ConfigError, match=message):
        build_layer_map(kind, 24, 6, matches)
