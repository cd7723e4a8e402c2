"""HTML pieces of /ui: the page frame, tables, badges. Every value that comes from outside goes
through `e()` (canary names, reasons, targets, event messages, ids from the URL); links are built
with `href()`, which quotes each path part. No CDN, no external font: the pages work air-gapped and print.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from urllib.parse import quote, urlencode

DASH = "\u2013"  # an en dash: "no value"
MUTED_DASH_HTML = f'<span class="muted">{DASH}</span>'

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;color:#1b1f24;background:#fff}
header{background:#1b1f24;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;font-size:12px}
main{padding:12px 16px;max-width:1200px}h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:16px 0 6px}
table{border-collapse:collapse;width:100%;margin:4px 0 12px}th,td{border-bottom:1px solid #ddd;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f3f4f6;font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums}code{font-size:12px}.muted{color:#666}
.badge{display:inline-block;padding:1px 6px;border-radius:3px;font-size:12px;font-weight:600;color:#fff;
background:#6b7280}.pass,.succeeded,.approved,.completed{background:#15803d}.fail,.failed,.halted,.error{background:#b91c1c}
.running,.open,.collecting{background:#1d4ed8}.interrupted,.stopped,.superseded,.ended,.not-judged{background:#a16207}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:4px 0 12px}dl.facts dt{color:#555}
dl.facts dd{margin:0}.lk-chart{margin:.4em 0 1em;break-inside:avoid}.lk-chart .u-title{font-size:14px;font-weight:600}
form.inline{display:inline-flex;gap:4px;margin:2px 8px 2px 0}button{font:inherit;padding:2px 10px;cursor:pointer}
.banner{padding:8px 12px;border-radius:4px;margin:8px 0;color:#fff;font-weight:600}
@media print{header,form.inline,.actions{display:none}main{max-width:none}}
"""


def e(value: object) -> str:
    """Escape for HTML text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def href(*parts: str, **query: str | None) -> str:
    """/ui/... with every part quoted (a part never adds a path segment) and the query encoded."""
    path = "/ui" + "".join("/" + quote(p, safe="") for p in parts)
    given = {k: v for k, v in query.items() if v}
    return e(path + ("?" + urlencode(given) if given else ""))


def link(text: object, *parts: str) -> str:
    return f'<a href="{href(*parts)}">{e(text)}</a>'


def badge(value: object) -> str:
    if value is None or value == "":
        return MUTED_DASH_HTML
    return f'<span class="badge {e(value)}">{e(value)}</span>'


def when(value: datetime | None) -> str:
    if value is None:
        return MUTED_DASH_HTML
    return f'<time datetime="{e(value.isoformat())}">{e(value.strftime("%Y-%m-%d %H:%M:%S"))} UTC</time>'


def number(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return MUTED_DASH_HTML
    return e(f"{value:.{digits}f}{(' ' + unit) if unit else ''}")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str, numeric: frozenset[int] = frozenset(),
          name: str = "") -> str:
    """A table of pre-rendered (already escaped) cells; `empty` is shown when there are no rows."""
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="muted" data-empty="{e(name)}">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    return f'<table data-table="{e(name)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def facts(pairs: Sequence[tuple[str, str]]) -> str:
    """A definition list of (label, pre-rendered value)."""
    return '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def json_script(element_id: str, data: object) -> str:
    """Data for the page's script, as JSON that cannot end its <script> element early."""
    text = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")  # no </script>, no <!--
    return f'<script type="application/json" id="{e(element_id)}">{text}</script>'


def csrf_field(csrf: str) -> str:
    """The hidden field every action form of a session carries (loadkit/webhook/ui.py checks it)."""
    return f'<input type="hidden" name="csrf" value="{e(csrf)}">'


def page(title: str, body: str, *, nonce: str, csrf: str | None, token_configured: bool, script: str = "",
         assets: Sequence[str] = ()) -> str:
    """The whole document: header with navigation and who is signed in (`csrf` not None: an admin,
    whose forms carry it), the body, an optional script after the `assets` it needs (served by
    /ui/assets/: stylesheets and scripts, in order)."""
    if csrf is not None:
        who = ('signed in with the admin token <form class="inline" method="post" action="/ui/logout">'
               f'{csrf_field(csrf)}<button type="submit">sign out</button></form>')
    elif token_configured:
        who = '<span>read-only</span> <a href="/ui/login">sign in (admin token)</a>'
    else:
        who = "<span>read-only (no admin token configured)</span>"
    script_tag = "".join(f'<script nonce="{e(nonce)}" src="/ui/assets/{e(a)}"></script>' for a in assets
                         if a.endswith(".js"))
    script_tag += f'<script nonce="{e(nonce)}">{script}</script>' if script else ""
    styles = "".join(f'<link rel="stylesheet" href="/ui/assets/{e(a)}">' for a in assets if a.endswith(".css"))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)} · loadkit</title>'
            f'<link rel="icon" href="data:,">{styles}<style>{CSS}</style></head><body>'
            f'<header><a href="/ui"><b>loadkit</b></a><a href="/ui">canaries and runs</a>'
            f'<a href="/ui/history">history</a><span class="who">{who}</span></header>'
            f"<main>{body}</main>{script_tag}</body></html>")


def csp(nonce: str) -> str:
    """Scripts only with this page's nonce; no request leaves the server's origin."""
    return (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
