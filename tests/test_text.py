"""course_utils.text: the offline corpus and the character codec."""
import numpy as np
import pytest

from course_utils.text import CharCodec, corpus, unigram_bits, windows


def test_corpus_is_deterministic_prose():
    text = corpus()
    assert text == corpus()
    assert len(text) > 50_000
    assert set(text) <= set("abcdefghijklmnopqrstuvwxyz0123456789 .,;:'\"()-\n")
    assert "the " in text and "statement" in text
    assert "  " not in text


def test_corpus_cut_ends_at_a_paragraph():
    short = corpus(max_chars=2000)
    assert len(short) <= 2000 and short.endswith("\n") and corpus().startswith(short)


def test_codec_round_trip_and_unknown_character():
    codec = CharCodec("hello world")
    assert len(codec) == 8 and codec.chars[0] == " "
    ids = codec.encode("low hello")
    assert ids.dtype == np.int64 and codec.decode(ids) == "low hello"
    with pytest.raises(KeyError, match="'z'"):
        codec.encode("zebra")


def test_windows_are_shifted_by_one():
    ids = np.arange(20)
    x, y = windows(ids, 5)
    assert x.shape == y.shape == (3, 5)
    assert np.array_equal(y, x + 1) and x[-1, -1] + 1 < 20
    x2, _ = windows(ids, 5, step=2)
    assert x2.shape == (8, 5) and x2[1, 0] == 2


def test_unigram_bits():
    assert unigram_bits(np.arange(8), 8) == pytest.approx(3.0)
    assert unigram_bits(np.zeros(10, dtype=int), 4) == 0.0


def test_docstring_sentences_are_labelled_unique_and_learnable_sized():
    from course_utils.text import SOURCES, docstring_sentences

    sentences, labels, names = docstring_sentences()
    assert names == tuple(SOURCES) and labels.dtype == np.int64 and len(labels) == len(sentences)
    assert len(set(sentences)) == len(sentences) and sentences == sorted(sentences)
    assert np.bincount(labels, minlength=len(names)).min() >= 300
    assert all(len(s.split()) >= 5 and s == " ".join(s.split()) and s == s.lower() for s in sentences)
    again, labels_again, _ = docstring_sentences()
    assert again == sentences and np.array_equal(labels_again, labels)


def test_docstring_sentences_drop_ambiguous_ones():
    from course_utils.text import docstring_sentences

    # the same package under two names: every sentence is ambiguous, so none is kept
    sentences, labels, names = docstring_sentences({"a": ("queue",), "b": ("queue",)})
    assert sentences == [] and len(labels) == 0 and names == ("a", "b")
    only, _, _ = docstring_sentences({"a": ("queue",)})
    assert 5 <= len(only) < 100
