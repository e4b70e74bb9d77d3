"""The expression language's syntax: tokens and a recursive-descent parser to a tree of Nodes.

The grammar is in integrations.mapping.expressions' docstring.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


class ExpressionError(ValueError):
    """A spec error found when compiling an expression (syntax, unknown function, arity, types)."""


class Failure(Exception):
    """A runtime failure inside one field: why, and which source path and value caused it."""

    def __init__(self, reason: str, *, path: str | None = None, value: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path
        self.value = value


class Env:
    """What an expression sees besides the current record."""

    __slots__ = ("root", "ctx", "maps", "index", "parent", "memo")

    def __init__(
        self,
        root: Any,
        ctx: dict[str, Any],
        maps: Callable[[str], dict[str, str]],
        index: int | None = None,
        parent: Any = None,
        memo: dict[Any, Any] | None = None,
    ) -> None:
        self.root = root
        self.ctx = ctx
        self.maps = maps
        self.index = index
        self.parent = parent
        # Aggregates already computed in this run (sum(Lines, ...) used by several fields).
        self.memo = {} if memo is None else memo

    def child(self, index: int, parent: Any) -> Env:
        return Env(self.root, self.ctx, self.maps, index, parent, self.memo)


Compiled = Callable[[Any, Env], Any]
VARIABLES = ("$root", "$parent", "$ctx", "$index")

_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<number>\d+(?:\.\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<path>\$?[A-Za-z_@][\w@]*(?:\.\$?[A-Za-z_@][\w@]*|\[-?\d+\]|\[\*\])*)
    | (?P<op>==|!=|<=|>=|[-+*/%<>&?:(),])
    )""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "true", "false", "null"}
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@dataclass
class Node:
    kind: str  # literal, path, var, unary, binary, cond, call
    value: Any = None
    children: list[Node] = field(default_factory=list)
    text: str = ""


def tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    source = source.rstrip()
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot read {source[pos:].strip()[:20]!r} at position {pos}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


# The operators, loosest first (the grammar in integrations.mapping.expressions): "chain" is left-associative
# (a - b - c is (a - b) - c), "once" takes one operator (a < b < c is a syntax error), "prefix" may repeat
# (not not a, - -1).
OPERATORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chain", ("or",)),
    ("chain", ("and",)),
    ("prefix", ("not",)),
    ("once", ("==", "!=", "<", "<=", ">", ">=")),
    ("chain", ("&",)),
    ("chain", ("+", "-")),
    ("chain", ("*", "/", "%")),
    ("prefix", ("-",)),
)


class Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError(f"unexpected end, expected {text!r}" if text else "unexpected end")
        if text is not None and token[1] != text:
            raise ExpressionError(f"expected {text!r}, found {token[1]!r}")
        self.pos += 1
        return token

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token[1] in texts and token[0] in ("op", "path")

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty expression")
        node = self.expr()
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r}")
        return node

    def expr(self) -> Node:
        node = self.operators(0)
        if self.at("?"):
            self.take("?")
            then = self.expr()
            self.take(":")
            otherwise = self.expr()
            node = Node("cond", children=[node, then, otherwise])
        return node

    def operators(self, level: int) -> Node:
        """Precedence climbing over OPERATORS: parse one level, whose operands are the next, tighter level."""
        if level == len(OPERATORS):
            return self.primary()
        form, texts = OPERATORS[level]
        if form == "prefix":
            if self.at(*texts):
                return Node("unary", self.take()[1], [self.operators(level)])
            # Straight to primary from the last level: one frame less per "(", as deep as one method per level.
            return self.primary() if level + 1 == len(OPERATORS) else self.operators(level + 1)
        node = self.operators(level + 1)
        while self.at(*texts):
            op = self.take()[1]
            node = Node("binary", op, [node, self.operators(level + 1)])
            if form == "once":
                break
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "number":
            return Node("literal", Decimal(text), text=text)
        if kind == "string":
            body = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), text[1:-1])
            return Node("literal", body, text=text)
        if kind == "op" and text == "(":
            node = self.expr()
            self.take(")")
            return node
        if kind == "path":
            if text in ("true", "false", "null"):
                return Node("literal", {"true": True, "false": False, "null": None}[text], text=text)
            if text in KEYWORDS:
                raise ExpressionError(f"unexpected {text!r}")
            if self.at("("):
                self.take("(")
                args: list[Node] = []
                if not self.at(")"):
                    args.append(self.expr())
                    while self.at(","):
                        self.take()
                        args.append(self.expr())
                self.take(")")
                return Node("call", text, args, text=text)
            return Node("path", text, text=text)
        raise ExpressionError(f"unexpected {text!r}")
