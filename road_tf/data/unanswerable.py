"""Unanswerable questions made from answerable ones: the question asked of its context without the
sentences that hold its answers.

`data.unanswerable_share` = s adds, for a share s of a span task's answerable training questions
(chosen by sha256 of the question id), a copy of the question whose context has lost every sentence
that overlaps one of its gold answers; the copy has no answer. A copy is not made when fewer than
MIN_SENTENCES_LEFT sentences remain or when an answer's text still occurs in what remains (the
question may still be answerable there). With SQuAD 1.1, whose questions all have answers, this gives
a model unanswerable questions about the right topic, each beside the same question with its
evidence, as SQuAD 2.0 asks for. The dev split is never changed.
"""

import hashlib

from road_tf.data.cloze import sentence_spans
from road_tf.data.examples import QAExample

MIN_SENTENCES_LEFT = 2
ID_SUFFIX = "-unanswerable"


def chosen(qid, share):
    """Whether the question `qid` (str) is among the share `share` (in [0, 1]) given a copy: the first
    four bytes of sha256(qid) below share * 2**32."""
    value = int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:4], "big")
    return value < share * 2**32


def without_answer_sentences(example):
    """`example` (an answerable QAExample) asked of its context without the sentences overlapping its
    answers, as an unanswerable QAExample with id `qid + ID_SUFFIX`; None when fewer than
    MIN_SENTENCES_LEFT sentences remain or an answer's text (ignoring case) is in the rest."""
    answers = [(answer.start, answer.start + len(answer.text)) for answer in example.answers]
    kept = [example.context[start:end] for start, end in sentence_spans(example.context)
            if not any(a_start < end and start < a_end for a_start, a_end in answers)]
    rest = " ".join(kept)
    lowered = rest.lower()
    if len(kept) < MIN_SENTENCES_LEFT or any(answer.text.lower() in lowered for answer in example.answers):
        return None
    return QAExample(qid=example.qid + ID_SUFFIX, question=example.question, context=rest, title=example.title)


def with_unanswerable(examples, share):
    """`examples` (QAExample) in order, each chosen answerable one followed by its unanswerable copy
    (`without_answer_sentences`), for a share `share` of the answerable ones (`chosen`)."""
    result = []
    for example in examples:
        result.append(example)
        if example.answers and chosen(example.qid, share):
            copy = without_answer_sentences(example)
            if copy is not None:
                result.append(copy)
    return result
