"""The steps a mapping rule applies to its source value: split → lookup → default → type → max_length → required."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from integrations.mapping import convert
from integrations.mapping.functions import LARGEST
from integrations.mapping.syntax import Env, Failure

FieldFn = Callable[[Any, Env], Any]
MISSING_BEHAVIOURS = ("error", "default", "pass")  # what a lookup does with a key its map lacks


class StepCompiler:
    """The step half of the spec compiler (integrations.mapping.compiler); errors go to self.error."""

    def error(self, field: str, text: str) -> None:
        raise NotImplementedError

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
            fn = with_default(fn, rule["default"])
        fn = self.typed(fn, rule, field)
        if "max_length" in rule:
            limit = rule["max_length"]
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                self.error(field, "'max_length' must be a positive whole number")
            else:
                fn = limited(fn, limit)
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

        def split(value: Any, env: Env) -> Any:
            if not isinstance(value, str):
                raise Failure(f"only text can be split, not {type(value).__name__}", value=value)
            parts = [part.strip() for part in value.replace("\r\n", "\n").split(sep)]
            if index is None:
                return parts
            return parts[index] if -len(parts) <= index < len(parts) and parts[index] else None

        return then(fn, split)

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

        def look_up(value: Any, env: Env) -> Any:
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

        return then(fn, look_up)

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
                return plain(fn)
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

        def typed(value: Any, env: Env) -> Any:
            try:
                result = converter(value)
            except convert.ConversionError as exc:
                raise Failure(str(exc), value=value) from None
            return int(result) if type(result) is Decimal else result

        return then(fn, typed)

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

        def decimal(value: Any, env: Env) -> Any:
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
            if not -LARGEST < result < LARGEST:
                raise Failure(f"{result:.6E} is out of range for an amount", value=value)
            if output == "string":
                return format(result, "f")
            if precision == 0 or (precision is None and result == result.to_integral_value()):
                return int(result)
            return float(result)

        return then(fn, decimal)

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
                if type_name == "datetime" or (zone is not None and not is_plain_date(value)):
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

        def moment(value: Any, env: Env) -> Any:
            if type(value) is not str:
                return convert_moment(value)
            found = seen.get(value)
            if found is None:
                found = convert_moment(value)
                if len(seen) >= 4096:
                    seen.clear()
                seen[value] = found
            return found

        return then(fn, moment)


def then(fn: FieldFn, step: Callable[[Any, Env], Any]) -> FieldFn:
    """fn, then step on its value; no value (None) stays no value without the step (split, lookup, type)."""

    def run(record: Any, env: Env) -> Any:
        value = fn(record, env)
        return None if value is None else step(value, env)

    return run


def is_plain_date(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value.strip()) == 10
        or (isinstance(value, date) and not isinstance(value, datetime))
    )


def with_default(fn: FieldFn | None, default: Any) -> FieldFn | None:
    if fn is None:
        return None

    def with_default(record: Any, env: Env) -> Any:
        value = fn(record, env)
        return default if value is None or value == "" else value

    return with_default


def plain(fn: FieldFn) -> FieldFn:
    """Untyped results stay JSON: an expression's Decimal becomes a whole number or exact text."""

    def plain(record: Any, env: Env) -> Any:
        value = fn(record, env)
        if type(value) is Decimal:
            if not -LARGEST < value < LARGEST:  # 1E+8000 as an int would not even print
                raise Failure(f"{value:.6E} is out of range for an amount", value=value)
            return int(value) if value == value.to_integral_value() else format(value, "f")
        return value

    return plain


def limited(fn: FieldFn | None, limit: int) -> FieldFn | None:
    if fn is None:
        return None

    def cut(record: Any, env: Env) -> Any:
        value = fn(record, env)
        return value[:limit] if type(value) is str else value

    return cut
