"""A TEST DOUBLE of the Online Boutique storefront on loopback: the frontend's routes, forms and cookies
(shop_session-id, shop_currency), answering like the real one does, or with 500s when `failing`."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PRODUCTS = {"0PUK6V6EV0", "1YMWWN1N4O", "2ZYFJ3GM2N", "66VCHSJNUP", "6E92ZMYYFZ", "9SIQT8TOJO", "L9ECAV7KIM",
            "LS4PSXUNUM", "OLJCESPC7Z"}
CURRENCIES = {"EUR", "USD", "JPY", "CAD", "GBP", "TRY"}
CHECKOUT_FIELDS = {"email", "street_address", "zip_code", "city", "state", "country", "credit_card_number",
                   "credit_card_expiration_month", "credit_card_expiration_year", "credit_card_cvv"}


class StorefrontDouble:
    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.hits: dict[str, int] = {}
        self.carts: dict[str, int] = {}
        self.bad_requests: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _session(self) -> tuple[str, bool]:
                cookies = dict(c.strip().split("=", 1) for c in self.headers.get("Cookie", "").split(";") if "=" in c)
                if "shop_session-id" in cookies:
                    return cookies["shop_session-id"], False
                return str(uuid.uuid4()), True

            def _reply(self, status: int, body: str, session: str, new: bool, extra: list[tuple[str, str]] = ()) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if new:
                    self.send_header("Set-Cookie", f"shop_session-id={session}; Path=/; Max-Age=172800")
                for k, v in extra:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> str:
                path = self.path.split("?")[0]
                if path.startswith("/product/"):
                    return "product"
                return {("GET", "/"): "index", ("GET", "/cart"): "viewCart", ("POST", "/cart"): "addToCart",
                        ("POST", "/setCurrency"): "setCurrency", ("POST", "/cart/checkout"): "checkout",
                        ("POST", "/cart/empty"): "emptyCart", ("GET", "/logout"): "logout",
                        ("GET", "/_healthz"): "healthz"}.get((method, path), "unknown")

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                route = self._route(method)
                double.hits[route] = double.hits.get(route, 0) + 1
                session, new = self._session()
                if route == "healthz":
                    return self._reply(200, "ok", session, False)
                if double.failing:
                    return self._reply(500, "internal error", session, new)
                if route == "unknown" or (route == "product" and self.path.split("/")[-1] not in PRODUCTS):
                    return self._reply(404, "not found", session, new)
                if route == "setCurrency":
                    if form.get("currency_code") not in CURRENCIES:
                        double.bad_requests.append(f"setCurrency {form}")
                        return self._reply(422, "bad currency", session, new)
                    return self._reply(200, "", session, new, [("Set-Cookie", f"shop_currency={form['currency_code']}; Path=/")])
                if route == "addToCart":
                    if form.get("product_id") not in PRODUCTS or not form.get("quantity", "").isdigit():
                        double.bad_requests.append(f"addToCart {form}")
                        return self._reply(422, "bad product", session, new)
                    double.carts[session] = double.carts.get(session, 0) + int(form["quantity"])
                if route == "checkout" and not CHECKOUT_FIELDS <= form.keys():
                    double.bad_requests.append(f"checkout missing {CHECKOUT_FIELDS - form.keys()}")
                    return self._reply(422, "incomplete", session, new)
                self._reply(200, f"<html><body>{route}</body></html>", session, new)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
