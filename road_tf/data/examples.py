"""The record types every reader returns, whatever its source."""

import dataclasses
from typing import Optional, Tuple


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
