"""The two little query languages of the Sage X3 sandbox, parsed for real.

* REST `where=` (SData subset): `POHNUM eq 'PO1' and (UPDDATTIM ge @2026-01-01T00:00:00Z@ or
  not CLEFLG eq 2)`, `in (...)`, `like '%x%'`, `between a and b`. String literals use
  single quotes with `''` as the escaped quote.
* GraphQL `filter:` / `orderBy:` strings (Xtrem "relaxed JSON"): `{_id:'PO1'}`,
  `{orderFromSupplier:{code:{code:'SUP001'}}}`, `{_updateStamp:{_gte:'2026-01-01T00:00:00Z'}}`,
  `_and`/`_or`/`_not`, `_in`/`_nin`, a top-level array meaning AND.

Both are parsed by a tokenizer + recursive descent into a tree, then *bound* against the
known properties (so an unknown property is reported even when no row would match) and
compiled into a predicate. Nothing is ever evaluated with `eval` or spliced into another
language: the connector is supposed to escape what it puts into these strings, and the
sandbox must show the difference between escaped and unescaped input faithfully -- a
correctly escaped literal can never change the meaning of the query.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

MAX_QUERY_TEXT = 20_000  # longer where/filter strings are refused, not parsed
MAX_DEPTH = 64  # nesting limit: deep parentheses must be a 400, never a RecursionError

Predicate = Callable[[Any], bool]


class QueryError(ValueError):
    """Base for every problem with a where/filter/orderBy/cursor supplied by a client."""


class WhereSyntaxError(QueryError):
    """The text does not parse (SData `BadWhereSyntax`)."""


class UnknownPropertyError(QueryError):
    """The query names a property the class does not have (real X3 answers HTTP 500)."""


class InvalidValueError(QueryError):
    """A literal cannot be compared with the property's type (e.g. `REVNUM eq 'abc'`)."""


# --------------------------------------------------------------------------------------
# Typed values. Kinds: "str", "int", "dec", "bool", "date", "datetime", or a frozenset of
# allowed enum names. Stored X3 values are strings/ints; comparisons use these types so
# that `TOTORD gt 100` is numeric and `UPDDATTIM ge '2026-01-01'` is chronological.
# --------------------------------------------------------------------------------------

Kind = str | frozenset


@functools.lru_cache(maxsize=1 << 16)
def parse_datetime(text: str) -> datetime:
    """ISO-8601 instant -> aware UTC datetime. A date alone means midnight UTC; a naive
    time is taken as UTC because X3 stores UPDDATTIM in UTC."""
    text = text.strip()
    if len(text) == 10:
        parsed = datetime.combine(date.fromisoformat(text), datetime.min.time())
    else:
        parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def stored_value(kind: Kind, raw: Any) -> Any:
    """Convert a value as stored in the sandbox state into a comparable Python value."""
    if raw is None or (raw == "" and kind in ("date", "datetime", "dec", "int")):
        return None
    try:
        if kind == "dec":
            return Decimal(str(raw))
        if kind == "int":
            return int(raw)
        if kind == "date":
            return raw if isinstance(raw, date) else date.fromisoformat(str(raw)[:10])
        if kind == "datetime":
            return raw if isinstance(raw, datetime) else parse_datetime(str(raw))
        if kind == "bool":
            return bool(raw)
    except (ValueError, InvalidOperation):
        return None
    return raw if isinstance(raw, str) else str(raw)


def coerce_literal(kind: Kind, value: Any, prop: str) -> Any:
    """Convert a client literal to the property's type, or raise InvalidValueError."""
    if value is None:
        return None
    try:
        if isinstance(kind, frozenset):
            if not isinstance(value, str) or value not in kind:
                raise ValueError(f"expected one of {sorted(kind)}")
            return value
        if kind == "str":
            if isinstance(value, bool | datetime | date):
                raise ValueError("expected a string")
            return str(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            number = Decimal(str(value).strip())
            if number != number.to_integral_value():
                raise ValueError("expected an integer")
            return int(number)
        if kind == "dec":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            number = Decimal(str(value).strip())
            if not number.is_finite():
                raise ValueError("expected a finite number")
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError("expected true or false")
        if kind == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            text = str(value).strip()
            return parse_datetime(text).date() if len(text) > 10 else date.fromisoformat(text)
        if kind == "datetime":
            if isinstance(value, datetime):
                return value
            if isinstance(value, date):
                return datetime.combine(value, datetime.min.time(), tzinfo=UTC)
            return parse_datetime(str(value))
    except (ValueError, InvalidOperation, TypeError) as exc:
        raise InvalidValueError(f"invalid value {value!r} for property {prop}: {exc}") from None
    raise InvalidValueError(f"property {prop} cannot be compared")  # pragma: no cover


def _compare(left: Any, op: str, right: Any) -> bool:
    """SQL-like comparison: a missing stored value only ever satisfies `ne`."""
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "lt":
        return left < right
    if op == "le":
        return left <= right
    if op == "gt":
        return left > right
    if op == "ge":
        return left >= right
    raise AssertionError(op)  # pragma: no cover


def _like_regex(pattern: str) -> re.Pattern:
    """SQL LIKE -> anchored regex; every other character is matched literally."""
    parts = []
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------------------
# REST `where` (SData)
# --------------------------------------------------------------------------------------

_WHERE_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>@[^@]*@)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
    """,
    re.VERBOSE,
)
_COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge"}
_KEYWORDS = _COMPARISONS | {"and", "or", "not", "in", "like", "between"}


@dataclass(frozen=True)
class _Token:
    kind: str  # string | datetime | number | ident | keyword | lparen | rparen | comma | end
    text: str
    pos: int


@dataclass(frozen=True)
class Literal:
    kind: str  # "string" | "number" | "datetime"
    value: str


@dataclass(frozen=True)
class Comparison:
    prop: str
    op: str
    literal: Literal


@dataclass(frozen=True)
class InList:
    prop: str
    literals: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    prop: str
    pattern: Literal
    negated: bool


@dataclass(frozen=True)
class Between:
    prop: str
    low: Literal
    high: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple


@dataclass(frozen=True)
class Not:
    item: Any


def tokenize_where(text: str) -> list[_Token]:
    if len(text) > MAX_QUERY_TEXT:
        raise WhereSyntaxError(f"where clause longer than {MAX_QUERY_TEXT} characters")
    tokens, pos = [], 0
    while pos < len(text):
        match = _WHERE_TOKEN.match(text, pos)
        if not match:
            raise WhereSyntaxError(f"unexpected character {text[pos]!r} at position {pos}")
        kind, value = match.lastgroup, match.group()
        if kind == "ident" and value.lower() in _KEYWORDS:
            tokens.append(_Token("keyword", value.lower(), pos))
        elif kind != "ws":
            tokens.append(_Token(kind, value, pos))
        pos = match.end()
    tokens.append(_Token("end", "", pos))
    return tokens


class _WhereParser:
    """Recursive descent: or-expr := and-expr ('or' and-expr)*; and-expr := unary ('and'
    unary)*; unary := 'not' unary | '(' or-expr ')' | predicate."""

    def __init__(self, text: str) -> None:
        self.tokens = tokenize_where(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def _advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _accept_keyword(self, word: str) -> bool:
        if self.current.kind == "keyword" and self.current.text == word:
            self.index += 1
            return True
        return False

    def _expect(self, kind: str, what: str) -> _Token:
        if self.current.kind != kind:
            raise self._error(f"expected {what}")
        return self._advance()

    def _error(self, message: str) -> WhereSyntaxError:
        token = self.current
        found = "end of input" if token.kind == "end" else repr(token.text)
        return WhereSyntaxError(f"{message} at position {token.pos}, found {found}")

    def parse(self):
        if self.current.kind == "end":
            raise self._error("empty where clause")
        tree = self._or()
        if self.current.kind != "end":
            raise self._error("unexpected token")
        return tree

    def _or(self):
        items = [self._and()]
        while self._accept_keyword("or"):
            items.append(self._and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def _and(self):
        items = [self._unary()]
        while self._accept_keyword("and"):
            items.append(self._unary())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def _unary(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error("where clause nested too deeply")
        try:
            if self._accept_keyword("not"):
                return Not(self._unary())
            if self.current.kind == "lparen":
                self._advance()
                inner = self._or()
                self._expect("rparen", "')'")
                return inner
            return self._predicate()
        finally:
            self.depth -= 1

    def _predicate(self):
        prop = self._expect("ident", "a property name").text
        negated = self._accept_keyword("not")
        token = self.current
        if token.kind == "keyword" and token.text in _COMPARISONS and not negated:
            self._advance()
            return Comparison(prop, token.text, self._literal())
        if self._accept_keyword("in"):
            self._expect("lparen", "'(' after in")
            literals = [self._literal()]
            while self.current.kind == "comma":
                self._advance()
                literals.append(self._literal())
            self._expect("rparen", "')' closing the in list")
            return InList(prop, tuple(literals), negated)
        if self._accept_keyword("like"):
            pattern = self._literal()
            if pattern.kind != "string":
                raise WhereSyntaxError("like needs a quoted pattern")
            return Like(prop, pattern, negated)
        if self._accept_keyword("between") and not negated:
            low = self._literal()
            if not self._accept_keyword("and"):
                raise self._error("expected 'and' in between")
            return Between(prop, low, self._literal())
        raise self._error(f"expected an operator after {prop}")

    def _literal(self) -> Literal:
        token = self.current
        if token.kind == "string":
            self._advance()
            return Literal("string", token.text[1:-1].replace("''", "'"))
        if token.kind == "number":
            self._advance()
            return Literal("number", token.text)
        if token.kind == "datetime":
            self._advance()
            return Literal("datetime", token.text[1:-1])
        raise self._error("expected a literal ('text', number or @datetime@)")


def parse_where(text: str):
    """Parse an SData where clause into a tree (syntax only; properties not checked)."""
    return _WhereParser(text).parse()


def compile_where(text: str, fields: Mapping[str, Kind]) -> Predicate:
    """Parse, bind against `fields` (property -> kind) and return `predicate(record)`.

    Raises WhereSyntaxError, UnknownPropertyError or InvalidValueError. Syntax is checked
    over the whole text before any property, so `FOO eq )` is a syntax error, as it is
    for a real SQL-ish front end.
    """
    return _bind_where(parse_where(text), fields)


def _literal_value(kind: Kind, literal: Literal, prop: str) -> Any:
    if literal.kind == "datetime":
        if kind not in ("date", "datetime"):
            raise InvalidValueError(f"datetime literal @{literal.value}@ used with {prop}")
        try:
            value = parse_datetime(literal.value)
        except ValueError:
            raise InvalidValueError(f"invalid datetime literal @{literal.value}@") from None
        return value.date() if kind == "date" else value
    return coerce_literal(kind, literal.value, prop)


def _bind_where(node, fields: Mapping[str, Kind]) -> Predicate:
    if isinstance(node, BoolOp):
        items = [_bind_where(item, fields) for item in node.items]
        if node.op == "and":
            return lambda rec: all(item(rec) for item in items)
        return lambda rec: any(item(rec) for item in items)
    if isinstance(node, Not):
        inner = _bind_where(node.item, fields)
        return lambda rec: not inner(rec)

    prop = node.prop
    if prop not in fields:
        raise UnknownPropertyError(f"Unknown property {prop}")
    kind = fields[prop]

    def value_of(rec):
        return stored_value(kind, rec.get(prop))

    if isinstance(node, Comparison):
        right = _literal_value(kind, node.literal, prop)
        op = node.op
        return lambda rec: _compare(value_of(rec), op, right)
    if isinstance(node, InList):
        values = [_literal_value(kind, lit, prop) for lit in node.literals]
        negated = node.negated
        return lambda rec: (value_of(rec) in values) != negated
    if isinstance(node, Between):
        low = _literal_value(kind, node.low, prop)
        high = _literal_value(kind, node.high, prop)
        return lambda rec: (_compare(value_of(rec), "ge", low)
                            and _compare(value_of(rec), "le", high))
    if isinstance(node, Like):
        regex = _like_regex(node.pattern.value)
        negated = node.negated

        def like(rec):
            raw = rec.get(prop)
            return raw is not None and (regex.fullmatch(str(raw)) is not None) != negated

        return like
    raise AssertionError(node)  # pragma: no cover


# --------------------------------------------------------------------------------------
# Ordering shared by REST key cursors and GraphQL cursors
# --------------------------------------------------------------------------------------


def compare_keys(left: tuple, right: tuple, descending: tuple[bool, ...]) -> int:
    """Compare two sort tuples field by field; None sorts first; a shorter tuple compares
    on its prefix only (so `key=gt.<stamp>` works even without the tiebreaker value)."""
    for a, b, desc in zip(left, right, descending, strict=False):
        if a == b:
            continue
        if a is None:
            result = -1
        elif b is None:
            result = 1
        else:
            result = -1 if a < b else 1
        return -result if desc else result
    return 0


def sort_keyed(rows: list[tuple[tuple, Any]], descending: tuple[bool, ...]) -> None:
    """Sort (sort_tuple, item) pairs in place in the order `compare_keys` defines.

    One stable pass per field, last field first: each pass uses a native key (no Python
    comparator), which keeps paging through tens of thousands of records cheap.
    """
    for index in reversed(range(len(descending))):
        rows.sort(key=lambda row, i=index: (row[0][i] is not None, row[0][i]),
                  reverse=descending[index])


# --------------------------------------------------------------------------------------
# GraphQL relaxed JSON (filter / orderBy strings)
# --------------------------------------------------------------------------------------

_JSON_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f",
                 "n": "\n", "r": "\r", "t": "\t"}
_JSON_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_JSON_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


class FilterSyntaxError(QueryError):
    """The filter/orderBy string is not valid relaxed JSON."""


class _RelaxedJsonParser:
    """JSON with unquoted keys and single- or double-quoted strings, nothing more."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_QUERY_TEXT:
            raise FilterSyntaxError(f"filter longer than {MAX_QUERY_TEXT} characters")
        self.text = text
        self.pos = 0
        self.depth = 0

    def parse(self) -> Any:
        value = self._value()
        self._skip_ws()
        if self.pos != len(self.text):
            raise self._error("unexpected trailing characters")
        return value

    def _error(self, message: str) -> FilterSyntaxError:
        return FilterSyntaxError(f"invalid filter: {message} at position {self.pos}")

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        self._skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _value(self) -> Any:
        char = self._peek()
        if char == "{":
            return self._nested(self._object)
        if char == "[":
            return self._nested(self._array)
        if char in ("'", '"'):
            return self._string()
        if char == "-" or char.isdigit():
            match = _JSON_NUMBER.match(self.text, self.pos)
            if not match:
                raise self._error("bad number")
            self.pos = match.end()
            text = match.group()
            return int(text) if text.lstrip("-").isdigit() else Decimal(text)
        match = _JSON_IDENT.match(self.text, self.pos)
        if match and match.group() in ("true", "false", "null"):
            self.pos = match.end()
            return {"true": True, "false": False, "null": None}[match.group()]
        raise self._error("expected a value" if char else "unexpected end of filter")

    def _nested(self, parse):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._error("nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def _object(self) -> dict:
        self.pos += 1  # "{"
        result: dict[str, Any] = {}
        if self._peek() == "}":
            self.pos += 1
            return result
        while True:
            char = self._peek()
            if char in ("'", '"'):
                key = self._string()
            else:
                match = _JSON_IDENT.match(self.text, self.pos)
                if not match:
                    raise self._error("expected a property name")
                key = match.group()
                self.pos = match.end()
            if self._peek() != ":":
                raise self._error("expected ':'")
            self.pos += 1
            if key in result:
                raise self._error(f"duplicate key {key!r}")
            result[key] = self._value()
            char = self._peek()
            self.pos += 1
            if char == "}":
                return result
            if char != ",":
                self.pos -= 1
                raise self._error("expected ',' or '}'")
            if self._peek() == "}":  # trailing comma
                self.pos += 1
                return result

    def _array(self) -> list:
        self.pos += 1  # "["
        items: list[Any] = []
        if self._peek() == "]":
            self.pos += 1
            return items
        while True:
            items.append(self._value())
            char = self._peek()
            self.pos += 1
            if char == "]":
                return items
            if char != ",":
                self.pos -= 1
                raise self._error("expected ',' or ']'")

    def _string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise self._error("unterminated string")
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char != "\\":
                out.append(char)
                continue
            if self.pos >= len(self.text):
                raise self._error("unterminated escape")
            esc = self.text[self.pos]
            self.pos += 1
            if esc in _JSON_ESCAPES:
                out.append(_JSON_ESCAPES[esc])
            elif esc == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", self.text[self.pos:self.pos + 4]):
                out.append(chr(int(self.text[self.pos:self.pos + 4], 16)))
                self.pos += 4
            else:
                raise self._error(f"bad escape \\{esc}")


def parse_relaxed_json(text: str) -> Any:
    return _RelaxedJsonParser(text).parse()


def node_get(value: Any, key: str) -> Any:
    """Navigate one step into a GraphQL node (any Mapping; None when absent)."""
    return value.get(key) if isinstance(value, Mapping) else None


def _unwrap(gtype):
    while isinstance(gtype, GraphQLNonNull | GraphQLList):
        gtype = gtype.of_type
    return gtype


_SCALAR_KINDS = {"String": "str", "ID": "str", "Id": "str", "Int": "int", "Float": "dec",
                 "Decimal": "dec", "Boolean": "bool", "Date": "date", "Datetime": "datetime"}


def leaf_kind(gtype) -> Kind | None:
    """The comparison kind of a GraphQL leaf type, or None for object types."""
    gtype = _unwrap(gtype)
    if isinstance(gtype, GraphQLEnumType):
        return frozenset(gtype.values)
    if isinstance(gtype, GraphQLScalarType):
        return _SCALAR_KINDS.get(gtype.name, "str")
    return None


def _is_collection(gtype) -> bool:
    gtype = _unwrap(gtype)
    return isinstance(gtype, GraphQLObjectType) and "query" in gtype.fields


_FILTER_OPS = {"_eq": "eq", "_ne": "ne", "_gt": "gt", "_gte": "ge", "_lt": "lt", "_lte": "le"}


def compile_filter(text: str | None, node_type: GraphQLObjectType) -> Predicate:
    """Compile an Xtrem filter string against `node_type` into `predicate(node_dict)`."""
    if text is None or not text.strip():
        return lambda _node: True
    spec = parse_relaxed_json(text)
    if not isinstance(spec, dict | list):
        raise FilterSyntaxError("invalid filter: expected an object or an array of objects")
    return _compile_filter(spec, node_type, "")


def _compile_filter(spec: Any, gtype, path: str) -> Predicate:
    gtype = _unwrap(gtype)
    if isinstance(spec, list):
        items = [_compile_filter(item, gtype, path) for item in spec]
        return lambda value: all(item(value) for item in items)
    if not isinstance(spec, dict):
        return _operator("_eq", spec, gtype, path)
    predicates: list[Predicate] = []
    fields = gtype.fields if isinstance(gtype, GraphQLObjectType) else {}
    for key, sub in spec.items():
        if key in ("_and", "_or"):
            if not isinstance(sub, list):
                raise QueryError(f"{key} needs an array of conditions")
            items = [_compile_filter(item, gtype, path) for item in sub]
            combine = all if key == "_and" else any
            predicates.append(lambda value, items=items, combine=combine:
                              combine(item(value) for item in items))
        elif key == "_not":
            inner = _compile_filter(sub, gtype, path)
            predicates.append(lambda value, inner=inner: not inner(value))
        elif key in fields:
            child_type = fields[key].type
            child_path = f"{path}.{key}" if path else key
            if _is_collection(child_type):
                raise QueryError(f"filtering on the collection {child_path} is not supported")
            child = _compile_filter(sub, child_type, child_path)
            predicates.append(lambda value, key=key, child=child: child(node_get(value, key)))
        elif key in _FILTER_OPS or key in ("_in", "_nin"):
            predicates.append(_operator(key, sub, gtype, path))
        else:
            where = f" of {gtype.name}" if fields else f" on {path or 'value'}"
            raise UnknownPropertyError(f"unknown property or operator {key!r}{where}")
    return lambda value: all(pred(value) for pred in predicates)


def _operator(op: str, literal: Any, gtype, path: str) -> Predicate:
    """Apply one comparison; a reference (object) compares by its `_id`."""
    kind = leaf_kind(gtype)
    getter: Callable[[Any], Any] = lambda value: value  # noqa: E731
    if kind is None:  # reference -> compare the referenced node's _id
        kind = "str"
        getter = lambda value: node_get(value, "_id")  # noqa: E731
    label = path or "value"
    if op in ("_in", "_nin"):
        if not isinstance(literal, list):
            raise QueryError(f"{op} on {label} needs an array")
        values = [coerce_literal(kind, item, label) for item in literal]
        negated = op == "_nin"
        return lambda value: (_typed(kind, getter(value)) in values) != negated
    if isinstance(literal, dict | list):
        raise QueryError(f"{op} on {label} needs a single value")
    right = coerce_literal(kind, literal, label)
    sdata_op = _FILTER_OPS[op]
    return lambda value: _compare(_typed(kind, getter(value)), sdata_op, right)


def _typed(kind: Kind, value: Any) -> Any:
    if value is None or isinstance(kind, frozenset):
        return value
    return stored_value(kind, value)


@dataclass(frozen=True)
class SortField:
    path: tuple[str, ...]
    descending: bool
    kind: Kind


def compile_order_by(text: str | None, node_type: GraphQLObjectType,
                     default: tuple[str, ...] = ("_id",)) -> list[SortField]:
    """`{_updateStamp:1,_id:-1}` / `{purchaseSite:{_id:-1}}` -> sort fields. The default
    key fields are appended as a tiebreaker, so cursors are always unique and paging is
    deterministic even when many records share one update stamp."""
    fields: list[SortField] = []
    if text is not None and text.strip():
        spec = parse_relaxed_json(text)
        if not isinstance(spec, dict):
            raise FilterSyntaxError("invalid orderBy: expected an object like {_id:1}")
        _collect_order(spec, node_type, (), fields)
    for name in default:
        if not any(f.path == (name,) for f in fields):
            fields.append(SortField((name,), False, leaf_kind(node_type.fields[name].type)))
    return fields


def _collect_order(spec: dict, gtype, prefix: tuple[str, ...], out: list[SortField]) -> None:
    gtype = _unwrap(gtype)
    for key, direction in spec.items():
        if not isinstance(gtype, GraphQLObjectType) or key not in gtype.fields:
            raise UnknownPropertyError(f"unknown property {'.'.join(prefix + (key,))!r} in orderBy")
        child_type = gtype.fields[key].type
        path = prefix + (key,)
        if _is_collection(child_type):
            raise QueryError(f"cannot order by the collection {'.'.join(path)}")
        if isinstance(direction, dict):
            _collect_order(direction, child_type, path, out)
            continue
        if direction not in (1, -1) or isinstance(direction, bool):
            raise QueryError(f"orderBy direction for {'.'.join(path)} must be 1 or -1")
        kind = leaf_kind(child_type)
        if kind is None:  # ordering by a reference orders by its _id
            path, kind = path + ("_id",), "str"
        out.append(SortField(path, direction == -1, kind))


def sort_values(node: Any, order: list[SortField]) -> tuple:
    values = []
    for field in order:
        value = node
        for step in field.path:
            value = node_get(value, step)
        values.append(_typed(field.kind, value))
    return tuple(values)


def _cursor_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ") if not value.microsecond \
            else value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def encode_cursor(values: tuple) -> str:
    """Opaque to clients: base64 of the JSON list of the row's sort values."""
    raw = json.dumps([_cursor_json(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: list[SortField]) -> tuple:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise QueryError("invalid cursor") from None
    if not isinstance(values, list) or len(values) != len(order):
        raise QueryError("invalid cursor (it does not match the orderBy of this query)")
    return tuple(
        coerce_literal(field.kind, value, ".".join(field.path)) if value is not None else None
        for field, value in zip(order, values, strict=True)
    )
