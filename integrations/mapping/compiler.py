"""Compile a mapping spec (JSON) into one fast function, or list every problem in it.

A spec is {"fields": {"TargetField": <rule>, ...}, "omit_nulls": false, "root": "path"}.
A rule is a source path (text), "=<expression>" (text), or an object with one
source (path, paths, const, context, expr, cases, each, fields) and optional
steps applied in this order: split → lookup → default → type/precision/tz/format
→ max_length → required. docs/mapping.md is the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from integrations.mapping import convert
from integrations.mapping.expressions import compile_expression
from integrations.mapping.functions import truthy
from integrations.mapping.paths import PathError, compile_path
from integrations.mapping.steps import FieldFn, StepCompiler
from integrations.mapping.syntax import Env, ExpressionError, Failure

SOURCE_KEYS = ("path", "paths", "const", "context", "expr", "cases", "each", "fields")
STEP_KEYS = (
    "join",
    "split",
    "lookup",
    "default",
    "type",
    "precision",
    "as",
    "source_tz",
    "tz",
    "format",
    "max_length",
    "required",
    "omit_null",
    "filter",
    "else",
    "description",
)
SPEC_KEYS = ("fields", "omit_nulls", "root", "description")


class SpecError(ValueError):
    """The spec cannot compile; errors holds one sentence per problem, each naming its field."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class FieldFailure(Exception):
    """A Failure that knows its target field (with line positions) and the rule's source path."""

    def __init__(self, failure: Failure, field: str, path: str | None) -> None:
        super().__init__(failure.reason)
        self.failure = failure
        self.field = field
        self.path = failure.path or path
        self.value = failure.value


class CompiledSpec:
    """A spec turned into closures; run() maps one payload."""

    def __init__(self, run: Callable[[Any, Env], dict[str, Any]], value_maps: set[str], root: Callable | None) -> None:
        self._run = run
        self.value_maps = value_maps
        self._root = root

    def run(self, payload: Any, context: dict[str, Any], maps: Callable[[str], dict[str, str]]) -> dict[str, Any]:
        record = _unwrap_d(payload)
        if self._root is not None:
            record = self._root(record)
        return self._run(record, Env(record, context, maps))


def _unwrap_d(payload: Any) -> Any:
    # OData v2 wraps every JSON response in {"d": ...}; the record is inside.
    if type(payload) is dict and len(payload) == 1 and "d" in payload and type(payload["d"]) is dict:
        return payload["d"]
    return payload


class _Compiler(StepCompiler):
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.value_maps: set[str] = set()
        self.omit_nulls = False

    def error(self, field: str, text: str) -> None:
        self.errors.append(f"field '{field}': {text}")

    # --- the spec --------------------------------------------------------------------------

    def spec(self, spec: Any) -> CompiledSpec | None:
        if not isinstance(spec, dict):
            self.errors.append("the mapping spec must be a JSON object")
            return None
        for key in spec:
            if key not in SPEC_KEYS:
                self.errors.append(f"unknown top-level key '{key}' (known: {', '.join(SPEC_KEYS)})")
        omit_nulls = spec.get("omit_nulls", False)
        if not isinstance(omit_nulls, bool):
            self.errors.append("'omit_nulls' must be true or false")
        root = None
        if "root" in spec:
            try:
                root = compile_path(spec["root"])
            except PathError as exc:
                self.errors.append(f"'root': {exc}")
        fields = spec.get("fields")
        if not isinstance(fields, dict) or not fields:
            self.errors.append("'fields' must be an object with at least one target field")
            return None
        self.omit_nulls = omit_nulls is True  # lines and nested objects follow the spec's choice
        run = self.fields(fields, "", self.omit_nulls)
        if self.errors:
            return None
        return CompiledSpec(run, self.value_maps, root)

    def fields(self, fields: dict[str, Any], prefix: str, omit_nulls: bool) -> Callable[[Any, Env], dict[str, Any]]:
        compiled: list[tuple[str, FieldFn, bool, str | None]] = []
        for name, rule in fields.items():
            full = f"{prefix}{name}"
            if not isinstance(name, str) or not name.strip():
                self.error(full, "target field names must be non-empty text")
                continue
            result = self.rule(rule, full, omit_nulls)
            if result is not None:
                fn, omit, path = result
                compiled.append((name, fn, omit, path))
        items = tuple(compiled)
        pairs = tuple((name, fn) for name, fn, _, _ in items)

        def failed(index: int, exc: Exception) -> FieldFailure:
            name, _, _, path = items[index]
            if isinstance(exc, Failure):
                failure = exc
            else:  # the class says what went wrong; a short text may say more (ValueError: too many digits)
                detail = str(exc) if isinstance(exc, ValueError | TypeError) and len(str(exc)) <= 160 else ""
                failure = Failure(f"cannot calculate: {type(exc).__name__}" + (f" ({detail})" if detail else ""))
            return FieldFailure(failure, f"{prefix}{name}", path)

        if not any(omit for _, _, omit, _ in items):

            def run_all(record: Any, env: Env) -> dict[str, Any]:
                # Every field writes its key, so on a failure the field at fault is the next one.
                out: dict[str, Any] = {}
                try:
                    for name, fn in pairs:
                        out[name] = fn(record, env)
                except CALCULATION_ERRORS as exc:
                    raise failed(len(out), exc) from None
                return out

            return run_all

        def run(record: Any, env: Env) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for index, (name, fn, omit, _) in enumerate(items):
                try:
                    value = fn(record, env)
                except CALCULATION_ERRORS as exc:
                    raise failed(index, exc) from None
                if value is None and omit:
                    continue
                out[name] = value
            return out

        return run

    # --- one rule ----------------------------------------------------------------------------

    def rule(self, rule: Any, field: str, omit_nulls: bool) -> tuple[FieldFn, bool, str | None] | None:
        if isinstance(rule, str):
            rule = {"expr": rule[1:]} if rule.startswith("=") else _path_shorthand(rule)
        if not isinstance(rule, dict):
            self.error(field, f"a rule must be a path, '=expression' or an object, not {type(rule).__name__}")
            return None
        unknown = [key for key in rule if key not in SOURCE_KEYS and key not in STEP_KEYS]
        if unknown:
            self.error(field, f"unknown key(s) {', '.join(map(repr, unknown))}")
            return None
        sources = [key for key in SOURCE_KEYS if key in rule]
        if "each" in sources and "fields" in sources:
            sources.remove("fields")
        if len(sources) != 1:
            found = ", ".join(sources) or "none"
            self.error(field, f"give exactly one source ({', '.join(SOURCE_KEYS)}); found {found}")
            return None
        kind = sources[0]
        # What an error names as the source: the path, the expression, the context value…
        path = {
            "path": rule.get("path"),
            "expr": rule.get("expr"),
            "each": rule.get("each"),
            "context": f"$ctx.{rule.get('context')}",
            "paths": ", ".join(map(str, rule["paths"])) if isinstance(rule.get("paths"), list) else None,
        }.get(kind)
        source = getattr(self, f"source_{kind}")(rule, field)
        if source is None:
            return None
        fn = self.steps(source, rule, field, kind)
        if fn is None:
            return None
        omit = rule.get("omit_null", omit_nulls)
        if not isinstance(omit, bool):
            self.error(field, "'omit_null' must be true or false")
        return fn, bool(omit), path if isinstance(path, str) else None

    def path(self, text: Any, field: str) -> FieldFn | None:
        """The path's getter, or None with the path's error recorded against the field."""
        try:
            return compile_path(text)
        except PathError as exc:
            self.error(field, str(exc))
            return None

    def nested(self, inner: Any, field: str, prefix: str, problem: str) -> FieldFn | None:
        """The rules of a line or a nested object, or None with problem recorded when there are none."""
        if not isinstance(inner, dict) or not inner:
            self.error(field, problem)
            return None
        return self.fields(inner, prefix, self.omit_nulls)

    def source_path(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        return self.path(rule["path"], field)

    def getters(self, paths: Any, field: str) -> list[Callable[[Any], Any]] | None:
        """One getter per path of a non-empty list, or None with the first problem recorded."""
        if not isinstance(paths, list) or not paths:
            self.error(field, "'paths' must be a non-empty list of paths")
            return None
        getters = []
        for path in paths:
            getter = self.path(path, field)
            if getter is None:  # one error per field is enough
                return None
            getters.append(getter)
        return getters

    def source_paths(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        getters = self.getters(rule["paths"], field)
        if getters is None:
            return None
        separator = rule.get("join", " ")
        if not isinstance(separator, str):
            self.error(field, "'join' must be text")
            return None
        shown = ", ".join(rule["paths"])

        def joined(record: Any, env: Env) -> str | None:
            parts = []
            for getter in getters:
                value = getter(record)
                if value is None or value == "":
                    continue
                try:
                    parts.append(convert.to_string(value))
                except convert.ConversionError as exc:
                    raise Failure(str(exc), path=shown, value=value) from None
            return separator.join(parts) if parts else None

        return joined

    def source_const(self, rule: dict[str, Any], field: str) -> FieldFn:
        value = rule["const"]
        return lambda record, env: value

    def source_context(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        key = rule["context"]
        if not isinstance(key, str) or not key:
            self.error(field, "'context' must name a CompanyLink value, e.g. target_company")
            return None
        return lambda record, env: env.ctx.get(key)

    def source_expr(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        return self.expression(rule["expr"], field, "expr")

    def expression(self, source: Any, field: str, where: str) -> FieldFn | None:
        try:
            compiled = compile_expression(source)
        except ExpressionError as exc:
            self.error(field, f"{where} {source!r}: {exc}")
            return None
        self.value_maps |= compiled.value_maps
        return compiled.run

    def source_cases(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        cases = rule["cases"]
        if not isinstance(cases, list) or not cases:
            self.error(field, '\'cases\' must be a non-empty list of {"when": expression, "then": value}')
            return None
        compiled = []
        for number, case in enumerate(cases, 1):
            if not isinstance(case, dict) or set(case) != {"when", "then"}:
                self.error(field, f'case {number} must be {{"when": expression, "then": value}}')
                return None
            test = self.expression(case["when"], field, f"case {number} when")
            then = self.case_value(case["then"], field, f"case {number} then")
            if test is None or then is None:
                return None
            compiled.append((test, then))
        otherwise = self.case_value(rule.get("else"), field, "else")
        if otherwise is None:
            return None
        branches = tuple(compiled)

        def choose(record: Any, env: Env) -> Any:
            for test, then in branches:
                result = test(record, env)
                if result is True or (result not in (None, False, "", 0) and result != Decimal(0)):
                    return then(record, env)
            return otherwise(record, env)

        return choose

    def case_value(self, value: Any, field: str, where: str) -> FieldFn | None:
        if isinstance(value, dict):
            if set(value) != {"expr"}:
                self.error(field, f'{where}: give a constant or {{"expr": expression}}')
                return None
            return self.expression(value["expr"], field, where)
        return lambda record, env: value

    def source_each(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        items = self.path(rule["each"], field)
        if items is None:
            return None
        line = self.nested(rule.get("fields"), field, f"{field}[].", "'each' needs 'fields': the rules for one line")
        if line is None:
            return None
        keep = None
        if "filter" in rule:
            keep = self.expression(rule["filter"], field, "filter")
            if keep is None:
                return None
        shown = rule["each"]

        def each(record: Any, env: Env) -> list[dict[str, Any]]:
            lines = items(record)
            if lines is None:
                return []
            if type(lines) is not list:
                raise Failure(f"'{shown}' is not a list of lines", path=shown, value=lines)
            out = []
            # One Env for all lines of this list, moved along: lines are mapped one after another
            # and nothing keeps an Env beyond its call.
            child = env.child(0, record)
            for index, item in enumerate(lines):
                child.index = index
                if keep is not None and not truthy(keep(item, child)):
                    continue
                try:
                    out.append(line(item, child))
                except FieldFailure as failure:
                    failure.field = failure.field.replace(f"{field}[].", f"{field}[{index}].", 1)
                    raise
            return out

        return each

    def source_fields(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        return self.nested(
            rule["fields"], field, f"{field}.", "'fields' must be an object with at least one target field"
        )

    # --- steps -------------------------------------------------------------------------------


# What a field's calculation may raise besides a Failure, on values the engine did not bound itself:
# Decimal overflow (ArithmeticError), a number too long to print (ValueError), a type no function takes
# (TypeError), a value too large to build (MemoryError) or too deep (RecursionError). Each becomes the
# field's MappingError, so no input stops a worker or is retried for ever.
CALCULATION_ERRORS = (Failure, ArithmeticError, ValueError, TypeError, MemoryError, RecursionError)


def _path_shorthand(text: str) -> dict[str, Any]:
    # "$ctx.x" and the older "$x" read the CompanyLink context; anything else is a source path.
    if text.startswith("$ctx."):
        return {"context": text[5:]}
    if text.startswith("$") and "." not in text and "[" not in text:
        return {"context": text[1:]}
    return {"path": text}


def compile_spec(spec: Any) -> CompiledSpec:
    """Compile or raise SpecError listing every problem found."""
    compiler = _Compiler()
    compiled = compiler.spec(spec)
    if compiler.errors or compiled is None:
        raise SpecError(compiler.errors or ["the mapping spec is empty"])
    return compiled
