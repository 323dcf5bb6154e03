"""Self-supervised reading-comprehension questions made from the contexts of a SQuAD file.

Task `squad2_cloze` (a span task of the multi-task stage) reads the same documents as the main
SQuAD task but none of its questions or answers: each sentence of a context that holds a likely
answer (a year, a number, or a capitalised name that does not open the sentence) becomes a
question by putting a question word in that span's place ("The tower was finished in 1889." ->
"The tower was finished in when?"). Half of the questions, chosen by hash, are asked of the whole
context (answer: the span); the other half of the context without that sentence, and have no
answer. A context of one sentence has nothing left without it, so its question is asked whole.
Lewis et al. (2019, "Unsupervised Question Answering by Cloze Translation") trained QA models on
such cloze questions without labelled data.
"""

import hashlib
import re

from road_tf.data.examples import Answer, QAExample
from road_tf.data.squad import load_squad_tfds, read_squad_json

# Sentences end at ., ! or ? followed by white space and an upper-case letter, digit or quote.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
YEAR = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b")
NUMBER = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
# Capitalised words, joined by white space or by a lower-case particle ("Champ de Mars", "Bank of England").
NAME = re.compile(r"\b[A-Z][\w'-]+(?:\s+(?:(?:of|the|de|du|da|del|der|la|le|van|von)\s+)*[A-Z][\w'-]+)*")
MIN_SENTENCE_WORDS = 6


def sentence_spans(context):
    """[(start, end)] character spans of the sentences of `context`, without outer white space."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(context):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(context)))
    return [(s, e) for s, e in spans if context[s:e].strip()]


def answer_candidates(sentence):
    """[(start, end, question word)] spans of `sentence` that can be asked about: years ("when"),
    other numbers ("how many") and capitalised names not at the sentence's start ("what")."""
    years = [(m.start(), m.end(), "when") for m in YEAR.finditer(sentence)]
    numbers = [(m.start(), m.end(), "how many") for m in NUMBER.finditer(sentence)
               if not any(s <= m.start() < e for s, e, _ in years)]
    names = [(m.start(), m.end(), "what") for m in NAME.finditer(sentence) if m.start() > 0]
    return years + numbers + names


def _digest(*parts):
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def context_questions(context, title=""):
    """One cloze question (QAExample) per sentence of `context` that has MIN_SENTENCE_WORDS words
    and an answer candidate; the candidate and whether the question is answerable are chosen by
    sha256 of the context and the sentence's index (answerable when nothing is left without the
    sentence)."""
    questions = []
    for index, (start, end) in enumerate(sentence_spans(context)):
        sentence = context[start:end]
        candidates = answer_candidates(sentence)
        if len(sentence.split()) < MIN_SENTENCE_WORDS or not candidates:
            continue
        digest = _digest(context, str(index))
        span_start, span_end, word = candidates[digest[0] % len(candidates)]
        question = (sentence[:span_start] + word + sentence[span_end:]).rstrip(" .!?;:,") + "?"
        qid = f"cloze-{digest.hex()[:16]}"
        without = (context[:start] + context[end:].lstrip()).strip()
        if digest[1] % 2 or not without:
            answer = Answer(text=sentence[span_start:span_end], start=start + span_start)
            questions.append(QAExample(qid=qid, question=question, context=context, answers=(answer,), title=title))
        else:
            questions.append(QAExample(qid=qid, question=question, context=without, title=title))
    return questions


def cloze_questions(examples):
    """Cloze questions from every distinct context of `examples` (QAExample), in file order.

    Only the contexts and titles are read: the examples' own questions and answers are not used.
    """
    seen, questions = set(), []
    for example in examples:
        if example.context not in seen:
            seen.add(example.context)
            questions.extend(context_questions(example.context, example.title))
    return questions


def read_cloze_json(path, skip_bad_records=False):
    """Cloze questions from the contexts of a SQuAD-format file (.json or .json.gz)."""
    return cloze_questions(read_squad_json(path, skip_bad_records=skip_bad_records))


def load_cloze_tfds(split, name="squad/v2.0", skip_bad_records=False):
    """Cloze questions from the contexts of a TFDS SQuAD split (see `load_squad_tfds`)."""
    return cloze_questions(load_squad_tfds(split, name=name, skip_bad_records=skip_bad_records))
