"""Templates: loading, line numbers in errors, missing values, the sandbox and the limits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from outreach.errors import MissingVariable, RenderError, RenderLimitExceeded, TemplateInvalid
from outreach.template import (
    Rendered,
    Renderer,
    RenderLimits,
    TemplateSource,
    load_template,
    parse_limits,
    template_names,
)

SHIPPED = Path(__file__).resolve().parents[2] / "templates"
SHIPPED_NAMES = [
    "breakup_a",
    "breakup_b",
    "cold_breakup",
    "cold_bump",
    "cold_intro_a",
    "cold_intro_b",
    "cold_value",
    "first_touch",
    "follow_up",
]
LEAKS = ("<class", "function", "__globals__", "<built-in", "<module", "object at 0x", "subclasses")


def context(**prospect: object) -> dict[str, object]:
    """A context as the engine builds it (absent prospect fields left out)."""
    fields = {"email": "ann@example.com", "first_name": "Ann", "company": "Acme", **prospect}
    return {
        "prospect": {key: value for key, value in fields.items() if value not in (None, "")},
        "sender": {"name": "Bob Rep", "email": "bob@seller.example"},
        "sequence": {"id": "inbound", "name": "Inbound"},
        "step": {"number": 1},
        "unsubscribe_url": "https://example.com/u/abc",
    }


def write(folder: Path, name: str, text: str) -> Path:
    """Write a template file into folder."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def source(text: str, subject: str | None = None, html: str | None = None) -> TemplateSource:
    """A template source made in memory."""
    return TemplateSource(
        name="t", path="templates/t.j2", subject=subject, text=text, html=html, body_line=1
    )


@pytest.fixture
def renderer() -> Renderer:
    return Renderer()


@pytest.fixture
def fast() -> Renderer:
    return Renderer(RenderLimits(max_bytes=100_000, max_seconds=0.3))


# --- loading ---------------------------------------------------------------


def test_front_matter_subject_and_body(tmp_path: Path) -> None:
    write(tmp_path, "hello.j2", '---\nsubject: "Hi {{ prospect.first_name }}"\n---\nBody\n')
    loaded = load_template(tmp_path, "hello")
    assert loaded.name == "hello"
    assert loaded.path == str(tmp_path / "hello.j2")
    assert loaded.subject == "Hi {{ prospect.first_name }}"
    assert loaded.text == "Body\n"
    assert loaded.body_line == 4
    assert loaded.html is None and loaded.html_path is None


def test_no_front_matter_means_no_subject(tmp_path: Path) -> None:
    write(tmp_path, "reply.j2", "Hi {{ prospect.first_name }},\n")
    loaded = load_template(tmp_path, "reply")
    assert loaded.subject is None
    assert loaded.text == "Hi {{ prospect.first_name }},\n"
    assert loaded.body_line == 1


def test_crlf_front_matter(tmp_path: Path) -> None:
    write(tmp_path, "win.j2", "---\r\nsubject: Hello\r\n---\r\nBody\r\n")
    loaded = load_template(tmp_path, "win")
    assert loaded.subject == "Hello"
    assert loaded.text == "Body\r\n"


def test_html_twin(tmp_path: Path) -> None:
    write(tmp_path, "a.j2", "---\nsubject: S\n---\ntext\n")
    write(tmp_path, "a.html.j2", "<p>html</p>\n")
    loaded = load_template(tmp_path, "a")
    assert loaded.html == "<p>html</p>\n"
    assert loaded.html_path == str(tmp_path / "a.html.j2")


def test_syntax_error_reports_the_file_line(tmp_path: Path) -> None:
    body = "line 4\nline 5\nline 6\n{{ prospect.first_name \n"
    write(tmp_path, "bad.j2", "---\nsubject: S\n---\n" + body)
    with pytest.raises(TemplateInvalid, match=r"bad\.j2:7: "):
        load_template(tmp_path, "bad")


def test_syntax_error_without_front_matter(tmp_path: Path) -> None:
    write(tmp_path, "bad.j2", "one\n{% if x %}\n")
    with pytest.raises(TemplateInvalid, match=r"bad\.j2:2: "):
        load_template(tmp_path, "bad")


def test_syntax_error_in_subject(tmp_path: Path) -> None:
    write(tmp_path, "bad.j2", '---\n\nsubject: "Hi {{ x "\n---\nBody\n')
    with pytest.raises(TemplateInvalid, match=r"bad\.j2:3: "):
        load_template(tmp_path, "bad")


def test_syntax_error_in_html(tmp_path: Path) -> None:
    write(tmp_path, "a.j2", "---\nsubject: S\n---\ntext\n")
    write(tmp_path, "a.html.j2", "<p>\n{% for %}\n")
    with pytest.raises(TemplateInvalid, match=r"a\.html\.j2:2: "):
        load_template(tmp_path, "a")


def test_unknown_filter_is_a_load_error(tmp_path: Path) -> None:
    write(tmp_path, "bad.j2", "---\nsubject: S\n---\n\n{{ x | shout }}\n")
    with pytest.raises(TemplateInvalid, match=r"bad\.j2:5: .*shout"):
        load_template(tmp_path, "bad")


def test_include_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "bad.j2", "a\n{% include 'other.j2' %}\n")
    with pytest.raises(TemplateInvalid, match=r"bad\.j2:2: include"):
        load_template(tmp_path, "bad")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("---\nsubject: S\nfrom: x\n---\nBody\n", 3, "unknown front-matter key 'from'"),
        ("---\nsubject: 42\n---\nBody\n", 2, "subject must be a string"),
        ("---\nsubject: [a, b]\n---\nBody\n", 2, "subject must be a string"),
        ("---\nsubject: {{ x }}\n---\nBody\n", 2, "subject must be a string"),
        ('---\nsubject: ""\n---\nBody\n', 2, "subject is empty"),
        ("---\nsubject: S\nsubject: T\n---\nBody\n", 3, "duplicate"),
        ('---\nsubject: "unclosed\n---\nBody\n', 3, "bad front matter"),
        ("---\n- a list\n---\nBody\n", 2, "front matter must be"),
        ("---\nsubject: S\nBody\n", 1, "no closing '---'"),
    ],
)
def test_bad_front_matter(tmp_path: Path, text: str, line: int, message: str) -> None:
    write(tmp_path, "bad.j2", text)
    with pytest.raises(TemplateInvalid) as caught:
        load_template(tmp_path, "bad")
    assert str(caught.value).startswith(f"{tmp_path / 'bad.j2'}:{line}: ")
    assert message in str(caught.value)


def test_missing_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid, match=r"nope\.j2:1: no such template"):
        load_template(tmp_path, "nope")


@pytest.mark.parametrize("name", ["../secret", "a/b", "", ".hidden", "x.html"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(TemplateInvalid, match="bad template name"):
        load_template(tmp_path, name)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bin.j2").write_bytes(b"ok\n\xff\xfe\n")
    with pytest.raises(TemplateInvalid, match=r"bin\.j2:2: not UTF-8"):
        load_template(tmp_path, "bin")


def test_template_names_skip_html_twins(tmp_path: Path) -> None:
    for name in ("b.j2", "a.j2", "a.html.j2", "notes.txt"):
        write(tmp_path, name, "x")
    assert template_names(tmp_path) == ["a", "b"]


def test_source_round_trips_through_json(tmp_path: Path) -> None:
    write(tmp_path, "a.j2", "---\nsubject: S {{ x }}\n---\nBody\n")
    write(tmp_path, "a.html.j2", "<p>Body</p>\n")
    loaded = load_template(tmp_path, "a")
    assert TemplateSource.model_validate(loaded.model_dump()) == loaded
    assert TemplateSource.model_validate_json(loaded.model_dump_json()) == loaded


# --- shipped templates -------------------------------------------------------


def test_shipped_templates_all_load() -> None:
    assert template_names(SHIPPED) == SHIPPED_NAMES
    for name in SHIPPED_NAMES:
        load_template(SHIPPED, name)


def test_threaded_templates_have_no_subject() -> None:
    assert load_template(SHIPPED, "follow_up").subject is None
    assert load_template(SHIPPED, "cold_bump").subject is None
    assert load_template(SHIPPED, "first_touch").html is not None


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_templates_render(renderer: Renderer, name: str) -> None:
    rendered = renderer.render(load_template(SHIPPED, name), context(title="VP Sales"))
    assert "Bob Rep" in rendered.text
    assert "{" not in rendered.text and "unsubscribe" not in rendered.text.lower()
    assert rendered.subject is None or "\n" not in rendered.subject


def test_first_touch_needs_a_company(renderer: Renderer) -> None:
    with pytest.raises(MissingVariable, match=r"^missing prospect\.company$") as caught:
        renderer.render(load_template(SHIPPED, "first_touch"), context(company=None))
    assert caught.value.name == "prospect.company"


def test_first_touch_without_first_name(renderer: Renderer) -> None:
    rendered = renderer.render(load_template(SHIPPED, "first_touch"), context(first_name=None))
    assert rendered.text.startswith("Hi there,")
    assert rendered.html is not None and "Hi there," in rendered.html


# --- missing values ----------------------------------------------------------


def test_missing_variable_names_the_dotted_path(renderer: Renderer) -> None:
    with pytest.raises(MissingVariable) as caught:
        renderer.render_string("Hi {{ prospect.title }}", context())
    assert str(caught.value) == "missing prospect.title"
    assert caught.value.name == "prospect.title"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("{{ prospect['title'] }}", "prospect.title"),
        ("{{ prospect.title.upper() }}", "prospect.title"),
        ("{{ prospect.title | upper }}", "prospect.title"),
        ("{{ sender.phone }}", "sender.phone"),
        ("{{ nobody }}", "nobody"),
        ("{% for x in prospect.tags %}{{ x }}{% endfor %}", "prospect.tags"),
        ("{{ prospect.custom.size }}", "prospect.custom.size"),
        ("{{ prospect.items }}", "prospect.items"),
    ],
)
def test_missing_paths(renderer: Renderer, text: str, path: str) -> None:
    ctx = context(custom={"region": "EMEA"})
    with pytest.raises(MissingVariable, match=f"^missing {path}$"):
        renderer.render_string(text, ctx)


def test_empty_values_count_as_missing(renderer: Renderer) -> None:
    with pytest.raises(MissingVariable, match=r"prospect\.company"):
        renderer.render_string("{{ prospect.company }}", {"prospect": {"company": "  "}})


def test_default_filter(renderer: Renderer) -> None:
    text = "Hi {{ prospect.first_name | default('there') }} at {{ prospect.company | d('x') }}"
    assert renderer.render_string(text, context(first_name=None)) == "Hi there at Acme"


def test_missing_is_false_in_if(renderer: Renderer) -> None:
    text = "{% if prospect.title %}As {{ prospect.title }}{% else %}none{% endif %}"
    assert renderer.render_string(text, context()) == "none"
    assert renderer.render_string(text, context(title="CTO")) == "As CTO"
    assert renderer.render_string("{{ prospect.title or 'x' }}", context()) == "x"
    assert renderer.render_string("{{ prospect.title is defined }}", context()) == "False"
    assert renderer.render_string("{{ prospect.title == 'CTO' }}", context()) == "False"


def test_custom_fields_shadow_nothing(renderer: Renderer) -> None:
    ctx = context(values="field", plan="Pro")
    assert renderer.render_string("{{ prospect.values }} {{ prospect.plan }}", ctx) == "field Pro"


def test_forgotten_parentheses_are_an_error(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match="forget"):
        renderer.render_string("{{ prospect.first_name.upper }}", context())


# --- parts, escaping and the subject ----------------------------------------


def test_render_parts(renderer: Renderer) -> None:
    rendered = renderer.render(
        source("Hi {{ prospect.first_name }}\n", "Hello {{ prospect.company }}", "<p>Hi</p>"),
        context(),
    )
    assert rendered == Rendered(subject="Hello Acme", text="Hi Ann\n", html="<p>Hi</p>")


def test_html_twin_autoescapes(renderer: Renderer) -> None:
    tpl = source("Hi {{ prospect.first_name }}", "S", "<p>Hi {{ prospect.first_name }}</p>")
    rendered = renderer.render(tpl, context(first_name="<script>alert(1)</script>"))
    assert rendered.html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert rendered.text == "Hi <script>alert(1)</script>"


def test_subject_comes_out_on_one_line(renderer: Renderer) -> None:
    tpl = source("Body", "  Hi {{ prospect.first_name }}\n  again\t ")
    rendered = renderer.render(tpl, context(first_name="Eve\r\nBcc: x@evil.example\u2028\x00"))
    assert rendered.subject == "Hi Eve Bcc: x@evil.example again"


def test_render_error_names_the_line(renderer: Renderer) -> None:
    tpl = TemplateSource(
        name="t", path="templates/t.j2", subject=None, text="a\nb\n{{ 1 / 0 }}\n", html=None,
        body_line=4,
    )  # fmt: skip
    with pytest.raises(RenderError, match=r"templates/t\.j2:6: ZeroDivisionError"):
        renderer.render(tpl, context())


def test_compiled_templates_are_cached(renderer: Renderer) -> None:
    tpl = source("Hi {{ prospect.first_name }}")
    renderer.render(tpl, context())
    hits = renderer._compile_text.cache_info().hits
    renderer.render(tpl.model_copy(), context(first_name="Bo"))
    assert renderer._compile_text.cache_info().hits == hits + 1


# --- limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("100kB,2s", RenderLimits(max_bytes=100_000, max_seconds=2.0)),
        ("1MB,500ms", RenderLimits(max_bytes=1_000_000, max_seconds=0.5)),
        ("50000,1.5s", RenderLimits(max_bytes=50_000, max_seconds=1.5)),
        (" 64 kb , 250 ms ", RenderLimits(max_bytes=64_000, max_seconds=0.25)),
        ("2048B,3", RenderLimits(max_bytes=2048, max_seconds=3.0)),
    ],
)
def test_parse_limits(text: str, limits: RenderLimits) -> None:
    assert parse_limits(text) == limits


@pytest.mark.parametrize("text", ["", "100kB", "100kB,", "100kB;2s", "abc,2s", "100xB,2s",
                                  "100kB,2h", "0,2s", "100kB,0s", "-5,2s"])  # fmt: skip
def test_parse_limits_refuses_bad_text(text: str) -> None:
    with pytest.raises(ValueError):
        parse_limits(text)


def test_default_limits() -> None:
    assert RenderLimits() == parse_limits("100kB,2s")


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x' * 10**9 }}",
        "{{ [1] * 10**9 }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ (10 ** 10) ** (10 ** 10) }}",
        "{{ 'x'.center(10**9) }}",
        "{{ 'x'.ljust(10**9) }}",
        "{{ 'x'.zfill(10**9) }}",
        "{{ (5).to_bytes(10**9, 'big') }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%.999999999d' % 1 }}",
        "{{ '%*d' % (10**9, 1) }}",
        "{{ '{:999999999}'.format(1) }}",
        "{{ ('{0}' * 20000).format('x' * 99999) }}",
        "{{ '%s' | format('x') | center(10**9) }}",
        "{{ '%999999999s' | format('x') }}",
        "{{ 'x' | indent(10**9) }}",
        "{{ [1] | batch(10**9) | list }}",
        "{{ ('x' * 99999) | replace('x', 'y' * 99999) }}",
        "{{ ('x' * 99999).replace('x', 'y' * 99999) }}",
        "{{ ('x' * 99999) | join('y' * 99999) }}",
        "{{ ('y' * 99999).join('x' * 99999) }}",
        "{{ ('x' * 99999).translate({120: 'y' * 99999}) }}",
        "{{ ('\t' * 99999).expandtabs(99999) }}",
        "{{ ('a ' * 49999) | wordwrap(1, wrapstring='y' * 99999) }}",
        "{{ [('x' * 99999)] * 99999 }}",
        "{% set a = 'x' * 99999 %}{{ a ~ a }}",
        "{% set a = 'x' * 99999 %}{{ a + a }}",
        "{% set a = 'x' * 60000 %}{% set b %}{{ a }}{{ a }}{% endset %}{{ b | length }}",
        "{% macro m(a) %}{{ a }}{{ a }}{% endmacro %}{{ m('x' * 60000) | length }}",
        "{{ lipsum(10**6) }}",
        "{{ [[1] * 9999] * 9 | tojson(indent=10**9) }}",
        "{{ range(10**9) | list }}",
        "{{ range(99999) | map('string') | map('center', 99999) | list | length }}",
        "{% for i in range(100000) %}0123456789{% endfor %}",
    ],
)
def test_size_limit_fails_fast(renderer: Renderer, text: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded):
        renderer.render_string(text, context())
    assert time.monotonic() - started < 1.0


def test_output_limit_counts_bytes() -> None:
    small = Renderer(RenderLimits(max_bytes=10, max_seconds=1))
    assert small.render_string("{{ 'x' * 10 }}", {}) == "x" * 10
    with pytest.raises(RenderLimitExceeded):
        small.render_string("{{ 'é' * 6 }}", {})


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in 'x' * 99999 %}{% for j in 'x' * 99999 %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    ],
)
def test_time_limit(fast: Renderer, text: str) -> None:
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match=r"longer than 0\.3s"):
        fast.render_string(text, context())
    assert time.monotonic() - started < 1.5


def test_infinite_recursion_is_a_render_error(renderer: Renderer) -> None:
    with pytest.raises(RenderLimitExceeded):
        renderer.render_string("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", context())


def test_ordinary_formatting_still_works(renderer: Renderer) -> None:
    ctx = context(employees=250000)
    text = "{{ '{:,}'.format(prospect.employees) }} {{ '%05d' % 42 }} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
    assert renderer.render_string(text, ctx) == "250,000 00042 ababab 1024"
    loop = "{% for i in range(3) %}{{ loop.index }}{% if not loop.last %},{% endif %}{% endfor %}"
    assert renderer.render_string(loop, ctx) == "1,2,3"
    assert renderer.render_string("{{ ['a', 'b'] | join(', ') }} {{ 'a' ~ 1 }}", ctx) == "a, b a1"


# --- the sandbox -------------------------------------------------------------

PAYLOADS = [
    # CVE-2016-10745: str.format reaching attributes
    "{{ '{0.__class__.__mro__[1].__subclasses__}'.format('') }}",
    "{{ 'a{0.__class__}'.format(prospect) }}",
    # CVE-2019-10906: str.format_map
    "{{ '{x.__class__.__init__.__globals__}'.format_map({'x': cycler}) }}",
    "{{ '{0.__init__.__globals__}'.format_map({'0': joiner}) }}",
    # CVE-2025-27516: |attr reaching str.format
    "{% set f = '{0.__class__.__mro__}' | attr('format') %}{{ f('') }}",
    "{{ ('{0.__init__.__globals__}' | attr('format'))(cycler) }}",
    "{{ ('{0.__class__}' | attr('format_map'))({'0': ''}) }}",
    # classic escapes
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__']['__mro__'] }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__globals__ }}",
    "{{ prospect.__class__ }}",
    "{{ prospect._data }}",
    "{{ request }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ cycler }}",
    "{{ lipsum }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ (1).__class__ }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ [1, 2].pop() }}",
    "{{ {'a': 1}.clear() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_sandbox_escapes_are_refused(renderer: Renderer, payload: str) -> None:
    try:
        out = renderer.render_string(payload, context())
    except RenderError:
        return
    assert not any(leak in out for leak in LEAKS), out


@pytest.mark.parametrize("payload", PAYLOADS[:8])
def test_sandbox_escapes_in_html_and_subject(renderer: Renderer, payload: str) -> None:
    try:
        rendered = renderer.render(source("x", subject=payload, html=payload), context())
    except RenderError:
        return
    for part in (rendered.subject or "", rendered.html or ""):
        assert not any(leak in part for leak in LEAKS), part


def test_unsafe_access_is_a_plain_render_error(renderer: Renderer) -> None:
    with pytest.raises(RenderError, match="not allowed") as caught:
        renderer.render_string("{{ cycler.__init__.__globals__ }}", context())
    assert type(caught.value) is RenderError


def test_undefined_globals_are_missing_variables(renderer: Renderer) -> None:
    with pytest.raises(MissingVariable, match=r"^missing config$"):
        renderer.render_string("{{ config }}", context())
