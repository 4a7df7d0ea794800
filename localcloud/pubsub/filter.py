"""A subset of Pub/Sub's subscription filter language, compiled to a predicate over attributes.

Supported, as in the real service: ``attributes.KEY = "v"``, ``attributes.KEY != "v"``,
``attributes:KEY`` (has the key), ``hasPrefix(attributes.KEY, "p")``, ``NOT``/``-``, ``AND``, ``OR``
and parentheses. An empty filter matches everything. Anything else is rejected with ``ValueError``.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

Predicate = Callable[[Mapping[str, str]], bool]

MAX_FILTER_LENGTH = 256

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|=|:|\(|\)|,|-)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-]*)
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"filter: unexpected character at offset {position}: {text[position:]!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or kind
            raise ValueError(f"filter: expected {wanted!r}, got {token[1] if token else 'end of filter'!r}")
        self.index += 1
        return token[1]

    def expression(self) -> Predicate:
        terms = [self.conjunction()]
        while self.peek() == ("word", "OR"):
            self.index += 1
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda attrs, ts=tuple(terms): any(t(attrs) for t in ts))

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self.peek() == ("word", "AND"):
            self.index += 1
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else (lambda attrs, ts=tuple(terms): all(t(attrs) for t in ts))

    def unary(self) -> Predicate:
        if self.peek() in (("word", "NOT"), ("op", "-")):
            self.index += 1
            inner = self.unary()
            return lambda attrs: not inner(attrs)
        return self.primary()

    def attribute_key(self) -> str:
        word = self.take("word")
        if not word.startswith("attributes.") or len(word) == len("attributes."):
            raise ValueError(f"filter: expected attributes.KEY, got {word!r}")
        return word[len("attributes."):]

    def primary(self) -> Predicate:
        token = self.peek()
        if token == ("op", "("):
            self.index += 1
            inner = self.expression()
            self.take("op", ")")
            return inner
        if token == ("word", "hasPrefix"):
            self.index += 1
            self.take("op", "(")
            key = self.attribute_key()
            self.take("op", ",")
            prefix = self.take("string")
            self.take("op", ")")
            return lambda attrs: key in attrs and attrs[key].startswith(prefix)
        if token == ("word", "attributes"):
            self.index += 1
            self.take("op", ":")
            key = self.take("word")
            return lambda attrs: key in attrs
        key = self.attribute_key()
        operator = self.take("op")
        if operator not in ("=", "!="):
            raise ValueError(f"filter: expected = or != after attributes.{key}, got {operator!r}")
        value = self.take("string")
        if operator == "=":
            return lambda attrs: attrs.get(key) == value
        return lambda attrs: attrs.get(key) != value


def compile_filter(text: str) -> Predicate:
    """Compile a subscription filter; raise ValueError naming the problem if it is not supported."""
    if len(text) > MAX_FILTER_LENGTH:
        raise ValueError(f"filter is {len(text)} characters long; the limit is {MAX_FILTER_LENGTH}")
    if not text.strip():
        return lambda attrs: True
    parser = _Parser(_tokenize(text))
    predicate = parser.expression()
    if parser.peek() is not None:
        raise ValueError(f"filter: unexpected {parser.peek()[1]!r} after a complete expression")
    return predicate
