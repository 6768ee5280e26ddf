"""An English text corpus that exists on every machine, and character-level encoding helpers.

The corpus is the prose of the Python Language Reference that ships *inside Python itself*
(``pydoc_data.topics``, the text behind ``help("for")``): about 117,000 characters with Python 3.11, no download,
no extra package. Only its running-text paragraphs are kept (no grammar rules, code or tables),
curly quotes and dashes are mapped to ASCII, and the text is lower-cased, giving a small
vocabulary (about 50 characters). It changes only when the Python version changes, so a lesson
should check thresholds on it (e.g. "loss below the unigram baseline"), never exact values.
"""
from __future__ import annotations

import re

import numpy as np

ASCII = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
         "\u2026": "..."}
KEEP = re.compile(r"[^a-z0-9 .,;:'\"()\-\n]")


def corpus(max_chars: int | None = None) -> str:
    """The prose paragraphs of Python's built-in help topics, one paragraph per line.

    Deterministic for a given Python version (the topics are sorted by name). ``max_chars`` cuts
    the text (at a paragraph end) to keep small experiments small.
    """
    from pydoc_data.topics import topics
    paragraphs = []
    for name in sorted(topics):
        for block in re.split(r"\n\s*\n", topics[name]):
            lines = block.strip("\n").split("\n")
            # running text starts at the margin with a letter; skip headings (underlined by *, =, -)
            if len(lines) >= 2 and all(line[:1].isalpha() for line in lines):
                paragraphs.append(" ".join(line.strip() for line in lines))
    text = "\n".join(paragraphs)
    for fancy, plain in ASCII.items():
        text = text.replace(fancy, plain)
    text = KEEP.sub("", text.lower())
    text = re.sub(r" +", " ", text)
    if max_chars is not None and len(text) > max_chars:
        text = text[:text.rfind("\n", 0, max_chars) + 1 or max_chars]
    return text


class CharCodec:
    """Maps characters to integer ids and back; the vocabulary is the sorted set of ``text``."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids, shape (len(text),); raises KeyError naming a character not in the vocabulary."""
        try:
            return np.array([self.index[ch] for ch in text], dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"character {err.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).ravel())


def windows(ids: np.ndarray, length: int, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Next-character training pairs: x = ids[s:s+length], y = ids[s+1:s+length+1].

    Windows start every ``step`` characters (default: ``length``, i.e. non-overlapping).
    Returns two int64 arrays of shape (n_windows, length).
    """
    ids = np.asarray(ids, dtype=np.int64)
    step = step or length
    starts = np.arange(0, len(ids) - length, step)
    x = np.stack([ids[s:s + length] for s in starts])
    y = np.stack([ids[s + 1:s + length + 1] for s in starts])
    return x, y


def unigram_bits(ids: np.ndarray, vocab: int) -> float:
    """Entropy (bits per character) of the character frequencies: the loss of a model with no context."""
    p = np.bincount(np.asarray(ids).ravel(), minlength=vocab) / np.size(ids)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


# Sentence classification: which part of the standard library does a docstring sentence come from?
SOURCES = {
    "mail": ("email", "smtplib", "mailbox", "imaplib", "poplib"),
    "web": ("http", "urllib", "html", "wsgiref", "xmlrpc"),
    "testing": ("unittest", "doctest", "pdb", "bdb"),
    "concurrency": ("asyncio", "concurrent", "threading", "multiprocessing", "queue"),
}
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _docstrings(module: str) -> list[str]:
    # Docstrings of a stdlib module or package (module, classes, functions), read with ast: nothing is imported.
    import ast
    import os
    from pathlib import Path

    root = Path(os.__file__).parent / module
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]
    found = []
    for path in files:
        inside = path.relative_to(root.parent).parts[1:]
        if not path.is_file() or any(part.startswith("test") for part in inside):
            continue  # the packages' own test suites are not documentation
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    found.append(doc)
    return found


def _sentences(doc: str) -> list[str]:
    # Prose sentences (>= 5 words, ending in '.') as lower-case words joined by single spaces.
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.strip().split("\n")
        if any(line.startswith((" ", "\t", ">>>")) for line in lines):
            continue  # code examples, indented tables and argument lists
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(line.strip() for line in lines)):
            words = WORD.findall(sentence.lower())
            if len(words) >= 5 and sentence.rstrip().endswith("."):
                out.append(" ".join(words))
    return out


def docstring_sentences(sources: dict[str, tuple[str, ...]] | None = None):
    """Sentences from the standard library's docstrings, labelled by the part of the library they document.

    Returns ``(sentences, labels, names)``: a list of str (lower-case words separated by single
    spaces, so ``s.split()`` tokenises), an int64 array of class ids and the tuple of class names
    (default ``SOURCES``: mail, web, testing, concurrency; a few hundred to a thousand sentences
    each). The source files are parsed, not imported, so no module is loaded. Each sentence appears
    once; a sentence found under two classes is dropped (its label would be ambiguous). Sorted, so
    deterministic for a given Python version; the counts change with the version.
    """
    sources = SOURCES if sources is None else sources
    names = tuple(sources)
    found: dict[str, set[int]] = {}
    for label, name in enumerate(names):
        for module in sources[name]:
            for doc in _docstrings(module):
                for sentence in _sentences(doc):
                    found.setdefault(sentence, set()).add(label)
    kept = sorted((s, labels.pop()) for s, labels in found.items() if len(labels) == 1)
    return [s for s, _ in kept], np.array([label for _, label in kept], dtype=np.int64), names
