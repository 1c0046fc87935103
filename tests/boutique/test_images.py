"""Online Boutique's lab images (tools/boutique_images.py), built from the pinned source snapshot and run for
real on this machine: each image holds what its upstream Dockerfile's final stage holds; the services,
started inside their images' own root filesystems (chroot: their own Node.js, Python, Java and libraries) on
loopback, answer real gRPC (catalog, shipping, currency, payment, health) and serve the storefront's whole
journey through the frontend, checkout included.
The cart service's STAND-IN (the real one is C#, unbuildable here) is checked over real gRPC against Redis
from the redis-cart image, concurrent replicas included. Its gRPC client tests are Go tests in
tools/lab/cart_stand_in, which has the frontend's generated client code; this module runs them with
`go test`.

Deepest layer for now: this machine (the lab's cluster runs them next). loadgenerator is not built: the
acceptance suite's k6/Locust make the load."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import TIMINGS, unavailable
from tests.processes import free_port, stop_process

GO = {"GOTRACEBACK": "single"}
NODE = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
PYTHON = {**NODE, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
SITE = "usr/local/lib/python3.13/dist-packages"  # Debian 13's Python
# service -> (entrypoint, workdir, env the Dockerfile sets, files its final stage copies besides the program)
DOCKERFILES = {
    "frontend": (["/src/server"], "/src", GO, ["src/templates/home.html", "src/static/favicon.ico"]),
    "checkoutservice": (["/src/checkoutservice"], "/src", GO, []),
    "productcatalogservice": (["/src/server"], "/src", GO, ["src/products.json"]),
    "shippingservice": (["/src/shippingservice"], "/src", {**GO, "APP_PORT": "50051"}, []),
    "currencyservice": (["node", "server.js"], "/usr/src/app", NODE,
                        ["usr/src/app/data/currency_conversion.json", "usr/bin/node",
                         "usr/src/app/node_modules/@grpc/grpc-js/package.json"]),
    "paymentservice": (["node", "index.js"], "/usr/src/app", NODE,
                       ["usr/src/app/charge.js", "usr/src/app/node_modules/simple-card-validator/package.json",
                        "usr/bin/node"]),
    "emailservice": (["python", "email_server.py"], "/email_server", {**PYTHON, "ENABLE_PROFILER": "1"},
                     ["email_server/templates/confirmation.html", "usr/bin/python",
                      f"{SITE}/grpc/__init__.py", f"{SITE}/jinja2/__init__.py", f"{SITE}/markupsafe/__init__.py"]),
    "recommendationservice": (["python", "recommendation_server.py"], "/recommendationservice",
                              {**PYTHON, "PORT": "8080"},
                              ["recommendationservice/demo_pb2.py", f"{SITE}/grpc/__init__.py"]),
    "adservice": (["/app/build/install/hipstershop/bin/AdService"], "/app", NODE,
                  ["app/build/install/hipstershop/lib/adservice.jar", "usr/lib/jvm/java-25-openjdk-amd64/bin/java",
                   "app/build/install/hipstershop/lib/log4j-core-2.26.1.jar"]),
    "cartservice": (["/src/cartservice"], "/src", GO, []),
    "redis-cart": (["/usr/bin/redis-server"], "/data", NODE, []),
}
SERVICES = tuple(DOCKERFILES)
ON_DEBIAN = ("currencyservice", "paymentservice", "emailservice", "recommendationservice", "adservice", "redis-cart")


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[Path, str]]:
    from tools import boutique_images
    from tools.gobuild import BUILD_TIMES, ToolUnavailable

    try:
        images = {s: boutique_images.build(s, f"registry.local/boutique/{s}:lab") for s in SERVICES}
    except ToolUnavailable as exc:
        unavailable(str(exc))
    TIMINGS.update({f"Online Boutique: {what}": t for what, t in boutique_images.TIMES.items()})
    TIMINGS.update(BUILD_TIMES)
    return images


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def image(layout: Path) -> tuple[dict, list[Path]]:
    """(image config, its layers' blob paths) of the layout's one manifest."""
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = json.loads(_blob(layout, entry["digest"]))
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    return config, [layout / "blobs" / "sha256" / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def unpacked(layout: Path, dest: Path) -> Path:
    """The image's file system, as a container would see it, in `dest`."""
    for layer in image(layout)[1]:
        with tarfile.open(layer) as tar:
            tar.extractall(dest, filter="fully_trusted")
    return dest


def wait_listening(what: str, port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}) before listening on {port}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{what}: not listening on 127.0.0.1:{port} within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


class Started:
    """Processes this module started (each in its own session), stopped at the end, also on failure."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.procs = logs, []

    def start(self, what: str, argv: list[str], port: int, root: Path | None = None, workdir: str = "/",
              **env: str) -> str:
        """Start `argv`; inside `root` (chroot, as root: the image's own programs and libraries) at `workdir`
        when given."""
        log = self.logs / f"{what}.log"

        def enter() -> None:
            if root:
                os.chroot(root)
                os.chdir(workdir)

        with log.open("w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=enter, env={"PATH": os.environ["PATH"], **env})
        self.procs.append(proc)
        wait_listening(what, port, proc, log)
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    processes = Started(tmp_path_factory.mktemp("logs"))
    yield processes
    processes.stop()


@pytest.fixture(scope="module")
def roots(built):
    """Each image's file system, unpacked, with a container's device nodes and, for the JVM (which finds its
    own libraries through /proc/self/exe), a /proc of its own; unmounted and removed afterwards, also on
    failure. Not in pytest's tmp_path: it keeps the last runs' folders (about 1 GiB each here), and its
    clean-up of them ran out of file descriptors at the session's end."""
    from tools.boutique_images import add_container_devices

    workdir = Path(tempfile.mkdtemp(prefix="boutique-images-", dir="/var/tmp"))
    proc = workdir / "adservice" / "proc"
    try:
        unpacked_roots = {s: add_container_devices(unpacked(built[s][0], workdir / s)) for s in SERVICES}
        proc.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True, timeout=30)
        yield unpacked_roots
    finally:
        if proc.is_mount() and subprocess.run(["umount", str(proc)], timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(proc)], timeout=60)
        if not proc.is_mount():  # never remove a tree that still holds a mounted /proc
            # rm, not shutil.rmtree: in pytest's process, rmtree of these trees left thousands of directory
            # descriptors open (seen in /proc/<pid>/fd; cause not found) and ran the session out of them.
            subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], check=True, timeout=600)


def run_image(started: Started, built, roots, service: str, port: int, *args: str, **env: str) -> str:
    """The service inside its image's root filesystem, with the image's ENTRYPOINT, WORKDIR and ENV."""
    config = image(built[service][0])[0]["config"]
    image_env = dict(item.split("=", 1) for item in config.get("Env", []))
    image_env.setdefault("PATH", os.environ["PATH"])
    (roots[service] / config["WorkingDir"].lstrip("/")).mkdir(parents=True, exist_ok=True)  # as runtimes do
    return started.start(service, [*config["Entrypoint"], *args], port, root=roots[service],
                         workdir=config["WorkingDir"], **{**image_env, **env})


@pytest.fixture(scope="module")
def redis(started, built, roots) -> str:
    """redis-cart from its image, on loopback."""
    port = free_port()
    return run_image(started, built, roots, "redis-cart", port, "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no")


@pytest.fixture(scope="module")
def services(built, roots, redis, started) -> dict[str, str]:
    """The services, each run from its own image (ports free on loopback): name -> address."""
    ports = {s: free_port() for s in SERVICES}
    addresses = {s: f"127.0.0.1:{ports[s]}" for s in SERVICES}
    quiet = {"DISABLE_PROFILER": "1", "DISABLE_TRACING": "1", "DISABLE_STATS": "1"}

    def run(service: str, **env: str) -> None:
        run_image(started, built, roots, service, ports[service], **quiet, PORT=str(ports[service]), **env)

    for service in ("productcatalogservice", "shippingservice", "currencyservice", "paymentservice", "emailservice",
                    "adservice"):
        run(service)
    run("cartservice", REDIS_ADDR=redis)
    run("recommendationservice", PRODUCT_CATALOG_SERVICE_ADDR=addresses["productcatalogservice"])
    # Not part of the lab (the shopping assistant needs Google's AI APIs): nothing listens there.
    elsewhere = {"SHOPPING_ASSISTANT_SERVICE_ADDR": "127.0.0.1:9"}
    backends = {"PRODUCT_CATALOG_SERVICE_ADDR": addresses["productcatalogservice"],
                "SHIPPING_SERVICE_ADDR": addresses["shippingservice"], "CART_SERVICE_ADDR": addresses["cartservice"],
                "CURRENCY_SERVICE_ADDR": addresses["currencyservice"],
                "PAYMENT_SERVICE_ADDR": addresses["paymentservice"], "EMAIL_SERVICE_ADDR": addresses["emailservice"],
                "AD_SERVICE_ADDR": addresses["adservice"]}
    run("checkoutservice", **backends, **elsewhere)
    run("frontend", **backends, **elsewhere, CHECKOUT_SERVICE_ADDR=addresses["checkoutservice"],
        RECOMMENDATION_SERVICE_ADDR=addresses["recommendationservice"])
    return addresses


def test_each_image_holds_what_its_dockerfile_s_final_stage_holds(built, roots):
    for service, (entrypoint, workdir, env, files) in DOCKERFILES.items():
        config, layers = image(built[service][0])
        assert config["config"]["Entrypoint"] == entrypoint, service
        assert config["config"]["WorkingDir"] == workdir, service
        assert dict(item.split("=", 1) for item in config["config"]["Env"]) == env, service
        assert "User" not in config["config"], f"{service}: its base image runs as root; the pod sets the user"
        root = roots[service]
        for name in files:
            assert (root / name).is_file(), f"{service}: {name} missing"
        if service in ON_DEBIAN:  # Debian's Node.js or Python, then the service: two layers, as alpine + COPY
            assert len(layers) == (1 if service == "redis-cart" else 2), service
            continue
        program = (root / entrypoint[0].lstrip("/")).read_bytes()
        assert program[:4] == b"\x7fELF" and b"/lib64/ld-linux-x86-64.so" not in program, f"{service}: not static"
        assert len(layers) == 1, f"{service}: one layer (no base image, as on distroless/static)"


def test_the_cart_stand_in_keeps_carts_in_real_redis(redis):
    """Its Go tests against redis-cart's Redis: items added and summed, the cart as a serialized Cart in the
    user's hash (as the C# service keeps it), emptied, 40 concurrent adds through two replicas all kept,
    invalid items refused, and its health following Redis."""
    from tools.gobuild import go_env, prepared_source

    proc = subprocess.run(["go", "test", "-count=1", "-v", "-run", "Cart|Concurrent|Invalid|Health", "./..."],
                          cwd=prepared_source("cart-stand-in"), env=go_env(REDIS_ADDR=redis), capture_output=True,
                          text=True, timeout=900)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for name in ("TestCartsLiveInRedisAsTheRealServiceKeepsThem", "TestConcurrentAddsFromTwoReplicasLoseNoItem",
                 "TestInvalidItemsAreRefused", "TestHealthFollowsRedis"):
        assert f"--- PASS: {name}" in proc.stdout, f"{name} did not pass:\n{proc.stdout[-3000:]}"


def test_the_go_and_node_services_answer_real_grpc_from_their_images(services):
    from tools.gobuild import go_env, prepared_source

    addresses = {"PRODUCT_CATALOG_SERVICE_ADDR": services["productcatalogservice"],
                 "SHIPPING_SERVICE_ADDR": services["shippingservice"],
                 "CURRENCY_SERVICE_ADDR": services["currencyservice"],
                 "PAYMENT_SERVICE_ADDR": services["paymentservice"],
                 "AD_SERVICE_ADDR": services["adservice"],
                 "CHECKOUT_SERVICE_ADDR": services["checkoutservice"]}
    tests = "ProductCatalog|Shipping|Currency|Payment|Ads|Checkout"
    proc = subprocess.run(["go", "test", "-count=1", "-v", "-run", tests, "./..."],
                          cwd=prepared_source("cart-stand-in"), env=go_env(**addresses), capture_output=True,
                          text=True, timeout=900)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    for name in ("TestProductCatalogServesItsCatalog", "TestShippingQuotesAndShips", "TestCurrencyConverts",
                 "TestPaymentCharges", "TestAdsServeTheirContext", "TestCheckoutIsServing"):
        assert f"--- PASS: {name}" in proc.stdout, f"{name} did not pass (or skipped):\n{proc.stdout[-3000:]}"
    assert "products, the first" in proc.stdout


def test_the_storefront_journey_works_through_the_real_services(services, started):
    """The frontend with the real services behind it (the cart through its stand-in), k6's journey: the home
    page lists the catalog, prices convert to another currency, a product page shows its product and the
    recommendation service's picks, an item added goes to the cart (kept in Redis), the cart page shows it
    with a shipping quote, and checkout (checkout -> payment, shipping, email, cart) confirms the order and
    empties the cart; the product page carries adservice's ad."""
    base = f"http://{services['frontend']}"
    session = requests.Session()
    health = session.get(f"{base}/_healthz", timeout=10)
    assert health.status_code == 200 and health.text == "ok"
    icon = session.get(f"{base}/static/favicon.ico", timeout=10)
    assert icon.status_code == 200 and len(icon.content) > 100
    home = session.get(base + "/", timeout=30)
    assert home.status_code == 200 and "Sunglasses" in home.text and "/product/OLJCESPC7Z" in home.text, home.text[:800]

    euros = session.post(f"{base}/setCurrency", data={"currency_code": "EUR"}, timeout=30)
    assert euros.status_code == 200 and "€" in euros.text, euros.text[:800]
    product = session.get(f"{base}/product/OLJCESPC7Z", timeout=30)
    assert product.status_code == 200 and "Sunglasses" in product.text
    added = session.post(f"{base}/cart", data={"product_id": "OLJCESPC7Z", "quantity": "2"}, timeout=30,
                         allow_redirects=False)
    assert added.status_code == 302 and added.headers["Location"].endswith("/cart"), added.text[:800]
    assert "You May Also Like" in product.text, "no recommendations on the product page"
    # The product page carries an ad for its categories. The frontend gives adservice 100 ms and shows none
    # when it is slower (a JVM warming up on a busy machine): one load in 10 with an ad is the check.
    with_ads = sum("<strong>Ad</strong>" in session.get(f"{base}/product/OLJCESPC7Z", timeout=30).text
                   for _ in range(10))
    assert with_ads > 0, "no ad from adservice on the product page in 10 loads:\n" + "\n".join(
        line for line in (started.logs / "frontend.log").read_text().splitlines() if "ads" in line)[-2000:]
    cart = session.get(f"{base}/cart", timeout=30)
    assert cart.status_code == 200 and "Sunglasses" in cart.text and "Shipping" in cart.text, cart.text[:800]
    order = session.post(f"{base}/cart/checkout", timeout=30, data={
        "email": "someone@example.com", "street_address": "1600 Amphitheatre Parkway", "zip_code": "94043",
        "city": "Mountain View", "state": "CA", "country": "United States",
        "credit_card_number": "4432801561520454", "credit_card_expiration_month": "1",
        "credit_card_expiration_year": str(time.gmtime().tm_year + 1), "credit_card_cvv": "672"})
    assert order.status_code == 200 and "Your order is complete!" in order.text, order.text[:1500]
    emptied = session.get(f"{base}/cart", timeout=30)
    assert emptied.status_code == 200 and "Sunglasses" not in emptied.text.split("You May Also Like")[0]


def test_adservice_s_pins_are_its_build_gradle_s_except_the_two_maven_central_lacks():
    """tools/boutique_images.py's Maven coordinates against upstream's build.gradle: the same artifacts at the
    same versions, except grpc-java (1.82.1 -> 1.82.2) and grpc-census (-> 1.81.0), which are documented."""
    import re

    from tools import boutique_images
    from tools.gobuild import BOUTIQUE_TREE, unpacked_sources

    gradle = (unpacked_sources() / BOUTIQUE_TREE / "src/adservice/build.gradle").read_text()
    variables = dict(re.findall(r'def (\w+) = "([^"]+)"', gradle))
    upstream = {}
    for group, artifact, version in re.findall(r'"([\w.-]+):([\w.-]+):([^"]+)"', gradle):
        upstream[f"{group}:{artifact}"] = re.sub(r"\$\{(\w+)\}", lambda m: variables[m[1]], version)
    ours = {":".join(c.split(":")[:2]): c.split(":")[2] for c in boutique_images.ADSERVICE_DEPENDENCIES}
    generators = {":".join(c.split(":")[:2]): c.split(":")[2] for c in boutique_images.ADSERVICE_GENERATORS}
    assert set(ours) | set(generators) <= set(upstream), set(ours) - set(upstream)
    differing = {name: (upstream[name], version) for name, version in {**ours, **generators}.items()
                 if upstream[name] != version}
    grpc = {name: ("1.82.1", "1.82.2") for name in upstream
            if name.startswith("io.grpc:") and name != "io.grpc:grpc-census"}
    assert differing == {**grpc, "io.grpc:grpc-census": ("1.82.1", "1.81.0")}, differing
    assert {name for name in upstream if not name.startswith("com.github") and "gradle" not in name} <= (
        set(ours) | set(generators)), "a dependency of build.gradle is missing"
