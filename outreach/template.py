"""Email templates: loading from disk, and rendering in a sandbox within size and time limits.

A template is `templates/<name>.j2`: optional YAML front matter holding `subject`, then the
plain-text body. An optional `templates/<name>.html.j2` beside it adds an HTML part.

Rendering runs in Jinja's immutable sandbox. Anything that could make a template allocate
gigabytes or run forever is refused with `RenderLimitExceeded` before it happens: string
repetition, big powers, `%` / `str.format` widths, padding methods, joins and replaces are
estimated first; every `for` loop, call and filter checks the deadline; and no value or part
may grow past `max_bytes`.

Missing values: printing, iterating or otherwise using a missing variable raises
`MissingVariable("prospect.company")` (the dotted path), so "Hi ," never reaches a prospect.
Testing one is allowed: a missing value is false in `{% if %}` / `and` / `or` / `not` and
equal to nothing in `==` / `!=`; `| default(...)` and `is defined` work as usual.
"""

from __future__ import annotations

import contextvars
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache, wraps
from pathlib import Path
from types import BuiltinMethodType, ModuleType
from typing import Any, NoReturn

import yaml
from jinja2 import StrictUndefined, Template, nodes, pass_eval_context
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import make_attrgetter, sync_do_join
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, Undefined, markup_join, missing, str_join
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from pydantic import BaseModel, Field

from outreach.errors import MissingVariable, RenderError, RenderLimitExceeded, TemplateInvalid

__all__ = [
    "RenderLimits",
    "Rendered",
    "Renderer",
    "TemplateSource",
    "check_syntax",
    "load_template",
    "parse_limits",
    "template_names",
]

_WORK_FACTOR = 100  # a render may build at most this many times max_bytes of values in total
_CACHE_SIZE = 2048  # compiled templates kept per environment
_FRONT_KEYS = frozenset({"subject"})
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LINE_BREAK = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")  # same line breaks as Jinja's lexer
_SUBJECT_JUNK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001}
_LIMITS_RE = re.compile(
    r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*,\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE
)


# --- models ----------------------------------------------------------------


class TemplateSource(BaseModel, frozen=True):
    """A loaded template: its parts as text, ready to render or to snapshot."""

    name: str
    path: str
    subject: str | None
    text: str
    html: str | None
    body_line: int
    html_path: str | None = None


class RenderLimits(BaseModel, frozen=True):
    """The most a template may output (bytes, per part) and the longest a render may take."""

    max_bytes: int = Field(default=100_000, gt=0)
    max_seconds: float = Field(default=2.0, gt=0)


class Rendered(BaseModel, frozen=True):
    """A rendered email: one-line subject (None for a threaded reply), text, optional HTML."""

    subject: str | None
    text: str
    html: str | None


def parse_limits(text: str) -> RenderLimits:
    """Parse OUTREACH_RENDER_LIMITS such as "100kB,2s" or "1MB,500ms" (kB = 1000 bytes)."""
    match = _LIMITS_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad render limits {text!r}: expected SIZE,TIME such as 100kB,2s")
    size, size_unit, seconds, time_unit = match.groups()
    size_factor = _SIZE_UNITS.get(size_unit.lower())
    time_factor = _TIME_UNITS.get(time_unit.lower())
    if size_factor is None or time_factor is None:
        raise ValueError(f"bad render limits {text!r}: units are B, kB, MB, GB and s, ms")
    max_bytes = int(float(size) * size_factor)
    max_seconds = float(seconds) * time_factor
    if max_bytes <= 0 or max_seconds <= 0:
        raise ValueError(f"bad render limits {text!r}: both must be above zero")
    return RenderLimits(max_bytes=max_bytes, max_seconds=max_seconds)


# --- missing values and the context ----------------------------------------


class _Namespace:
    """A read-only view of a context dict that knows its dotted path; data wins over methods."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[Any, Any], path: str) -> None:
        self._path = path
        self._data = {
            key: _wrap(value, _join_path(path, key))
            for key, value in data.items()
            if not _is_absent(value)
        }

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key: object) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[object]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return repr(self._data)


def _is_absent(value: object) -> bool:
    """Tell whether a context value counts as missing (None or blank text)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _join_path(parent: str, key: object) -> str:
    """Extend a dotted path by one key."""
    if isinstance(key, str) and key.isidentifier():
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{key!r}]"


def _wrap(value: object, path: str) -> object:
    """Wrap dicts (also inside lists) so a missing key can name its dotted path."""
    if isinstance(value, Mapping):
        return _Namespace(value, path)
    if isinstance(value, list | tuple):
        return tuple(_wrap(item, f"{path}[{i}]") for i, item in enumerate(value))
    return value


def _wrap_context(context: Mapping[str, object]) -> dict[str, object]:
    """Prepare the engine's context for a render; absent values are left out."""
    return {key: _wrap(value, key) for key, value in context.items() if not _is_absent(value)}


def _missing_path(obj: object, name: object) -> str:
    """The dotted path of a missing value, e.g. "prospect.company"."""
    if obj is missing:
        return str(name)
    if isinstance(obj, Undefined):
        obj._fail_with_undefined_error()  # the parent is missing (or unsafe): report that
    if isinstance(obj, _Namespace):
        return _join_path(obj._path, name)
    return _join_path(type(obj).__name__, name)


class _Missing(StrictUndefined):
    """A missing value: false when tested, MissingVariable when used, RenderError if unsafe."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        if isinstance(self._undefined_exception, type) and issubclass(
            self._undefined_exception, SecurityError
        ):
            raise RenderError(f"not allowed: {self._undefined_hint}")
        raise MissingVariable(_missing_path(self._undefined_obj, self._undefined_name))

    def __bool__(self) -> bool:  # type: ignore[override]
        return False

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        return False

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        return True

    def __hash__(self) -> int:  # type: ignore[override]
        return id(type(self))


_FAILING_DUNDERS = (
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__"
    " __rfloordiv__ __mod__ __rmod__ __pos__ __neg__ __call__ __getitem__ __lt__ __le__ __gt__"
    " __ge__ __int__ __float__ __complex__ __pow__ __rpow__ __str__ __len__ __iter__"
    " __contains__"
)
for _dunder in _FAILING_DUNDERS.split():  # StrictUndefined binds these to the base method
    setattr(_Missing, _dunder, _Missing._fail_with_undefined_error)


def _finalize(value: object) -> object:
    """Refuse to print functions and classes (a forgotten `()`), and oversized collections."""
    if isinstance(value, Undefined | str | int | float):
        return value
    if callable(value) or isinstance(value, ModuleType):
        raise RenderError(f"cannot print a {type(value).__name__}: did you forget ()?")
    _current_guard().need(_size(value, _current_guard().max_bytes), "printed value")
    return value


# --- limits ----------------------------------------------------------------


@dataclass
class _Budget:
    """What one render has left: its deadline and the total size of values it built."""

    guard: _Guard
    deadline: float
    spent: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "outreach_render_budget", default=None
)


def _current_guard() -> _Guard:
    """The guard of the render in progress (or a default one outside a render)."""
    budget = _BUDGET.get()
    return budget.guard if budget is not None else _DEFAULT_GUARD


class _Guard:
    """Refuses work that would take a render over its limits."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.max_bytes = limits.max_bytes

    def tick(self) -> None:
        """Raise once the render in progress is past its deadline."""
        budget = _BUDGET.get()
        if budget is not None and time.monotonic() > budget.deadline:
            raise RenderLimitExceeded(
                f"the template took longer than {self.limits.max_seconds:g}s to render"
            )

    def need(self, size: int, what: str) -> None:
        """Raise if something of `size` would be over max_bytes."""
        if size > self.max_bytes:
            raise RenderLimitExceeded(f"{what} would be over the limit of {self.max_bytes} bytes")

    def need_int(self, value: object, what: str) -> None:
        """Raise if an integer argument (a width, a count) is over max_bytes."""
        if isinstance(value, int) and value > self.max_bytes:
            self.need(value, what)

    def spend(self, value: object) -> Any:
        """Count a freshly built value against the render's limits and return it."""
        if isinstance(value, str | bytes | list | tuple):
            self.need(len(value), "a value")
            budget = _BUDGET.get()
            if budget is not None:
                budget.spent += len(value)
                if budget.spent > self.max_bytes * _WORK_FACTOR:
                    raise RenderLimitExceeded("the template builds too much text")
        return value


_DEFAULT_GUARD = _Guard(RenderLimits())


def _size(value: object, cap: int) -> int:
    """Rough length of value as text, counting no further than just past cap."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 31 // 100 + 2
    if isinstance(value, Mapping | _Namespace):
        items: Any = [item for key in value for item in (key, value[key])]
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 24
    total = 2
    for item in items:
        total += _size(item, cap - total) + 2
        if total > cap:
            break
    return total


def _biggest(values: object, cap: int) -> int:
    """Size of the biggest of values: a tuple is several values, anything else one."""
    items = values if isinstance(values, tuple) else (values,)
    return max((_size(item, cap) for item in items), default=0)


def _check_repeat(guard: _Guard, left: object, right: object) -> None:
    """Refuse `seq * n` and `int * int` results over the limit."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
            guard.need(_size(seq, guard.max_bytes) * count, "repeating that")
    if isinstance(left, int) and isinstance(right, int):
        guard.need((left.bit_length() + right.bit_length()) * 31 // 100, "that number")


def _check_power(guard: _Guard, base: object, exponent: object) -> None:
    """Refuse integer powers with too many digits."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        guard.need(exponent * base.bit_length() * 31 // 100, "that power")


def _check_plus(guard: _Guard, left: object, right: object) -> None:
    """Refuse concatenations over the limit."""
    if isinstance(left, str | bytes | list | tuple) and isinstance(
        right, str | bytes | list | tuple
    ):
        guard.need(_size(left, guard.max_bytes) + _size(right, guard.max_bytes), "that text")


def _format_number_ok(guard: _Guard, digits: str) -> bool:
    """Tell whether a width or precision written in a format string is within the limit."""
    return len(digits) < 16 and int(digits) <= guard.max_bytes


def _check_percent(guard: _Guard, fmt: str | bytes, values: object) -> None:
    """Refuse `fmt % values` whose widths or repeated fields would go over the limit."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    fields = 0
    for width, precision, conversion in _PERCENT_SPEC.findall(text):
        fields += conversion != "%"
        for number in (width, precision):
            if number == "*":
                for item in values if isinstance(values, tuple) else (values,):
                    guard.need_int(item, "that format width")
            elif number and not _format_number_ok(guard, number):
                guard.need(guard.max_bytes + 1, "that format width")
    guard.need(len(text) + fields * _biggest(values, guard.max_bytes), "that formatted text")


def _check_brace_format(guard: _Guard, fmt: str, args: tuple[Any, ...], kwargs: Any) -> None:
    """Refuse `fmt.format(...)` whose widths or repeated fields would go over the limit."""
    fields = 0
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise RenderError("nested fields in a format spec are not supported")
        for digits in re.findall(r"\d+", spec or ""):
            if not _format_number_ok(guard, digits):
                guard.need(guard.max_bytes + 1, "that format width")
    biggest = _biggest((*args, *dict(kwargs).values()), guard.max_bytes)
    guard.need(len(fmt) + fields * biggest, "that formatted text")


def _replaced_size(text: str | bytes, old: Any, new: Any, count: Any = -1) -> int:
    """The length of text.replace(old, new, count), computed without building it."""
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(text)
    hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


def _joined_size(guard: _Guard, separator: Any, items: list[Any]) -> int:
    """The length of separator.join(items), counting no further than just past the limit."""
    total = _size(separator, guard.max_bytes) * max(0, len(items) - 1)
    for item in items:
        total += _size(item, guard.max_bytes)
        if total > guard.max_bytes:
            break
    return total


# --- calls -------------------------------------------------------------------


def _check_text_method(
    guard: _Guard, owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse str/bytes method calls that would build too much; returns the args to use."""
    if name in ("format", "format_map") and isinstance(owner, str):
        _check_brace_format(guard, owner, args, args[0] if name == "format_map" else kwargs)
    elif name == "replace" and len(args) >= 2:
        guard.need(_replaced_size(owner, *args[:3]), "that replace")
    elif name == "join" and len(args) == 1:
        items = list(args[0])
        guard.need(_joined_size(guard, owner, items), "that join")
        return (items,)
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((_size(v, guard.max_bytes) for v in args[0].values()), default=1)
        guard.need(len(owner) * max(1, longest), "that translate")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        guard.need_int(tabsize, "that tab size")
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        guard.need(len(owner) + tabs * int(tabsize), "that text")
    else:
        _check_int_args(guard, args, kwargs)
    return args


def _check_int_args(guard: _Guard, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse integer arguments (widths, lengths) over max_bytes."""
    for value in (*args, *kwargs.values()):
        guard.need_int(value, "that width")


def _check_call(
    guard: _Guard, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse calls that would build too much; returns the args to call with."""
    if obj is generate_lorem_ipsum:
        n = args[0] if args else kwargs.get("n", 5)
        words = args[3] if len(args) > 3 else kwargs.get("max", 100)
        guard.need(int(n) * int(words) * 12, "that lipsum")
        return args
    target = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    if not isinstance(target, BuiltinMethodType):
        return args
    owner = target.__self__
    if isinstance(owner, str | bytes):
        return _check_text_method(guard, owner, target.__name__, args, kwargs)
    if isinstance(owner, int | float | list | tuple | dict):
        _check_int_args(guard, args, kwargs)
    return args


# --- filters -----------------------------------------------------------------


def _text_arg(value: object) -> str:
    """A filter's value as text, the way most filters see it."""
    return value if isinstance(value, str) else str(value)


def _pre_center(guard: _Guard, value: Any, width: Any = 80) -> None:
    guard.need_int(width, "that width")


def _pre_indent(guard: _Guard, value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    guard.need_int(width, "that indent")
    text = _text_arg(value)
    step = len(width) if isinstance(width, str) else int(width)
    guard.need(len(text) + (text.count("\n") + 1) * step, "that indented text")


def _pre_count(guard: _Guard, value: Any, count: Any = 1, *args: Any, **kwargs: Any) -> None:
    guard.need_int(count, "that count")


def _pre_replace(guard: _Guard, value: Any, old: Any, new: Any, count: Any = None) -> None:
    size = _replaced_size(_text_arg(value), str(old), str(new), -1 if count is None else count)
    guard.need(size, "that replace")


def _pre_format(guard: _Guard, value: Any, *args: Any, **kwargs: Any) -> None:
    _check_percent(guard, _text_arg(value), kwargs or args)


def _pre_wordwrap(guard: _Guard, value: Any, width: Any = 79, *args: Any, **kwargs: Any) -> None:
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None) or "\n"
    text = _text_arg(value)
    worst = len(text) + (len(text) + 1) * len(str(wrapstring))
    if worst > guard.max_bytes * _WORK_FACTOR:
        guard.need(worst, "that wrapped text")


def _pre_tojson(guard: _Guard, value: Any, indent: Any = None) -> None:
    width = len(indent) if isinstance(indent, str) else indent
    if isinstance(width, int) and width > 16:
        raise RenderLimitExceeded("tojson indent is limited to 16")
    guard.need(_size(value, guard.max_bytes), "that JSON")


def _pre_sum(guard: _Guard, value: Any, attribute: Any = None, start: Any = 0) -> None:
    if not isinstance(start, int | float):
        raise RenderError("sum adds numbers only")


def _pre_text(guard: _Guard, value: Any, *args: Any, **kwargs: Any) -> None:
    guard.need(_size(value, guard.max_bytes), "that text")


_PreCheck = Callable[..., None]
_TEXT_FILTERS = (
    "string e escape forceescape safe pprint urlencode upper lower title capitalize"
    " trim striptags truncate urlize wordcount"
)
_FILTER_CHECKS: dict[str, _PreCheck] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "batch": _pre_count,
    "slice": _pre_count,
    "replace": _pre_replace,
    "format": _pre_format,
    "wordwrap": _pre_wordwrap,
    "tojson": _pre_tojson,
    "sum": _pre_sum,
    **{name: _pre_text for name in _TEXT_FILTERS.split()},
}


@pass_eval_context
def _join_filter(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> str:
    """The `join` filter, refusing results over the limit."""
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(eval_ctx.environment, attribute)
        items = [getter(item) for item in items]
    _current_guard().need(_joined_size(_current_guard(), d, items), "that join")
    return sync_do_join(eval_ctx, items, d)  # type: ignore[no-any-return]


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so it checks the deadline, its arguments and its result."""
    check = _FILTER_CHECKS.get(name)
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        guard = _current_guard()
        guard.tick()
        if check is not None:
            check(guard, *args[skip:], **kwargs)
        return guard.spend(func(*args, **kwargs))

    return guarded


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Iterate, checking the deadline on every round (nested empty loops stop too)."""
    guard = _current_guard()
    for item in iterable:
        guard.tick()
        yield item


@pass_eval_context
def _concat_filter(eval_ctx: EvalContext, items: list[Any]) -> str:
    """The `~` operator, refusing results over the limit."""
    guard = _current_guard()
    guard.need(_joined_size(guard, "", items), "that text")
    join = markup_join if eval_ctx.autoescape or eval_ctx.volatile else str_join
    return guard.spend(join(items))  # type: ignore[no-any-return]


def _safe_range(*args: int) -> range:
    """`range` for templates: at most MAX_RANGE items (loops check the deadline each round)."""
    _current_guard().tick()
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitExceeded(f"range() is limited to {MAX_RANGE} items")
    return numbers


class _Rewriter(NodeTransformer):
    """Routes `for` loops and `~` through the guards; refuses include/import/extends."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter_node(node.iter, "_loop_guard", node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter_node(nodes.List(node.nodes, lineno=node.lineno), "_concat", node.lineno)

    def visit_Include(self, node: nodes.Include) -> NoReturn:
        raise TemplateSyntaxError("include is not supported in email templates", node.lineno)

    visit_Import = visit_FromImport = visit_Extends = visit_Include  # type: ignore[assignment]


def _filter_node(node: Any, name: str, lineno: int) -> nodes.Filter:
    """Wrap an expression in a call to one of our filters."""
    return nodes.Filter(node, name, [], [], None, None, lineno=lineno)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus output size, render time and work limits."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, limits: RenderLimits, autoescape: bool) -> None:
        super().__init__(
            autoescape=autoescape,
            undefined=_Missing,
            keep_trailing_newline=True,
            finalize=_finalize,
            auto_reload=False,
        )
        self.guard = _Guard(limits)
        self.globals["range"] = _safe_range
        self.filters["join"] = _join_filter
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_loop_guard"] = _loop_guard
        self.filters["_concat"] = _concat_filter
        self.concat = self._checked_concat  # type: ignore[method-assign]

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Rewriter().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree  # type: ignore[no-any-return]

    def _checked_concat(self, parts: Any) -> str:
        """Join captured output (macros, `{% set %}` blocks) within the limit."""
        parts = list(parts)
        guard = _current_guard()
        guard.need(_joined_size(guard, "", parts), "that text")
        return guard.spend("".join(parts))  # type: ignore[no-any-return]

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """Apply an intercepted operator once its result is known to fit."""
        guard = _current_guard()
        if operator == "*":
            _check_repeat(guard, left, right)
        elif operator == "**":
            _check_power(guard, left, right)
        elif operator == "%" and isinstance(left, str | bytes):
            _check_percent(guard, left, right)
        elif operator == "+":
            _check_plus(guard, left, right)
        return guard.spend(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Call something from a template once its result is known to fit."""
        guard = _current_guard()
        guard.tick()
        args = _check_call(guard, obj, args, kwargs)
        return guard.spend(super().call(context, obj, *args, **kwargs))


_CHECKER = _Sandbox(RenderLimits(), autoescape=False)


# --- loading -----------------------------------------------------------------


def check_syntax(text: str, where: str, first_line: int = 1) -> None:
    """Raise TemplateInvalid("where:LINE: message") if text is not a valid template."""
    try:
        _CHECKER.compile(text)
    except TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise TemplateInvalid(f"{where}:{line}: {exc.message}") from None


def template_names(templates_dir: Path) -> list[str]:
    """Names of the templates in a folder (*.j2 files that are not *.html.j2)."""
    return sorted(
        path.name[: -len(".j2")]
        for path in templates_dir.glob("*.j2")
        if path.is_file() and not path.name.endswith(".html.j2")
    )


def load_template(templates_dir: Path, name: str) -> TemplateSource:
    """Read and check templates_dir/<name>.j2 and its optional <name>.html.j2 twin."""
    if not _NAME_RE.fullmatch(name) or name.endswith(".html"):
        raise TemplateInvalid(f"bad template name {name!r}")
    path = str(templates_dir / f"{name}.j2")
    raw = _read_text(templates_dir / f"{name}.j2", path)
    if raw is None:
        raise TemplateInvalid(f"{path}:1: no such template")
    subject, subject_line, text, body_line = _split_front_matter(raw, path)
    if subject is not None:
        check_syntax(subject, path, subject_line)
    check_syntax(text, path, body_line)
    html_file = templates_dir / f"{name}.html.j2"
    html = _read_text(html_file, str(html_file))
    if html is not None:
        check_syntax(html, str(html_file))
    return TemplateSource(
        name=name,
        path=path,
        subject=subject,
        text=text,
        html=html,
        body_line=body_line,
        html_path=str(html_file) if html is not None else None,
    )


def _read_text(file: Path, where: str) -> str | None:
    """A file's UTF-8 text, or None if there is no such file."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemplateInvalid(f"{where}:1: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TemplateInvalid(f"{where}:{line}: not UTF-8 text") from None


def _split_front_matter(raw: str, path: str) -> tuple[str | None, int, str, int]:
    """Split a template file into (subject, subject line, body, body line)."""
    lines = _LINE_BREAK.split(raw)
    if lines[0].strip() != "---":
        return None, 0, raw, 1
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise TemplateInvalid(f"{path}:1: front matter has no closing '---' line")
    subject, subject_line = _parse_front_matter("".join(lines[1:end]), path)
    return subject, subject_line, "".join(lines[end + 1 :]), end + 2


def _parse_front_matter(front: str, path: str) -> tuple[str | None, int]:
    """Read `subject` (and its line in the file) from front-matter YAML starting on line 2."""
    try:
        root = yaml.compose(front, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateInvalid(f"{path}:{line}: bad front matter: {problem}") from None
    if root is None:
        return None, 0
    if not isinstance(root, yaml.MappingNode):
        line = root.start_mark.line + 2
        raise TemplateInvalid(f"{path}:{line}: front matter must be 'subject: ...'")
    subject: str | None = None
    subject_line = 0
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 2
        key = key_node.value
        if key not in _FRONT_KEYS:
            raise TemplateInvalid(f"{path}:{line}: unknown front-matter key {key!r}")
        if subject is not None:
            raise TemplateInvalid(f"{path}:{line}: duplicate front-matter key {key!r}")
        subject, subject_line = _subject_value(value_node, path), value_node.start_mark.line + 2
    return subject, subject_line


def _subject_value(node: yaml.Node, path: str) -> str:
    """The subject string from its YAML node; refuses non-strings and blanks."""
    line = node.start_mark.line + 2
    if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
        raise TemplateInvalid(f"{path}:{line}: subject must be a string (put it in quotes)")
    if not node.value.strip():
        raise TemplateInvalid(f"{path}:{line}: subject is empty")
    return str(node.value)


# --- rendering ---------------------------------------------------------------


class Renderer:
    """Renders templates in the sandbox within the render limits; compiled templates are cached."""

    def __init__(self, limits: RenderLimits = RenderLimits()) -> None:
        self.limits = limits
        self._text_env = _Sandbox(limits, autoescape=False)
        self._html_env = _Sandbox(limits, autoescape=True)
        self._compile_text = lru_cache(maxsize=_CACHE_SIZE)(self._text_env.from_string)
        self._compile_html = lru_cache(maxsize=_CACHE_SIZE)(self._html_env.from_string)

    def render(self, source: TemplateSource, context: dict[str, object]) -> Rendered:
        """Render a template's subject (one line), text and HTML parts."""
        ctx = _wrap_context(context)
        token = _BUDGET.set(self._budget())
        try:
            subject = None
            if source.subject is not None:
                raw = self._run(self._compile_text, source.subject, ctx, source.path, 2)
                subject = _one_line(raw)
            text = self._run(self._compile_text, source.text, ctx, source.path, source.body_line)
            html = None
            if source.html is not None:
                where = source.html_path or source.path
                html = self._run(self._compile_html, source.html, ctx, where, 1)
        finally:
            _BUDGET.reset(token)
        return Rendered(subject=subject, text=text, html=html)

    def render_string(self, text: str, context: dict[str, object]) -> str:
        """Render a one-off text template such as a call step's note (autoescape off)."""
        token = _BUDGET.set(self._budget())
        try:
            return self._run(self._compile_text, text, _wrap_context(context), "note", 1)
        finally:
            _BUDGET.reset(token)

    def _budget(self) -> _Budget:
        """A fresh budget for one render."""
        guard = self._text_env.guard
        return _Budget(guard=guard, deadline=time.monotonic() + self.limits.max_seconds)

    def _run(
        self,
        compile_: Callable[[str], Template],
        text: str,
        ctx: dict[str, object],
        where: str,
        first_line: int,
    ) -> str:
        """Compile (cached) and render one part, mapping every failure to a RenderError."""
        try:
            return self._stream(compile_(text), ctx)
        except RenderError:
            raise
        except TemplateSyntaxError as exc:
            line = first_line + (exc.lineno or 1) - 1
            raise RenderError(f"{where}:{line}: {exc.message}") from None
        except SecurityError as exc:
            raise RenderError(f"not allowed: {exc}") from None
        except (RecursionError, MemoryError):
            raise RenderLimitExceeded("the template nests or recurses too deeply") from None
        except UndefinedError as exc:
            raise RenderError(str(exc)) from None
        except Exception as exc:
            line = first_line + _template_line(exc) - 1
            raise RenderError(f"{where}:{line}: {type(exc).__name__}: {exc}") from None

    def _stream(self, template: Template, ctx: dict[str, object]) -> str:
        """Render chunk by chunk, stopping at the size limit or the deadline."""
        guard = self._text_env.guard
        parts: list[str] = []
        size = 0
        for chunk in template.generate(ctx):
            size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "replace"))
            guard.need(size, "the output")
            guard.tick()
            parts.append(chunk)
        return "".join(parts)


def _template_line(exc: BaseException) -> int:
    """The template line an exception came from (Jinja rewrites tracebacks to template lines)."""
    line = 1
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _one_line(subject: str) -> str:
    """Collapse all whitespace and control characters to single spaces, then strip."""
    return " ".join(_SUBJECT_JUNK.sub(" ", subject).split())
