"""Sentence segmentation with exact character offsets, minus the non-sentences the guidelines drop.

Lines are segmented one at a time: in scraped news a line break ends a headline, byline or caption even without
a full stop.  Each span satisfies ``text[start:end] == sentence`` on the original input (HTML entities and odd
whitespace included); :func:`model_text` gives the cleaned string the classifier reads.  The default backend,
syntok, had the best boundary F1 on our corpus (``benchmarks/segmenters.py``); blingfire and pysbd are kept
selectable because they trade accuracy for speed differently.
"""

from __future__ import annotations

import bisect
import html
import re
from dataclasses import dataclass
from typing import Callable, Iterator

BACKENDS = ("syntok", "blingfire", "pysbd")

# Lines or spans that are page furniture, not sentences (guidelines rule 6).  Anchored, case-insensitive.
_FURNITURE = re.compile(
    r"""^(?:
        source\ link | leave\ a\ (?:comment|reply) | posted\ in\b.* | filed\ under\b.* | tags?:.* |
        read\ (?:more|also|next)\b.* | related(?:\ (?:stories|articles|coverage))?:?.* | advertisement |
        share\ (?:this|on)\b.* | follow\ (?:us|\w+)\ on\b.* | sign\ up\b.* | subscribe\b.* |
        (?:last\ )?(?:updated|published|posted)(?:\ at|\ on|:)?\ .*\d.* |
        (?:photo|photograph|picture|image|video|graphic|credit|illustration)s?\s*(?::|by\b|/|\u00a9).* |
        \(?(?:getty\ images|reuters|ap\ photo|afp|epa|pa\ wire|shutterstock|file\ photo)\b[^.]{0,80}\)? |
        (?:by|from)\ (?-i:[A-Z\u00c0-\u017f][\w.'\u2019-]+(?:\ [A-Z\u00c0-\u017f][\w.'\u2019-]+){0,3})(?:\s*(?:,|and|\||-|\u2014).{0,60})?(?<![.!?]) |
        (?:©|copyright)\ .* |
        (?-i:[A-Z][A-Z\u00c0-\u00dd .'-]{2,}(?:,\ [A-Z][a-z]{1,5}\.(?:\ ?[A-Z][a-z]?\.)?)?)
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# A dateline before the first sentence: "LAGOS, Nigeria (AP) —", "WASHINGTON —", "Paris, March 3 (Reuters) -".
_DATELINE = re.compile(r"[A-Z][A-Z\u00c0-\u00dd .'-]{2,}(?:,[^—–(\n]{0,40})?(?:\s*\([A-Za-z .]+\))?\s*[—–-]{1,2}\s+")
# What is left of a dateline that the segmenter cut after "Fla." etc.: a dash opening the next sentence.
_LEADING_DASH = re.compile(r"[—–-]{1,2}\s+")
_BIO = re.compile(
    r"^[A-Z][\w'\u2019-]+(?: [A-Z][\w'\u2019.-]+){1,3} (?:is|covers|writes) .{0,80}\b(?:reporter|correspondent|editor|writer|journalist|columnist)\b",
)
_END = re.compile(r"[.!?\u2026…]['\"\u2019\u201d)\]]*$")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


# Lines that syntok would split only where any reader would are answered without running syntok (many times
# faster).  A line qualifies when it holds only plain characters (a semicolon only before a lowercase word; round
# brackets only as `_PAREN` describes them), and every terminal (. ! ?) ends the line, or comes before a comma or a
# lowercase word (syntok reads on), or follows a plain word of two or more letters (not one of syntok's
# abbreviations or roman numerals, and not camel-cased), a number ("1960s", "10%", "25,900") or a closing bracket,
# at most one closing quote before or after it, and is followed by a space and a capitalised word (quoted or not);
# where syntok reads on after an abbreviation or an initial ("Mr. Smith", "the U.S. economy", "John F. Kennedy"),
# so does the fast path.  Other lines are cut at such boundaries outside brackets (:func:`sure_starts`) and only
# the pieces that still need it go to syntok.  Checked equal to syntok on 32,000 lines of the corpus, the sample
# articles and generated dumps (tests/test_segment.py keeps a sample and the tricky forms).
_NOT_PLAIN = re.compile(r"[^ \tA-Za-z0-9\u00c0-\u024f,.!?:'\"\u2018-\u201d\u2013\u2014$%&*+/=@#\u20ac\u00a3();-]|;(?![ \t]*[a-z])")
# A bracket syntok steps over: short, no terminal inside but decimal points (so no "inner sentence"), followed by a
# word, a comma or a dash, or by a terminal that ends the sentence.
_PAREN = re.compile(r"""\((?:[^()\[\]{}.!?]|(?<=[0-9])\.(?=[0-9])){0,58}\)"""
                    r"""(?=[ \t]*[A-Za-z0-9,\u2013\u2014-]|[.!?]["'\u2019\u201d]?[ \t]|[.!?]?["'\u2019\u201d]*[ \t]*$)""")
_ALNUM = re.compile(r"[A-Za-z0-9]")
_TERMINAL = re.compile(r"[.!?]")
_BOUNDARY = re.compile(r"""(?P<word>\)|(?<![^ \t"'\u2018\u201c-])[A-Za-z]{2,}"""
                       r"""|(?<![^ \t"'\u2018\u201c,$\u00a3\u20ac-])[0-9]{2,}(?:%|s)?)(?P<quote>["'\u2019\u201d]?)[.!?]"""
                       r"""(?P<close>["'\u2019\u201d]?)"""
                       r"""(?=[ \t]+(?P<next>["'\u201c\u2018]?(?:[A-Z][a-z]+|[A-Z]{2,}(?![a-z])|[AI](?=[ \t])|I(?=['\u2019]))))""")
_CAMEL = re.compile(r"[a-z][A-Z]")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789%")
# After a terminal: a comma, or a lowercase word (straight after it, or after spaces).
_READS_ON = re.compile(r",|[ \t]*[a-z]")
# A dotted abbreviation ("U.S.", "a.m.", "D.C.") followed by a word that syntok's tokenizer keeps whole, or ending
# the line.  syntok does not split after such a token unless the next word is one of its sentence starters.
_DOTTED = re.compile(r"""(?<![^ \t"'\u2018\u201c(])(?:(?:[A-Za-z]\.)+[A-Za-z]|[A-Z])\."""
                     r"""(?:(?=[ \t]+(?P<next>[A-Za-z][a-z]*)\b)|(?=["'\u2019\u201d]*[ \t]*$)|(?=,))""")
# syntok's word lists, filled on first use: a terminal after one of _AFTER_WORD is not a sure boundary; after a
# number, neither is one before a word of _BEFORE_NUMBER ("2020. Jan 5"); months matter only next to numbers.
_AFTER_WORD: set[str] = set()
_BEFORE_NUMBER: set[str] = set()
_ABBREVIATIONS: set[str] = set()
_STARTERS: set[str] = set()
_OPEN: set[str] = set()  # syntok's opening brackets
_BRACKET: re.Pattern | None = None  # any of syntok's opening or closing brackets


def _syntok_words() -> None:
    global _BRACKET
    if not _AFTER_WORD:
        from syntok._segmentation_states import State

        _AFTER_WORD.update(State.abbreviations, State.roman_numerals, ("no", "No", "NO"))
        _BEFORE_NUMBER.update(_AFTER_WORD, State.months)
        _ABBREVIATIONS.update(State.abbreviations)
        _STARTERS.update(State.starters)
        _OPEN.update(State.opening_brackets)
        _BRACKET = re.compile("[" + re.escape("".join(sorted(_OPEN | State.closing_brackets))) + "]")


def _plain_boundary(m) -> bool:
    """A `_BOUNDARY` where syntok splits: the word before the terminal is not one of its abbreviations or roman
    numerals and has no lower-to-upper turn, where syntok's tokenizer would cut it ("PayMyTab." ends in its
    abbreviation "Tab"); after a number, the next word is not a month or one of those."""
    return bool(m["quote"]) or not (m["word"] in _AFTER_WORD or _CAMEL.search(m["word"])
                or (m["word"][0].isdigit() and m["next"].lstrip("\"'\u201c\u2018") in _BEFORE_NUMBER))


def _abbreviation(m) -> bool:
    """A `_BOUNDARY` where syntok does not split: one of its abbreviations ("Mr", "Gen", "Inc"), no quote before or
    after the terminal, then a capitalised word that is not one of its sentence starters ("The", "He")."""
    return (m["word"] in _ABBREVIATIONS and not m["quote"] and not m["close"] and m["next"][0].isalpha()
            and m["next"][1:].islower() and m["next"] not in _STARTERS)


def _boundary_at(line: str, end: int):
    """The `_BOUNDARY` whose terminal ends at `end`, matched from the word before it (found by stepping back)
    instead of searched for over the whole line: a line holds a few terminals and hundreds of characters."""
    word = end - 1 - (end > 1 and line[end - 2] in "\"'\u2019\u201d")
    if word and line[word - 1] == ")":
        word -= 1
    else:
        while word and (line[word - 1] in _WORD_CHARS):
            word -= 1
    m = _BOUNDARY.match(line, word)
    return m if m is not None and m.start("close") == end else None


def easy_spans(line: str) -> list[tuple[int, int]] | None:
    """syntok's sentences of a plain line, or None when the line needs syntok itself."""
    if _NOT_PLAIN.search(line) or not _ALNUM.search(line):
        return None
    _syntok_words()
    spans, start, end = [], len(line) - len(line.lstrip()), len(line.rstrip())
    last = len(line[:end].rstrip("\"'\u2019\u201d"))  # just after the line's final terminal, if it has one
    dotted = None  # the dotted abbreviation ("U.S.") that the current full stop belongs to, if any
    for t in _TERMINAL.finditer(line):
        i = t.start()
        if t.group() == ".":
            if i and line[i - 1].isdigit() and line[i + 1:i + 2].isdigit():
                continue  # a decimal point
            if dotted is None or i >= dotted.end():
                # Only a full stop after a lone letter can start one; the match checks what stands before it.
                lone = i and line[i - 1].isalpha() and (i == 1 or not line[i - 2].isalpha())
                dotted = _DOTTED.match(line, i - 1) if lone else None
            if dotted is not None and i < dotted.end() - 1:
                continue  # the dots inside "U.S." or "a.m."
        if t.end() == last:
            break
        if _READS_ON.match(line, t.end()):
            continue  # "Ont., according", "Inc. for", "Weather.com": syntok ends no sentence there
        if dotted is not None and dotted.end() == t.end():
            if dotted["next"] in _STARTERS:  # "in the U.S. The ...": syntok splits only before its sentence starters
                spans.append((start, t.end()))
                start = dotted.start("next")
            continue  # "the U.S. economy", "10 a.m. Monday": it reads on
        m = _boundary_at(line, t.end())
        if m is not None and _abbreviation(m):
            continue  # "Mr. Smith": syntok reads on
        if m is None or not _plain_boundary(m):
            return None
        spans.append((start, m.end()))
        start = m.start("next")
    spans.append((start, end))
    if "(" in line or ")" in line:
        parens = [p.start() for p in _PAREN.finditer(line)]
        if not len(parens) == line.count("(") == line.count(")"):
            return None
        starts = [a for a, _ in spans]
        # Past its sentence's first two words syntok is inside a sentence, where such a bracket changes nothing.
        if any(len(line[starts[bisect.bisect_right(starts, p) - 1]:p].split()) < 2 for p in parens):
            return None
    return spans


def syntok_only(line: str) -> Iterator[tuple[int, int]]:
    from syntok import segmenter

    for paragraph in segmenter.analyze(line):
        for sentence in paragraph:
            yield sentence[0].offset, sentence[-1].offset + len(sentence[-1].value)


def sure_starts(line: str) -> list[int]:
    """Where syntok surely starts a sentence in a line that it must read itself: at a `_BOUNDARY` as the fast path
    takes them, outside brackets (syntok may read bracketed text as part of the sentence around it).  Cutting there
    lets each piece go to the fast path or to syntok alone, with syntok's own sentences (checked as
    :func:`easy_spans` is)."""
    _syntok_words()
    starts, depth = [], 0
    brackets = _BRACKET.finditer(line)
    bracket = next(brackets, None)
    for m in _BOUNDARY.finditer(line):
        while bracket is not None and bracket.start() < m.start():
            depth = depth + 1 if bracket.group() in _OPEN else max(0, depth - 1)
            bracket = next(brackets, None)
        if not depth and _plain_boundary(m):
            starts.append(m.start("next"))
    return starts


def syntok_spans(line: str) -> Iterator[tuple[int, int]]:
    """syntok's sentences of a line: the fast path's, else syntok's on each piece between sure starts."""
    easy = easy_spans(line)
    if easy is not None:
        yield from easy
        return
    cuts = [0, *sure_starts(line), len(line)]
    for a, b in zip(cuts, cuts[1:]):
        piece = line[a:b]
        spans = easy_spans(piece)
        for start, end in spans if spans is not None else syntok_only(piece):
            yield a + start, a + end


def _blingfire(line: str) -> Iterator[tuple[int, int]]:
    import blingfire

    _, offsets = blingfire.text_to_sentences_and_offsets(line)
    yield from offsets


def _pysbd(line: str) -> Iterator[tuple[int, int]]:
    import pysbd

    for span in pysbd.Segmenter(language="en", clean=False, char_span=True).segment(line):
        yield span.start, span.end


_SPLITTERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "syntok": syntok_spans,
    "blingfire": _blingfire,
    "pysbd": _pysbd,
}


def is_furniture(sentence: str, title: str | None = None) -> bool:
    """True for headlines, bylines, credits, "Source link" and the like (guidelines rule 6)."""
    return _furniture(model_text(sentence), _title_key(title))


def _title_key(title: str | None) -> str | None:
    return model_text(title).rstrip(".") if title else None


def _furniture(clean: str, title_key: str | None) -> bool:
    if not clean:
        return True
    if title_key and clean.rstrip(".") == title_key:
        return True
    if _FURNITURE.match(clean) or _BIO.match(clean):
        return True
    # Headings and section titles: short and without closing punctuation.
    return not _END.search(clean) and len(clean.split()) <= 14


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});")


def _decoded(line: str) -> tuple[str, list[int], list[int]]:
    """The line with HTML entities decoded, and each decoded character's raw start and end offsets."""
    out, starts, ends, pos = [], [], [], 0
    for m in _ENTITY.finditer(line):
        for i in range(pos, m.start()):
            out.append(line[i]), starts.append(i), ends.append(i + 1)
        for ch in html.unescape(m.group()):
            out.append(ch), starts.append(m.start()), ends.append(m.end())
        pos = m.end()
    for i in range(pos, len(line)):
        out.append(line[i]), starts.append(i), ends.append(i + 1)
    return "".join(out), starts, ends


def raw_spans(text: str, backend: str = "syntok") -> Iterator[tuple[int, int]]:
    """Sentence boundaries line by line, before any filtering (what the segmenter benchmark scores).

    The splitter sees entities decoded ("&quot;" as a quote mark), offsets are mapped back to the raw text.
    """
    split = _SPLITTERS[backend]
    for line in re.finditer(r"[^\r\n]+", text):
        raw = line.group()
        decoded, starts, ends = _decoded(raw) if "&" in raw else (raw, None, None)  # most lines hold no entity
        for a, b in split(decoded):
            if b <= a:
                continue
            if starts is not None:
                a, b = starts[a], ends[b - 1]
            start, end = _trim(text, line.start() + a, line.start() + b)
            if end > start:
                yield start, end


def segment(text: str, title: str | None = None, backend: str = "syntok") -> list[Span]:
    if backend not in _SPLITTERS:
        raise ValueError(f"unknown segmenter {backend!r}; expected one of {', '.join(BACKENDS)}")
    spans: list[Span] = []
    title_key = _title_key(title)  # once an article, not once a sentence
    for start, end in raw_spans(text, backend):
        dateline = _DATELINE.match(text, start, end)
        if dateline and dateline.end() < end:
            start = dateline.end()
        dash = _LEADING_DASH.match(text, start, end)
        if dash and dash.end() < end:
            start = dash.end()
        if _furniture(model_text(text[start:end]), title_key):
            continue
        spans.append(Span(start, end, text[start:end]))
    return spans


def model_text(sentence: str) -> str:
    """What the classifier reads: entities decoded, whitespace collapsed (offsets stay on the raw text)."""
    return _WS.sub(" ", html.unescape(sentence)).strip()
