"""Reward rules for tasks whose answers are known by construction.

Plain functions over plain values so an RL trainer can import this file on its own
(standard library only). Every rule returns a float in [0, 1] and never raises on a
malformed prediction: an answer that cannot be parsed earns 0.

Rules (the names stored in the `reward_rule` column of the `rl` table):

- ``exact``        normalised text or number equality ("Three" == 3, "the Banana." == "banana")
- ``choice``       multiple choice; the prediction may give the letter ("B", "(B)", "Ｂ", "I'd say b.")
                   or the option's text, also paraphrased ("the cat is sleeping" for "a cat sleeps");
                   ground truth ``{"answer": "B", "options": [...]}`` or a letter
- ``order``        Kendall tau between predicted and true order, scaled to [0, 1]
                   (1 = identical order, 0 = reversed or nothing parseable); labels ("Clip 3"),
                   lists ("[3, 1, 2]", "order: 3,1,2", a numbered list) and the items' own words
                   ("LADDER PIANO NAPKIN") are read
- ``order_exact``  1 only when the whole order is right
- ``temporal_iou`` intersection over union of time spans, in seconds after unit conversion
                   ("12.5-20 s", "1-2 min", "00:01:05 to 00:01:10"); several spans on either side
                   are compared as unions. With ``{"spans": [...], "duration_s": D}`` as ground
                   truth the IoU is chance-corrected: the whole video (or spans covering it)
                   scores 0, the exact span 1.

Use :func:`score` as the single entry point: ``score(rule, prediction, ground_truth)``.
Ground truth may be given as the stored JSON string or as the decoded value.

Only the final, single answer is paid. A prediction is first reduced to it: the last
``<answer>...</answer>``, the last ``\\boxed{...}``, else the line after the last "Answer:";
a self-correction ("A. Wait, actually it's D.") keeps what follows it. An answer that names
several options, several numbers or several orders (a hedge) scores 0.
"""

from __future__ import annotations

import functools
import json
import math
import re
import string
import unicodedata
from typing import Any, Callable, Sequence

__all__ = [
    "REWARD_RULES",
    "choice_match",
    "exact_match",
    "extract_answer",
    "kendall_tau_score",
    "normalize_answer",
    "normalize_text",
    "order_exact",
    "parse_choice",
    "parse_number",
    "parse_order",
    "parse_spans",
    "parse_timestamp",
    "score",
    "temporal_iou",
]

# --------------------------------------------------------------------------- answer extraction

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_ANSWER_PREFIX = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is\s*)?[:：]\s*|\bthe\s+(?:final\s+|correct\s+)?answer\s+is\b\s*:?\s*",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"\b(?:wait|actually|correction|on second thought|scratch that|i mean|no,? it'?s|rather)\b[,:]?",
    re.IGNORECASE,
)


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, nested braces allowed."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            inner = text[i + 1:j]
            return re.sub(r"\\text\{([^{}]*)\}", r"\1", inner)
    return None


def _after_prefix(text: str) -> str | None:
    """The rest of the line after the last 'Answer:' (the lines below when that line is empty)."""
    prefixed = list(_ANSWER_PREFIX.finditer(text))
    if not prefixed:
        return None
    tail = text[prefixed[-1].end():]
    line = tail.split("\n", 1)[0].strip()
    return line or tail.strip() or None


def extract_answer(text: Any) -> str:
    """Reduce a model output to its final answer (tagged, boxed or after 'Answer:'), keeping
    only what follows a self-correction."""
    if text is None:
        return ""
    if not isinstance(text, str):
        return json.dumps(text) if isinstance(text, (list, dict)) else str(text)
    text = unicodedata.normalize("NFKC", text)
    tagged = _ANSWER_TAG.findall(text)
    answer = tagged[-1] if tagged else _last_boxed(text)
    if answer is None:
        answer = _after_prefix(text)
    if answer is None:
        answer = text
    corrections = list(_CORRECTION.finditer(answer))
    if corrections and answer[corrections[-1].end():].strip():
        answer = answer[corrections[-1].end():]
    return answer.strip()


def _final_line(answer: str) -> str:
    """The last non-empty line: a bare answer after free-text reasoning."""
    lines = [line for line in answer.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# --------------------------------------------------------------------------- normalisation

_ARTICLES = {"a", "an", "the"}
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20,
}
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)?|[-+]?\.\d+")


def normalize_text(text: Any) -> str:
    """Case-, width-, accent-, punctuation- and article-insensitive form of a short answer."""
    return _normalized(str(text))


_ASCII_PUNCTUATION = str.maketrans(string.punctuation, " " * len(string.punctuation))
"""Every ASCII punctuation mark and symbol (Unicode categories P and S) to a space."""


@functools.lru_cache(maxsize=1 << 16)
def _normalized(text: str) -> str:
    """Cached: the verifiers compare every answer with every option, hundreds of times a video."""
    if text.isascii():  # NFKC/NFKD change nothing here and casefold is lower: the same result, faster
        text = text.lower().translate(_ASCII_PUNCTUATION)
    else:
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
        text = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def normalize_answer(text: Any) -> str:
    """`normalize_text` with number words 0-20 as digits: the key under which two free answers
    ("three times", "3 TIMES") are the same answer."""
    return " ".join(str(_NUMBER_WORDS.get(w, w)) for w in normalize_text(text).split())


def parse_number(value: Any) -> float | None:
    """The number an answer states: a numeral, a number word, or the only number in it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    norm = normalize_text(value)
    if norm in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[norm])
    numbers = _NUMBER.findall(unicodedata.normalize("NFKC", str(value)))
    words = [w for w in norm.split() if w in _NUMBER_WORDS]
    if len(numbers) == 1 and not words:
        return float(numbers[0].replace(",", ""))
    if not numbers and len(words) == 1:
        return float(_NUMBER_WORDS[words[0]])
    return None


def _is_numeric_truth(truth: Any) -> bool:
    if isinstance(truth, bool):
        return False
    if isinstance(truth, (int, float)):
        return True
    return isinstance(truth, str) and re.fullmatch(r"\s*[-+]?\d+(?:\.\d+)?\s*", truth) is not None


# --------------------------------------------------------------------------- exact

def exact_match(prediction: Any, truth: Any) -> float:
    """1 when the normalised final answer equals the truth (numbers compared as numbers)."""
    answer = _final_line(extract_answer(prediction))
    if _is_numeric_truth(truth):
        number = parse_number(answer)
        expected = float(truth)
        return float(number is not None and math.isclose(number, expected, rel_tol=1e-6, abs_tol=1e-9))
    norm_answer = normalize_text(answer)
    return float(bool(norm_answer) and norm_answer == normalize_text(truth))


# --------------------------------------------------------------------------- multiple choice

_LABEL = re.compile(r"^\s*[\[(]?([A-Za-z])[\])]?\s*[.):]\s+(\S.*)$")
_STOPWORDS = _ARTICLES | {"is", "are", "was", "be", "of", "in", "on", "at", "to", "and", "it", "its",
                          "this", "that", "there", "option", "answer", "correct", "i", "think", "say", "d"}
_ALTERNATIVE = re.compile(r"\bor\b|\beither\b", re.IGNORECASE)
_HEDGE_AFTER_A = {"or", "and", "nor", "vs", "versus", "then", "to"}


def _letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def _named_letters(text: str, valid: str) -> list[str]:
    """Standalone option letters in `text`, in order: capitals, except the article "A" before a
    word; a lower-case letter only alone in brackets or as the last word."""
    found = []
    for match in re.finditer(r"(?<![\w'’])([A-Za-z])(?![\w'’])", text):
        letter, rest = match.group(1), text[match.end():]
        if letter.upper() not in valid:
            continue
        if letter.islower():
            bracketed = text[max(0, match.start() - 1):match.start()] == "(" and rest[:1] == ")"
            if not (bracketed or re.fullmatch(r"\W*", rest)):
                continue
        elif letter == "A":
            following = re.match(r"\s+([a-z]+)", rest)
            if following and following.group(1) not in _HEDGE_AFTER_A:
                continue  # "A cat sleeps": the article
        found.append(letter.upper())
    return found


def _stem(word: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> set[str]:
    return {_stem(w) for w in normalize_text(text).split() if w not in _STOPWORDS}


def _options_named_by_text(text: str, options: Sequence[str]) -> list[int]:
    """Options whose whole normalised text occurs in `text`."""
    norm = f" {normalize_text(text)} "
    return [i for i, option in enumerate(options) if normalize_text(option) and f" {normalize_text(option)} " in norm]


def _paraphrased_option(text: str, options: Sequence[str]) -> int | None:
    """The option whose content words the text shares most (over half of them, and clearly
    more than any other option); None when no option stands out."""
    words = _content_words(text)
    if not words:
        return None
    overlaps = []
    for option in options:
        own = _content_words(option)
        overlaps.append(len(words & own) / max(len(own | words), 1) if own else 0.0)
    ranked = sorted(range(len(options)), key=lambda i: -overlaps[i])
    best = ranked[0]
    second = overlaps[ranked[1]] if len(ranked) > 1 else 0.0
    return best if overlaps[best] >= 0.5 and overlaps[best] > second + 0.2 else None


def _choice_in_line(answer: str, options: Sequence[str] | None, valid: str) -> str | None:
    """The one option a line of answer picks; None when it names none or several."""
    if options:
        whole = [i for i, o in enumerate(options) if normalize_text(o) == normalize_text(answer)]
        if len(whole) == 1:
            return valid[whole[0]]
    label = _LABEL.match(answer)
    if label and label.group(1).upper() in valid and label.group(1).isupper():
        letter, rest = label.group(1).upper(), label.group(2)
        whole = [i for i, o in enumerate(options or []) if normalize_text(o) == normalize_text(rest)]
        if whole:  # "B. the dog runs" (an option may itself hold a letter: "take vitamin C")
            return letter if valid[whole[0]] == letter else None
        named = set(_named_letters(rest, valid))
        if options:
            named |= {valid[i] for i in _options_named_by_text(rest, options)}
        return letter if named <= {letter} else None  # "B. a bird sings": letter and text disagree
    named = set(_named_letters(answer, valid))
    remainder = normalize_text(answer)
    if options:
        by_text = _options_named_by_text(answer, options)
        named |= {valid[i] for i in by_text}
        for i in by_text:
            remainder = remainder.replace(normalize_text(options[i]), " ")
        if not named:
            paraphrased = _paraphrased_option(answer, options)
            named = {valid[paraphrased]} if paraphrased is not None else set()
    if len(named) != 1 or _ALTERNATIVE.search(remainder):
        return None  # several options, or "either B or something else"
    return named.pop()


def _bare_choices(lines: Sequence[str], options: Sequence[str] | None, valid: str) -> set[str]:
    """Options stated alone on a line (a letter or an option's whole text)."""
    texts = {normalize_text(o): valid[i] for i, o in enumerate(options or [])}
    bare = set()
    for line in lines:
        alone = re.fullmatch(r"\W*([A-Za-z])\W*", line)
        if alone and alone.group(1).upper() in valid:
            bare.add(alone.group(1).upper())
        elif normalize_text(line) in texts:
            bare.add(texts[normalize_text(line)])
    return bare


def parse_choice(prediction: Any, options: Sequence[str] | None = None) -> str | None:
    """The one option a final answer picks, by letter or by the option's text; None when it
    names none or several (also one per line)."""
    valid = _letters(len(options)) if options else _letters(8)
    lines = [line.strip().strip("*").strip() for line in extract_answer(prediction).splitlines() if line.strip()]
    if not lines or len(_bare_choices(lines, options, valid)) > 1:
        return None
    return _choice_in_line(lines[-1], options, valid)


def choice_match(prediction: Any, truth: Any) -> float:
    """1 when the prediction picks the right option, and only it (by letter or by option text)."""
    if isinstance(truth, dict):
        options = truth.get("options") or None
        answer = str(truth.get("answer", "")).strip().upper()
    else:
        options, answer = None, str(truth).strip().upper()
    if options and len(answer) != 1:
        hits = [i for i, option in enumerate(options) if normalize_text(option) == normalize_text(answer)]
        answer = _letters(len(options))[hits[0]] if len(hits) == 1 else answer
    return float(parse_choice(prediction, options) == answer)


# --------------------------------------------------------------------------- order

_SEPARATORS = re.compile(r"\s*(?:,|;|->|→|=>|>|\bthen\b|\n)\s*", re.IGNORECASE)
_ENUMERATOR = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(?=\S)", re.MULTILINE)


def _order_item(value: Any) -> Any:
    """Canonical form of one item in an order: an int when it is one, else normalised text."""
    if isinstance(value, bool):
        return normalize_text(value)
    if isinstance(value, (int, float)) and float(value).is_integer():
        return int(value)
    text = str(value).strip()
    number = parse_number(text) if re.fullmatch(r"[\w\s.()#-]*", text) else None
    if number is not None and number.is_integer():
        return int(number)
    return normalize_text(text)


def parse_order(prediction: Any) -> list[Any]:
    """A predicted order: a JSON list, '[3, 1, 2]', '3 > 1 > 2', '3 1 2' or 'apple, river'."""
    if isinstance(prediction, (list, tuple)):
        return [_order_item(v) for v in prediction]
    answer = _ENUMERATOR.sub("", extract_answer(prediction)).strip()
    bracketed = re.search(r"\[[^\[\]]*\]", answer)
    if bracketed:
        try:
            decoded = json.loads(bracketed.group(0))
            if isinstance(decoded, list):
                return [_order_item(v) for v in decoded]
        except json.JSONDecodeError:
            answer = bracketed.group(0)[1:-1]
    answer = answer.strip("()[]{} .")
    parts = [p for p in _SEPARATORS.split(answer) if p.strip()]
    if len(parts) == 1 and re.fullmatch(r"\d+(?:\s+\d+)+", parts[0]):
        parts = parts[0].split()
    items = [_order_item(p.strip(" .'\"`")) for p in parts]
    return [item for item in items if item != ""]


def _items_in_text(prediction: Any, expected: Sequence[Any]) -> list[Any] | None:
    """The true items in the order the final answer mentions them (labels, lists, the items'
    own words); None for a hedge: an item named twice."""
    if isinstance(prediction, (list, tuple)):
        return None
    answer = _ENUMERATOR.sub("", extract_answer(prediction))
    found: list[tuple[int, Any]] = []
    for item in set(expected):
        if isinstance(item, int):
            pattern = rf"(?<![\d.:]){item}(?![\d.:]\d|\d)"
            hits = [m.start() for m in re.finditer(pattern, answer)]
        else:
            hits = [m.start() for m in re.finditer(rf"(?<!\w){re.escape(item)}(?!\w)", normalize_text(answer))]
        if len(hits) > 1:
            return None
        found += [(hits[0], item)] if hits else []
    return [item for _, item in sorted(found)]


def _predicted_order(prediction: Any, expected: Sequence[Any]) -> list[Any] | None:
    """The order a prediction states, read as a list first and by the items' own words when the
    list does not name exactly the true items; None when it names an item twice."""
    if not isinstance(prediction, (list, tuple)):
        answer = extract_answer(prediction)
        if _ALTERNATIVE.search(answer) or len(re.findall(r"\[[^\[\]]*\]", answer)) > 1:
            return None  # several orders offered
    listed = parse_order(prediction)
    if sorted(map(str, listed)) == sorted(map(str, expected)):
        return listed
    if len(set(map(str, listed))) < len(listed) and set(map(str, listed)) >= set(map(str, expected)):
        return None
    scanned = _items_in_text(prediction, expected)
    if scanned is None:
        return None if not isinstance(prediction, (list, tuple)) else listed
    return scanned if len(scanned) >= len([i for i in listed if i in expected]) else listed


def order_exact(prediction: Any, truth: Sequence[Any]) -> float:
    """1 when the predicted order equals the true order item for item."""
    expected = [_order_item(v) for v in truth]
    return float(_predicted_order(prediction, expected) == expected)


def kendall_tau_score(prediction: Any, truth: Sequence[Any]) -> float:
    """Share of item pairs put in the right relative order: (tau + 1) / 2 over the true items.

    A pair counts as wrong when either item is missing from the prediction, so leaving
    items out cannot earn credit; an answer naming an item twice (a hedge) earns 0.
    """
    expected = [_order_item(v) for v in truth]
    if len(expected) < 2:
        return order_exact(prediction, truth)
    predicted = _predicted_order(prediction, expected)
    if predicted is None:
        return 0.0
    position = {item: i for i, item in enumerate(predicted)}
    pairs = concordant = 0
    for i in range(len(expected)):
        for j in range(i + 1, len(expected)):
            pairs += 1
            a, b = position.get(expected[i]), position.get(expected[j])
            if a is not None and b is not None and a < b:
                concordant += 1
    return concordant / pairs


# --------------------------------------------------------------------------- temporal spans

_TIME = r"(?:\d+:)?\d+:\d+(?:\.\d+)?|\d+(?:\.\d+)?"
_UNIT_SECONDS = {"ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
                 "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
                 "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
                 "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0}
_UNIT = r"(?:\s*([a-z]+)\b)?"
_RANGE = re.compile(
    rf"({_TIME}){_UNIT}\s*(?:-|–|—|~|\bto\b|\buntil\b|\btill\b|\band\b|,)\s*({_TIME}){_UNIT}",
    re.IGNORECASE,
)
_NOT_TIME_UNITS = {"frame", "frames", "f", "px", "pixels", "percent", "pct", "fps", "bpm", "kb", "mb"}


def _unit_factor(unit: str | None) -> float | None:
    """Seconds per unit; 1 without one (any other word); None for a unit that is not of time."""
    unit = (unit or "").lower()
    return None if unit in _NOT_TIME_UNITS else _UNIT_SECONDS.get(unit, 1.0)


def _has_unit(unit: str | None) -> bool:
    return (unit or "").lower() in _UNIT_SECONDS


def parse_timestamp(text: Any) -> float | None:
    """Seconds from '75', '75.5s', '01:15', '1:15.5', '00:01:15' or '2 min'."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = re.fullmatch(rf"\s*({_TIME}){_UNIT}\s*", str(text), re.IGNORECASE)
    if not match:
        return None
    factor = _unit_factor(match.group(2))
    if factor is None:
        return None
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds * (factor if ":" not in match.group(1) else 1.0)


def _range_seconds(match: re.Match) -> tuple[float, float] | None:
    """A matched 'start [unit] - end [unit]' in seconds; a unit stated once applies to both."""
    first, first_unit, second, second_unit = match.groups()
    f1, f2 = _unit_factor(first_unit), _unit_factor(second_unit)
    if f1 is None or f2 is None:
        return None
    if not _has_unit(first_unit):
        f1 = f2
    s, e = parse_timestamp(first), parse_timestamp(second)
    if s is None or e is None:
        return None
    return (s * (f1 if ":" not in first else 1.0), e * (f2 if ":" not in second else 1.0))


Span = tuple[float, float]


def _span_list(value: Any) -> list[Span] | None:
    """Spans from decoded JSON: [s, e], [[s, e], ...], {"start_s", "end_s"} or {"spans": ...}."""
    if isinstance(value, dict):
        if "spans" in value:
            return _span_list(value["spans"])
        start = value.get("start_s", value.get("start"))
        end = value.get("end_s", value.get("end"))
        if start is None or end is None:
            return None
        s, e = parse_timestamp(start), parse_timestamp(end)
        return None if s is None or e is None else [(s, e)]
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(not isinstance(v, (list, tuple, dict)) for v in value):
            s, e = parse_timestamp(value[0]), parse_timestamp(value[1])
            return None if s is None or e is None else [(s, e)]
        spans: list[Span] = []
        for item in value:
            inner = _span_list(item)
            if inner is None:
                return None
            spans.extend(inner)
        return spans
    return None


def parse_spans(prediction: Any) -> list[Span]:
    """Time spans (seconds) a prediction states; empty when none can be read, or when one of
    them is stated in a unit that is not a unit of time ("10-20 frames")."""
    if not isinstance(prediction, str):
        spans = _span_list(prediction) or []
    else:
        answer = extract_answer(prediction)
        spans = []
        stripped = answer.strip()
        if stripped[:1] in "[{":
            try:
                spans = _span_list(json.loads(stripped)) or []
            except json.JSONDecodeError:
                spans = []
        if not spans:
            for match in _RANGE.finditer(answer):
                span = _range_seconds(match)
                if span is None:
                    return []
                spans.append(span)
    return [(s, e) for s, e in spans if math.isfinite(s) and math.isfinite(e) and e > s >= 0]


def _union(spans: Sequence[Span]) -> list[Span]:
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _length(spans: Sequence[Span]) -> float:
    return sum(e - s for s, e in spans)


def _intersection(a: Sequence[Span], b: Sequence[Span]) -> float:
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0.0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _iou(predicted: Sequence[Span], expected: Sequence[Span]) -> float:
    inter = _intersection(predicted, expected)
    union = _length(predicted) + _length(expected) - inter
    return inter / union if union > 0 else 0.0


def temporal_iou(prediction: Any, truth: Any) -> float:
    """IoU between the union of predicted spans and the union of true spans; chance-corrected
    when the truth states the media's `duration_s` (the whole video scores 0)."""
    predicted = _union(parse_spans(prediction))
    expected = _union(_span_list(truth) or [])
    if not predicted or not expected:
        return 0.0
    iou = _iou(predicted, expected)
    duration = truth.get("duration_s") if isinstance(truth, dict) else None
    if not duration:
        return iou
    blind = _iou([(0.0, float(duration))], expected)
    return max(0.0, (iou - blind) / (1.0 - blind)) if blind < 1.0 else iou


# --------------------------------------------------------------------------- dispatcher

REWARD_RULES: dict[str, Callable[[Any, Any], float]] = {
    "exact": exact_match,
    "choice": choice_match,
    "order": kendall_tau_score,
    "order_exact": order_exact,
    "temporal_iou": temporal_iou,
}


def _decode_truth(rule: str, ground_truth: Any) -> Any:
    """Stored ground truth is JSON text; decode it unless it is already a value."""
    if not isinstance(ground_truth, str):
        return ground_truth
    try:
        return json.loads(ground_truth)
    except json.JSONDecodeError:
        if rule in ("order", "order_exact"):
            return parse_order(ground_truth)
        if rule == "temporal_iou":
            return parse_spans(ground_truth)
        return ground_truth


def score(rule: str, prediction: Any, ground_truth: Any) -> float:
    """Reward in [0, 1] for `prediction` under `rule`; unparseable predictions score 0."""
    if rule not in REWARD_RULES:
        raise ValueError(f"unknown reward rule {rule!r}; expected one of {sorted(REWARD_RULES)}")
    truth = _decode_truth(rule, ground_truth)
    try:
        value = REWARD_RULES[rule](prediction, truth)
    except (TypeError, ValueError, KeyError, IndexError):
        return 0.0
    return min(1.0, max(0.0, float(value)))
