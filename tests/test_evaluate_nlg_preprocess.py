"""Text protocols: R2Gen cleaning (examples worked by hand from its definition) and the COCO PTB tokenizer."""

from __future__ import annotations

import pytest

from radscribe.evaluate import MetricUnavailable
from radscribe.evaluate.preprocess import (
    R2GenProtocol,
    WhitespaceProtocol,
    clean_report_r2gen,
    get_protocol,
    r2gen_vocabulary,
)


@pytest.mark.parametrize(
    ("report", "cleaned"),
    [
        # Sentence-final periods stay as separate "." tokens.
        ("The heart is normal. No effusion.", "the heart is normal . no effusion ."),
        # List numbering goes.
        ("1. Heart normal. 2. No effusion.", "heart normal . no effusion ."),
        # Decimal points are deleted (1.2 -> 12); hyphens survive because "-" only forms the :-[ range.
        ("Nodule 1.2 cm, left-sided (stable).", "nodule 12 cm left-sided stable ."),
        # The :-[ range also deletes < = > ? @; quotes and slashes go before the regex.
        ('SpO2 >95% @ rest; "clear" lungs/pleura.', "spo2 95  rest clear lungspleura ."),
        ("Normal.. Clear.", "normal . clear ."),
        ("Calcified granuloma [RUL]: unchanged!", "calcified granuloma rul unchanged ."),
        ("", " ."),
    ],
)
def test_r2gen_cleaning(report, cleaned):
    assert clean_report_r2gen(report) == cleaned
    assert clean_report_r2gen(report, "iu_xray") == cleaned


def test_r2gen_variants_differ_on_newlines():
    report = "Heart normal.\nLungs clear."
    assert clean_report_r2gen(report, "mimic_cxr") == "heart normal . lungs clear ."
    # The IU X-ray cleaner does not turn newlines into spaces, so no ". " split happens there.
    assert clean_report_r2gen(report, "iu_xray") == "heart normal\nlungs clear ."
    with pytest.raises(ValueError, match="unknown R2Gen cleaning variant"):
        clean_report_r2gen(report, "chexpert")


def test_r2gen_vocabulary_unk_and_reference_truncation():
    vocabulary = r2gen_vocabulary(["a b. a c.", "a d."], threshold=2)
    assert vocabulary == {"a", "."}
    protocol = R2GenProtocol(vocabulary=vocabulary, max_reference_tokens=3)
    assert protocol.name == "r2gen+unk2+max3"
    refs, hyps = protocol.prepare([["a b c d."]], ["a b c d."])
    assert refs == [[["a", "<unk>", "<unk>"]]]
    assert hyps == [["a", "<unk>", "<unk>", "<unk>", "."]]


def test_prepare_keeps_several_references_per_sample_in_order():
    refs, hyps = WhitespaceProtocol().prepare([["a b", "c"], ["d"]], ["x", "y z"])
    assert refs == [[["a", "b"], ["c"]], [["d"]]]
    assert hyps == [["x"], ["y", "z"]]


def test_get_protocol_by_name_and_errors():
    assert get_protocol("r2gen", variant="iu_xray").name == "r2gen-iu"
    assert get_protocol("whitespace").tokenize(["a  b\tc"]) == [["a", "b", "c"]]
    with pytest.raises(KeyError, match="known: coco-ptb, r2gen, whitespace"):
        get_protocol("bpe")


def test_coco_ptb_tokenizer_quirks():
    try:
        protocol = get_protocol("coco-ptb")
    except MetricUnavailable as error:
        pytest.skip(str(error))
    tokens = protocol.tokenize(["Heart size (stable) is normal. 1.2 cm left-sided nodule.", "", "No effusion\u2028or edema."])
    # Punctuation removed, parentheses kept as -lrb-/-rrb-, decimals and hyphenated words whole.
    assert tokens[0] == ["heart", "size", "-lrb-", "stable", "-rrb-", "is", "normal", "1.2", "cm", "left-sided", "nodule"]
    assert tokens[1] == []
    # A Unicode line separator must not shift the line-aligned jar output onto another text.
    assert tokens[2] == ["no", "effusion", "or", "edema"]
