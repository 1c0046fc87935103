#!/usr/bin/env python3
"""Online Boutique's images for the lab, built here from the pinned source snapshot (SOURCES.md:
microservices-demo v0.10.6), because app-repo's pipeline cannot run offline (GitLab is not installable) and
upstream's base images (distroless, alpine, python-slim) cannot be pulled here.

    .venv/bin/python -m tools.boutique_images build [TAG]    build every service that can be built here

Real installs build these images in app-repo's pipeline from app-repo's own Dockerfiles (upstream's,
unchanged: files/app-repo/ci/build.sh); the lab's recipes give each image what its Dockerfile's final stage
holds (the program, its files, WORKDIR, ENV, ENTRYPOINT) on no base at all where upstream's base is
distroless/static, on Debian's packages where it is alpine's. Built: the Go services (through the Go module
proxy), the Node services (npm registry; Debian's Node.js), the email and recommendation services (PyPI;
Debian's Python), adservice (Maven Central; Debian's OpenJDK), redis-cart (Debian's Redis) and the cart
service's STAND-IN (tools/lab/cart_stand_in: the real cartservice is C#, and no .NET SDK or NuGet feed is
reachable here). Not built: loadgenerator (NOT_BUILT; docs/lab.md, "Online Boutique in the lab").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tools.buildlock import build_lock
from tools.gobuild import BOUTIQUE_GO_SERVICES, BOUTIQUE_TREE, CACHE, _run, source_build, unpacked_sources
from tools.images import PATH, Recipe, build_image, rootfs_layer

TIMES: dict[str, float] = {}
# What upstream's Go images set (their Dockerfiles: ENV GOTRACEBACK=single, WORKDIR /src).
GO_ENV = {"GOTRACEBACK": "single"}


# Files a built folder keeps for the build's own bookkeeping, never placed in an image.
MARKERS = (".complete", ".site")


def _placed(root: Path, under: str) -> dict[str, Path]:
    """Every file of `root` (no symlink, no build marker), placed under `under` in the image."""
    return {
        f"{under}/{path.relative_to(root)}": path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.name not in MARKERS
    }


def _tree_files(folder: str, under: str) -> dict[str, Path]:
    """Every file of the source snapshot's `folder`, placed under `under` in the image."""
    return _placed(unpacked_sources() / BOUTIQUE_TREE / folder, under)


def add_container_devices(root: Path) -> Path:
    """The device nodes every container runtime gives a container (/dev/null, zero, random, urandom) in the
    root filesystem `root`: pip needs /dev/null, gRPC's C core reads /dev/urandom."""
    (root / "dev").mkdir(exist_ok=True)
    for name, minor in (("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)):
        if not (root / "dev" / name).exists():
            os.mknod(root / "dev" / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return root


def _go_service(service: str, binary_at: str, *data: str, **env: str) -> Recipe:
    """A Go service as its Dockerfile's final stage has it: the static binary at /src/<binary_at>, its data
    files from the service's folder beside it, WORKDIR /src."""

    def files() -> dict[str, Path]:
        placed = {f"src/{binary_at}": source_build(f"boutique-{service}")[service]}
        for name in data:
            source = unpacked_sources() / BOUTIQUE_TREE / "src" / service / name
            placed.update(
                _tree_files(f"src/{service}/{name}", f"src/{name}") if source.is_dir() else {f"src/{name}": source}
            )
        return placed

    return Recipe(files, entrypoint=(f"/src/{binary_at}",), workdir="/src", env={**GO_ENV, **env})


def _built_once(what: str, service: str, digest: str, make: Callable[[Path], Path]) -> Path:
    """CACHE/boutique-<what>/<service>-<digest>: the folder `make(scratch)` returns (made in a scratch folder
    beside it, then moved in place), made once per digest and reused after."""
    target = CACHE / f"boutique-{what}" / f"{service}-{digest}"
    with build_lock(f"{what}-{service}-{digest}"):
        if not (target / ".complete").exists():
            started = time.monotonic()
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                make(Path(scratch)).rename(target)
            (target / ".complete").write_text(digest)
            TIMES[f"{what} {service}"] = time.monotonic() - started
    return target


def node_modules(service: str) -> Path:
    """The service's node_modules as its package-lock.json pins them (npm ci from the npm registry), built
    once per lock. Upstream's Dockerfile runs `npm install --only=production` (which follows the same lock)
    with a compiler for install scripts; here no install script runs (--ignore-scripts): the one that builds
    something is pprof's, for the Cloud Profiler, which the overlay turns off (DISABLE_PROFILER) and which
    could not reach Google's servers from an on-prem site anyway."""
    lock = unpacked_sources() / BOUTIQUE_TREE / "src" / service / "package-lock.json"

    def make(work: Path) -> Path:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(lock.parent / name, work / name)
        command = ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]
        _run(command, dict(os.environ), cwd=work, timeout=1200)
        return work / "node_modules"

    return _built_once("npm", service, hashlib.sha256(lock.read_bytes()).hexdigest()[:12], make)


def python_packages(service: str) -> Path:
    """The site-packages folder of the service's pinned requirements, installed by the Python of the image's
    own root filesystem (Debian's, with pip) into Debian's place for them (/usr/local/lib/python3.X/
    dist-packages, named in the folder's .site): what upstream's `pip install -r requirements.txt` puts in its
    image. The files come from PyPI through this machine's pip (wheels for that Python where PyPI has them,
    else the source, which the image's pip builds; no compiler: a C speedup falls back to pure Python); the
    install itself is offline."""
    requirements = unpacked_sources() / BOUTIQUE_TREE / "src" / service / "requirements.txt"
    rootfs = rootfs_layer("python")

    def make(scratch: Path) -> Path:
        root = scratch / "root"
        with tarfile.open(rootfs.blob) as tar:
            tar.extractall(root, filter="fully_trusted")
        version = _chroot(root, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).strip()
        _pip_download(requirements, root / "wheelhouse", version)
        shutil.copy2(requirements, root / "requirements.txt")
        site = f"usr/local/lib/python{version}/dist-packages"
        install = ["python3", "-m", "pip", "install", "--no-index", "--find-links", "/wheelhouse", "--no-compile"]
        # --break-system-packages: an image build, as Docker's pip install is
        _chroot(root, [*install, "--break-system-packages", "--target", f"/{site}", "-r", "/requirements.txt"])
        (root / site / ".site").write_text(site)
        return root / site

    digest = hashlib.sha256(requirements.read_bytes() + rootfs.digest.encode()).hexdigest()[:12]
    return _built_once("pip", service, digest, make)


def _pip_download(requirements: Path, wheelhouse: Path, python: str) -> None:
    """The pinned requirements (and setuptools, to build a source distribution) into `wheelhouse`: wheels for
    the image's Python on manylinux where PyPI has them, else the source distribution."""
    target = [
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{python.replace('.', '')}",
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for platform in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any"):
        target += ["--platform", platform]
    for args in (["--no-deps", *target, "-r", str(requirements)], ["setuptools", "wheel"]):
        _run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheelhouse), *args],
            dict(os.environ),
            timeout=1200,
        )


def _chroot(root: Path, argv: list[str]) -> str:
    """Run `argv` inside the root filesystem `root` (as root, with a container's device nodes); its output."""
    add_container_devices(root)
    return _run(["chroot", str(root), *argv], {**PATH, "HOME": "/root"}, timeout=1800)


# adservice's dependencies as its build.gradle pins them (group:artifact:version, runtime-only ones marked),
# with the two pins Maven Central does not serve replaced by the nearest it does: grpc-java 1.82.1 (only
# grpc-netty was published at it; 1.82.2 is the next patch) and grpc-census (discontinued after 1.81.0, its
# last release; the service's code does not use it).
ADSERVICE_GRPC = "1.82.2"
ADSERVICE_PROTOC = "4.35.1"
ADSERVICE_DEPENDENCIES = (
    "com.google.api.grpc:proto-google-common-protos:2.72.0",
    "javax.annotation:javax.annotation-api:1.3.2",
    f"io.grpc:grpc-protobuf:{ADSERVICE_GRPC}",
    f"io.grpc:grpc-stub:{ADSERVICE_GRPC}",
    f"io.grpc:grpc-netty:{ADSERVICE_GRPC}",
    f"io.grpc:grpc-services:{ADSERVICE_GRPC}",
    "io.grpc:grpc-census:1.81.0",
    "org.apache.logging.log4j:log4j-core:2.26.1",
    f"com.google.protobuf:protobuf-java:{ADSERVICE_PROTOC}",
    "com.fasterxml.jackson.core:jackson-core:2.22.0:runtime",
    "com.fasterxml.jackson.core:jackson-databind:2.22.0:runtime",
    "io.netty:netty-tcnative-boringssl-static:2.0.80.Final:runtime",
)
ADSERVICE_GENERATORS = (
    f"com.google.protobuf:protoc:{ADSERVICE_PROTOC}:exe:linux-x86_64",
    f"io.grpc:protoc-gen-grpc-java:{ADSERVICE_GRPC}:exe:linux-x86_64",
)
# Gradle's `installDist` layout, which upstream's image runs (/app/build/install/hipstershop/bin/AdService).
ADSERVICE_HOME = "app/build/install/hipstershop"
ADSERVICE_SCRIPT = """#!/bin/sh
# Starts adservice as Gradle's installDist script does: every jar of lib/ on the class path, JAVA_OPTS and
# AD_SERVICE_OPTS passed to the JVM (written by tools/boutique_images.py: the lab builds without Gradle).
APP_HOME=$(cd "$(dirname "$0")/.." && pwd)
exec java $JAVA_OPTS $AD_SERVICE_OPTS -classpath "$APP_HOME/lib/*" hipstershop.AdService "$@"
"""


def _maven_pom(dependencies: tuple[str, ...]) -> str:
    entries = []
    for coordinate in dependencies:
        group, artifact, version, *scope = coordinate.split(":")
        scoped = f"<scope>{scope[0]}</scope>" if scope else ""
        entries.append(
            f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version>{scoped}</dependency>"
        )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>gitops-lab</groupId><artifactId>adservice-dependencies</artifactId><version>0</version>"
        f"<dependencies>{''.join(entries)}</dependencies></project>\n"
    )


def _maven(work: Path, *goal: str) -> None:
    """Maven's dependency plugin (pinned) against Maven Central, with a local repository kept in CACHE."""
    _run(["mvn", "-B", "-q", f"-Dmaven.repo.local={CACHE / 'maven'}", *goal], dict(os.environ), cwd=work, timeout=1200)


def adservice_install() -> Path:
    """adservice as Gradle's installDist lays it out (bin/AdService, lib/*.jar), built without Gradle, whose
    distribution is not reachable here: its dependencies from Maven Central, its gRPC code generated from
    its demo.proto by protoc and grpc-java's plugin (Maven Central's executables, at build.gradle's versions),
    compiled by this machine's JDK for Java 17 (the code needs nothing newer; build.gradle says 21, which
    Debian 12's JDK cannot target) and run on OpenJDK 25, as upstream's image does."""
    source = unpacked_sources() / BOUTIQUE_TREE / "src" / "adservice"
    plugin = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

    def make(work: Path) -> Path:
        (work / "pom.xml").write_text(_maven_pom(ADSERVICE_DEPENDENCIES))
        install = work / "install"
        _maven(work, f"{plugin}:copy-dependencies", f"-DoutputDirectory={install / 'lib'}", "-DincludeScope=runtime")
        for generator in ADSERVICE_GENERATORS:
            _maven(work, f"{plugin}:copy", f"-Dartifact={generator}", f"-DoutputDirectory={work / 'generators'}")
        # (named artifact-version-classifier.type by the dependency plugin)
        protoc, grpc_plugin = (
            work / "generators" / f"{g.split(':')[1]}-{g.split(':')[2]}-linux-x86_64.exe" for g in ADSERVICE_GENERATORS
        )
        for tool in (protoc, grpc_plugin):
            tool.chmod(0o755)
        generated, classes = work / "generated", work / "classes"
        generated.mkdir()
        proto = source / "src" / "main" / "proto"
        _run_tool(
            [
                str(protoc),
                f"--plugin=protoc-gen-grpc-java={grpc_plugin}",
                f"--java_out={generated}",
                f"--grpc-java_out={generated}",
                f"-I{proto}",
                str(proto / "demo.proto"),
            ]
        )
        sources = sorted(map(str, [*generated.rglob("*.java"), *(source / "src/main/java").rglob("*.java")]))
        _run_tool(["javac", "--release", "17", "-nowarn", "-cp", f"{install / 'lib'}/*", "-d", str(classes), *sources])
        shutil.copy2(source / "src/main/resources/log4j2.xml", classes / "log4j2.xml")
        # a fixed date in the jar's entries: the same sources give the same jar, so the same image digest
        jar = ["jar", "--create", "--date=1980-01-01T00:00:02Z", f"--file={install / 'lib' / 'adservice.jar'}"]
        _run_tool([*jar, "-C", str(classes), "."])
        (install / "bin").mkdir()
        (install / "bin" / "AdService").write_text(ADSERVICE_SCRIPT)
        (install / "bin" / "AdService").chmod(0o755)
        return install

    inputs = repr((ADSERVICE_DEPENDENCIES, ADSERVICE_GENERATORS, ADSERVICE_SCRIPT)).encode()
    for path in sorted(source.rglob("*")):
        if path.is_file():
            inputs += path.read_bytes()
    return _built_once("maven", "adservice", hashlib.sha256(inputs).hexdigest()[:12], make)


def _run_tool(command: list[str]) -> None:
    _run(command, dict(os.environ), timeout=1200)


def _java_service() -> Recipe:
    def files() -> dict[str, Path]:
        return _placed(adservice_install(), ADSERVICE_HOME)

    return Recipe(files, rootfs="java", entrypoint=(f"/{ADSERVICE_HOME}/bin/AdService",), workdir="/app", env=PATH)


def _python_service(service: str, main: str, workdir: str, **env: str) -> Recipe:
    """A Python service as its Dockerfile's final stage has it: Python (Debian's, in the rootfs layer), its
    requirements where that Python finds them, the service's folder in `workdir`, `python <main>`."""

    def files() -> dict[str, Path]:
        packages = python_packages(service)
        return {
            **_tree_files(f"src/{service}", workdir.lstrip("/")),
            **_placed(packages, (packages / ".site").read_text()),
        }

    python_env = {**PATH, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **env}
    return Recipe(files, rootfs="python", entrypoint=("python", main), workdir=workdir, env=python_env)


def _node_service(service: str, main: str) -> Recipe:
    """A Node service as its Dockerfile's final stage has it: Node.js (Debian's, in the rootfs layer), the
    service's folder and its node_modules in /usr/src/app, `node <main>` as the entrypoint."""

    def files() -> dict[str, Path]:
        return {
            **_tree_files(f"src/{service}", "usr/src/app"),
            **_placed(node_modules(service), "usr/src/app/node_modules"),
        }

    return Recipe(files, rootfs="nodejs", entrypoint=("node", main), workdir="/usr/src/app", env=PATH)


RECIPES: dict[str, Recipe] = {
    "frontend": _go_service("frontend", "server", "templates", "static"),
    "checkoutservice": _go_service("checkoutservice", "checkoutservice"),
    "productcatalogservice": _go_service("productcatalogservice", "server", "products.json"),
    "shippingservice": _go_service("shippingservice", "shippingservice", APP_PORT="50051"),
    "currencyservice": _node_service("currencyservice", "server.js"),
    "paymentservice": _node_service("paymentservice", "index.js"),
    "emailservice": _python_service("emailservice", "email_server.py", "/email_server", ENABLE_PROFILER="1"),
    "recommendationservice": _python_service(
        "recommendationservice", "recommendation_server.py", "/recommendationservice", PORT="8080"
    ),
    "adservice": _java_service(),
    # Upstream runs redis:alpine; here Debian 13's Redis (8.0.2), the rootfs Argo CD's lab cache uses too. Debian's
    # build keeps Redis' protected mode on (no password: loopback only), which the official image turns off.
    "redis-cart": Recipe(
        lambda: {},
        rootfs="redis",
        entrypoint=("/usr/bin/redis-server",),
        cmd=("--protected-mode", "no"),
        workdir="/data",
        env=PATH,
    ),
    # STAND-IN for the C# cartservice (tools/lab/cart_stand_in/main.go), used only in the lab.
    "cartservice": Recipe(
        lambda: {"src/cartservice": source_build("cart-stand-in")["cartservice"]},
        entrypoint=("/src/cartservice",),
        workdir="/src",
        env=GO_ENV,
    ),
}
assert set(BOUTIQUE_GO_SERVICES) < set(RECIPES)
# The overlay's services the lab does not build yet, each with its reason (printed by `build`).
NOT_BUILT = {
    "loadgenerator": "not needed in the lab: the acceptance suite's k6 and Locust make the load",
}
STAND_INS = {"cartservice": "tools/lab/cart_stand_in (the real cartservice is C#: no .NET SDK or NuGet feed here)"}


def image_name(service: str) -> str:
    """The layout's name among the lab's images (tools/images.py LAYOUTS)."""
    return f"boutique-{service}"


def build(service: str, ref: str) -> tuple[Path, str]:
    """(OCI layout, manifest digest) of one service's image, tagged as `ref` names it; built or reused."""
    started = time.monotonic()
    built = build_image(image_name(service), ref, RECIPES[service])
    TIMES[f"image {service}"] = time.monotonic() - started
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("tag", nargs="?", default="lab", help="the tag the layouts name (the pipeline's: a SHA)")
    args = parser.parse_args(argv)
    for service in RECIPES:
        layout, digest = build(service, f"registry.local/boutique/{service}:{args.tag}")
        stand_in = f"  (STAND-IN: {STAND_INS[service]})" if service in STAND_INS else ""
        print(f"{service}: {digest} in {layout} ({TIMES[f'image {service}']:.0f}s){stand_in}", flush=True)
    for service, reason in NOT_BUILT.items():
        print(f"{service}: not built here: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
