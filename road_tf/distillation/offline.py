"""Offline teachers: their logits computed once over the training features, stored, read back.

A cache holds the training features plus `teacher_logits/<teacher>/<head>` per window (see
`python -m road_tf.cache_teacher`); training reads it instead of running the teachers.
"""

import numpy as np

from road_tf.data.features import TOKEN_IDS, InvalidCache, read_feature_cache
from road_tf.errors import DataError
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


def load_offline_features(path, train_features, num_teachers):
    """Training features with cached teacher logits; checks they were made from the same features.

    Raises DataError naming `path` when the cache is missing or damaged, was computed on other
    features, or holds fewer teachers than `num_teachers`.
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
    missing = [offline_teacher_key(t, 0) for t in range(num_teachers) if offline_teacher_key(t, 0) not in cached]
    if missing:
        raise DataError(path, f"cache lacks {', '.join(missing)}; it holds fewer teachers than configured")
    return cached
