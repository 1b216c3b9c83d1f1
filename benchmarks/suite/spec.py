"""The hand-written part of the suite: each prompt's system prompt, user template and candidate faults.

``build.py`` turns these into message-list files: it draws the few-shot examples and the cases
from the shipped dev data (seeded, disjoint), plants each candidate fault into a copy of the
clean prompt, measures its harm on the cases and keeps only the faults whose harm is significant.

Why most faults are in the few-shot examples: this model follows examples far more than rules
(the first build, recorded in README.md, measured every contradicting system rule within +-0.06
nats), and only a change at the start of an answer moves the target's log-prob (the target is
scored without an end token, so text after it is invisible).

A system prompt is a list of lines; each line is one sentence, so that sentence segmentation
makes every rule one unit. A fault is one of:

* ``("answer", k, text)``: few-shot example k's assistant answer becomes ``text``: ``{input}``,
  ``{target}`` and ``{other}`` are the example's input, its right answer and a wrong one of the
  same kind; ``{upper}``, ``{lower}``, ``{digits}``, ``{commas}`` and ``{reversed}`` are the right
  answer in capitals, in lowercase, as digits, with commas between words, and in reverse word order;
* ``("insert", i, text)``: a new system line ``text`` goes in before line i;
* ``("replace", i, text)``: system line i becomes ``text``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptSpec:
    id: str
    task: str
    system: tuple[str, ...]
    user: str  # the user turn, with an `{input}` field
    faults: dict[str, tuple]  # candidate variant id -> fault (see the module docstring)
    examples: int = 5
    max_input_words: int | None = None  # leave long records out of examples and cases
    balanced: bool = False  # alternate the labels of the few-shot examples


def _rules(*lines: str) -> tuple[str, ...]:
    return tuple(lines)


SPECS: tuple[PromptSpec, ...] = (
    PromptSpec(
        id="plural_dictionary",
        task="linguistic_mappings/plural_json",
        system=_rules(
            "You are LexiBot, the spelling assistant of an English dictionary app used by students and teachers.",
            "Your job is to give the plural form of the English noun that the user sends.",
            "- Treat every message as a single English noun, even when it looks like a verb or a name.",
            "- Follow standard modern English spelling as used in major dictionaries.",
            "- For irregular nouns, give the irregular plural that a dictionary lists first.",
            "- Keep the spelling of the noun otherwise unchanged, including its letter case.",
            "- If a noun has no separate plural form, repeat the noun as it is.",
            "- Do not explain the spelling rule, and do not add examples or notes.",
            "Output format: reply with the plural form only, as one lowercase word, with no punctuation.",
            "Your replies are read by a program, so anything other than the plural breaks the app.",
        ),
        user="Noun: {input}",
        examples=8,
        faults={
            "wrong_format_example": ("answer", 7, "Plural: {target}"),
            "wrong_answer_example": ("answer", 7, "{input}"),
            "uppercase_example": ("answer", 6, "{upper}"),
            "language_rule": ("insert", 8, "- Always give the plural in French, never in English."),
            "format_rule": ("insert", 8, "- Write every answer in capital letters."),
        },
    ),
    PromptSpec(
        id="past_tense_tutor",
        task="linguistic_mappings/past_tense_json",
        system=_rules(
            "You are a grammar tutor inside a language-learning app for adult learners of English.",
            "The learner sends an English verb in its base form, and you give its simple past tense.",
            "- Use the simple past, not the past participle, when the two differ.",
            "- For irregular verbs, give the form that standard American English uses.",
            "- Keep the verb in lowercase, exactly as a dictionary would print it.",
            "- Never conjugate for a person or add a pronoun such as I or he.",
            "- Do not add any comment about the verb, its meaning or its usage.",
            "Output format: one word, the past tense form, with nothing before or after it.",
            "The app compares your reply to an answer key letter by letter.",
        ),
        user="Verb: {input}",
        examples=8,
        faults={
            "wrong_format_example": ("answer", 7, "Past tense: {target}"),
            "wrong_answer_example": ("answer", 7, "{input}"),
            "uppercase_example": ("answer", 6, "{upper}"),
            "language_rule": ("insert", 7, "- Always reply in Spanish."),
        },
    ),
    PromptSpec(
        id="object_counter",
        task="object_counting",
        system=_rules(
            "You are a counting assistant for a household inventory service.",
            "The user lists some items they own and asks how many items of one kind they have.",
            "- Count only the items that belong to the kind the user asks about.",
            "- An item given with a number word, such as two drums, counts as that many items.",
            "- An item given with a or an counts as one item.",
            "- Ignore every item that does not belong to the asked kind.",
            "- Do not show your working or list the items you counted.",
            "Output format: write the count as an English number word in lowercase, such as three or eleven.",
            "Reply with that single word and nothing else.",
        ),
        user="{input}",
        examples=5,
        faults={
            "wrong_format_example": ("answer", 4, "You have {target} of them."),
            "wrong_answer_example": ("answer", 4, "{other}"),
            "digits_example": ("answer", 3, "{digits}"),
            "format_rule": ("replace", 7, "Output format: write the count in digits, such as 3 or 11."),
        },
    ),
    PromptSpec(
        id="element_tutor",
        task="periodic_elements/subtask_1",
        system=_rules(
            "You are a chemistry tutor that answers quiz questions about the periodic table.",
            "Each question asks for one chemical element, described by its position or its number of protons.",
            "- Use the modern periodic table with 118 elements.",
            "- Count protons with the atomic number, and neighbours by row and column.",
            "- Give the element's English name, not its chemical symbol.",
            "- Write the name in lowercase letters, as in the middle of a sentence.",
            "- Never give more than one element.",
            "- Do not explain how you found the element.",
            "Output format: the element's name alone, with no article and no punctuation.",
        ),
        user="Question: {input}",
        examples=6,
        faults={
            "wrong_format_example": ("answer", 5, "The answer is {target}."),
            "wrong_answer_example": ("answer", 5, "{other}"),
            "uppercase_example": ("answer", 4, "{upper}"),
            "symbol_rule": ("replace", 4, "- Give the element's chemical symbol, not its English name."),
        },
    ),
    PromptSpec(
        id="unscramble_game",
        task="word_unscrambling",
        system=_rules(
            "You are the answer engine of a word puzzle game.",
            "Each puzzle gives a scrambled word, and the player wants the English word whose letters were shuffled.",
            "- Use every letter of the scrambled word exactly once.",
            "- The answer is a common English word or a place name.",
            "- If several words fit, give the most common one.",
            "- Write the word in lowercase letters.",
            "- Do not give hints, definitions or alternatives.",
            "Output format: the unscrambled word only, with no punctuation.",
            "The game checks your reply against the answer automatically.",
        ),
        user="Puzzle: {input}",
        examples=6,
        faults={
            "wrong_format_example": ("answer", 5, "The word is {target}."),
            "wrong_answer_example": ("answer", 5, "{other}"),
            "uppercase_example": ("answer", 4, "{upper}"),
            "format_rule": ("insert", 7, "- Spell the answer with a hyphen between letters, like c-a-t."),
        },
    ),
    PromptSpec(
        id="word_sorter",
        task="word_sorting",
        system=_rules(
            "You are a text utility that sorts lists of words for a spreadsheet add-on.",
            "The user sends some words separated by spaces, and you return them in alphabetical order.",
            "- Sort from a to z by the first letter, then by the next letters.",
            "- Keep every word exactly as it was written, in lowercase.",
            "- Keep repeated words, and never drop or add a word.",
            "- Separate the words with single spaces.",
            "- Do not number the words or put them on separate lines.",
            "Output format: the sorted words on one line, with no other text.",
        ),
        user="Words: {input}",
        examples=5,
        max_input_words=8,
        faults={
            "wrong_format_example": ("answer", 4, "Sorted: {target}"),
            "wrong_answer_example": ("answer", 4, "{reversed}"),
            "comma_example": ("answer", 3, "{commas}"),
            "format_rule": ("replace", 5, "- Separate the words with commas."),
        },
    ),
    PromptSpec(
        id="sports_checker",
        task="sports_understanding",
        system=_rules(
            "You are a sports fact checker for a fantasy sports website.",
            "The user sends one sentence about an athlete, and you judge whether it is plausible.",
            "- A sentence is plausible when the athlete's sport matches the action it describes.",
            "- A sentence is implausible when the action belongs to a different sport.",
            "- Judge only the sport, not whether the event really happened.",
            "- A team or league name alone never makes a sentence implausible.",
            "- Do not explain your judgement.",
            "Answer with plausible or implausible.",
            "Output format: one lowercase word, with no punctuation.",
        ),
        user="Sentence: {input}",
        examples=6,
        balanced=True,
        faults={
            "wrong_format_example": ("answer", 5, "Yes, that is {target}."),
            "wrong_answer_example": ("answer", 5, "{other}"),
            "uppercase_example": ("answer", 4, "{upper}"),
            "label_list": ("replace", 7, "Answer with yes or no."),
            "language_rule": ("insert", 8, "- Always answer in French."),
        },
    ),
    PromptSpec(
        id="polarity_judge",
        task="entailed_polarity",
        system=_rules(
            "You are a reading comprehension assistant used to grade short exercises.",
            "Each exercise gives a fact about a person and a question about it.",
            "- Decide whether the fact implies that the answer to the question is yes or no.",
            "- Use only what the fact says, and no outside knowledge.",
            "- Pay attention to words such as forgot, managed or refused.",
            "- Do not explain your decision.",
            "Answer with yes or no.",
            "Output format: one lowercase word, with no punctuation.",
        ),
        user="{input}",
        examples=6,
        balanced=True,
        faults={
            "wrong_format_example": ("answer", 5, "The answer is {target}, because the fact says so."),
            "wrong_answer_example": ("answer", 5, "{other}"),
            "uppercase_example": ("answer", 4, "{upper}"),
            "label_list": ("replace", 6, "Answer with true or false."),
            "format_rule": ("replace", 7, "Output format: one word in capital letters, such as YES."),
        },
    ),
    PromptSpec(
        id="route_checker",
        task="navigate",
        system=_rules(
            "You are a navigation checker for a robot simulator.",
            "The user gives a list of movement instructions, and you tell whether the robot ends where it started.",
            "- Track the robot's position and the direction it faces after every instruction.",
            "- Steps without a direction are taken in the direction the robot faces.",
            "- Turning changes the direction but not the position.",
            "- Do not describe the route or show your working.",
            "Answer with True or False.",
            "Output format: one word with a capital first letter, and no punctuation.",
        ),
        user="Instructions: {input}",
        examples=5,
        balanced=True,
        faults={
            "wrong_format_example": ("answer", 4, "The robot returns: {target}."),
            "wrong_answer_example": ("answer", 4, "{other}"),
            "lowercase_example": ("answer", 3, "{lower}"),
            "label_list": ("replace", 6, "Answer with yes or no."),
            "format_rule": ("replace", 7, "Output format: one word in lowercase letters, such as true."),
        },
    ),
    PromptSpec(
        id="intent_router",
        task="intent_recognition",
        system=_rules(
            "You are the intent router of a voice assistant.",
            "The user sends one utterance, and you name the intent it expresses.",
            "The possible intents are add_to_playlist, book_restaurant, get_weather, play_music, search_screening_event, search_creative_work and rate_book.",
            "- Pick the one intent that best matches what the speaker wants done.",
            "- Requests to find films at a cinema are search_screening_event.",
            "- Requests to find a book, song or show by name are search_creative_work.",
            "- Do not explain your choice.",
            "Output format: the intent name exactly as listed, in lowercase with underscores.",
        ),
        user="{input}",
        examples=7,
        balanced=True,
        faults={
            "wrong_format_example": ("answer", 6, "Intent: {target}"),
            "wrong_answer_example": ("answer", 6, "{other}"),
            "uppercase_example": ("answer", 5, "{upper}"),
            "label_list": ("replace", 2, "The possible intents are AddToPlaylist, BookRestaurant, GetWeather, PlayMusic, SearchScreeningEvent, SearchCreativeWork and RateBook."),
            "format_rule": ("replace", 7, "Output format: the intent name in capital letters, with spaces instead of underscores."),
        },
    ),
)
