// k6 load test of the Online Boutique storefront through the Ingress: the upstream user journey and weights
// (index 1, set currency 2, browse product 10, add to cart 2, view cart 3, checkout 1), a ramp meant to make
// the HPAs scale out, a hold, and a quiet tail that lets them scale in.
//   k6 run --no-usage-report -e BASE_URL=http://boutique.local files/loadtest/storefront.js
// Environment (defaults in parentheses): BASE_URL, HOST_HEADER (none), PEAK_VUS (50), RAMP (2m), HOLD (5m),
// TAIL (5m), P95_MS (800), ERROR_RATE (0.01), SUMMARY (no file).
import http from "k6/http";
import { check, sleep } from "k6";

const BASE = __ENV.BASE_URL || "http://boutique.local";
const HEADERS = __ENV.HOST_HEADER ? { Host: __ENV.HOST_HEADER } : {};
const PRODUCTS = ["0PUK6V6EV0", "1YMWWN1N4O", "2ZYFJ3GM2N", "66VCHSJNUP", "6E92ZMYYFZ", "9SIQT8TOJO",
                  "L9ECAV7KIM", "LS4PSXUNUM", "OLJCESPC7Z"];
const CURRENCIES = ["EUR", "USD", "JPY", "CAD", "GBP", "TRY"];

export const options = {
  stages: [
    { duration: __ENV.RAMP || "2m", target: Number(__ENV.PEAK_VUS || 50) },
    { duration: __ENV.HOLD || "5m", target: Number(__ENV.PEAK_VUS || 50) },
    { duration: __ENV.TAIL || "5m", target: 1 },
  ],
  thresholds: {
    http_req_duration: [`p(95)<${Number(__ENV.P95_MS || 800)}`],
    http_req_failed: [`rate<${Number(__ENV.ERROR_RATE || 0.01)}`],
  },
};

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const get = (path, name) => http.get(`${BASE}${path}`, { headers: HEADERS, tags: { name } });
const post = (path, body, name) => http.post(`${BASE}${path}`, body, { headers: HEADERS, tags: { name } });

const TASKS = [
  [1, function index() { check(get("/", "index"), { "index 200": (r) => r.status === 200 }); }],
  [2, function setCurrency() {
    check(post("/setCurrency", { currency_code: pick(CURRENCIES) }, "setCurrency"), { "currency 200": (r) => r.status === 200 });
  }],
  [10, function browseProduct() {
    check(get(`/product/${pick(PRODUCTS)}`, "product"), { "product 200": (r) => r.status === 200 });
  }],
  [2, function addToCart() {
    const product = pick(PRODUCTS);
    get(`/product/${product}`, "product");
    check(post("/cart", { product_id: product, quantity: String(1 + Math.floor(Math.random() * 5)) }, "addToCart"),
          { "add 200": (r) => r.status === 200 });
  }],
  [3, function viewCart() { check(get("/cart", "viewCart"), { "cart 200": (r) => r.status === 200 }); }],
  [1, function checkout() {
    post("/cart", { product_id: pick(PRODUCTS), quantity: "1" }, "addToCart");
    check(post("/cart/checkout", {
      email: "someone@example.com", street_address: "1600 Amphitheatre Parkway", zip_code: "94043",
      city: "Mountain View", state: "CA", country: "United States", credit_card_number: "4432801561520454",
      credit_card_expiration_month: "1", credit_card_expiration_year: "2039", credit_card_cvv: "672",
    }, "checkout"), { "checkout 200": (r) => r.status === 200 });
  }],
];
const TOTAL = TASKS.reduce((sum, [weight]) => sum + weight, 0);

export default function () {
  let roll = Math.random() * TOTAL;
  for (const [weight, task] of TASKS) {
    roll -= weight;
    if (roll < 0) { task(); break; }
  }
  sleep(Number(__ENV.THINK_SECONDS || 1));
}

export function handleSummary(data) {
  return __ENV.SUMMARY ? { [__ENV.SUMMARY]: JSON.stringify(data) } : {};
}
