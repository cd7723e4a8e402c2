"""The shop API and its checkout funnel on bruno-site: browse, add to cart, check out.

A plain Locust file: it runs alone too.

    locust -f locustfiles/api.py --headless -u 10 -r 5 -t 30s -H http://127.0.0.1:8080

Weights give a conversion rate (checkouts / catalogue visits) of roughly 4-5 %, around the
plan's conversion-rate >= 2.5 threshold. After each checkout the user rates the visit, 1-5 stars,
by how it went: a fast checkout gets 5, a slow or failed one fewer (the plan's user-satisfaction
>= 4.0). The cart lives in a cookie, which FastHttpUser keeps per user, so it works across pods.
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
        with self.client.post("/api/checkout", json={}, catch_response=True) as response:
            ok = response.status_code == 201
            elapsed_ms = response.request_meta["response_time"]
        self.client.post("/api/rating", json={"stars": stars(ok, elapsed_ms)})


def stars(ok: bool, elapsed_ms: float) -> int:
    """How a user rates a checkout: failed 1; then 5 under 100 ms, 4 under 300, 3 under 600, else 2."""
    if not ok:
        return 1
    for limit, rating in ((100, 5), (300, 4), (600, 3)):
        if elapsed_ms < limit:
            return rating
    return 2
