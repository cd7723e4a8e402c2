"""Browsing journeys on bruno-site, weighted like real visitors.

A plain Locust file: it runs alone too.

    locust -f locustfiles/website.py --headless -u 10 -r 5 -t 30s -H http://127.0.0.1:8080

Paths are relative, so a host with a prefix (http://127.0.0.1:8080/canary) keeps every request
on that route. Think time is short (0.2-1 s): enough load to judge a canary in a minute.
"""

import random

from locust import FastHttpUser, between, task

ASSETS = ("/static/site.css", "/static/app.js", "/static/logo.svg")
BLOG_POSTS = 100
ASSET_MISS_RATE = 0.2  # share of page views whose assets are not in the browser cache


class WebsiteVisitor(FastHttpUser):
    """Lands on the home page, reads the blog, looks at the about page."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.page("/", assets=True)

    def page(self, path: str, name: str | None = None, assets: bool = False) -> None:
        self.client.get(path, name=name or path)
        if assets or random.random() < ASSET_MISS_RATE:
            for asset in ASSETS:
                self.client.get(asset)

    @task(4)
    def home(self) -> None:
        self.page("/")

    @task(4)
    def read_blog(self) -> None:
        self.page("/blog")
        post = random.randint(1, BLOG_POSTS)
        self.page(f"/blog/{post}", name="/blog/[n]")

    @task(1)
    def about(self) -> None:
        self.page("/about")
