"""Compile a mapping spec (JSON) into one fast function, or list every problem in it.

A spec is {"fields": {"TargetField": <rule>, ...}, "omit_nulls": false, "root": "path"}.
A rule is a source path (text), "=<expression>" (text), or an object with one
source (path, paths, const, context, expr, cases, each, fields) and optional
steps applied in this order: split → lookup → default → type/precision/tz/format
→ max_length → required. docs/mapping.md is the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from integrations.mapping import convert
from integrations.mapping.expressions import Env, ExpressionError, Failure, compile_expression
from integrations.mapping.paths import PathError, compile_path

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
MISSING_BEHAVIOURS = ("error", "default", "pass")

FieldFn = Callable[[Any, Env], Any]


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


class _Compiler:
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
            failure = exc if isinstance(exc, Failure) else Failure(f"cannot calculate: {type(exc).__name__}")
            return FieldFailure(failure, f"{prefix}{name}", path)

        if not any(omit for _, _, omit, _ in items):

            def run_all(record: Any, env: Env) -> dict[str, Any]:
                # Every field writes its key, so on a failure the field at fault is the next one.
                out: dict[str, Any] = {}
                try:
                    for name, fn in pairs:
                        out[name] = fn(record, env)
                except (Failure, ArithmeticError) as exc:  # ArithmeticError: Decimal overflow from huge operands
                    raise failed(len(out), exc) from None
                return out

            return run_all

        def run(record: Any, env: Env) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for index, (name, fn, omit, _) in enumerate(items):
                try:
                    value = fn(record, env)
                except (Failure, ArithmeticError) as exc:
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

    def source_path(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        try:
            getter = compile_path(rule["path"])
        except PathError as exc:
            self.error(field, str(exc))
            return None
        return getter

    def source_paths(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        paths = rule["paths"]
        if not isinstance(paths, list) or not paths:
            self.error(field, "'paths' must be a non-empty list of paths")
            return None
        getters = []
        for path in paths:
            try:
                getters.append(compile_path(path))
            except PathError as exc:
                self.error(field, str(exc))
                return None
        separator = rule.get("join", " ")
        if not isinstance(separator, str):
            self.error(field, "'join' must be text")
            return None
        shown = ", ".join(paths)

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
        try:
            items = compile_path(rule["each"])
        except PathError as exc:
            self.error(field, str(exc))
            return None
        inner = rule.get("fields")
        if not isinstance(inner, dict) or not inner:
            self.error(field, "'each' needs 'fields': the rules for one line")
            return None
        line = self.fields(inner, f"{field}[].", self.omit_nulls)
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
                if keep is not None and not _truthy(keep(item, child)):
                    continue
                try:
                    out.append(line(item, child))
                except FieldFailure as failure:
                    failure.field = failure.field.replace(f"{field}[].", f"{field}[{index}].", 1)
                    raise
            return out

        return each

    def source_fields(self, rule: dict[str, Any], field: str) -> FieldFn | None:
        inner = rule["fields"]
        if not isinstance(inner, dict) or not inner:
            self.error(field, "'fields' must be an object with at least one target field")
            return None
        return self.fields(inner, f"{field}.", self.omit_nulls)

    # --- steps -------------------------------------------------------------------------------

    def steps(self, source: FieldFn, rule: dict[str, Any], field: str, kind: str) -> FieldFn | None:
        fn = source
        if "join" in rule and kind != "paths":
            self.error(field, "'join' goes with 'paths' (many fields into one)")
        if "filter" in rule and kind != "each":
            self.error(field, "'filter' goes with 'each'")
        if "else" in rule and kind != "cases":
            self.error(field, "'else' goes with 'cases'")
        if kind in ("each", "fields"):
            extra = [key for key in ("split", "lookup", "type", "format", "tz", "max_length") if key in rule]
            if extra:
                self.error(field, f"{', '.join(extra)} cannot apply to a list of lines or an object")
            return self.required(fn, rule, field)
        if "split" in rule:
            fn = self.split(fn, rule["split"], field)
        if "lookup" in rule:
            fn = self.lookup(fn, rule["lookup"], field)
        if "default" in rule:
            fn = _with_default(fn, rule["default"])
        fn = self.typed(fn, rule, field)
        if "max_length" in rule:
            limit = rule["max_length"]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                self.error(field, "'max_length' must be a positive whole number")
            else:
                fn = _limited(fn, limit)
        if fn is None:
            return None
        return self.required(fn, rule, field)

    def required(self, fn: FieldFn, rule: dict[str, Any], field: str) -> FieldFn:
        required = rule.get("required", False)
        if not isinstance(required, bool):
            self.error(field, "'required' must be true or false")
            return fn
        if not required:
            return fn
        where = rule.get("path") or rule.get("context") or rule.get("expr") or rule.get("each") or ""

        def must(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None or value == "" or value == []:
                text = f"context value '{rule['context']}' is empty" if "context" in rule else "no value"
                raise Failure(f"required, but {text}", path=where, value=value)
            return value

        return must

    def split(self, fn: FieldFn | None, option: Any, field: str) -> FieldFn | None:
        if isinstance(option, str):
            option = {"sep": option}
        if not isinstance(option, dict) or set(option) - {"sep", "index"}:
            self.error(field, '\'split\' must be a separator or {"sep": text, "index": n}')
            return None
        sep = option.get("sep", "\n")
        index = option.get("index")
        if not isinstance(sep, str) or not sep:
            self.error(field, "split 'sep' must be non-empty text")
            return None
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            self.error(field, "split 'index' must be a whole number (0 is the first part)")
            return None
        if fn is None:
            return None

        def split(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None:
                return None
            if not isinstance(value, str):
                raise Failure(f"only text can be split, not {type(value).__name__}", value=value)
            parts = [part.strip() for part in value.replace("\r\n", "\n").split(sep)]
            if index is None:
                return parts
            return parts[index] if -len(parts) <= index < len(parts) and parts[index] else None

        return split

    def lookup(self, fn: FieldFn | None, option: Any, field: str) -> FieldFn | None:
        if isinstance(option, str):
            option = {"map": option}
        if not isinstance(option, dict) or not isinstance(option.get("map"), str) or not option.get("map"):
            self.error(field, '\'lookup\' must name a value map: {"map": name, "missing": error|default|pass}')
            return None
        unknown = set(option) - {"map", "missing", "default"}
        if unknown:
            self.error(field, f"lookup: unknown key(s) {', '.join(sorted(unknown))}")
            return None
        name = option["map"]
        missing = option.get("missing", "error")
        if missing not in MISSING_BEHAVIOURS:
            self.error(field, f"lookup 'missing' must be one of {', '.join(MISSING_BEHAVIOURS)}, not {missing!r}")
            return None
        if missing == "default" and "default" not in option:
            self.error(field, "lookup with missing=default needs a 'default'")
            return None
        if missing != "default" and "default" in option:
            self.error(field, "lookup 'default' only applies with missing=default")
            return None
        self.value_maps.add(name)
        if fn is None:
            return None
        fallback = option.get("default")

        def look_up(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None:
                return None
            try:
                key = value if type(value) is str else convert.to_string(value)
                table = env.maps(name)
            except (Failure, convert.ConversionError) as exc:
                raise Failure(str(exc), value=value) from None
            found = table.get(key)
            if found is not None:
                return found
            if missing == "pass":
                return value
            if missing == "default":
                return fallback
            raise Failure(f"no entry for {key!r} in value map '{name}'", value=value)

        return look_up

    def typed(self, fn: FieldFn | None, rule: dict[str, Any], field: str) -> FieldFn | None:
        type_name = rule.get("type")
        for option, needs in (("precision", "decimal"), ("as", "decimal"), ("source_tz", "datetime")):
            if option in rule and type_name != needs:
                self.error(field, f"'{option}' goes with type {needs}")
        for option in ("format", "tz"):
            if option in rule and type_name not in ("date", "datetime"):
                self.error(field, f"'{option}' goes with type date or datetime")
        if type_name is None:
            if fn is not None and ("expr" in rule or "cases" in rule):
                return _plain(fn)
            return fn
        if type_name not in convert.TYPES:
            self.error(field, f"unknown type {type_name!r} (known: {', '.join(convert.TYPES)})")
            return None
        if fn is None:
            return None
        if type_name == "decimal":
            return self.decimal(fn, rule, field)
        if type_name in ("date", "datetime"):
            return self.moment(fn, rule, field, type_name)
        converter = convert.CONVERTERS[type_name]
        self.check_constant(rule, field, converter)

        def typed(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None:
                return None
            try:
                result = converter(value)
            except convert.ConversionError as exc:
                raise Failure(str(exc), value=value) from None
            return int(result) if type(result) is Decimal else result

        return typed

    def check_constant(self, rule: dict[str, Any], field: str, converter: Callable[[Any], Any]) -> None:
        """A constant or default that can never convert is a type error in the spec."""
        for key in ("const", "default"):
            if key in rule and rule[key] is not None:
                try:
                    converter(rule[key])
                except convert.ConversionError as exc:
                    self.error(field, f"{key} {rule[key]!r} does not fit type {rule['type']}: {exc}")

    def decimal(self, fn: FieldFn, rule: dict[str, Any], field: str) -> FieldFn | None:
        precision = rule.get("precision")
        if precision is not None and (
            not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= convert.MAX_PRECISION
        ):
            self.error(field, f"'precision' must be a whole number from 0 to {convert.MAX_PRECISION}")
            return None
        output = rule.get("as", "string")
        if output not in ("string", "number"):
            self.error(field, "'as' must be string (exact, e.g. \"52.65\") or number")
            return None
        self.check_constant(rule, field, convert.to_decimal)
        step = None if precision is None else Decimal(1).scaleb(-precision)

        def decimal(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None:
                return None
            try:
                result = value if type(value) is Decimal else convert.to_decimal(value)
                if result is None:  # "" is no value
                    return None
                if step is not None:
                    result = result.quantize(step, rounding=ROUND_HALF_UP)
            except convert.ConversionError as exc:
                raise Failure(str(exc), value=value) from None
            except InvalidOperation:
                raise Failure(f"{value!r} is too large for {precision} decimals", value=value) from None
            if output == "string":
                return format(result, "f")
            if precision == 0 or (precision is None and result == result.to_integral_value()):
                return int(result)
            return float(result)

        return decimal

    def moment(self, fn: FieldFn, rule: dict[str, Any], field: str, type_name: str) -> FieldFn | None:
        fmt = rule.get("format", "iso")
        problem = convert.check_format(fmt)
        if problem:
            self.error(field, problem)
            return None
        try:
            zone = convert.get_zone(rule["tz"]) if "tz" in rule else None
            assume = convert.get_zone(rule["source_tz"]) if "source_tz" in rule else convert.UTC
        except convert.ConversionError as exc:
            self.error(field, str(exc))
            return None
        self.check_constant(rule, field, convert.to_datetime if type_name == "datetime" else convert.to_date)

        def convert_moment(value: Any) -> Any:
            if value == "":  # no value
                return None
            try:
                if type_name == "datetime" or (zone is not None and not _is_plain_date(value)):
                    result: date | datetime = convert.to_datetime(value, assume_tz=assume)
                    if zone is not None:
                        result = result.astimezone(zone)
                    if type_name == "date":
                        result = result.date()
                else:
                    result = convert.to_date(value)
                return convert.format_value(result, fmt)
            except convert.ConversionError as exc:
                raise Failure(str(exc), value=value) from None

        # Dates repeat (one order date feeds several fields; a day's orders share it), and parsing,
        # zone conversion and formatting cost more than the rest of a field: remember recent ones.
        seen: dict[str, Any] = {}

        def moment(record: Any, env: Env) -> Any:
            value = fn(record, env)
            if value is None:
                return None
            if type(value) is not str:
                return convert_moment(value)
            found = seen.get(value)
            if found is None:
                found = convert_moment(value)
                if len(seen) >= 4096:
                    seen.clear()
                seen[value] = found
            return found

        return moment


def _is_plain_date(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value.strip()) == 10
        or (isinstance(value, date) and not isinstance(value, datetime))
    )


def _path_shorthand(text: str) -> dict[str, Any]:
    # "$ctx.x" and the older "$x" read the CompanyLink context; anything else is a source path.
    if text.startswith("$ctx."):
        return {"context": text[5:]}
    if text.startswith("$") and "." not in text and "[" not in text:
        return {"context": text[1:]}
    return {"path": text}


def _with_default(fn: FieldFn | None, default: Any) -> FieldFn | None:
    if fn is None:
        return None

    def with_default(record: Any, env: Env) -> Any:
        value = fn(record, env)
        return default if value is None or value == "" else value

    return with_default


def _plain(fn: FieldFn) -> FieldFn:
    """Untyped results stay JSON: an expression's Decimal becomes a whole number or exact text."""

    def plain(record: Any, env: Env) -> Any:
        value = fn(record, env)
        if type(value) is Decimal:
            return int(value) if value == value.to_integral_value() else format(value, "f")
        return value

    return plain


def _limited(fn: FieldFn | None, limit: int) -> FieldFn | None:
    if fn is None:
        return None

    def cut(record: Any, env: Env) -> Any:
        value = fn(record, env)
        return value[:limit] if type(value) is str else value

    return cut


def _truthy(value: Any) -> bool:
    if type(value) is Decimal:
        return value != 0
    return bool(value)


def compile_spec(spec: Any) -> CompiledSpec:
    """Compile or raise SpecError listing every problem found."""
    compiler = _Compiler()
    compiled = compiler.spec(spec)
    if compiler.errors or compiled is None:
        raise SpecError(compiler.errors or ["the mapping spec is empty"])
    return compiled
