"""The sample site's pages and static assets, as plain strings.

Small but real: pages link to each other and to the assets so a crawler-style load profile has
something to follow. Links are absolute (`/about`); under the `/canary` prefix they lead back to
the weighted route, exactly as they would behind an Istio prefix rewrite.
"""

from __future__ import annotations

import html

from loadkit.sandbox._shop import PRODUCTS

BLOG_POSTS = 100

_LAYOUT = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} · Bruno's coffee</title>
  <link rel="stylesheet" href="/static/site.css">
  <script src="/static/app.js" defer></script>
</head>
<body>
  <header><a href="/"><img src="/static/logo.svg" alt="Bruno's coffee" width="40" height="40"></a>
    <nav><a href="/">Home</a> <a href="/blog">Blog</a> <a href="/about">About</a></nav></header>
  <main>
{body}
  </main>
  <footer>Served by {workload} ({pod})</footer>
</body>
</html>
"""


def _page(title: str, body: str, *, workload: str, pod: str) -> str:
    return _LAYOUT.format(title=html.escape(title), body=body, workload=workload, pod=pod)


def home_page(*, workload: str, pod: str) -> str:
    products = "\n".join(
        f'      <li><a href="/api/products/{p.id}">{html.escape(p.name)}</a> {p.price_cents / 100:.2f}</li>'
        for p in PRODUCTS
    )
    latest = "\n".join(f'      <li><a href="/blog/{n}">Post {n}</a></li>' for n in range(1, 6))
    body = (
        "    <h1>Bruno's coffee</h1>\n"
        f"    <h2>Shop</h2>\n    <ul>\n{products}\n    </ul>\n"
        f"    <h2>Latest posts</h2>\n    <ul>\n{latest}\n    </ul>\n"
    )
    return _page("Home", body, workload=workload, pod=pod)


def about_page(*, workload: str, pod: str) -> str:
    body = "    <h1>About</h1>\n    <p>A small roastery, and the sample app of loadkit's sandbox.</p>\n"
    return _page("About", body, workload=workload, pod=pod)


def blog_index_page(*, workload: str, pod: str) -> str:
    posts = "\n".join(f'      <li><a href="/blog/{n}">Post {n}</a></li>' for n in range(1, BLOG_POSTS + 1))
    return _page("Blog", f"    <h1>Blog</h1>\n    <ul>\n{posts}\n    </ul>\n", workload=workload, pod=pod)


def blog_post_page(n: int, *, workload: str, pod: str) -> str:
    paragraphs = "\n".join(
        f"    <p>Post {n}, paragraph {i}: notes on roasting, brewing and grinding.</p>" for i in range(1, 6)
    )
    nav = f'    <p><a href="/blog/{n % BLOG_POSTS + 1}">Next post</a> · <a href="/blog">All posts</a></p>'
    return _page(f"Post {n}", f"    <h1>Post {n}</h1>\n{paragraphs}\n{nav}\n", workload=workload, pod=pod)


_CSS = """body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 48rem; padding: 1rem; }
header { display: flex; gap: 1rem; align-items: center; }
nav a { margin-right: 0.75rem; }
footer { color: #666; font-size: 0.8rem; margin-top: 2rem; }
"""

_JS = """document.addEventListener("DOMContentLoaded", () => {
  fetch("/api/cart").then((r) => r.json()).then((cart) => {
    document.title = `${document.title} (${cart.count} in cart)`;
  });
});
"""

_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40" width="40" height="40">
  <circle cx="20" cy="20" r="18" fill="#6f4e37"/>
  <path d="M20 6 C12 14 28 26 20 34" stroke="#f5e6d3" stroke-width="3" fill="none"/>
</svg>
"""

# name -> (content type, body)
STATIC_ASSETS: dict[str, tuple[str, str]] = {
    "site.css": ("text/css", _CSS),
    "app.js": ("text/javascript", _JS),
    "logo.svg": ("image/svg+xml", _SVG),
}
