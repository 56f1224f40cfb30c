"""Reward rules against adversarial model outputs: hedges, paraphrases, self-corrections and
formats. Each row is (rule, model output, ground truth, expected reward); the properties below
check that answers naming every option, or every order, or covering the whole video, never
beat a blind guess."""

import itertools
import random

import pytest

from vidcorpus.tasks.rewards import score

OPTIONS = ["a dog barks at the door", "the cat is sleeping on a sofa", "a bird sings in a tree", "rain falls on a car"]
CHOICE = {"answer": "B", "options": OPTIONS}
WORDS = ["LADDER", "PIANO", "NAPKIN"]
SPAN = {"spans": [[12.5, 20.0]], "duration_s": 1800.0}
SHORT = {"spans": [[12.0, 14.0]], "duration_s": 30.0}

CASES = [
    # choice: one letter, in any of its usual forms
    ("choice", "B", CHOICE, 1.0),
    ("choice", "(B)", CHOICE, 1.0),
    ("choice", "[B]", CHOICE, 1.0),
    ("choice", "B.", CHOICE, 1.0),
    ("choice", "**B**", CHOICE, 1.0),
    ("choice", "Ｂ", CHOICE, 1.0),  # full-width
    ("choice", "The correct option is B", CHOICE, 1.0),
    ("choice", "I'd say b.", CHOICE, 1.0),
    ("choice", "Answer: B", CHOICE, 1.0),
    ("choice", "\\boxed{B}", CHOICE, 1.0),
    ("choice", "\\boxed{\\text{B}}", CHOICE, 1.0),
    ("choice", "<think>A looks right... no</think><answer>B</answer>", CHOICE, 1.0),
    ("choice", "Option A shows a dog, option B a cat.\nB", CHOICE, 1.0),  # last line is the answer
    ("choice", "B) the cat is sleeping on a sofa", CHOICE, 1.0),
    ("choice", "C. Plan B fails", {"answer": "C", "options": ["x", "y", "Plan B fails", "z"]}, 1.0),
    ("choice", "Plan B fails", {"answer": "C", "options": ["x", "y", "Plan B fails", "z"]}, 1.0),
    # choice: the option's own text or a paraphrase of it
    ("choice", "the cat is sleeping on a sofa", CHOICE, 1.0),
    ("choice", "A cat sleeps on the sofa", CHOICE, 1.0),  # paraphrase of B, not letter A
    ("choice", "A cat sleeps", CHOICE, 1.0),
    ("choice", "a sleeping cat", CHOICE, 1.0),
    ("choice", "A dog barks", CHOICE, 0.0),  # paraphrase of A
    # choice: self-corrections keep the last word
    ("choice", "A. Wait, actually it's B.", CHOICE, 1.0),
    ("choice", "B. Wait, actually it's D.", CHOICE, 0.0),
    ("choice", "I think A. On second thought, B", CHOICE, 1.0),
    # choice: hedges name several options and earn nothing
    ("choice", "A B C D", CHOICE, 0.0),
    ("choice", "A or B", CHOICE, 0.0),
    ("choice", "B or C", CHOICE, 0.0),
    ("choice", "A, B, C or D", CHOICE, 0.0),
    ("choice", "B and D", CHOICE, 0.0),
    ("choice", "either B or the dog barks", CHOICE, 0.0),
    ("choice", "B. a bird sings in a tree", CHOICE, 0.0),  # label and text disagree
    ("choice", "\\boxed{B, C}", CHOICE, 0.0),
    ("choice", "ABCD", CHOICE, 0.0),
    ("choice", "", CHOICE, 0.0),
    ("choice", "E", CHOICE, 0.0),
    ("choice", "cat or dog", CHOICE, 0.0),
    # exact: numbers and words
    ("exact", "3", 3, 1.0),
    ("exact", "Three", 3, 1.0),
    ("exact", "３", 3, 1.0),
    ("exact", "There are 3 words.", 3, 1.0),
    ("exact", "2. Wait, actually 3.", 3, 1.0),
    ("exact", "3 or 4", 3, 0.0),
    ("exact", "between 2 and 5", 3, 0.0),
    ("exact", "1, 2, 3, 4, 5", 3, 0.0),
    ("exact", "Answer: PIANO", "PIANO", 1.0),
    ("exact", "ｐｉａｎｏ", "PIANO", 1.0),
    ("exact", "PIANO or LADDER", "PIANO", 0.0),
    ("exact", "PIANO LADDER NAPKIN", "PIANO", 0.0),
    # order: labels, lists, the items' own words
    ("order", "[3, 1, 2]", [3, 1, 2], 1.0),
    ("order", "order: 3,1,2", [3, 1, 2], 1.0),
    ("order", "Clip 3, Clip 1, Clip 2", [3, 1, 2], 1.0),
    ("order", "1. Clip 3\n2. Clip 1\n3. Clip 2", [3, 1, 2], 1.0),
    ("order", "3 → 1 → 2", [3, 1, 2], 1.0),
    ("order", "\\boxed{[3,1,2]}", [3, 1, 2], 1.0),
    ("order", "[3, 2, 1]", [3, 1, 2], 2 / 3),
    ("order", "[3, 1, 2] or [1, 2, 3]", [3, 1, 2], 0.0),
    ("order", "[3, 3, 1, 2]", [3, 1, 2], 0.0),
    ("order", "LADDER PIANO NAPKIN", WORDS, 1.0),
    ("order", "ladder, piano, napkin", WORDS, 1.0),
    ("order", "1. LADDER\n2. PIANO\n3. NAPKIN", WORDS, 1.0),
    ("order", "First LADDER, then PIANO, and finally NAPKIN.", WORDS, 1.0),
    ("order", "NAPKIN PIANO LADDER", WORDS, 0.0),
    ("order", "LADDER PIANO NAPKIN or NAPKIN PIANO LADDER", WORDS, 0.0),
    ("order", "LADDER", WORDS, 0.0),
    ("order_exact", "order: 3,1,2", [3, 1, 2], 1.0),
    ("order_exact", "[1, 3, 2]", [3, 1, 2], 0.0),
    # temporal IoU: units converted, unparseable spans rejected, the whole video worth nothing
    ("temporal_iou", "12.5-20 s", SPAN, 1.0),
    ("temporal_iou", "12.5 - 20 seconds", SPAN, 1.0),
    ("temporal_iou", "from 00:00:12.5 to 00:00:20", SPAN, 1.0),
    ("temporal_iou", "0:12.5-0:20", SPAN, 1.0),
    ("temporal_iou", "12500 ms - 20000 ms", SPAN, 1.0),
    ("temporal_iou", "12.5 - 20 min", SPAN, 0.0),  # minutes, not seconds
    ("temporal_iou", "12.5 - 20 min", {"spans": [[750, 1200]], "duration_s": 1800.0}, 1.0),
    ("temporal_iou", "0.5-1 hours", {"spans": [[1800, 3600]], "duration_s": 7200.0}, 1.0),
    ("temporal_iou", "frames 375-600", SPAN, 0.0),
    ("temporal_iou", "375-600 frames", SPAN, 0.0),
    ("temporal_iou", "around the middle", SPAN, 0.0),
    ("temporal_iou", "20-12.5", SPAN, 0.0),
    ("temporal_iou", "0-1800", SPAN, 0.0),  # the whole video
    ("temporal_iou", "0-30 s", SHORT, 0.0),
    ("temporal_iou", "0-15, 15-30", SHORT, 0.0),  # covering it piecewise
    ("temporal_iou", "10-16", SHORT, pytest.approx((2 / 6 - 2 / 30) / (1 - 2 / 30))),
    ("temporal_iou", "12-14. Wait, actually 20-22.", SHORT, 0.0),
]


@pytest.mark.parametrize("rule, output, truth, expected", CASES, ids=[f"{c[0]}:{c[1][:40]!r}" for c in CASES])
def test_adversarial_output(rule, output, truth, expected):
    assert score(rule, output, truth) == pytest.approx(expected)


def test_the_table_is_large_enough():
    assert len(CASES) >= 60


def _hedges(options: list[str]) -> list[str]:
    letters = "ABCDEFGH"[:len(options)]
    return [" ".join(letters), ", ".join(letters), " or ".join(letters), "/".join(letters), "".join(letters),
            "\n".join(letters), " or ".join(options), "; ".join(options), f"\\boxed{{{','.join(letters)}}}",
            "Any of " + ", ".join(letters)]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8])
def test_naming_every_option_never_beats_chance(n):
    rng = random.Random(n)
    options = [" ".join(rng.sample(["red", "car", "dog", "tree", "boat", "cup", "hat", "sun", "lamp", "road",
                                    "fish", "door"], 3)) for _ in range(n)]
    for answer in "ABCDEFGH"[:n]:
        truth = {"answer": answer, "options": options}
        for hedge in _hedges(options):
            assert score("choice", hedge, truth) < 1.0 / n, hedge


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_naming_several_orders_never_beats_chance(k):
    for truth in itertools.permutations(range(1, k + 1)):
        every = [list(p) for p in itertools.permutations(range(1, k + 1))][:6]
        hedges = [" or ".join(str(p) for p in every), "\n".join(f"Option: {p}" for p in every),
                  str([i for p in every for i in p])]
        for hedge in hedges:
            assert score("order", hedge, list(truth)) == 0.0, hedge


@pytest.mark.parametrize("duration, needle_s", [(30.0, 1.0), (30.0, 3.0), (60.0, 2.0), (300.0, 4.0)])
def test_covering_the_whole_video_never_beats_chance(duration, needle_s):
    rng = random.Random(int(duration * needle_s))
    for _ in range(50):
        start = round(rng.uniform(0, duration - needle_s), 2)
        truth = {"spans": [[start, start + needle_s]], "duration_s": duration}
        pieces = [[i * duration / 10, (i + 1) * duration / 10] for i in range(10)]
        blind = [f"0-{duration}", f"from 0:00 to {int(duration // 60)}:{int(duration % 60):02d}", str(pieces),
                 f"0-{duration / 2}, {duration / 2}-{duration}", f"0-{duration * 2}"]
        for answer in blind:
            assert score("temporal_iou", answer, truth) == 0.0, answer
        assert score("temporal_iou", f"{start}-{start + needle_s}", truth) == pytest.approx(1.0)
