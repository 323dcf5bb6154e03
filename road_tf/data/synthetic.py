"""The embedded synthetic multi-task corpus: SQuAD 2.0, NLI, paraphrase and sentiment data that
needs no download.

`generate(out_dir)` writes, from the seed alone (no global random state):

    squad/train.json, squad/dev.json          SQuAD 2.0 JSON (read_squad_json)
    nli/train.tsv, nli/dev_matched.tsv        GLUE MNLI layout, 3 classes (read_mnli_tsv)
    para/train.tsv, para/dev.tsv              GLUE QQP layout, 2 classes (read_qqp_tsv)
    sentiment/train.tsv, sentiment/dev.tsv    GLUE SST-2 layout, 2 classes (read_sentiment_tsv)

The world is made of invented entities (people, cities, companies, rivers, inventions) whose names
are built from syllables, so dev entities never occur in train. A SQuAD paragraph describes one
entity and one to three distractors of the same type, each with a different subset of attributes
and with distinct values, so a model must bind each value to its entity. Each relation is asked
with five paraphrased question templates. About a third of the questions are unanswerable: the
asked entity lacks the attribute while a distractor has it ("binding"), no entity in the
paragraph has it ("unstated"), or the entity is not in the paragraph at all ("absent"). About one
paragraph in eight is long (about 150-250 words) so that doc_stride windows are exercised.

Each corpus draws from its own `random.Random(f"{seed}:{corpus}")`, train before dev.
"""

import dataclasses
import json
import pathlib
import random
import re
from typing import Callable, Tuple

from road_tf.data.examples import Answer, ClassificationExample, QAExample
from road_tf.data.glue import MNLI_LABELS
from road_tf.data.squad import write_squad_json
from road_tf.data.tsv import write_tsv
from road_tf.errors import RoadError
from road_tf.files import check_folder, non_file_kind, write_atomic

# Bump when the generated text changes, so that existing corpora are regenerated.
GENERATOR_VERSION = 1
MARKER_NAME = "synthetic.json"
FILES = {
    "squad": {"train": "squad/train.json", "dev": "squad/dev.json"},
    "nli": {"train": "nli/train.tsv", "dev": "nli/dev_matched.tsv"},
    "para": {"train": "para/train.tsv", "dev": "para/dev.tsv"},
    "sentiment": {"train": "sentiment/train.tsv", "dev": "sentiment/dev.tsv"},
}

LONG_PARAGRAPH_RATE = 0.125
UNANSWERABLE_RATE = 1 / 3

# ---------------------------------------------------------------------------------------------
# Names and values.

_ONSETS = ("b", "br", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "st")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou")
_CODAS = ("", "", "", "n", "r", "l", "s", "m")


def _word(rng, syllables=2):
    """A capitalized invented word of `syllables` syllables, e.g. 'Dorvan'."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables)).capitalize()


def _person(rng):
    return f"{_word(rng, rng.choice((1, 2)))} {_word(rng, 2)}"


def _city(rng):
    return _word(rng, 2) + rng.choice(("", "", "ton", "burg", "ford", "ville", "stad"))


def _company(rng):
    return f"{_word(rng, 2)} {rng.choice(('Industries', 'Works', 'Systems', 'Motors', 'Trading', 'Labs'))}"


def _river(rng):
    return f"the {_word(rng, 2)} River"


def _invention(rng):
    kind = rng.choice(("loom", "lamp", "engine", "press", "compass", "kettle", "valve", "clock"))
    return f"the {_word(rng, 2)} {kind}"


def _country(rng):
    return _word(rng, 2) + rng.choice(("ia", "land", "ar", "ova", "istan"))


def _year(rng):
    return str(rng.randint(1620, 1995))


def _count(low, high):
    return lambda rng: f"{rng.randint(low, high):,}"


def _pick(*values):
    return lambda rng: rng.choice(values)


_COLOURS = _pick("red", "blue", "green", "yellow", "grey", "white", "black", "orange", "purple", "brown")

# ---------------------------------------------------------------------------------------------
# The world: entity types and their relations.


@dataclasses.dataclass(frozen=True)
class Relation:
    """One attribute of an entity type.

    Templates hold `{e}` (the entity) and, for statements, `{v}` (the value) exactly once.
    `questions` are paraphrases asking for the value; `negation` denies a value. `single`: an
    entity has one value at most (one birthplace, but maybe several occupations), so stating one
    value denies every other.
    """

    name: str
    value: Callable[[random.Random], str]
    statements: Tuple[str, ...]
    negation: str
    questions: Tuple[str, ...]
    single: bool = True


@dataclasses.dataclass(frozen=True)
class EntityType:
    """A kind of entity: how to name one, its relations, and sentences that state no attribute."""

    name: str
    namer: Callable[[random.Random], str]
    relations: Tuple[Relation, ...]
    fillers: Tuple[str, ...]


ENTITY_TYPES = (
    EntityType("person", _person, (
        Relation("birthplace", _city,
                 ("{e} was born in {v}.", "{e} was born in the city of {v}.", "{v} is the birthplace of {e}."),
                 "{e} was not born in {v}.",
                 ("Where was {e} born?", "In which city was {e} born?", "{e} was born where?",
                  "What is the birthplace of {e}?", "Which city is the birthplace of {e}?")),
        Relation("birth_year", _year,
                 ("{e} was born in {v}.", "{e} was born in the year {v}.", "The year of birth of {e} is {v}."),
                 "{e} was not born in {v}.",
                 ("When was {e} born?", "In what year was {e} born?", "What year was {e} born in?",
                  "{e} was born in which year?", "What is the birth year of {e}?")),
        Relation("occupation", _pick("chemist", "baker", "painter", "sailor", "teacher", "carpenter", "physician",
                                     "lawyer", "tailor", "potter", "weaver", "surveyor", "banker", "poet",
                                     "composer", "botanist", "geologist", "brewer", "jeweller", "pilot"),
                 ("{e} worked as a {v}.", "{e} was a {v} by profession.", "By trade, {e} was a {v}."),
                 "{e} never worked as a {v}.",
                 ("What was the profession of {e}?", "What did {e} work as?", "What was the occupation of {e}?",
                  "{e} worked as what?", "What job did {e} have?"),
                 single=False),
        Relation("founded", _company,
                 ("{e} founded {v}.", "{e} was the founder of {v}.", "{v} was founded by {e}."),
                 "{e} did not found {v}.",
                 ("Which company did {e} found?", "What company was founded by {e}?",
                  "{e} was the founder of which company?", "Name the company that {e} founded.",
                  "What company did {e} start?"),
                 single=False),
        Relation("death_year", _year,
                 ("{e} died in {v}.", "{e} passed away in {v}.", "The death of {e} came in {v}."),
                 "{e} did not die in {v}.",
                 ("When did {e} die?", "In what year did {e} die?", "{e} died in which year?",
                  "What year did {e} pass away?", "What is the year of death of {e}?")),
        Relation("instrument", _pick("violin", "cello", "flute", "harp", "piano", "trumpet", "guitar", "oboe",
                                     "clarinet", "drum", "lute", "organ"),
                 ("{e} played the {v}.", "{e} was known for playing the {v}.", "The {v} was the instrument of {e}."),
                 "{e} never played the {v}.",
                 ("What instrument did {e} play?", "Which instrument did {e} play?", "{e} played which instrument?",
                  "What was the instrument of {e}?", "What musical instrument did {e} play?"),
                 single=False),
    ), (
        "{e} is remembered in several local histories.", "Little is known about the early life of {e}.",
        "Letters written by {e} survive in a regional archive.", "Historians describe {e} as patient and curious.",
        "{e} rarely spoke about private matters.", "A portrait of {e} hangs in a small gallery.",
    )),
    EntityType("city", _city, (
        Relation("country", _country,
                 ("{e} is a city in {v}.", "{e} lies in {v}.", "{e} is located in {v}."),
                 "{e} is not in {v}.",
                 ("In which country is {e}?", "{e} is located in which country?", "What country is {e} in?",
                  "Where is {e} located?", "Which country does {e} belong to?")),
        Relation("population", _count(2_000, 3_000_000),
                 ("{e} has a population of {v}.", "About {v} people live in {e}.", "The population of {e} is {v}."),
                 "The population of {e} is not {v}.",
                 ("What is the population of {e}?", "How many people live in {e}?",
                  "How many inhabitants does {e} have?", "{e} has how many residents?",
                  "How large is the population of {e}?")),
        Relation("city_founded", _year,
                 ("{e} was founded in {v}.", "{e} was established in {v}.", "The founding of {e} took place in {v}."),
                 "{e} was not founded in {v}.",
                 ("When was {e} founded?", "In what year was {e} founded?", "What year was {e} established?",
                  "{e} was founded in which year?", "When was {e} established?")),
        Relation("river", lambda rng: f"{_word(rng, 2)} River",
                 ("{e} lies on the {v}.", "The {v} flows through {e}.", "{e} was built on the banks of the {v}."),
                 "The {v} does not flow through {e}.",
                 ("Which river does {e} lie on?", "On what river is {e} located?", "What river flows through {e}?",
                  "{e} lies on which river?", "Which river runs through {e}?")),
        Relation("mayor", _person,
                 ("The mayor of {e} is {v}.", "{v} is the mayor of {e}.", "{e} is governed by mayor {v}."),
                 "{v} is not the mayor of {e}.",
                 ("Who is the mayor of {e}?", "Who serves as mayor of {e}?", "{e} is led by which mayor?",
                  "Who governs {e} as mayor?", "Name the mayor of {e}.")),
        Relation("hall_colour", _COLOURS,
                 ("The town hall of {e} is painted {v}.", "{e} has a {v} town hall.",
                  "The town hall in {e} is {v}."),
                 "The town hall of {e} is not {v}.",
                 ("What colour is the town hall of {e}?", "The town hall of {e} is painted what colour?",
                  "In which colour is the town hall of {e} painted?", "What is the colour of the town hall in {e}?",
                  "Which colour does the town hall of {e} have?")),
    ), (
        "{e} is known for its narrow streets.", "Visitors to {e} often mention the mild climate.",
        "A weekly market is held in the old square of {e}.", "{e} has several small museums.",
        "The old quarter of {e} was restored a few years ago.", "Many tourists pass through {e} in summer.",
    )),
    EntityType("company", _company, (
        Relation("headquarters", _city,
                 ("{e} is headquartered in {v}.", "{e} is based in {v}.", "The headquarters of {e} are in {v}."),
                 "{e} is not based in {v}.",
                 ("Where is {e} headquartered?", "In which city is {e} based?", "Where are the headquarters of {e}?",
                  "{e} is based in which city?", "What city is home to the headquarters of {e}?")),
        Relation("company_founded", _year,
                 ("{e} was founded in {v}.", "{e} was established in {v}.", "{e} opened for business in {v}."),
                 "{e} was not founded in {v}.",
                 ("When was {e} founded?", "In what year was {e} founded?", "What year was {e} established?",
                  "{e} was founded in which year?", "When did {e} open for business?")),
        Relation("founder", _person,
                 ("{e} was founded by {v}.", "{v} founded {e}.", "{v} started {e}."),
                 "{e} was not founded by {v}.",
                 ("Who founded {e}?", "Who was the founder of {e}?", "{e} was founded by whom?",
                  "Which person started {e}?", "Who started {e}?")),
        Relation("product", _pick("bicycles", "lamps", "tractors", "umbrellas", "typewriters", "pianos", "boots",
                                  "radios", "kettles", "telescopes", "sewing machines", "fishing nets"),
                 ("{e} makes {v}.", "{e} is best known for its {v}.", "The main product of {e} is {v}."),
                 "{e} does not make {v}.",
                 ("What does {e} make?", "What does {e} produce?", "What is the main product of {e}?",
                  "{e} is best known for what product?", "What products does {e} manufacture?"),
                 single=False),
        Relation("employees", _count(40, 90_000),
                 ("{e} employs {v} people.", "{e} has {v} employees.", "The workforce of {e} numbers {v}."),
                 "{e} does not employ {v} people.",
                 ("How many people does {e} employ?", "How many employees does {e} have?",
                  "What is the size of the workforce of {e}?", "{e} employs how many people?",
                  "How large is the workforce of {e}?")),
        Relation("logo_colour", _COLOURS,
                 ("The logo of {e} is {v}.", "{e} uses a {v} logo.", "The colour of the logo of {e} is {v}."),
                 "The logo of {e} is not {v}.",
                 ("What colour is the logo of {e}?", "What is the colour of the logo of {e}?",
                  "The logo of {e} is what colour?", "Which colour is used in the logo of {e}?",
                  "What colour does {e} use for its logo?")),
    ), (
        "{e} has received several industry awards.", "Analysts describe {e} as a steady business.",
        "{e} publishes an annual report every spring.", "The early years of {e} were difficult.",
        "{e} sponsors a local football club.", "Customers praise the service of {e}.",
    )),
    EntityType("river", _river, (
        Relation("length", lambda rng: f"{rng.randint(20, 3200):,} km",
                 ("{e} is {v} long.", "{e} has a length of {v}.", "{e} stretches for {v}."),
                 "{e} is not {v} long.",
                 ("How long is {e}?", "What is the length of {e}?", "{e} is how long?",
                  "How many kilometres long is {e}?", "What length does {e} have?")),
        Relation("source", lambda rng: f"{_word(rng, 2)} {rng.choice(('Hills', 'Mountains', 'Highlands'))}",
                 ("{e} rises in the {v}.", "The source of {e} lies in the {v}.", "{e} begins in the {v}."),
                 "{e} does not rise in the {v}.",
                 ("Where does {e} rise?", "Where is the source of {e}?", "Where does {e} begin?",
                  "{e} rises where?", "What is the source of {e}?")),
        Relation("mouth", lambda rng: f"{_word(rng, 2)} Sea",
                 ("{e} flows into the {v}.", "{e} empties into the {v}.", "The mouth of {e} is on the {v}."),
                 "{e} does not flow into the {v}.",
                 ("Into which sea does {e} flow?", "Where does {e} end?", "What sea does {e} empty into?",
                  "{e} flows into which sea?", "Where is the mouth of {e}?")),
        Relation("water_colour", _COLOURS,
                 ("The water of {e} is {v}.", "{e} has {v} water.", "{e} is known for its {v} water."),
                 "The water of {e} is not {v}.",
                 ("What colour is the water of {e}?", "What is the colour of the water of {e}?",
                  "{e} has water of what colour?", "Which colour is the water of {e}?",
                  "What colour of water does {e} have?")),
        Relation("passes", _city,
                 ("{e} passes through {v}.", "{e} flows past the city of {v}.", "The city of {v} stands on {e}."),
                 "{e} does not pass through {v}.",
                 ("Which city does {e} pass through?", "Through which city does {e} flow?",
                  "What city lies on {e}?", "{e} passes through which city?", "Which city stands on {e}?"),
                 single=False),
    ), (
        "{e} is popular with anglers.", "Several old bridges cross {e}.", "{e} sometimes floods in spring.",
        "Boats once carried timber along {e}.", "Herons nest along the banks of {e}.",
        "A footpath follows {e} for part of its course.",
    )),
    EntityType("invention", _invention, (
        Relation("inventor", _person,
                 ("{e} was invented by {v}.", "{v} invented {e}.", "{e} was created by {v}."),
                 "{e} was not invented by {v}.",
                 ("Who invented {e}?", "Who was the inventor of {e}?", "{e} was invented by whom?",
                  "Which person created {e}?", "Who created {e}?")),
        Relation("invention_year", _year,
                 ("{e} was invented in {v}.", "{e} was first built in {v}.", "{e} dates from {v}."),
                 "{e} was not invented in {v}.",
                 ("When was {e} invented?", "In what year was {e} invented?", "{e} was invented in which year?",
                  "What year was {e} first built?", "When was {e} first built?")),
        Relation("material", _pick("brass", "oak", "copper", "glass", "iron", "steel", "walnut", "bronze", "tin",
                                   "porcelain", "leather", "pine"),
                 ("{e} is made of {v}.", "{e} is built from {v}.", "{e} was made out of {v}."),
                 "{e} is not made of {v}.",
                 ("What is {e} made of?", "What material is {e} made from?", "{e} is made of what?",
                  "Out of what material is {e} built?", "What is {e} built from?"),
                 single=False),
        Relation("purpose", _pick("measure rainfall", "grind coffee", "spin wool", "signal ships", "press flowers",
                                  "sort letters", "heat water", "cut glass", "count coins", "dry grain"),
                 ("{e} is used to {v}.", "{e} was designed to {v}.", "People use {e} to {v}."),
                 "{e} is not used to {v}.",
                 ("What is {e} used for?", "What is the purpose of {e}?", "What does {e} do?",
                  "{e} is used to do what?", "What was {e} designed to do?"),
                 single=False),
        Relation("invention_place", _city,
                 ("{e} was invented in the city of {v}.", "{e} was first made in {v}.",
                  "{v} is where {e} was invented."),
                 "{e} was not invented in {v}.",
                 ("Where was {e} invented?", "In which city was {e} invented?", "{e} was invented where?",
                  "What city was {e} invented in?", "Where was {e} first made?")),
    ), (
        "{e} appears in many museum collections.", "Early versions of {e} were expensive.",
        "{e} was improved by later engineers.", "Collectors still trade old copies of {e}.",
        "{e} was shown at a large trade fair.", "Few original examples of {e} survive.",
    )),
)

_GENERAL_FILLERS = (
    "The details are recorded in a regional encyclopedia.", "Some of these facts are disputed by later writers.",
    "Local guides repeat these stories to visitors.", "Several of the old records were lost in a fire.",
)


def _cap(text):
    return text[:1].upper() + text[1:]


def _render(template, entity, value=""):
    """Fills `{e}` and `{v}` and capitalizes the first letter.

    Returns:
        (sentence, character offset of the value in it, or -1 when the template has no `{v}`).
    """
    if "{v}" not in template:
        return _cap(template.format(e=entity)), -1
    head, tail = template.split("{v}")
    head = head.format(e=entity)
    return _cap(head + value + tail.format(e=entity)), len(head)


# ---------------------------------------------------------------------------------------------
# SQuAD paragraphs and questions.


@dataclasses.dataclass(frozen=True)
class SyntheticQuestion:
    """One generated question with how it was made (for tests and analysis).

    kind: answerable, binding (a distractor has the attribute), unstated (nobody has it) or
    absent (the entity is not in the paragraph). template: index into the relation's questions.
    entities: the entity names the paragraph describes, the title entity first.
    """

    example: QAExample
    kind: str
    relation: str
    template: int
    entities: Tuple[str, ...]


def _fresh_name(rng, namer, used):
    """A name from `namer` not in `used` (a set of names, which gains it)."""
    while True:
        name = namer(rng)
        if name not in used:
            used.add(name)
            return name


def _distinct_value(rng, relation, taken):
    """A value of `relation` not equal to, nor inside, nor containing any string in `taken`."""
    while True:
        value = relation.value(rng)
        if not any(value in other or other in value for other in taken):
            return value


def _overlap(name, other):
    """True when either string contains the other, ignoring case."""
    return name.lower() in other.lower() or other.lower() in name.lower()


def _make_paragraph(rng, used, long):
    """Draws one paragraph: an entity, same-type distractors, their facts and some filler.

    Returns:
        (entity type, entity names (title entity first), context, facts) where facts maps
        (entity name, relation name) -> Answer located in the context.
    """
    etype = rng.choice(ENTITY_TYPES)
    count = rng.randint(3, 4) if long else rng.choice((2, 2, 3))
    names = []
    while len(names) < count:
        name = _fresh_name(rng, etype.namer, used)
        if not any(_overlap(name, other) for other in names):
            names.append(name)
    taken = list(names)
    stated = []
    for name in names:
        if long:
            how_many = rng.randint(3, len(etype.relations) - 1)
        else:
            how_many = rng.choice((1, 2, 2) if count == 3 else (2, 2, 3))
        for relation in rng.sample(etype.relations, how_many):
            value = _distinct_value(rng, relation, taken)
            taken.append(value)
            stated.append((name, relation, value))
    if rng.random() < 0.3:
        rng.shuffle(stated)
    sentences = []  # (text, (entity, relation name) or None, Answer located in the text or None)
    for name, relation, value in stated:
        text, start = _render(rng.choice(relation.statements), name, value)
        sentences.append((text, (name, relation.name), Answer(text[start:start + len(value)], start)))
    fillers = [_render(template, name)[0] for template in etype.fillers for name in names]
    fillers = rng.sample(fillers, len(fillers) if long else 1)
    fillers += rng.sample(_GENERAL_FILLERS, len(_GENERAL_FILLERS) if long else 1)
    if long:
        target = rng.randint(150, 250)
        while sum(len(sentence[0].split()) for sentence in sentences) < target and fillers:
            sentences.insert(rng.randint(1, len(sentences)), (fillers.pop(), None, None))
    elif rng.random() < 0.3:
        sentences.insert(rng.randint(1, len(sentences)), (rng.choice(fillers), None, None))
    facts, position = {}, 0
    for text, key, answer in sentences:
        if key is not None:
            facts[key] = Answer(answer.text, position + answer.start)
        position += len(text) + 1
    context = " ".join(sentence[0] for sentence in sentences)
    return etype, tuple(names), context, facts


def _pick_question(rng, etype, names, context, facts, asked, used):
    """Chooses what to ask about one paragraph, never an (entity, relation name) pair in `asked`.

    Returns:
        (kind, entity name, relation, answer or None), or None when every choice of the drawn
        kind was asked already.
    """
    stated = {relation for _, relation in facts}
    if rng.random() < UNANSWERABLE_RATE:
        kinds = {
            "binding": [(name, relation) for relation in etype.relations if relation.name in stated
                        for name in names if (name, relation.name) not in facts and (name, relation.name) not in asked],
            "unstated": [(name, relation) for relation in etype.relations if relation.name not in stated
                         for name in names if (name, relation.name) not in asked],
            "absent": [(None, relation) for relation in etype.relations if relation.name in stated],
        }
        kind = rng.choice([kind for kind, choices in kinds.items() if choices])
        name, relation = rng.choice(kinds[kind])
        while name is None or (kind == "absent" and any(_overlap(name, text) for text in (context, *names))):
            name = _fresh_name(rng, etype.namer, used)
        return kind, name, relation, None
    choices = [key for key in sorted(facts) if key not in asked]
    if not choices:
        return None
    name, relation_name = rng.choice(choices)
    relation = next(relation for relation in etype.relations if relation.name == relation_name)
    return "answerable", name, relation, facts[(name, relation_name)]


def squad_questions(rng, size, split, used):
    """Generates `size` SQuAD 2.0 questions over fresh paragraphs.

    Args:
        rng: the random.Random to draw from.
        size: the number of questions.
        split: a word for question ids ("train", "dev").
        used: entity names not to use (a set, which gains this split's names).
    Returns:
        list of SyntheticQuestion, paragraph by paragraph.
    """
    questions = []
    while len(questions) < size:
        long = rng.random() < LONG_PARAGRAPH_RATE
        etype, names, context, facts = _make_paragraph(rng, used, long)
        asked = set()
        for _ in range(min(rng.randint(4, 8) if long else rng.randint(2, 5), size - len(questions))):
            picked = _pick_question(rng, etype, names, context, facts, asked, used)
            if picked is None:
                continue
            kind, name, relation, answer = picked
            asked.add((name, relation.name))
            template = rng.randrange(len(relation.questions))
            example = QAExample(qid=f"syn-{split}-{len(questions):06d}",
                                question=_render(relation.questions[template], name)[0], context=context,
                                answers=(answer,) if answer else (), title=_cap(names[0]))
            questions.append(SyntheticQuestion(example, kind, relation.name, template, names))
    return questions


# ---------------------------------------------------------------------------------------------
# NLI pairs.


def _premise(rng, etype, name, used):
    """Draws 1-3 facts about `name`, and sometimes one about a same-type distractor.

    Returns:
        (premise text, {relation name: (value, statement template)} for `name`,
         (relation, value) stated for the distractor or None).
    """
    facts, sentences, taken = {}, [], [name]
    for relation in rng.sample(etype.relations, rng.randint(1, 3)):
        value = _distinct_value(rng, relation, taken)
        template = rng.choice(relation.statements)
        taken.append(value)
        facts[relation.name] = (value, template)
        sentences.append(_render(template, name, value)[0])
    distractor = None
    if rng.random() < 0.4:
        other = _fresh_name(rng, etype.namer, used)
        relation = rng.choice(etype.relations)
        distractor = (relation, _distinct_value(rng, relation, taken + [other]))
        sentences.append(_render(rng.choice(relation.statements), other, distractor[1])[0])
    rng.shuffle(sentences)
    return " ".join(sentences), facts, distractor


def _hypothesis(rng, etype, name, facts, distractor, label):
    """A hypothesis about `name` that the premise's facts make `label` (an MNLI_LABELS name)."""
    relations = {relation.name: relation for relation in etype.relations}
    if label == "neutral":
        relation = rng.choice([relation for relation in etype.relations if relation.name not in facts])
        value = relation.value(rng)
        if distractor and distractor[0] is relation and rng.random() < 0.7:
            value = distractor[1]
        return _render(relation.negation if rng.random() < 0.25 else rng.choice(relation.statements), name, value)[0]
    relation = relations[rng.choice(sorted(facts))]
    value, used_template = facts[relation.name]
    other_value = _distinct_value(rng, relation, [value, name])
    if distractor and distractor[0] is relation and rng.random() < 0.7:
        other_value = distractor[1]
    if label == "entailment":
        if relation.single and rng.random() < 0.3:
            return _render(relation.negation, name, other_value)[0]
        others = [template for template in relation.statements if template != used_template]
        return _render(rng.choice(others), name, value)[0]
    if not relation.single or rng.random() < 0.4:
        return _render(relation.negation, name, value)[0]
    return _render(rng.choice(relation.statements), name, other_value)[0]


def nli_examples(rng, size, used):
    """Generates `size` premise/hypothesis pairs with labels balanced over MNLI_LABELS.

    Returns:
        list of (ClassificationExample, genre) where genre is the entity type's name.
    """
    labels = [index % len(MNLI_LABELS) for index in range(size)]
    rng.shuffle(labels)
    examples = []
    for index, label in enumerate(labels):
        etype = rng.choice(ENTITY_TYPES)
        name = _fresh_name(rng, etype.namer, used)
        premise, facts, distractor = _premise(rng, etype, name, used)
        hypothesis = _hypothesis(rng, etype, name, facts, distractor, MNLI_LABELS[label])
        examples.append((ClassificationExample(str(index), premise, hypothesis, label), etype.name))
    return examples


def _parses(sentence):
    """Stand-ins for MNLI's parse columns: (right-branching binary parse, flat constituency parse)."""
    tokens = re.findall(r"[\w,']+|[^\w\s]", sentence)
    binary = tokens[-1]
    for token in reversed(tokens[:-1]):
        binary = f"( {token} {binary} )"
    return binary, "(ROOT (S " + " ".join(f"(X {token})" for token in tokens) + "))"


def _mnli_rows(examples, label_columns):
    """MNLI TSV rows: index, promptID, pairID, genre, 4 parses, sentence1, sentence2, labels, gold."""
    rows = []
    for example, genre in examples:
        label = MNLI_LABELS[example.label]
        prompt_id = str(10_000 + int(example.guid))
        parses_a, parses_b = _parses(example.text_a), _parses(example.text_b)
        rows.append([example.guid, prompt_id, prompt_id + label[0], genre, parses_a[0], parses_b[0], parses_a[1],
                     parses_b[1], example.text_a, example.text_b] + [label] * label_columns + [label])
    return rows


def _mnli_header(label_columns):
    return (["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
            + [f"label{number}" for number in range(1, label_columns + 1)] + ["gold_label"])


# ---------------------------------------------------------------------------------------------
# Paraphrase (QQP) pairs.


def para_examples(rng, size, used):
    """Generates `size` question pairs, half paraphrases (label 1), half not (label 0).

    A paraphrase asks the same relation of the same entity with another template; a non-paraphrase
    asks another relation of the same entity, or the same relation (often in the same words) of
    another entity of the same type.

    Returns:
        list of ClassificationExample, guid the pair's index.
    """
    labels = [index % 2 for index in range(size)]
    rng.shuffle(labels)
    examples = []
    for index, label in enumerate(labels):
        etype = rng.choice(ENTITY_TYPES)
        name = _fresh_name(rng, etype.namer, used)
        relation = rng.choice(etype.relations)
        first = rng.randrange(len(relation.questions))
        if label == 1:
            other_name, other_relation = name, relation
            second = rng.choice([t for t in range(len(relation.questions)) if t != first])
        elif rng.random() < 0.5:
            other_name = name
            other_relation = rng.choice([other for other in etype.relations if other is not relation])
            second = rng.randrange(len(other_relation.questions))
        else:
            other_name, other_relation = _fresh_name(rng, etype.namer, used), relation
            second = first if rng.random() < 0.5 else rng.randrange(len(relation.questions))
        examples.append(ClassificationExample(str(index), _render(relation.questions[first], name)[0],
                                              _render(other_relation.questions[second], other_name)[0], label))
    return examples


def _qqp_rows(examples):
    """QQP TSV rows: id, qid1, qid2, question1, question2, is_duplicate; equal questions share a qid."""
    qids, rows = {}, []
    for example in examples:
        ids = [str(qids.setdefault(text, len(qids) + 1)) for text in (example.text_a, example.text_b)]
        rows.append([example.guid, *ids, example.text_a, example.text_b, str(example.label)])
    return rows


# ---------------------------------------------------------------------------------------------
# Sentiment sentences (lower-cased and tokenized like SST-2).

_PRODUCTS = ("this phone", "this blender", "these headphones", "this laptop", "this vacuum", "this kettle",
             "this camera", "these boots", "this mattress", "this printer", "this backpack", "this lamp")
_ASPECTS = ("the battery", "the screen", "the sound", "the price", "the design", "the build quality",
            "the customer service", "the delivery", "the packaging", "the manual", "the setup", "the fit",
            "the material", "the software", "the warranty", "the handle", "the charger")
_ADJECTIVES = {1: ("good", "great", "excellent", "fantastic", "solid", "decent", "reliable", "superb",
                   "impressive", "pleasant", "sturdy", "wonderful"),
               -1: ("bad", "terrible", "awful", "poor", "flimsy", "disappointing", "useless", "mediocre",
                    "annoying", "horrible", "clumsy", "weak")}
_VERBS = {1: ("love", "like", "enjoy", "appreciate"), -1: ("hate", "dislike", "regret")}
_INTENSIFIERS = ("very", "really", "extremely", "incredibly", "quite", "truly", "pretty")
_NEGATORS = ("not", "hardly", "never", "far from", "not really", "by no means", "not very")


def _clause(rng, polarity):
    """A clause about one aspect whose sentiment is `polarity` (+1 or -1); negation flips words."""
    aspect = rng.choice(_ASPECTS)
    negated = rng.random() < 0.25
    word_polarity = -polarity if negated else polarity
    if rng.random() < 0.25:
        verb = rng.choice(_VERBS[word_polarity])
        return f"i do n't {verb} {aspect}" if negated else f"i {verb} {aspect}"
    adjective = rng.choice(_ADJECTIVES[word_polarity])
    if negated:
        return f"{aspect} is {rng.choice(_NEGATORS)} {adjective}"
    if rng.random() < 0.4:
        return f"{aspect} is {rng.choice(_INTENSIFIERS)} {adjective}"
    return f"{aspect} is {adjective}"


def _review(rng, polarity):
    """A review sentence whose overall sentiment is `polarity`; in mixed sentences the last clause
    decides."""
    pattern = rng.random()
    if pattern < 0.4:
        return f"{_clause(rng, polarity)} ."
    if pattern < 0.6:
        return f"{_clause(rng, polarity)} , and {_clause(rng, polarity)} ."
    if pattern < 0.78:
        return f"{_clause(rng, -polarity)} , but {_clause(rng, polarity)} ."
    if pattern < 0.85:
        return f"although {_clause(rng, -polarity)} , {_clause(rng, polarity)} ."
    if pattern < 0.93:
        adjective = rng.choice(_ADJECTIVES[polarity])
        return f"{_clause(rng, rng.choice((1, -1)))} , and overall {rng.choice(_PRODUCTS)} is {adjective} ."
    verdict = rng.choice(("definitely", "happily", "gladly")) if polarity > 0 else rng.choice(("not", "never"))
    return f"{_clause(rng, -polarity)} , still i would {verdict} recommend {rng.choice(_PRODUCTS)} ."


def sentiment_examples(rng, size, used):
    """Generates `size` distinct review sentences, half positive (label 1), none already in `used`
    (a set of sentences, which gains these)."""
    labels = [index % 2 for index in range(size)]
    rng.shuffle(labels)
    examples = []
    for index, label in enumerate(labels):
        sentence = _review(rng, 1 if label else -1)
        while sentence in used:
            sentence = _review(rng, 1 if label else -1)
        used.add(sentence)
        examples.append(ClassificationExample(str(index), sentence, None, label))
    return examples


# ---------------------------------------------------------------------------------------------
# Files.


def _write_squad(rng, paths, sizes):
    used = set()
    for split, size in sizes.items():
        write_squad_json(paths[split], [question.example for question in squad_questions(rng, size, split, used)])


def _write_nli(rng, paths, sizes):
    used = set()
    for split, size in sizes.items():
        label_columns = 1 if split == "train" else 5
        write_tsv(paths[split], _mnli_header(label_columns), _mnli_rows(nli_examples(rng, size, used), label_columns))


def _write_para(rng, paths, sizes):
    used = set()
    for split, size in sizes.items():
        write_tsv(paths[split], ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                  _qqp_rows(para_examples(rng, size, used)))


def _write_sentiment(rng, paths, sizes):
    used = set()
    for split, size in sizes.items():
        write_tsv(paths[split], ["sentence", "label"],
                  [[example.text_a, str(example.label)] for example in sentiment_examples(rng, size, used)])


_WRITERS = {"squad": _write_squad, "nli": _write_nli, "para": _write_para, "sentiment": _write_sentiment}


def generate(out_dir, seed=0, train_size=1200, dev_size=200):
    """Writes the synthetic corpus under `out_dir` (see the module docstring) unless it is there.

    A marker file `synthetic.json` records the generator version, seed and sizes; when it matches
    and every file exists, nothing is written. Otherwise the marker is removed, every file is
    rewritten atomically, and the marker is written last.

    Args:
        out_dir: the folder to write into (created if needed).
        seed: an int; the same seed and sizes give byte-identical files.
        train_size, dev_size: questions per SQuAD split; the other corpora have as many
            pairs or sentences.
    Returns:
        {"squad": {"train": path, "dev": path}, "nli": {...}, "para": {...}, "sentiment": {...}},
        paths as str.
    Raises:
        RoadError: something else stands where a folder or file of the corpus goes (`_check_layout`).
    """
    if train_size <= 0 or dev_size <= 0:
        raise ValueError(f"synthetic corpus sizes must be positive, got train {train_size}, dev {dev_size}")
    out_dir = pathlib.Path(out_dir)
    paths = {corpus: {split: out_dir / name for split, name in files.items()} for corpus, files in FILES.items()}
    settings = {"generator_version": GENERATOR_VERSION, "seed": seed, "train_size": train_size, "dev_size": dev_size}
    marker = out_dir / MARKER_NAME
    if not _is_current(marker, settings, paths):
        _check_layout(out_dir, paths, marker)
        marker.unlink(missing_ok=True)
        for corpus, writer in _WRITERS.items():
            paths[corpus]["train"].parent.mkdir(parents=True, exist_ok=True)
            writer(random.Random(f"{seed}:{corpus}"), paths[corpus], {"train": train_size, "dev": dev_size})
        write_atomic(marker, json.dumps(settings, sort_keys=True) + "\n")
    return {corpus: {split: str(path) for split, path in splits.items()} for corpus, splits in paths.items()}


def _check_layout(out_dir, paths, marker):
    """RoadError when a file (or a broken link) stands where `out_dir` or a corpus folder of `paths`
    goes, or something other than a file where the `marker` goes (write_atomic names a folder in
    place of a corpus file itself)."""
    for folder in dict.fromkeys([out_dir, *(path.parent for splits in paths.values() for path in splits.values())]):
        check_folder(folder)
    kind = non_file_kind(marker)
    if kind:
        raise RoadError(f"{marker} is {kind}, not the corpus' marker file; move it away")


def _is_current(marker, settings, paths):
    """True when `marker` holds `settings` and every file in `paths` exists."""
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError, RecursionError):  # a damaged marker: the corpus is written again
        return False
    return recorded == settings and all(path.is_file() for splits in paths.values() for path in splits.values())
