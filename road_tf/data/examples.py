"""The record types every reader returns, whatever its source."""

import dataclasses
import logging
from typing import Optional, Tuple

from road_tf.errors import DataError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Answer:
    """One gold answer: its text and character offset into the context."""

    text: str
    start: int


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One SQuAD 2.0 question. `answers` is empty when the question is unanswerable."""

    qid: str
    question: str
    context: str
    answers: Tuple[Answer, ...] = ()
    title: str = ""

    @property
    def is_impossible(self):
        return not self.answers


@dataclasses.dataclass(frozen=True)
class ClassificationExample:
    """One sentence (text_b None) or sentence-pair example with an integer label."""

    guid: str
    text_a: str
    text_b: Optional[str]
    label: int


def parse_all(items, parse, source, skip_bad_records, what="record"):
    """[parse(item) for item in items], except that under `skip_bad_records` an item whose parse
    raises DataError is logged and left out, and how many were is logged at the end (naming `source`,
    the file or data set; `what` names an item in the log: "record", "question").

    Raises:
        DataError: the first bad item's, without `skip_bad_records`.
    """
    kept, skipped = [], 0
    for item in items:
        try:
            kept.append(parse(item))
        except DataError as error:
            if not skip_bad_records:
                raise
            logger.warning("skipping bad %s: %s", what, error)
            skipped += 1
    if skipped:
        logger.warning("%s: skipped %d bad %s(s), kept %d", source, skipped, what, len(kept))
    return kept
