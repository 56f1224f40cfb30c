"""Reward rules on known cases: what earns full, partial and no credit."""

import subprocess
import sys

import pytest

from vidcorpus.tasks.rewards import (
    REWARD_RULES,
    extract_answer,
    kendall_tau_score,
    parse_choice,
    parse_order,
    parse_spans,
    parse_timestamp,
    score,
    temporal_iou,
)

OPTIONS = ["a cat sleeps", "the dog runs", "a bird sings", "rain falls"]


@pytest.mark.parametrize("prediction, truth, expected", [
    ("banana", "BANANA", 1.0),
    ("  The Banana. ", "banana", 1.0),
    ("Answer: banana", "banana", 1.0),
    ("<think>maybe apple</think><answer>Banana</answer>", "banana", 1.0),
    ("\\boxed{banana}", "banana", 1.0),
    ("apple", "banana", 0.0),
    ("banana split", "banana", 0.0),
    ("", "banana", 0.0),
    ("3", 3, 1.0),
    ("3.0", "3", 1.0),
    ("Three.", 3, 1.0),
    ("The answer is 3.", 3, 1.0),
    ("4", 3, 0.0),
    ("3 or 4", 3, 0.0),
    ("4821", "4821", 1.0),
    ("4,821", "4821", 1.0),
])
def test_exact(prediction, truth, expected):
    assert score("exact", prediction, truth) == expected


@pytest.mark.parametrize("prediction, expected", [
    ("B", 1.0),
    ("(B)", 1.0),
    ("B) the dog runs", 1.0),
    ("B. the dog runs", 1.0),
    ("the dog runs", 1.0),
    ("The Dog Runs!", 1.0),
    ("Option B", 1.0),
    ("The answer is B.", 1.0),
    ("A cat sleeps", 0.0),  # option A's text, not the letter B (nor the letter A by accident)
    ("A", 0.0),
    ("E", 0.0),
    ("a bird", 0.0),
    ("", 0.0),
])
def test_choice(prediction, expected):
    assert score("choice", prediction, {"answer": "B", "options": OPTIONS}) == expected


def test_choice_reads_option_text_even_when_it_starts_like_a_letter():
    assert parse_choice("A cat sleeps", OPTIONS) == "A"
    assert score("choice", "A cat sleeps", {"answer": "A", "options": OPTIONS}) == 1.0


def test_choice_accepts_bare_letter_truth_and_json_text():
    assert score("choice", "c", "C") == 1.0  # a lone letter in any case
    assert score("choice", "c) rain", "C") == 0.0  # but in a sentence only capitals are letters
    assert score("choice", "C", "C") == 1.0
    assert score("choice", "B", '{"answer": "B", "options": ["x", "y"]}') == 1.0


@pytest.mark.parametrize("prediction", ["[3, 1, 2]", "3, 1, 2", "3 1 2", "3 > 1 > 2", "3 -> 1 -> 2",
                                        "Clip 3, Clip 1, Clip 2", "Answer: [3,1,2]"])
def test_order_parsing_forms(prediction):
    assert parse_order(prediction) == [3, 1, 2]
    assert score("order", prediction, [3, 1, 2]) == 1.0
    assert score("order_exact", prediction, [3, 1, 2]) == 1.0


def test_order_kendall_partial_credit():
    truth = [1, 2, 3, 4]
    assert score("order", "[1, 2, 3, 4]", truth) == 1.0
    assert score("order", "[4, 3, 2, 1]", truth) == 0.0
    assert score("order", "[2, 1, 3, 4]", truth) == pytest.approx(5 / 6)  # one discordant pair of six
    assert score("order_exact", "[2, 1, 3, 4]", truth) == 0.0
    assert score("order", "[1, 2, 3]", truth) == pytest.approx(3 / 6)  # pairs with the missing 4 are wrong
    assert score("order", "[1, 1, 2, 3, 4]", truth) == 0.0  # an item named twice is a hedge
    assert score("order", "no idea", truth) == 0.0


def test_order_of_words_is_case_insensitive():
    truth = '["APPLE", "RIVER", "STONE"]'
    assert score("order", "apple, river, stone", truth) == 1.0
    assert score("order", "river, apple, stone", truth) == pytest.approx(2 / 3)
    assert kendall_tau_score(["stone", "river", "apple"], ["APPLE", "RIVER", "STONE"]) == 0.0


@pytest.mark.parametrize("text, seconds", [
    ("75", 75.0), ("75.5s", 75.5), ("01:15", 75.0), ("1:15.5", 75.5), ("00:01:15", 75.0), ("12 seconds", 12.0),
])
def test_timestamps(text, seconds):
    assert parse_timestamp(text) == seconds


@pytest.mark.parametrize("prediction, spans", [
    ("12.5-20.0 seconds", [(12.5, 20.0)]),
    ("from 00:12 to 00:20", [(12.0, 20.0)]),
    ("between 1:02.5 and 1:10", [(62.5, 70.0)]),
    ("12.5s - 20s", [(12.5, 20.0)]),
    ("[12.5, 20.0]", [(12.5, 20.0)]),
    ("[[1, 2], [5, 6]]", [(1.0, 2.0), (5.0, 6.0)]),
    ('{"start_s": 3, "end_s": 4}', [(3.0, 4.0)]),
    ("1-2 seconds, 5-6 seconds", [(1.0, 2.0), (5.0, 6.0)]),
    ("The needle is shown from 4 to 7 seconds in the 60 second video.", [(4.0, 7.0)]),
    ("20-12", []),  # reversed spans are not answers
    ("somewhere in the middle", []),
])
def test_span_parsing(prediction, spans):
    assert parse_spans(prediction) == spans


def test_temporal_iou_values():
    assert temporal_iou("10-20", [[10, 20]]) == 1.0
    assert temporal_iou("10-20", [[15, 25]]) == pytest.approx(5 / 15)
    assert temporal_iou("0-5", [[10, 20]]) == 0.0
    assert temporal_iou("0-20", [10, 20]) == pytest.approx(0.5)
    # several spans compare as unions: one right and one wrong span halves the credit
    assert temporal_iou("1-2, 5-6", [[1, 2], [5, 6]]) == 1.0
    assert temporal_iou("1-2, 7-8", [[1, 2], [5, 6]]) == pytest.approx(1 / 3)
    # overlapping predicted spans are merged, not double counted
    assert temporal_iou("[[10, 15], [12, 20]]", [[10, 20]]) == 1.0


def test_score_dispatch_and_failures():
    assert set(REWARD_RULES) == {"exact", "choice", "order", "order_exact", "temporal_iou"}
    with pytest.raises(ValueError):
        score("bleu", "a", "a")
    for rule in REWARD_RULES:
        for junk in (None, "", "??", 17, ["x"], {"a": 1}):
            value = score(rule, junk, '[[1, 2], [3, 4]]' if rule == "temporal_iou" else '[1, 2]')
            assert 0.0 <= value <= 1.0


def test_extract_answer_prefers_final_tagged_answer():
    assert extract_answer("I think 3. <answer>4</answer>") == "4"
    assert extract_answer("Reasoning... Final answer: 12-14") == "12-14"
    assert extract_answer("it was answered before") == "it was answered before"


def test_rewards_import_without_third_party_packages():
    """A trainer can copy rewards.py anywhere: it needs only the standard library."""
    code = (
        "import sys, importlib.util\n"
        "sys.modules['numpy'] = None; sys.modules['pydantic'] = None\n"
        "spec = importlib.util.spec_from_file_location('rewards', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.score('temporal_iou', 'from 00:12 to 00:20', [[12, 20]]) == 1.0\n"
    )
    import vidcorpus.tasks.rewards as rewards
    subprocess.run([sys.executable, "-c", code, rewards.__file__], check=True)


def test_normalised_text_is_the_same_on_the_ascii_shortcut_and_the_unicode_path():
    """ASCII text takes a faster path; it must agree with the Unicode rules (NFKC, casefold,
    categories P and S to spaces) for every character, alone and between words."""
    import unicodedata

    from vidcorpus.tasks.rewards import normalize_text

    for code in range(128):
        ch = chr(code)
        spaced = " " if unicodedata.category(ch).startswith(("P", "S")) else ch.lower()
        expected = " ".join(w for w in f"x{spaced}y".split() if w not in ("a", "an", "the"))
        assert normalize_text(f"X{ch}Y") == expected, repr(ch)
    assert normalize_text("Ｔｈｅ Café—Noir!") == normalize_text("the cafe noir") == "cafe noir"
