"""A small, safe expression language for calculated and conditional fields.

It parses to a tree and compiles to Python closures once per spec version; it
never calls eval and reaches only the functions in FUNCTIONS. Numbers are
Decimals, so money adds up exactly. The grammar (lowest precedence first):

    expr    := or ("?" expr ":" expr)?
    or      := and ("or" and)*            and := not ("and" not)*
    not     := "not" not | compare        compare := concat (("=="|"!="|"<"|"<="|">"|">=") concat)?
    concat  := sum ("&" sum)*             sum := product (("+"|"-") product)*
    product := unary (("*"|"/"|"%") unary)*
    unary   := "-" unary | primary
    primary := number | 'text' | "text" | true | false | null | path | name "(" args ")" | "(" expr ")"

Paths read the current record (a line inside "each"); $root, $parent, $ctx
(the CompanyLink context) and $index (0-based line number) are variables.
docs/mapping.md lists the functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any

from integrations.mapping import convert
from integrations.mapping.paths import PathError, compile_path


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


class _Parser:
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
        node = self.or_()
        if self.at("?"):
            self.take("?")
            then = self.expr()
            self.take(":")
            otherwise = self.expr()
            node = Node("cond", children=[node, then, otherwise])
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.at("or"):
            self.take()
            node = Node("binary", "or", [node, self.and_()])
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("and"):
            self.take()
            node = Node("binary", "and", [node, self.not_()])
        return node

    def not_(self) -> Node:
        if self.at("not"):
            self.take()
            return Node("unary", "not", [self.not_()])
        return self.compare()

    def compare(self) -> Node:
        node = self.concat()
        if self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            node = Node("binary", op, [node, self.concat()])
        return node

    def concat(self) -> Node:
        node = self.sum()
        while self.at("&"):
            self.take()
            node = Node("binary", "&", [node, self.sum()])
        return node

    def sum(self) -> Node:
        node = self.product()
        while self.at("+", "-"):
            op = self.take()[1]
            node = Node("binary", op, [node, self.product()])
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.at("*", "/", "%"):
            op = self.take()[1]
            node = Node("binary", op, [node, self.unary()])
        return node

    def unary(self) -> Node:
        if self.at("-"):
            self.take()
            return Node("unary", "-", [self.unary()])
        return self.primary()

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


# --- runtime helpers -----------------------------------------------------------------------------


def number(value: Any, node: Node) -> Decimal:
    """A Decimal for arithmetic, or a Failure naming the operand."""
    kind = type(value)
    if kind is Decimal:
        return value
    if kind is int:
        return Decimal(value)
    if kind is float and value - value == 0:  # finite
        return convert.float_to_decimal(value)
    try:
        result = convert.to_decimal(value)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=node.text, value=value) from None
    if result is None:
        raise Failure(f"'{node.text}' is empty; a number is needed", path=node.text, value=value)
    return result


def _truthy(value: Any) -> bool:
    if type(value) is Decimal:
        return value != 0
    return bool(value)


def _compare_values(left: Any, right: Any, op: str, nodes: list[Node]) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if left is None or right is None:
        return False  # nothing is larger or smaller than a missing value
    if isinstance(left, str) and isinstance(right, str):
        a, b = left, right
    else:
        a, b = number(left, nodes[0]), number(right, nodes[1])
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _equal(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is right
    numeric = (int, float, Decimal)
    if (
        isinstance(left, numeric)
        and not isinstance(left, bool)
        or isinstance(right, numeric)
        and not isinstance(right, bool)
    ):
        try:
            a, b = convert.to_decimal(left), convert.to_decimal(right)
        except convert.ConversionError:
            return False
        return a == b
    return left == right


def _arith(op: str, a: Decimal, b: Decimal, nodes: list[Node]) -> Decimal:
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        return a % b
    except (DivisionByZero, InvalidOperation):
        raise Failure(f"division by zero ('{nodes[1].text}' is 0)", path=nodes[1].text, value=b) from None


def _text(value: Any) -> str:
    if value is None:
        return ""
    try:
        return convert.to_string(value)
    except convert.ConversionError as exc:
        raise Failure(str(exc), value=value) from None


# --- functions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    min_args: int
    max_args: int
    impl: Callable[..., Any]
    # Index of an argument evaluated once per list item (sum(Lines, Qty * Price)), or None.
    per_item: int | None = None
    # Indexes of arguments that must be text literals (value map names, formats).
    literal_args: tuple[int, ...] = ()
    doc: str = ""


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict) and "results" in value:
        value = value["results"]
    return value if isinstance(value, list) else [value]


def _aggregate(kind: str) -> Callable[..., Any]:
    def run(values: list[Any], nodes: list[Node]) -> Any:
        if kind == "count":
            return Decimal(len(values))
        numbers = [number(v, nodes[-1]) for v in values if v is not None and v != ""]
        if kind == "sum":
            return sum(numbers, Decimal(0))
        if not numbers:
            return None
        if kind == "min":
            return min(numbers)
        if kind == "max":
            return max(numbers)
        return sum(numbers, Decimal(0)) / len(numbers)

    return run


def _round(value: Any, places: Any = Decimal(0), *, nodes: list[Node]) -> Decimal | None:
    if value is None:
        return None
    digits = int(number(places, nodes[1] if len(nodes) > 1 else nodes[0]))
    try:
        return convert.quantize(number(value, nodes[0]), digits)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=nodes[0].text, value=value) from None


def _substr(value: Any, start: Any, length: Any = None, *, nodes: list[Node]) -> str | None:
    if value is None:
        return None
    text = _text(value)
    begin = int(number(start, nodes[1]))
    if length is None:
        return text[begin:]
    return text[begin : begin + int(number(length, nodes[2]))]


def _split(value: Any, sep: Any, index: Any = None, *, nodes: list[Node]) -> Any:
    if value is None:
        return None
    text = _text(value).replace("\r\n", "\n")
    parts = [part.strip() for part in text.split(_text(sep))] if sep else text.split()
    if index is None:
        return parts
    position = int(number(index, nodes[2]))
    return parts[position] if -len(parts) <= position < len(parts) else None


def _pad(side: str) -> Callable[..., Any]:
    def run(value: Any, width: Any, char: Any = " ", *, nodes: list[Node]) -> str | None:
        if value is None:
            return None
        size = int(number(width, nodes[1]))
        fill = _text(char)[:1] or " "
        return _text(value).rjust(size, fill) if side == "left" else _text(value).ljust(size, fill)

    return run


def _lookup(name: Any, key: Any, *default: Any, env: Env, nodes: list[Node]) -> Any:
    table = env.maps(name)
    text = _text(key)
    if text in table:
        return table[text]
    if default:
        return default[0]
    raise Failure(f"no entry for {text!r} in value map '{name}'", path=nodes[1].text, value=key)


def _format_date(value: Any, fmt: Any, zone: Any = None, *, nodes: list[Node]) -> Any:
    if value is None:
        return None
    try:
        moment = convert.to_datetime(value)
        if zone is not None:
            moment = moment.astimezone(convert.get_zone(_text(zone)))
        if convert.check_format(fmt):
            raise convert.ConversionError(convert.check_format(fmt))
        return convert.format_value(moment, fmt)
    except convert.ConversionError as exc:
        raise Failure(str(exc), path=nodes[0].text, value=value) from None


def _to(type_name: str) -> Callable[..., Any]:
    def run(value: Any, *, nodes: list[Node]) -> Any:
        try:
            result = convert.convert(value, type_name)
        except convert.ConversionError as exc:
            raise Failure(str(exc), path=nodes[0].text, value=value) from None
        if type_name == "integer" and result is not None:
            return Decimal(result)
        return result

    return run


def _coalesce(values: tuple[Any, ...]) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def _contains(value: Any, part: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_equal(item, part) for item in value)
    return _text(part) in _text(value)


FUNCTIONS: dict[str, Function] = {
    "sum": Function(1, 2, _aggregate("sum"), per_item=1, doc="sum(list[, expr per item])"),
    "count": Function(1, 1, _aggregate("count"), doc="count(list)"),
    "min": Function(1, 2, _aggregate("min"), per_item=1, doc="min(list[, expr per item])"),
    "max": Function(1, 2, _aggregate("max"), per_item=1, doc="max(list[, expr per item])"),
    "avg": Function(1, 2, _aggregate("avg"), per_item=1, doc="avg(list[, expr per item])"),
    "join": Function(
        2,
        2,
        lambda values, sep: _text(sep).join(_text(v) for v in _items(values) if v not in (None, "")),
        doc="join(list, separator)",
    ),
    "concat": Function(1, 20, lambda *values: "".join(_text(v) for v in values), doc="concat(a, b, ...)"),
    "coalesce": Function(
        1,
        20,
        lambda *values: _coalesce(values),
        doc="coalesce(a, b, ...): the first non-empty value",
    ),
    "if": Function(3, 3, None, doc="if(condition, then, else)"),
    "round": Function(1, 2, _round, doc="round(number[, places]), half up"),
    "floor": Function(
        1, 1, lambda v, *, nodes: None if v is None else Decimal(math.floor(number(v, nodes[0]))), doc="floor(number)"
    ),
    "ceil": Function(
        1, 1, lambda v, *, nodes: None if v is None else Decimal(math.ceil(number(v, nodes[0]))), doc="ceil(number)"
    ),
    "abs": Function(1, 1, lambda v, *, nodes: None if v is None else abs(number(v, nodes[0])), doc="abs(number)"),
    "upper": Function(1, 1, lambda v: None if v is None else _text(v).upper(), doc="upper(text)"),
    "lower": Function(1, 1, lambda v: None if v is None else _text(v).lower(), doc="lower(text)"),
    "trim": Function(1, 1, lambda v: None if v is None else _text(v).strip(), doc="trim(text)"),
    "length": Function(
        1, 1, lambda v: Decimal(len(v)) if isinstance(v, list) else Decimal(len(_text(v))), doc="length(text or list)"
    ),
    "substr": Function(2, 3, _substr, doc="substr(text, start[, length]), 0-based"),
    "replace": Function(
        3,
        3,
        lambda v, old, new: None if v is None else _text(v).replace(_text(old), _text(new)),
        doc="replace(text, old, new)",
    ),
    "split": Function(2, 3, _split, doc="split(text, separator[, index]): a list, or the part at index"),
    "pad_left": Function(2, 3, _pad("left"), doc="pad_left(text, width[, char])"),
    "pad_right": Function(2, 3, _pad("right"), doc="pad_right(text, width[, char])"),
    "contains": Function(2, 2, _contains, doc="contains(text or list, part)"),
    "starts_with": Function(
        2, 2, lambda v, p: v is not None and _text(v).startswith(_text(p)), doc="starts_with(text, prefix)"
    ),
    "ends_with": Function(
        2, 2, lambda v, p: v is not None and _text(v).endswith(_text(p)), doc="ends_with(text, suffix)"
    ),
    "lookup": Function(2, 3, _lookup, literal_args=(0,), doc="lookup('value-map', key[, default])"),
    "format_date": Function(2, 3, _format_date, literal_args=(1,), doc="format_date(value, format[, time zone])"),
    "number": Function(1, 1, _to("decimal"), doc="number(value)"),
    "integer": Function(1, 1, _to("integer"), doc="integer(value)"),
    "string": Function(1, 1, _to("string"), doc="string(value)"),
    "boolean": Function(1, 1, _to("boolean"), doc="boolean(value)"),
}
_NEEDS_NODES = {
    "round",
    "floor",
    "ceil",
    "abs",
    "substr",
    "split",
    "pad_left",
    "pad_right",
    "format_date",
    "number",
    "integer",
    "string",
    "boolean",
}


# --- compiler ----------------------------------------------------------------------------------


@dataclass
class Expression:
    """A compiled expression and what it refers to (for validation)."""

    source: str
    run: Compiled
    value_maps: set[str]
    paths: list[str]


def compile_expression(source: str) -> Expression:
    """Parse and compile; raises ExpressionError with a sentence naming the problem."""
    if not isinstance(source, str):
        raise ExpressionError("an expression must be a string")
    tree = _Parser(source).parse()
    value_maps: set[str] = set()
    paths: list[str] = []
    run = _compile(tree, value_maps, paths)
    return Expression(source=source, run=run, value_maps=value_maps, paths=paths)


def _static_kind(node: Node) -> str | None:
    if node.kind == "literal":
        value = node.value
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, Decimal):
            return "number"
        if isinstance(value, str):
            return "text"
        return "null"
    return None


def _compile(node: Node, value_maps: set[str], paths: list[str]) -> Compiled:
    if node.kind == "literal":
        value = node.value
        return lambda rec, env: value
    if node.kind == "path":
        return _compile_path(node, paths)
    if node.kind == "unary":
        inner = _compile(node.children[0], value_maps, paths)
        if node.value == "not":
            return lambda rec, env: not _truthy(inner(rec, env))
        operand = node.children[0]
        if _static_kind(operand) in ("text", "boolean"):
            raise ExpressionError(f"cannot negate {operand.text}")
        return lambda rec, env: -number(inner(rec, env), operand)
    if node.kind == "cond":
        test, then, otherwise = (_compile(child, value_maps, paths) for child in node.children)
        return lambda rec, env: then(rec, env) if _truthy(test(rec, env)) else otherwise(rec, env)
    if node.kind == "binary":
        return _compile_binary(node, value_maps, paths)
    return _compile_call(node, value_maps, paths)


def _compile_path(node: Node, paths: list[str]) -> Compiled:
    text: str = node.value
    head, _, rest = text.partition(".")
    bracket = head.find("[")
    if bracket > 0:
        head, rest = head[:bracket], head[bracket:] + ("." + rest if rest else "")
    if head.startswith("$"):
        if head not in VARIABLES:
            raise ExpressionError(f"unknown variable {head} (known: {', '.join(VARIABLES)})")
        if head == "$parent":
            paths.append(head)
        getter = _path_getter(rest.lstrip(".")) if rest else None
        if head == "$index":
            if rest:
                raise ExpressionError("$index is a number; it has no fields")
            paths.append("$index")
            return lambda rec, env: None if env.index is None else Decimal(env.index)
        source = {
            "$root": lambda rec, env: env.root,
            "$parent": lambda rec, env: env.parent,
            "$ctx": lambda rec, env: env.ctx,
        }[head]
        if getter is None:
            return source
        return lambda rec, env: getter(source(rec, env))
    paths.append(text)
    return _path_getter(text)


def _path_getter(text: str) -> Compiled:
    try:
        return compile_path(text)
    except PathError as exc:
        raise ExpressionError(str(exc)) from None


def _compile_binary(node: Node, value_maps: set[str], paths: list[str]) -> Compiled:
    op = node.value
    left, right = (_compile(child, value_maps, paths) for child in node.children)
    nodes = node.children
    if op == "and":
        return lambda rec, env: _truthy(left(rec, env)) and _truthy(right(rec, env))
    if op == "or":
        return lambda rec, env: _truthy(left(rec, env)) or _truthy(right(rec, env))
    if op == "&":
        return lambda rec, env: _text(left(rec, env)) + _text(right(rec, env))
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return lambda rec, env: _compare_values(left(rec, env), right(rec, env), op, nodes)
    for child in nodes:
        if _static_kind(child) in ("text", "boolean", "null"):
            raise ExpressionError(f"'{op}' needs numbers, but {child.text} is not a number (use & to join text)")
    return _arithmetic(op, left, right, nodes)


def _arithmetic(op: str, left: Compiled, right: Compiled, nodes: list[Node]) -> Compiled:
    """One closure per operator, with number literals converted once: the hot path of calculated fields."""
    a_node, b_node = nodes
    b_const = b_node.value if b_node.kind == "literal" else None
    if op == "/" and b_const:  # a non-zero literal divisor cannot fail
        return lambda rec, env: number(left(rec, env), a_node) / b_const
    if op in ("/", "%"):
        return lambda rec, env: _arith(op, number(left(rec, env), a_node), number(right(rec, env), b_node), nodes)
    if op == "+":
        if b_const is not None:
            return lambda rec, env: number(left(rec, env), a_node) + b_const
        return lambda rec, env: number(left(rec, env), a_node) + number(right(rec, env), b_node)
    if op == "-":
        return lambda rec, env: number(left(rec, env), a_node) - number(right(rec, env), b_node)
    if b_const is not None:
        return lambda rec, env: number(left(rec, env), a_node) * b_const
    return lambda rec, env: number(left(rec, env), a_node) * number(right(rec, env), b_node)


def _signature(node: Node) -> tuple[Any, ...]:
    """A structural key of a subtree: equal for the same expression written in two fields."""
    return (node.kind, node.value if node.kind != "literal" else repr(node.value), *map(_signature, node.children))


def _compile_call(node: Node, value_maps: set[str], paths: list[str]) -> Compiled:
    name = node.value
    spec = FUNCTIONS.get(name)
    if spec is None:
        raise ExpressionError(f"unknown function {name}() (known: {', '.join(sorted(FUNCTIONS))})")
    count = len(node.children)
    if not spec.min_args <= count <= spec.max_args:
        wanted = str(spec.min_args) if spec.min_args == spec.max_args else f"{spec.min_args} to {spec.max_args}"
        raise ExpressionError(f"{name}() takes {wanted} argument(s), got {count}: {spec.doc}")
    for index in spec.literal_args:
        if index < count and _static_kind(node.children[index]) != "text":
            raise ExpressionError(f"argument {index + 1} of {name}() must be a quoted text: {spec.doc}")
    if name == "lookup":
        value_maps.add(node.children[0].value)
    if name == "format_date":
        problem = convert.check_format(node.children[1].value)
        if problem:
            raise ExpressionError(f"format_date(): {problem}")
    nodes = node.children
    if spec.per_item is not None and count > spec.per_item:
        items = _compile(nodes[0], value_maps, paths)
        inner_paths: list[str] = []
        each = _compile(nodes[spec.per_item], value_maps, inner_paths)
        paths.extend(inner_paths)
        impl = spec.impl
        if "$index" in inner_paths or "$parent" in inner_paths:

            def per_item(rec: Any, env: Env) -> Any:
                values = [each(item, env.child(index, rec)) for index, item in enumerate(_items(items(rec, env)))]
                return impl(values, nodes)

            return per_item
        # The same aggregate over the same record is computed once per run, however many fields use it
        # (the record is alive for the whole run, so its id is not reused meanwhile).
        signature = _signature(node)

        def aggregate(rec: Any, env: Env) -> Any:
            key = (signature, id(rec))
            memo = env.memo
            if key in memo:
                return memo[key]
            # The per-item expression needs no line position: no Env per line.
            result = memo[key] = impl([each(item, env) for item in _items(items(rec, env))], nodes)
            return result

        return aggregate
    args = [_compile(child, value_maps, paths) for child in nodes]
    if spec.per_item is not None or name == "count":
        impl = spec.impl
        only = args[0]
        return lambda rec, env: impl(_items(only(rec, env)), nodes)
    if name == "if":
        test, then, otherwise = args
        return lambda rec, env: then(rec, env) if _truthy(test(rec, env)) else otherwise(rec, env)
    impl = spec.impl
    if name == "lookup":
        return lambda rec, env: _lookup(*(arg(rec, env) for arg in args), env=env, nodes=nodes)
    if name in _NEEDS_NODES:
        return lambda rec, env: impl(*[arg(rec, env) for arg in args], nodes=nodes)
    if len(args) == 1:
        (first,) = args
        return lambda rec, env: impl(first(rec, env))
    if len(args) == 2:
        first, second = args
        return lambda rec, env: impl(first(rec, env), second(rec, env))
    return lambda rec, env: impl(*[arg(rec, env) for arg in args])
