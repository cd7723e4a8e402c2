"""The sample shop: a fixed catalogue and a cart that lives in a cookie.

The cart is a cookie (`cart=3:1|5:2`, product id and quantity) rather than server state so that
a checkout flow works while round-robin routing sends each step to a different pod, and so a pod
restart loses nothing. Prices are integer cents internally to keep totals exact.

Pure: no I/O, so the rules are tested with plain tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

CART_COOKIE = "cart"
MAX_QUANTITY = 99  # per product; keeps the cookie small and bounded


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price_cents: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "price": self.price_cents / 100}


_CATALOGUE = [
    ("Espresso beans, 250 g", 1290),
    ("Filter coffee, 500 g", 1850),
    ("Ceramic mug", 1400),
    ("Travel tumbler", 2490),
    ("Pour-over dripper", 3200),
    ("Paper filters, 100", 650),
    ("Hand grinder", 5900),
    ("Milk jug", 1750),
    ("Gooseneck kettle", 6900),
    ("Digital scale", 3900),
    ("Cold brew bottle", 2900),
    ("Tasting notebook", 990),
    ("Barista apron", 3400),
    ("Cleaning tablets", 1190),
    ("Decaf beans, 250 g", 1350),
    ("Sample box", 2100),
    ("Tea sampler", 1600),
    ("Knock box", 2700),
    ("Tamper", 3600),
    ("Gift card", 2500),
]

PRODUCTS: tuple[Product, ...] = tuple(
    Product(id=i, name=name, price_cents=cents) for i, (name, cents) in enumerate(_CATALOGUE, start=1)
)
PRODUCTS_BY_ID: dict[int, Product] = {p.id: p for p in PRODUCTS}

Cart = dict[int, int]  # product id -> quantity


class CartInputError(Exception):
    """A rejected cart request; `status` is the HTTP status and `field` the offending JSON field."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


MAX_STARS = 5


def decode_cart(cookie: str | None) -> Cart:
    """Parse the cart cookie, dropping anything malformed: a cookie is user input, not a 500."""
    cart: Cart = {}
    for entry in (cookie or "").replace(",", "|").split("|"):
        pid_text, _, qty_text = entry.partition(":")
        if not (pid_text.isdigit() and qty_text.isdigit()):
            continue
        pid, qty = int(pid_text), int(qty_text)
        if pid in PRODUCTS_BY_ID and qty >= 1:
            cart[pid] = min(cart.get(pid, 0) + qty, MAX_QUANTITY)
    return cart


def encode_cart(cart: Cart) -> str:
    return "|".join(f"{pid}:{qty}" for pid, qty in sorted(cart.items()))


def add_to_cart(cart: Cart, product_id: int, quantity: int) -> Cart:
    updated = dict(cart)
    updated[product_id] = min(updated.get(product_id, 0) + quantity, MAX_QUANTITY)
    return updated


def cart_total_cents(cart: Cart) -> int:
    return sum(PRODUCTS_BY_ID[pid].price_cents * qty for pid, qty in cart.items())


def cart_view(cart: Cart) -> dict[str, Any]:
    items = [
        {
            "product_id": pid,
            "name": PRODUCTS_BY_ID[pid].name,
            "price": PRODUCTS_BY_ID[pid].price_cents / 100,
            "quantity": qty,
            "subtotal": PRODUCTS_BY_ID[pid].price_cents * qty / 100,
        }
        for pid, qty in sorted(cart.items())
    ]
    return {"items": items, "count": sum(cart.values()), "total": cart_total_cents(cart) / 100}


def parse_cart_addition(payload: object) -> tuple[int, int]:
    """Validate a `POST /api/cart` body; returns (product_id, quantity) or raises CartInputError."""
    if not isinstance(payload, dict):
        raise CartInputError(400, "body", 'body must be a JSON object like {"product_id": 3, "quantity": 1}')
    product_id = payload.get("product_id")
    if not _is_int(product_id):
        raise CartInputError(400, "product_id", "product_id is required and must be an integer")
    quantity = payload.get("quantity", 1)
    if not _is_int(quantity) or not 1 <= quantity <= MAX_QUANTITY:
        raise CartInputError(400, "quantity", f"quantity must be an integer from 1 to {MAX_QUANTITY}")
    if product_id not in PRODUCTS_BY_ID:
        raise CartInputError(404, "product_id", f"unknown product_id {product_id}")
    return product_id, quantity


def parse_rating(payload: object) -> int:
    """Validate a `POST /api/rating` body (`{"stars": 1..5}`); returns the stars or raises CartInputError."""
    if not isinstance(payload, dict):
        raise CartInputError(400, "body", 'body must be a JSON object like {"stars": 5}')
    stars = payload.get("stars")
    if not _is_int(stars) or not 1 <= stars <= MAX_STARS:
        raise CartInputError(400, "stars", f"stars is required and must be an integer from 1 to {MAX_STARS}")
    return stars


def _is_int(value: object) -> TypeGuard[int]:
    # JSON `true` decodes to a bool, which Python also counts as an int.
    return isinstance(value, int) and not isinstance(value, bool)


ROAST_STEPS = 8_000


def roast_profile(product_id: int, steps: int = ROAST_STEPS) -> dict[str, float]:
    """Simulate a roast curve for the product, step by step: a fixed amount of real CPU work
    (a few ms unthrottled), the sandbox's CPU-bound page (`GET /api/roast/{id}`)."""
    bean, peak, rate = 20.0 + product_id, 0.0, 0.0
    for step in range(steps):
        heat = 230.0 - bean
        rate = heat * 0.0007 + ((step * 7 + product_id) % 13 - 6) * 0.001
        bean += rate
        peak = max(peak, bean)
    return {"final_c": round(bean, 2), "peak_c": round(peak, 2), "last_rate": round(rate, 5)}
