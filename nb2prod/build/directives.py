"""The n2p words and their three spellings: one cell, one word, one meaning.

A cell says what nb2prod should do with it in any of three ways, all equivalent:

==================  ==========================  =========================================
spelling            example                     seen by
==================  ==========================  =========================================
cell magic          ``%%n2p model``             the kernel (after ``%load_ext nb2prod``)
comment directive   ``#| n2p: model``           the kernel with the extension loaded, and
                                                nb2prod (nbdev style; first line only)
cell tag            ``n2p-model``               nb2prod only: a kernel never sees metadata
==================  ==========================  =========================================

``nb2prod`` is accepted wherever ``n2p`` is (``%%nb2prod model``, ``#| nb2prod: model``,
``nb2prod-model``). A cell takes one word: the same word in several spellings is fine,
two different words are a conflict, reported with the cell's location.

The words are a registry (``WORDS``): the kernel (``magics.py``), the reader
(``notebook.py``), the extractor and the build's prepared copy (``execute.py``) all
look a word up here, so a new word is one entry, not an edit in four places.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from nb2prod.core.errors import MarkerError
from nb2prod.core.spec import KINDS

# The prefixes a spelling may use; ``n2p`` is the one we write in messages.
_PREFIX = r"(?:n2p|nb2prod)"
_MAGIC = re.compile(rf"^%%{_PREFIX}(?=\s|$)(.*)$")
_COMMENT = re.compile(rf"^#\|\s*{_PREFIX}\s*:(.*)$")
_TAG = re.compile(rf"^{_PREFIX}-(.+)$")
# What a skipped cell becomes in the build's prepared copy: the cell stays (so cell
# numbers in errors still match the user's notebook), its code does not run.
SKIPPED_SOURCE = "# nb2prod: this cell is skipped in builds and retrains (n2p skip)"


@dataclass(frozen=True)
class Word:
    """One n2p word: what it means, and whether a build runs the cell.

    ``marks`` names the marker the word applies to the cell's single function (the
    spelling of ``@n2p.<marks>``); ``exports`` sends every definition of the cell to the
    exported module; ``runs_at_build`` is False for ``skip``.
    """

    name: str
    help: str
    marks: str | None = None
    exports: bool = False
    runs_at_build: bool = True


WORDS: dict[str, Word] = {
    w.name: w
    for w in (
        Word(
            "export", "the cell's definitions go to the exported module, used or not", exports=True
        ),
        Word(
            "skip",
            "the cell does not run in build or retrain (plots, exploration)",
            runs_at_build=False,
        ),
        *(Word(kind, f"the cell's one function gets @n2p.{kind}", marks=kind) for kind in KINDS),
    )
}


@dataclass(frozen=True)
class Directive:
    """A cell's resolved word and every way the cell spelled it (for messages)."""

    word: Word
    spelled: tuple[str, ...]  # e.g. ("%%n2p model", "tag n2p-model")

    @property
    def name(self) -> str:
        """The word, e.g. ``"model"``."""
        return self.word.name

    def __str__(self) -> str:
        return self.spelled[0]


def valid_words() -> str:
    """``export, skip, model, fallback, guardrail, check``: for error messages."""
    return ", ".join(WORDS)


def word_named(text: str, spelled: str) -> Word:
    """The word ``text`` (one word, a trailing ``# comment`` allowed); else a ``MarkerError``
    that lists the valid words."""
    words = text.split("#", 1)[0].split()
    if len(words) != 1:
        found = "no word" if not words else f"{len(words)} words ({' '.join(words)})"
        raise MarkerError(
            f"{spelled} needs exactly one word, found {found}; valid words: {valid_words()}",
            fix="write one word, e.g. %%n2p export",
        )
    if words[0] not in WORDS:
        raise MarkerError(
            f"{spelled}: unknown word {words[0]!r}; valid words: {valid_words()}",
            fix=f"use one of: {valid_words()}",
        )
    return WORDS[words[0]]


def _first_line(lines: Sequence[str]) -> tuple[int, str]:
    return next(((i, ln.strip()) for i, ln in enumerate(lines) if ln.strip()), (0, ""))


def magic_line(source: str) -> str | None:
    """The ``%%n2p ...`` line if the cell starts with one (its first non-blank line)."""
    first = _first_line(source.splitlines())[1]
    return first if _MAGIC.match(first) else None


def _from_magic(lines: Sequence[str], tags: Iterable[str]) -> list[tuple[Word, str]]:
    first = _first_line(lines)[1]
    match = _MAGIC.match(first)
    return [(word_named(match.group(1), first), first)] if match else []


def _from_comment(lines: Sequence[str], tags: Iterable[str]) -> list[tuple[Word, str]]:
    first_index = _first_line(lines)[0]
    found = []
    for index, line in enumerate(lines):
        match = _COMMENT.match(line.strip())
        if not match:
            continue
        if index != first_index:  # a directive further down would be silently ignored
            raise MarkerError(
                f"{line.strip()!r} is not the cell's first line, and a directive only counts there",
                where=f"line {index + 1}",
                fix="move it to the first line of the cell",
            )
        found.append((word_named(match.group(1), line.strip()), line.strip()))
    return found


def _from_tags(lines: Sequence[str], tags: Iterable[str]) -> list[tuple[Word, str]]:
    return [
        (word_named(m.group(1), f"tag {tag}"), f"tag {tag}")
        for tag in tags
        if (m := _TAG.match(tag))
    ]


# Every way a cell can say a word; ``resolve`` asks each in turn.
SPELLINGS = (_from_magic, _from_comment, _from_tags)


def resolve(source: str, tags: Iterable[str] = ()) -> Directive | None:
    """The cell's one directive from all three spellings, or None.

    Raises ``MarkerError`` (located at most to a line: the reader adds the cell) for an
    unknown word, a directive that is not on the first line, or two spellings that
    disagree.
    """
    lines, tags = source.splitlines(), tuple(tags)
    found = [hit for spelling in SPELLINGS for hit in spelling(lines, tags)]
    if not found:
        return None
    if len({word.name for word, _ in found}) > 1:
        said = ", ".join(f"{spelled!r} says {word.name}" for word, spelled in found)
        raise MarkerError(
            f"conflicting nb2prod directives: {said}; a cell takes one word",
            fix="keep one of them (the same word in two spellings is fine)",
        )
    return Directive(found[0][0], tuple(spelled for _, spelled in found))


def as_magic(source: str, directive: Directive) -> str:
    """``source`` rewritten so a kernel with the extension applies ``directive``.

    A ``%%n2p`` cell is left alone; a ``#| n2p:`` first line becomes the magic line (same
    line count); a tag-only cell gets the magic line on top. A skipped word gives
    ``SKIPPED_SOURCE`` instead: the build must not run the cell at all.
    """
    if not directive.word.runs_at_build:
        return SKIPPED_SOURCE
    if magic_line(source):
        return source
    lines = source.splitlines()
    magic = f"%%n2p {directive.name}"
    index, first = _first_line(lines)
    if _COMMENT.match(first):
        lines[index] = magic
        return "\n".join(lines)
    return "\n".join([magic, *lines])


def comment_as_magic(lines: list[str]) -> list[str]:
    """IPython input transformer: a ``#| n2p: word`` first line becomes ``%%n2p word``,
    so with the extension loaded a directive marks in the kernel exactly like the magic."""
    index, first = _first_line(lines)
    match = _COMMENT.match(first)
    if not match:
        return lines
    return [*lines[:index], f"%%n2p {match.group(1).strip()}\n", *lines[index + 1 :]]


def functions_of(tree: ast.Module | None) -> list[str]:
    """Names of the functions a cell defines at its top level, in order."""
    body = tree.body if tree else []
    return [n.name for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def one_function(spelled: str, names: list[str]) -> str | None:
    """A message when a marking word's cell does not define exactly one function."""
    if len(names) == 1:
        return None
    found = f"found {len(names)}" + (f": {', '.join(names)}" if names else "")
    return f"{spelled} needs exactly one function in the cell, {found}"


def one_function_fix(word: Word) -> str:
    """How to fix a marking word's cell that has zero or several functions."""
    return (
        f"put the {word.marks} function in a cell of its own, or mark it in place "
        f"with @n2p.{word.marks}"
    )
