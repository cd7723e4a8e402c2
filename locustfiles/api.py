"""The shop API and its checkout funnel on bruno-site: browse, add to cart, check out.

A plain Locust file: it runs alone too.

    locust -f locustfiles/api.py --headless -u 10 -r 5 -t 30s -H http://127.0.0.1:8080

Weights give a conversion rate (checkouts / catalogue visits) of roughly 4-5 %, around the
plan's conversion-rate >= 2.5 threshold. The cart lives in a cookie, which FastHttpUser keeps
per user, so it works across pods.
"""

import random

from locust import FastHttpUser, between, task

PRODUCT_IDS = range(1, 21)


class ShopApiUser(FastHttpUser):
    """Browses the catalogue most of the time, sometimes buys."""

    wait_time = between(0.2, 1.0)

    @task(20)
    def browse(self) -> None:
        self.client.get("/api/products")
        product = random.choice(PRODUCT_IDS)
        self.client.get(f"/api/products/{product}", name="/api/products/[id]")

    @task(4)
    def add_to_cart(self) -> None:
        self.client.post("/api/cart", json={"product_id": random.choice(PRODUCT_IDS), "quantity": 1})
        self.client.get("/api/cart")

    @task(1)
    def checkout(self) -> None:
        self.client.post("/api/cart", json={"product_id": random.choice(PRODUCT_IDS), "quantity": 1})
        self.client.post("/api/checkout", json={})
