"""Locust load test of the Online Boutique storefront: the upstream user journey and weights.

    locust -f files/loadtest/locustfile.py --headless --host http://boutique.local -u 50 -r 5 -t 10m --csv run

P95_MS (800) and ERROR_RATE (0.01) are checked when the run ends: crossing either makes locust exit 1.
"""

import os
import random

from locust import HttpUser, between, events, task

PRODUCTS = ["0PUK6V6EV0", "1YMWWN1N4O", "2ZYFJ3GM2N", "66VCHSJNUP", "6E92ZMYYFZ", "9SIQT8TOJO", "L9ECAV7KIM",
            "LS4PSXUNUM", "OLJCESPC7Z"]
CURRENCIES = ["EUR", "USD", "JPY", "CAD", "GBP", "TRY"]


class Shopper(HttpUser):
    wait_time = between(float(os.environ.get("THINK_MIN", 1)), float(os.environ.get("THINK_MAX", 3)))

    @task(1)
    def index(self):
        self.client.get("/", name="index")

    @task(2)
    def set_currency(self):
        self.client.post("/setCurrency", {"currency_code": random.choice(CURRENCIES)}, name="setCurrency")

    @task(10)
    def browse_product(self):
        self.client.get(f"/product/{random.choice(PRODUCTS)}", name="product")

    @task(2)
    def add_to_cart(self):
        product = random.choice(PRODUCTS)
        self.client.get(f"/product/{product}", name="product")
        self.client.post("/cart", {"product_id": product, "quantity": random.randint(1, 5)}, name="addToCart")

    @task(3)
    def view_cart(self):
        self.client.get("/cart", name="viewCart")

    @task(1)
    def checkout(self):
        self.client.post("/cart", {"product_id": random.choice(PRODUCTS), "quantity": 1}, name="addToCart")
        self.client.post("/cart/checkout", {
            "email": "someone@example.com", "street_address": "1600 Amphitheatre Parkway", "zip_code": "94043",
            "city": "Mountain View", "state": "CA", "country": "United States",
            "credit_card_number": "4432801561520454", "credit_card_expiration_month": "1",
            "credit_card_expiration_year": "2039", "credit_card_cvv": "672"}, name="checkout")


@events.quitting.add_listener
def enforce_thresholds(environment, **_):
    stats = environment.stats.total
    p95_ms, max_errors = float(os.environ.get("P95_MS", 800)), float(os.environ.get("ERROR_RATE", 0.01))
    p95 = stats.get_response_time_percentile(0.95) or 0
    if stats.fail_ratio > max_errors or p95 > p95_ms:
        print(f"THRESHOLDS CROSSED: p95 {p95:.0f} ms (limit {p95_ms:.0f}), errors {stats.fail_ratio:.2%} "
              f"(limit {max_errors:.2%})")
        environment.process_exit_code = 1
    else:
        print(f"thresholds held: p95 {p95:.0f} ms, errors {stats.fail_ratio:.2%}")
