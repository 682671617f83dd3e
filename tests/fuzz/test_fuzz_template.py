"""Fuzzing templates: random Jinja-ish source and prospect contexts render or fail cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from outreach.errors import RenderError, TemplateInvalid
from outreach.template import Renderer, RenderLimits, TemplateSource, load_template
from tests.fuzz.conftest import fuzz_settings

LEAKS = ("<class", "function", "__globals__", "<built-in", "<module", "object at 0x", "subclasses")
LIMITS = RenderLimits(max_bytes=50_000, max_seconds=0.5)
RENDERER = Renderer(LIMITS)

NAMES = st.sampled_from(
    [
        "prospect",
        "prospect.first_name",
        "prospect.email",
        "prospect.company",
        "prospect.nope",
        "prospect.fields",
        "prospect['first_name']",
        "prospect.items()",
        "sender.name",
        "sender",
        "sequence.id",
        "step.number",
        "unsubscribe_url",
        "missing",
        "x",
        "loop",
        "self",
        "range",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "prospect.__class__",
        "''.__class__",
        "().__class__.__base__",
        "config",
        "request",
    ]
)
LITERALS = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(str),
    st.sampled_from(["9**9**9", "10**100", "'ab' * 99999", "[1] * 99999", "'%s' % 1", "1/0"]),
    st.sampled_from(["''", "'x'", '"é✉"', "[]", "{}", "[1, 2]", "{'a': 1}", "none", "true"]),
    st.sampled_from(["1.5e308", "0.0", "'{0:>99999}'.format(1)", "'x'.center(10**9)"]),
)
FILTERS = st.sampled_from(
    [
        "upper",
        "lower",
        "title",
        "default('friend')",
        "default",
        "length",
        "join(', ')",
        "replace('a', 'aaaa')",
        "center(100000)",
        "indent(99999)",
        "wordwrap(1)",
        "tojson",
        "tojson(99999)",
        "sum",
        "format(1, 2)",
        "int",
        "float",
        "string",
        "list",
        "sort",
        "first",
        "last",
        "e",
        "safe",
        "trim",
        "truncate(5)",
        "attr('__class__')",
        "map('upper')",
        "unknown_filter",
        "batch(2)",
        "striptags",
        "urlize",
        "round",
        "abs",
    ]
)
OPERATORS = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "~", "==", "and", "or", "in"])


def expressions() -> st.SearchStrategy[str]:
    atoms = st.one_of(NAMES, LITERALS)
    return st.recursive(
        atoms,
        lambda inner: st.one_of(
            st.tuples(inner, FILTERS).map(lambda t: f"{t[0]} | {t[1]}"),
            st.tuples(inner, OPERATORS, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}[{t[1]}]"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            inner.map(lambda e: f"range({e})"),
        ),
        max_leaves=6,
    )


def statements() -> st.SearchStrategy[str]:
    expr = expressions()
    text = st.text(max_size=15)
    piece = st.one_of(
        text,
        expr.map(lambda e: "{{ " + e + " }}"),
        expr.map(lambda e: "{% if " + e + " %}yes{% else %}no{% endif %}"),
        expr.map(lambda e: "{% for i in " + e + " %}{{ i }}{{ loop.index }}{% endfor %}"),
        expr.map(lambda e: "{% set v = " + e + " %}{{ v }}"),
        st.sampled_from(
            [
                "{{",
                "}}",
                "{%",
                "%}",
                "{#",
                "#}",
                "{% endif %}",
                "{% endfor %}",
                "{% raw %}",
                "{% include 'x' %}",
                "{% extends 'x' %}",
                "{% import 'x' as y %}",
                "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
                "{% for a in range(9999) %}{% for b in range(9999) %}.{% endfor %}{% endfor %}",
                "{% filter upper %}x{% endfilter %}",
                "{% with a = 1 %}{{ a }}{% endwith %}",
                "{% set ns = namespace(a=1) %}{% set ns.a = 2 %}",
                "{{ prospect.first_name }}",
                "\n",
                "\r\n",
                "\x00",
                "\ufeff",
            ]
        ),
    )
    return st.lists(piece, max_size=6).map("".join)


SOURCES = st.one_of(statements(), st.text(max_size=80))

FIELD_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(),
        st.text(max_size=30),
        st.just("x" * 2000),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, object]:
    prospect: dict[Any, Any] = {"email": "ann@example.com"}
    for key in draw(st.lists(st.sampled_from(["first_name", "company", "title", "fields"]))):
        prospect[key] = draw(FIELD_VALUES)
    prospect.update(draw(st.dictionaries(st.text(max_size=10), FIELD_VALUES, max_size=3)))
    return {
        "prospect": {k: v for k, v in prospect.items() if v not in (None, "")},
        "sender": {"name": "Bob Rep", "email": "bob@seller.example"},
        "sequence": {"id": "fuzz", "name": "Fuzz"},
        "step": {"number": 1},
        "unsubscribe_url": "https://example.com/u/abc",
    }


def _no_leak(output: str, *sources: object) -> None:
    for leak in LEAKS:
        if leak in output:
            assert any(leak in str(s) for s in sources), f"sandbox leak {leak!r}: {output[:300]!r}"


def _render(source: TemplateSource, ctx: dict[str, object]) -> None:
    try:
        rendered = RENDERER.render(source, ctx)
    except RenderError as exc:  # MissingVariable and RenderLimitExceeded are subclasses
        assert str(exc)
        return
    for part in (rendered.subject, rendered.text, rendered.html):
        if part is not None:
            _no_leak(part, source.subject, source.text, source.html, ctx)
            assert len(part.encode("utf-8", "surrogatepass")) <= LIMITS.max_bytes
    if rendered.subject is not None:
        assert "\n" not in rendered.subject and "\r" not in rendered.subject


@fuzz_settings(150)
@given(text=SOURCES, ctx=contexts())
def test_render_string_renders_or_raises_render_error(text: str, ctx: dict[str, object]) -> None:
    try:
        out = RENDERER.render_string(text, ctx)
    except RenderError as exc:
        assert str(exc)
        return
    _no_leak(out, text, ctx)
    assert len(out.encode("utf-8", "surrogatepass")) <= LIMITS.max_bytes


@fuzz_settings(80)
@given(
    subject=st.one_of(st.none(), SOURCES),
    text=SOURCES,
    html=st.one_of(st.none(), SOURCES),
    ctx=contexts(),
)
def test_render_parts(
    subject: str | None, text: str, html: str | None, ctx: dict[str, object]
) -> None:
    source = TemplateSource(
        name="t", path="templates/t.j2", subject=subject, text=text, html=html, body_line=3
    )
    _render(source, ctx)


FRONT = st.one_of(
    st.just(""),
    SOURCES.map(lambda s: f"---\nsubject: {s!r}\n---\n"),
    st.text(max_size=40).map(lambda s: f"---\n{s}\n---\n"),
    st.sampled_from(
        [
            "---\n",
            "---\nsubject: [1, 2]\n---\n",
            "---\nsubject:\n---\n",
            "---\nsubject: a\nsubject: b\n---\n",
            "---\nother: 1\n---\n",
            "---\nsubject: &a [*a]\n---\n",
            "---\r\nsubject: 'Hi'\r\n---\r\n",
            "---\nsubject: " + "[" * 50 + "]" * 50 + "\n---\n",
        ]
    ),
)


@fuzz_settings(80)
@given(
    front=FRONT,
    body=SOURCES,
    html=st.one_of(st.none(), SOURCES),
    prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff"]),
    ctx=contexts(),
)
def test_load_template_then_render(
    tmp_path: Path,
    front: str,
    body: str,
    html: str | None,
    prefix: bytes,
    ctx: dict[str, object],
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / "t.j2").write_bytes(prefix + (front + body).encode("utf-8", "surrogatepass"))
    html_file = folder / "t.html.j2"
    if html is None:
        html_file.unlink(missing_ok=True)
    else:
        html_file.write_bytes(html.encode("utf-8", "surrogatepass"))
    try:
        source = load_template(folder, "t")
    except TemplateInvalid as exc:
        assert str(exc).startswith(str(folder)), str(exc)
        return
    _render(source, ctx)
