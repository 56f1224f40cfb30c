"""Reward rules for tasks whose answers are known by construction.

Plain functions over plain values so an RL trainer can import this file on its own
(standard library only). Every rule returns a float in [0, 1] and never raises on a
malformed prediction: an answer that cannot be parsed earns 0.

Rules (the names stored in the `reward_rule` column of the `rl` table):

- ``exact``        normalised text or number equality ("Three" == 3, "the Banana." == "banana")
- ``choice``       multiple choice; the prediction may give the letter ("B", "(B)", "B) the dog")
                   or the option text; ground truth ``{"answer": "B", "options": [...]}`` or a letter
- ``order``        Kendall tau between predicted and true order, scaled to [0, 1]
                   (1 = identical order, 0 = reversed or nothing parseable)
- ``order_exact``  1 only when the whole order is right
- ``temporal_iou`` intersection over union of time spans (seconds); several spans on either
                   side are compared as unions ("12.5-20.0 seconds", "from 00:12 to 00:20",
                   "[[1, 2], [5, 6]]")

Use :func:`score` as the single entry point: ``score(rule, prediction, ground_truth)``.
Ground truth may be given as the stored JSON string or as the decoded value.

Predictions from reasoning models are reduced to their final answer first: the content of
``<answer>...</answer>``, ``\\boxed{...}`` or the text after the last "Answer:" wins.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any, Callable, Sequence

__all__ = [
    "REWARD_RULES",
    "choice_match",
    "exact_match",
    "extract_answer",
    "kendall_tau_score",
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
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_PREFIX = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is\s*)?[:：]\s*|\bthe\s+(?:final\s+)?answer\s+is\b\s*:?\s*",
    re.IGNORECASE,
)


def extract_answer(text: Any) -> str:
    """Reduce a model output to its final answer (tagged, boxed or after 'Answer:')."""
    if text is None:
        return ""
    if not isinstance(text, str):
        return json.dumps(text) if isinstance(text, (list, dict)) else str(text)
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        return tagged[-1].strip()
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    prefixed = list(_ANSWER_PREFIX.finditer(text))
    if prefixed:
        tail = text[prefixed[-1].end():].strip()
        if tail:
            return tail
    return text.strip()


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
    """Case-, accent-, punctuation- and article-insensitive form of a short answer."""
    text = unicodedata.normalize("NFKC", str(text)).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)
    words = [w for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


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
    """1 when the normalised prediction equals the truth (numbers compared as numbers)."""
    answer = extract_answer(prediction)
    if _is_numeric_truth(truth):
        number = parse_number(answer)
        expected = float(truth)
        return float(number is not None and math.isclose(number, expected, rel_tol=1e-6, abs_tol=1e-9))
    norm_answer = normalize_text(answer)
    return float(bool(norm_answer) and norm_answer == normalize_text(truth))


# --------------------------------------------------------------------------- multiple choice

_LETTER_FORMS = [
    re.compile(r"^\(?([A-Z])\)?(?:[.):\]]|\s|$)"),                 # "B", "(B)", "B) dog", "B. dog"
    re.compile(r"^\[([A-Z])\]"),                                   # "[B]"
    re.compile(r"\b(?:option|choice|letter)\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE),
    re.compile(r"\banswer\s+is\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE),
]


def _letters(n: int) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]


def parse_choice(prediction: Any, options: Sequence[str] | None = None) -> str | None:
    """The option letter a prediction picks, from a letter form or the option's text."""
    answer = extract_answer(prediction).strip().strip("*").strip()
    valid = _letters(len(options)) if options else _letters(26)
    if options:  # whole option text first, so "A cat sleeps" is not read as letter A
        norm = normalize_text(answer)
        hits = [i for i, option in enumerate(options) if normalize_text(option) == norm]
        if len(hits) == 1:
            return valid[hits[0]]
    alone = re.fullmatch(r"\(?([A-Za-z])\)?[.):]?", answer)  # a lone letter, any case: "c", "(c)"
    if alone and alone.group(1).upper() in valid:
        return alone.group(1).upper()
    for form in _LETTER_FORMS:
        match = form.search(answer)
        if match and match.group(1).upper() in valid:
            return match.group(1).upper()
    return None


def choice_match(prediction: Any, truth: Any) -> float:
    """1 when the prediction picks the right option (by letter or by option text)."""
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
    answer = extract_answer(prediction).strip()
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


def _dedupe(items: Sequence[Any]) -> list[Any]:
    seen: set = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def order_exact(prediction: Any, truth: Sequence[Any]) -> float:
    """1 when the predicted order equals the true order item for item."""
    return float(parse_order(prediction) == [_order_item(v) for v in truth])


def kendall_tau_score(prediction: Any, truth: Sequence[Any]) -> float:
    """Share of item pairs put in the right relative order: (tau + 1) / 2 over the true items.

    A pair counts as wrong when either item is missing from the prediction, so leaving
    items out cannot earn credit; repeated items keep their first position.
    """
    expected = [_order_item(v) for v in truth]
    if len(expected) < 2:
        return order_exact(prediction, truth)
    position = {item: i for i, item in enumerate(_dedupe(parse_order(prediction)))}
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
_UNIT = r"(?:\s*(?:s|sec|secs|second|seconds)\b)?"
_RANGE = re.compile(
    rf"({_TIME}){_UNIT}\s*(?:-|–|—|~|\bto\b|\buntil\b|\btill\b|\band\b|,)\s*({_TIME}){_UNIT}",
    re.IGNORECASE,
)


def parse_timestamp(text: Any) -> float | None:
    """Seconds from '75', '75.5s', '01:15', '1:15.5' or '00:01:15'."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = re.fullmatch(rf"\s*({_TIME}){_UNIT}\s*", str(text), re.IGNORECASE)
    if not match:
        return None
    seconds = 0.0
    for part in match.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


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
    """Time spans (seconds) a prediction states; empty when none can be read."""
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
                s, e = parse_timestamp(match.group(1)), parse_timestamp(match.group(2))
                if s is not None and e is not None:
                    spans.append((s, e))
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


def temporal_iou(prediction: Any, truth: Any) -> float:
    """IoU between the union of predicted spans and the union of true spans."""
    predicted = _union(parse_spans(prediction))
    expected = _union(_span_list(truth) or [])
    if not predicted or not expected:
        return 0.0
    inter = _intersection(predicted, expected)
    union = _length(predicted) + _length(expected) - inter
    return inter / union if union > 0 else 0.0


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
