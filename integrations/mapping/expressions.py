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

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from integrations.mapping import convert
from integrations.mapping.functions import (
    FUNCTIONS,
    NEEDS_NODES,
    arith,
    as_items,
    as_text,
    compare_values,
    lookup_value,
    number,
    truthy,
)
from integrations.mapping.paths import PathError, compile_path
from integrations.mapping.syntax import VARIABLES, Compiled, Env, ExpressionError, Node, Parser

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
    tree = Parser(source).parse()
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
            return lambda rec, env: not truthy(inner(rec, env))
        operand = node.children[0]
        if _static_kind(operand) in ("text", "boolean"):
            raise ExpressionError(f"cannot negate {operand.text}")
        return lambda rec, env: -number(inner(rec, env), operand)
    if node.kind == "cond":
        test, then, otherwise = (_compile(child, value_maps, paths) for child in node.children)
        return lambda rec, env: then(rec, env) if truthy(test(rec, env)) else otherwise(rec, env)
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
        return lambda rec, env: truthy(left(rec, env)) and truthy(right(rec, env))
    if op == "or":
        return lambda rec, env: truthy(left(rec, env)) or truthy(right(rec, env))
    if op == "&":
        return lambda rec, env: as_text(left(rec, env)) + as_text(right(rec, env))
    if op in ("==", "!=", "<", "<=", ">", ">="):
        return lambda rec, env: compare_values(left(rec, env), right(rec, env), op, nodes)
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
        return lambda rec, env: arith(op, number(left(rec, env), a_node), number(right(rec, env), b_node), nodes)
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
                values = [each(item, env.child(index, rec)) for index, item in enumerate(as_items(items(rec, env)))]
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
            result = memo[key] = impl([each(item, env) for item in as_items(items(rec, env))], nodes)
            return result

        return aggregate
    args = [_compile(child, value_maps, paths) for child in nodes]
    if spec.per_item is not None or name == "count":
        impl = spec.impl
        only = args[0]
        return lambda rec, env: impl(as_items(only(rec, env)), nodes)
    if name == "if":
        test, then, otherwise = args
        return lambda rec, env: then(rec, env) if truthy(test(rec, env)) else otherwise(rec, env)
    impl = spec.impl
    if name == "lookup":
        return lambda rec, env: lookup_value(*(arg(rec, env) for arg in args), env=env, nodes=nodes)
    if name in NEEDS_NODES:
        return lambda rec, env: impl(*[arg(rec, env) for arg in args], nodes=nodes)
    if len(args) == 1:
        (first,) = args
        return lambda rec, env: impl(first(rec, env))
    if len(args) == 2:
        first, second = args
        return lambda rec, env: impl(first(rec, env), second(rec, env))
    return lambda rec, env: impl(*[arg(rec, env) for arg in args])
