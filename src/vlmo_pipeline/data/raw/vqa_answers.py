"""VQA v2 answer handling: the standard answer normalisation, the answer vocabulary and soft scores (spec §5.3).

The normalisation follows the procedure of the official VQA evaluation (also used by ViLT/VLMo's
``normalize_word`` to build the label vocabulary): punctuation handling, periods not inside numbers removed,
lower-casing, number words to digits, articles dropped, apostrophe-less contractions restored, commas removed.
The contraction table here covers the common forms; it deliberately leaves out spellings that are also ordinary
words ("its", "well", "were", "shed", ...), so rare answers may normalise slightly differently from the
official table.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

_PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_IN_NUMBER = re.compile(r"\.(?!\d)")
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "aint": "ain't",
    "arent": "aren't",
    "cant": "can't",
    "couldve": "could've",
    "couldnt": "couldn't",
    "didnt": "didn't",
    "doesnt": "doesn't",
    "dont": "don't",
    "hadnt": "hadn't",
    "hasnt": "hasn't",
    "havent": "haven't",
    "hes": "he's",
    "howd": "how'd",
    "howll": "how'll",
    "hows": "how's",
    "im": "i'm",
    "ive": "i've",
    "isnt": "isn't",
    "itd": "it'd",
    "itll": "it'll",
    "mightnt": "mightn't",
    "mightve": "might've",
    "mustnt": "mustn't",
    "mustve": "must've",
    "neednt": "needn't",
    "shant": "shan't",
    "shes": "she's",
    "shouldve": "should've",
    "shouldnt": "shouldn't",
    "thats": "that's",
    "thered": "there'd",
    "theres": "there's",
    "theyd": "they'd",
    "theyll": "they'll",
    "theyre": "they're",
    "theyve": "they've",
    "wasnt": "wasn't",
    "weve": "we've",
    "werent": "weren't",
    "whatll": "what'll",
    "whatre": "what're",
    "whats": "what's",
    "whatve": "what've",
    "whens": "when's",
    "whered": "where'd",
    "wheres": "where's",
    "whereve": "where've",
    "whod": "who'd",
    "wholl": "who'll",
    "whos": "who's",
    "whove": "who've",
    "whyll": "why'll",
    "whyre": "why're",
    "whys": "why's",
    "wont": "won't",
    "wouldve": "would've",
    "wouldnt": "wouldn't",
    "yall": "y'all",
    "youd": "you'd",
    "youll": "you'll",
    "youre": "you're",
    "youve": "you've",
}

# Soft score of an answer given by n of the (usually 10) annotators: min(1, 0.3 n) rounded as in the spec.
_SCORE_BY_COUNT = (0.0, 0.3, 0.6, 0.9)


def normalize_answer(answer: str) -> str:
    """Normalise a VQA answer string the way the official label vocabulary was built."""
    text = answer
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in _PUNCTUATION:
        if (mark + " " in answer or " " + mark in answer) or has_digit_comma:
            text = text.replace(mark, "")
        else:
            text = text.replace(mark, " ")
    text = _PERIOD_NOT_IN_NUMBER.sub("", text)
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words).replace(",", "")


def soft_score(count: int) -> float:
    """Score for an answer given by ``count`` annotators: 0 / 0.3 / 0.6 / 0.9 / 1.0 for 0 / 1 / 2 / 3 / ≥4."""
    return _SCORE_BY_COUNT[count] if count < len(_SCORE_BY_COUNT) else 1.0


def build_answer_vocab(major_answers: Iterable[str], min_count: int) -> list[str]:
    """Normalised answers seen at least ``min_count`` times, in first-seen order (label id = list index)."""
    counts = Counter(normalize_answer(answer) for answer in major_answers)
    return [answer for answer, count in counts.items() if count >= min_count]


def score_answers(raw_answers: Iterable[str], answer_to_label: dict[str, int]) -> tuple[list[int], list[float]]:
    """Labels and soft scores of one question from its annotators' raw answers.

    As in the official writer, the *raw* (un-normalised) answer strings are counted and looked up in the
    vocabulary; answers outside it are ignored. Labels keep the order of first appearance.
    """
    counts = Counter(raw_answers)
    labels, scores = [], []
    for answer, count in counts.items():
        label = answer_to_label.get(answer)
        if label is not None:
            labels.append(label)
            scores.append(soft_score(count))
    return labels, scores
