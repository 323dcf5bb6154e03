"""Offline teachers: their logits computed once over the training features, stored, read back.

A cache holds the training features plus `teacher_logits/<teacher>/<head>` per window (see
`python -m road_tf.cache_teacher`); training reads it instead of running the teachers.
"""

import numpy as np

from road_tf.data.features import TOKEN_IDS, InvalidCache, read_cache_notes, read_feature_cache
from road_tf.errors import DataError
from road_tf.files import file_sha256
from road_tf.models.inference import predict_outputs

TEACHER_LOGITS = "teacher_logits"


def offline_teacher_key(teacher, head):
    """Dataset key of cached teacher logits: teacher index x logits head index."""
    return f"{TEACHER_LOGITS}/{teacher}/{head}"


def teacher_logits(teachers, task, features, batch_size=64):
    """{offline_teacher_key(t, h): float32 [N, ...]} for every teacher model and logits head of `task`."""
    cached = {}
    for t, teacher in enumerate(teachers):
        outputs = predict_outputs(teacher, features, task.logit_keys, batch_size)
        cached.update({offline_teacher_key(t, h): outputs[key].astype(np.float32)
                       for h, key in enumerate(task.logit_keys)})
    return cached


def teacher_notes(teachers):
    """What a cache records of the teachers whose logits it holds: {"teachers": [sha256 of each
    `TeacherConfig.checkpoint`]}."""
    return {"teachers": [file_sha256(teacher.checkpoint) for teacher in teachers]}


def teachers_problem(path, teachers):
    """Why the cache at `path` does not hold the logits of `teachers` (TeacherConfig, each with its
    `checkpoint`), in words; None when it holds theirs, in their order."""
    notes = read_cache_notes(path)
    cached = notes.get("teachers") if isinstance(notes, dict) else None
    if not isinstance(cached, list):
        return "it does not record which teachers' logits it holds (an older road_tf wrote it)"
    if len(cached) != len(teachers):
        return f"it holds the logits of {len(cached)} teacher(s) and distillation.teachers lists {len(teachers)}"
    for i, (fingerprint, wanted) in enumerate(zip(cached, teacher_notes(teachers)["teachers"])):
        if fingerprint != wanted:
            return (f"its teacher {i}'s logits come from other weights than distillation.teachers[{i}].checkpoint "
                    f"{teachers[i].checkpoint}")
    return None


def load_offline_features(path, train_features, teachers):
    """Training features with cached teacher logits; checks they were made from the same features
    by `teachers` (TeacherConfig, each with its `checkpoint`).

    Raises DataError naming `path` when the cache is missing or damaged, was computed on other
    features, or by other teachers (`teachers_problem`).
    """
    try:
        cached = read_feature_cache(path)
    except InvalidCache as error:
        raise DataError(path, f"a damaged teacher-logits cache ({error.reason}); build it again with "
                              "python -m road_tf.cache_teacher") from None
    if cached is None:
        raise DataError(path, "no complete teacher-logits cache here; run python -m road_tf.cache_teacher first")
    if cached[TOKEN_IDS].shape != train_features[TOKEN_IDS].shape or \
            not np.array_equal(cached[TOKEN_IDS], train_features[TOKEN_IDS]):
        raise DataError(path, "the cached teacher logits were computed on different training features "
                              "(data or featurization settings changed); rebuild the cache")
    problem = teachers_problem(path, teachers)
    if problem:
        raise DataError(path, f"{problem}; cache their logits again with python -m road_tf.cache_teacher")
    missing = [offline_teacher_key(t, 0) for t in range(len(teachers)) if offline_teacher_key(t, 0) not in cached]
    if missing:
        raise DataError(path, f"cache lacks {', '.join(missing)}; it holds fewer teachers than configured")
    return cached
