"""The expression grammar's precedence and associativity (integrations.mapping.expressions' docstring)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from integrations.mapping.expressions import compile_expression
from integrations.mapping.syntax import Env, ExpressionError


def evaluate(source: str, record: dict[str, Any] | None = None) -> Any:
    record = record or {}
    return compile_expression(source).run(record, Env(record, {}, lambda name: {}))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("10 - 3 - 2", Decimal(5)),  # left-associative: (10 - 3) - 2
        ("2 + 3 * 4", Decimal(14)),  # * binds tighter than +
        ("-2 * 3", Decimal(-6)),
        ("- -1", Decimal(1)),  # a prefix operator may repeat
        ("7 % 4 * 2", Decimal(6)),
        ("'a' & 1 + 2", "a3"),  # + binds tighter than &
        ("1 + 1 == 2", True),  # arithmetic binds tighter than ==
        ("not 1 == 2", True),  # not applies to the whole comparison
        ("not not true", True),
        ("true or false and false", True),  # and binds tighter than or
        ("1 < 2 ? 'yes' : 'no'", "yes"),
    ],
)
def test_operators_bind_as_the_grammar_says(source: str, expected: Any) -> None:
    assert evaluate(source) == expected


def test_a_comparison_does_not_chain() -> None:
    with pytest.raises(ExpressionError, match="unexpected '<'"):
        compile_expression("1 < 2 < 3")
