"""Go programs built from source through the Go module proxy, cached between runs (~/.cache/gitops-lab).

Nothing else can be downloaded offline here, but the Go module proxy serves the sources of promtool,
amtool, Prometheus, Alertmanager, OpenTofu, the libvirt provider, kubeseal and Kubernetes at release tags.
The tests use them as real tools; the mirror builder (tools/mirror.py) packs some of them for the lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tools.buildlock import build_lock
from tools.lab.constants import CACHE, REPO, SOURCES_DIR

# `go install package@version`, optionally with build tags and ldflags. The Prometheus projects' versions are
# the ones the lab's cluster runs (kube-prometheus-stack 88.5.0: Prometheus v3.14.0 = module v0.314.0, built
# from source below, Alertmanager v0.34.0, node-exporter v1.12.1), so the alert tests and the lab's images
# use the same builds.


def prometheus_version_flags(version: str) -> str:
    """The version stamp of Prometheus projects' release builds (their .promu.yml), so /api/v1/status/buildinfo
    and `--version` report the release."""
    return f"-s -w -X github.com/prometheus/common/version.Version={version}"


GO_TOOLS = {
    "amtool": ("github.com/prometheus/alertmanager/cmd/amtool", "v0.34.0", "", prometheus_version_flags("0.34.0")),
    "node_exporter": ("github.com/prometheus/node_exporter", "v1.12.1", "", prometheus_version_flags("1.12.1")),
    # The lab: CoreDNS for kubeadm's image (v1.14.6, `kubeadm config images list`), and the CNCF registry that
    # GitLab's container registry forked, as the lab's stand-in for it.
    "coredns": ("github.com/coredns/coredns", "v1.14.6", "", ""),
    "registry": ("github.com/distribution/distribution/v3/cmd/registry", "v3.1.2", "", ""),
    # Argo CD's repo-server runs them (the versions of its hack/tool-versions.sh at v3.6.1, except kustomize:
    # 5.8.3 requires a kube-openapi the module proxy refuses (403), so the lab builds 5.8.2, the newest it serves).
    "helm": ("helm.sh/helm/v4/cmd/helm", "v4.3.1", "", ""),
    "kustomize": ("sigs.k8s.io/kustomize/kustomize/v5", "v5.8.2", "", ""),
}
# Builds whose go.mod asks for a newer Go than this machine's: the module proxy serves that toolchain too.
GO_1_27 = "go1.27.3"
TOOLCHAINS = {"argocd": GO_1_27}


@dataclass(frozen=True)
class SourceBuild:
    """`go build` inside a writable copy of a module's source: for modules whose go.mod has replace directives
    (`go install pkg@version` refuses those), that need replaces of their own (pins the module proxy does not
    serve), several commands at once, or a web UI built by npm upstream and not part of the module (a
    placeholder page stands in; the tests use their APIs only)."""

    module: str
    version: str
    outputs: dict[str, str]  # binary name -> package inside the module
    tags: str = ""
    ldflags: str = ""
    placeholder: str | None = None
    # `go mod edit -replace` arguments; "{sources}" is the folder of upstream sources (tools/lab/constants.py)
    replaces: tuple[str, ...] = ()
    # the module zip pinned in tools/upstream.py (by sha256), where the checksum database lacks the version
    pinned_zip: str = ""
    # or the folder of an upstream source snapshot (UPSTREAM_TARBALLS), where the module proxy has none
    upstream_tree: str = ""
    # or a folder of this repository (the lab's own programs: their content is part of the key)
    repo_tree: str = ""

    @property
    def key(self) -> str:
        recipe = repr((self.outputs, self.tags, self.ldflags, self.replaces))
        if self.repo_tree:  # (only then: the other builds keep their cache keys)
            recipe += self._repo_tree_digest()
        return f"{self.version}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"

    def _repo_tree_digest(self) -> str:
        digest = hashlib.sha256()
        for path in sorted((REPO / self.repo_tree).rglob("*")):
            if path.is_file():
                digest.update(f"{path.relative_to(REPO)}\0".encode() + path.read_bytes())
        return digest.hexdigest()


CILIUM = "github.com/cilium/cilium"
CILIUM_LDFLAGS = "-s -w -X github.com/cilium/cilium/pkg/version.ciliumVersion=1.20.2"
# Cilium 1.20.2 pins two versions the module proxy refuses: gobgp's pseudo-version (v4.7.0 builds) and
# mcs-api/controllers v0.5.2 (its source snapshot is among the upstream sources, see SOURCES.md).
CILIUM_REPLACES = (
    "github.com/osrg/gobgp/v4=github.com/osrg/gobgp/v4@v4.7.0",
    "sigs.k8s.io/mcs-api/controllers={sources}/mcs-api-controllers-ded161af6ea9/controllers",
)
# Online Boutique (SOURCES.md: the pinned tag's source snapshot): its Go services, one module each.
BOUTIQUE_TREE = "microservices-demo-v0.10.6"
BOUTIQUE_VERSION = "v0.10.6"
BOUTIQUE_MODULE = "github.com/GoogleCloudPlatform/microservices-demo/src"
BOUTIQUE_GO_SERVICES = ("frontend", "checkoutservice", "productcatalogservice", "shippingservice")
SOURCE_BUILDS = {
    "alertmanager": SourceBuild(
        "github.com/prometheus/alertmanager",
        "v0.34.0",
        {"alertmanager": "./cmd/alertmanager"},
        ldflags=prometheus_version_flags("0.34.0"),
        placeholder="ui/app/dist/index.html",
    ),
    # Prometheus and promtool in one build (v0.314.0's go.mod has a replace: `go install` refuses it).
    # remove_all_sd leaves out the cloud service-discovery plugins (every cloud SDK: most of the build time);
    # enable_kubernetes_sd keeps the one the operator's configuration uses in the cluster.
    "prometheus": SourceBuild(
        "github.com/prometheus/prometheus",
        "v0.314.0",
        {"prometheus": "./cmd/prometheus", "promtool": "./cmd/promtool"},
        tags="remove_all_sd,enable_kubernetes_sd",
        ldflags=prometheus_version_flags("3.14.0"),
    ),
    # The operator and its config reloader (kube-prometheus-stack 88.5.0's appVersion). The module zip lacks
    # the nested modules its go.mod replaces with local folders: the modules of the same version fill them.
    "prometheus-operator": SourceBuild(
        "github.com/prometheus-operator/prometheus-operator",
        "v0.93.1",
        {"operator": "./cmd/operator", "prometheus-config-reloader": "./cmd/prometheus-config-reloader"},
        ldflags=prometheus_version_flags("0.93.1"),
        replaces=tuple(
            f"github.com/prometheus-operator/prometheus-operator/pkg/{sub}="
            f"github.com/prometheus-operator/prometheus-operator/pkg/{sub}@v0.93.1"
            for sub in ("apis/monitoring", "client")
        ),
    ),
    # kube-state-metrics (the chart's appVersion): not served by the module proxy, built from the source
    # snapshot of SOURCES.md; stamped as its Makefile does.
    "kube-state-metrics": SourceBuild(
        "k8s.io/kube-state-metrics/v2",
        "v2.20.0",
        {"kube-state-metrics": "."},
        ldflags=prometheus_version_flags("v2.20.0"),
        upstream_tree="kube-state-metrics-v2.20.0",
    ),
    **{
        f"boutique-{service}": SourceBuild(
            f"{BOUTIQUE_MODULE}/{service}",
            BOUTIQUE_VERSION,
            {service: "."},
            ldflags="-s -w",  # as their Dockerfiles build them
            upstream_tree=f"{BOUTIQUE_TREE}/src/{service}",
        )
        for service in BOUTIQUE_GO_SERVICES
    },
    # The lab's STAND-IN for the C# cartservice (no .NET SDK here; tools/lab/cart_stand_in/main.go), on the
    # frontend's generated gRPC code from the same source snapshot.
    "cart-stand-in": SourceBuild(
        "gitops-lab.invalid/cart-stand-in",
        "lab",
        {"cartservice": "."},
        ldflags="-s -w",
        replaces=(f"{BOUTIQUE_MODULE}/frontend={{sources}}/{BOUTIQUE_TREE}/src/frontend",),
        repo_tree="tools/lab/cart_stand_in",
    ),
    "tofu": SourceBuild("github.com/opentofu/opentofu", "v1.10.10", {"tofu": "./cmd/tofu"}),
    "terraform-provider-libvirt": SourceBuild(
        "github.com/dmacvicar/terraform-provider-libvirt", "v0.8.3", {"terraform-provider-libvirt": "."}
    ),
    # The repository moved to bitnami-labs but its go.mod still says github.com/bitnami/sealed-secrets.
    "kubeseal": SourceBuild("github.com/bitnami-labs/sealed-secrets", "v0.40.0", {"kubeseal": "./cmd/kubeseal"}),
    # The controller of kubeseal's release: the same module graph, so the build reuses kubeseal's packages.
    "sealed-secrets-controller": SourceBuild(
        "github.com/bitnami-labs/sealed-secrets",
        "v0.40.0",
        {"controller": "./cmd/controller"},
        ldflags="-s -w -X main.VERSION=v0.40.0",
    ),
    # The lab's images (tools/images.py)
    # Argo CD: one multi-call binary (server, repo-server, controllers, CLI). Its module zip lacks the
    # ./gitops-engine its go.mod replaces the gitops-engine module with: the module of the same version
    # fills it. The web UI (built by pnpm upstream) is a placeholder page: the lab uses the API and CLI.
    "argocd": SourceBuild(
        "github.com/argoproj/argo-cd/v3",
        "v3.6.1",
        {"argocd": "./cmd"},
        ldflags="-s -w -X github.com/argoproj/argo-cd/v3/common.version=3.6.1 "
        "-X github.com/argoproj/argo-cd/v3/common.gitTag=v3.6.1",
        placeholder="ui/dist/app/index.html",
        replaces=("github.com/argoproj/argo-cd/gitops-engine/v3=github.com/argoproj/argo-cd/gitops-engine/v3@v3.6.1",),
    ),
    # metrics-server of the tree that holds the pinned chart (3.13.1, whose appVersion says 0.8.1): the
    # release the chart was cut with, as the sealed-secrets chart runs its tree's controller.
    "metrics-server": SourceBuild(
        "sigs.k8s.io/metrics-server",
        "v0.9.0",
        {"metrics-server": "./cmd/metrics-server"},
        ldflags="-s -w -X k8s.io/client-go/pkg/version.gitVersion=v0.9.0",
        pinned_zip="metrics-server",
    ),
    # MetalLB of the pinned chart's tree (0.16.1): the controller and the speaker, as its Dockerfiles build
    # them (the version is in its source). The speaker image's FRR helpers (frr-metrics, cp-tool) serve BGP
    # mode only, which this project does not use (L2): they are not built.
    "metallb": SourceBuild(
        "go.universe.tf/metallb",
        "v0.16.1",
        {"controller": "./controller", "speaker": "./speaker"},
        ldflags="-s -w",
        pinned_zip="metallb",
    ),
    "local-path-provisioner": SourceBuild(
        "github.com/rancher/local-path-provisioner",
        "v0.0.37",
        {"local-path-provisioner": "."},
        pinned_zip="local-path-provisioner",
    ),
    "cilium": SourceBuild(
        CILIUM,
        "v1.20.2",
        {
            "cilium-agent": "./daemon",
            "cilium-dbg": "./cilium-dbg",
            "cilium-health": "./cilium-health",
            "cilium-health-responder": "./cilium-health/responder",
            "cilium-bugtool": "./bugtool",
            "cilium-cni": "./plugins/cilium-cni",
            "cilium-mount": "./tools/mount",
            "cilium-sysctlfix": "./tools/sysctlfix",
        },
        tags="osusergo",
        ldflags=CILIUM_LDFLAGS,
        replaces=CILIUM_REPLACES,
        pinned_zip="cilium",
    ),
    "cilium-operator": SourceBuild(
        CILIUM,
        "v1.20.2",
        {"cilium-operator-generic": "./operator"},
        tags="osusergo,ipam_provider_operator",
        ldflags=CILIUM_LDFLAGS,
        replaces=CILIUM_REPLACES,
        pinned_zip="cilium",
    ),
}
BUILD_TIMES: dict[str, float] = {}


class ToolUnavailable(RuntimeError):
    pass


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolUnavailable("building the tool needs Go (the Go module proxy serves its source)")
    return go


def go_env(cgo: bool = False, toolchain: str = "local", **extra: str) -> dict[str, str]:
    """Environment for builds through the module proxy, with the module cache kept in CACHE (a toolchain other
    than "local" is downloaded into it once)."""
    return dict(
        os.environ,
        GOPATH=str(CACHE / "gopath"),
        GOFLAGS="-mod=mod",
        GOWORK="off",  # a module's own go.work (Prometheus ships one) would refuse -mod=mod
        GOTOOLCHAIN=toolchain,
        CGO_ENABLED="1" if cgo else "0",
        **extra,
    )


def _run(cmd: list[str], env: dict, cwd: Path | None = None, timeout: float = 3000) -> str:
    """`cmd`'s output; a failure raises ToolUnavailable with the ends of its output and errors (Maven's quiet
    mode, for one, reports on standard output)."""
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ToolUnavailable(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc.stdout


def go_tool(name: str) -> Path:
    """Path of the tool at its pinned version, building it on first use."""
    # a source build of that name, or the one that has it among its outputs (promtool: Prometheus')
    build = name if name in SOURCE_BUILDS else next((k for k, b in SOURCE_BUILDS.items() if name in b.outputs), "")
    if build:
        return source_build(build)[name]
    package, version, tags, ldflags = GO_TOOLS[name]
    recipe = hashlib.sha256(f"{tags} {ldflags}".encode()).hexdigest()[:8] if ldflags else tags
    target_dir = CACHE / "bin" / (f"{name}-{version}" + (f"-{recipe}" if recipe else ""))
    binary = target_dir / name
    if binary.exists():
        return binary
    with build_lock(target_dir.name):
        if not binary.exists():  # another process may have built it while this one waited
            started = time.monotonic()
            _run(
                [
                    _go(),
                    "install",
                    *(["-tags", tags] if tags else []),
                    *(["-ldflags", ldflags] if ldflags else []),
                    f"{package}@{version}",
                ],
                go_env(toolchain=TOOLCHAINS.get(name, "local"), GOBIN=str(target_dir)),
            )
            BUILD_TIMES[f"build {name} {version}"] = time.monotonic() - started
    return binary


def source_build(name: str) -> dict[str, Path]:
    """The binaries of SOURCE_BUILDS[name] (output name -> path), built on first use."""
    build = SOURCE_BUILDS[name]
    target_dir = CACHE / "bin" / f"{name}-{build.key}"
    binaries = {output: target_dir / output for output in build.outputs}
    if all(path.exists() for path in binaries.values()):
        return binaries
    with build_lock(target_dir.name):
        if not all(path.exists() for path in binaries.values()):  # built by another process meanwhile?
            _build_from_source(name, build, target_dir)
    return binaries


def prepared_source(name: str) -> Path:
    """The writable source tree SOURCE_BUILDS[name] is built in (replaces applied), prepared on first use: where
    its own tests run (`go test`)."""
    build = SOURCE_BUILDS[name]
    src = CACHE / "src" / f"{name}-{build.version}"
    with build_lock(f"src-{name}"):
        if not ((src / ".gitops-lab-key").exists() and (src / ".gitops-lab-key").read_text() == build.key):
            _prepare_source(build, src, go_env(toolchain=TOOLCHAINS.get(name, "local")))
    return src


def _prepare_source(build: SourceBuild, src: Path, env: dict[str, str]) -> None:
    if src.exists():
        shutil.rmtree(src)
    _copy_module_source(build, src, env)
    if build.placeholder:
        page = src / build.placeholder
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!-- UI not built: tests use the API only -->\n")
    for replace in build.replaces:
        _run([_go(), "mod", "edit", "-replace", replace.format(sources=unpacked_sources())], env, cwd=src)
    (src / ".gitops-lab-key").write_text(build.key)


def _build_from_source(name: str, build: SourceBuild, target_dir: Path) -> None:
    env = go_env(toolchain=TOOLCHAINS.get(name, "local"))
    started = time.monotonic()
    src = prepared_source(name)
    out = CACHE / "go-build-out" / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    flags = [*(["-tags", build.tags] if build.tags else []), *(["-ldflags", build.ldflags] if build.ldflags else [])]
    for output, package in build.outputs.items():  # one go build per output: each names its binary
        _run([_go(), "build", *flags, "-o", str(out / output), package], env, cwd=src)
    target_dir.mkdir(parents=True, exist_ok=True)
    for output in build.outputs:
        (out / output).rename(target_dir / output)
    BUILD_TIMES[f"build {name} {build.version}"] = time.monotonic() - started


def _copy_module_source(build: SourceBuild, dest: Path, env: dict[str, str]) -> None:
    """A writable copy of the module's tree: from `go mod download`, or from the zip pinned in tools/upstream.py."""
    if build.pinned_zip:
        from tools.upstream import SOURCES, module_zip  # the zips are fetched only for builds that need them

        source = SOURCES[build.pinned_zip]
        assert (source.module, source.version) == (build.module, build.version), f"{build.module} pins disagree"
        prefix = f"{source.module}@{source.version}/"
        with zipfile.ZipFile(module_zip(source)) as archive:
            for member in archive.namelist():
                if member.startswith(prefix) and not member.endswith("/"):
                    target = dest / member[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
    elif build.upstream_tree:
        shutil.copytree(unpacked_sources() / build.upstream_tree, dest)
    elif build.repo_tree:
        shutil.copytree(REPO / build.repo_tree, dest)
    else:
        info = json.loads(_run([_go(), "mod", "download", "-json", f"{build.module}@{build.version}"], env))
        shutil.copytree(info["Dir"], dest)
    for path in dest.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def unpacked_sources() -> Path:
    """The upstream source snapshots of SOURCES.md, each verified by its sha256 and unpacked once."""
    target = CACHE / "upstream-src"
    with build_lock("upstream-src"):
        for name, digest in UPSTREAM_TARBALLS.items():
            _unpack_upstream(target, name, digest)
    return target


def _unpack_upstream(target: Path, name: str, digest: str) -> None:
    stamp = target / f".{name}.sha256"
    if not (stamp.exists() and stamp.read_text() == digest):
        archive = SOURCES_DIR / "src" / name
        if not archive.exists():
            raise ToolUnavailable(
                f"{archive} is missing: the upstream sources (SOURCES.md) are needed for this build; "
                "set GITOPS_LAB_SOURCES to their folder"
            )
        if hashlib.sha256(archive.read_bytes()).hexdigest() != digest:
            raise ToolUnavailable(f"{archive} does not have the sha256 {digest} of SOURCES.md: refusing it")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        stamp.write_text(digest)


# Upstream source snapshots (file in <sources>/src -> sha256, as SOURCES.md lists them) that builds use.
UPSTREAM_TARBALLS = {
    "mcs-api-controllers-ded161af6ea9.tar.gz": "95fcb7c32ba071a5bb56f09a9d98a5fb5a6a10d1a0d0dc9ce5eaa3608058a57c",
    "kube-state-metrics-v2.20.0.tar.gz": "11a17f1f7132b707c12d5b34bdf5b2a526fa1c8496c72fcad1b115fbe1f28dda",
    "microservices-demo-v0.10.6.tar.gz": "52aed7914b3cc14ef29f5d08c7f7c25c9eab052d75dbeec1b5902efadd57be9c",
}


# Kubernetes components at one release, built from tools/kube/go.mod (k8s.io/kubernetes plus each staging
# module at its published tag; etcd from go.etcd.io). The version is stamped as release builds do it, so
# `kubeadm version` and the API server's /version report the release, not v0.0.0.
KUBE_MODULE_DIR = Path(__file__).resolve().parent / "kube"
KUBE_COMMANDS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "etcd": "go.etcd.io/etcd/server/v3",
}


def kube_version() -> str:
    """The k8s.io/kubernetes version tools/kube/go.mod requires (e.g. v1.37.2)."""
    for line in (KUBE_MODULE_DIR / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "k8s.io/kubernetes":
            return fields[1]
    raise ToolUnavailable("tools/kube/go.mod does not require k8s.io/kubernetes")


def kube_build(names: list[str]) -> dict[str, Path]:
    """Paths of the named components (KUBE_COMMANDS). When one is missing, every missing component is built
    in one `go build`: they share most packages, so one build is much cheaper than several."""
    version = kube_version()
    # The folder names the module graph (go.sum), so a change of any pin (etcd's, say) builds afresh.
    graph = hashlib.sha256((KUBE_MODULE_DIR / "go.sum").read_bytes()).hexdigest()[:8]
    out = CACHE / "bin" / f"kubernetes-{version}-{graph}"
    wanted = {name: out / name for name in names}
    if all(path.exists() for path in wanted.values()):
        return wanted
    with build_lock(out.name):
        missing = [name for name in KUBE_COMMANDS if not (out / name).exists()]  # again, after any wait
        if missing:
            _build_kube(missing, version, out)
    return wanted


def _build_kube(names: list[str], version: str, out: Path) -> None:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = " ".join(
        f"-X k8s.io/component-base/version.{k}={v}"
        for k, v in {
            "gitVersion": version,
            "gitMajor": major,
            "gitMinor": minor,
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
        }.items()
    )
    started = time.monotonic()
    build_dir = CACHE / "kube-build"
    build_dir.mkdir(parents=True, exist_ok=True)
    _run(
        [_go(), "build", "-ldflags", f"-s -w {stamp}", "-o", str(build_dir) + "/", *[KUBE_COMMANDS[n] for n in names]],
        go_env(),
        cwd=KUBE_MODULE_DIR,
    )
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        # go build names a binary after its package path, skipping a major-version suffix (/v3)
        parts = KUBE_COMMANDS[name].split("/")
        built = parts[-2] if parts[-1][0] == "v" and parts[-1][1:].isdigit() else parts[-1]
        (build_dir / built).rename(out / name)
    BUILD_TIMES[f"build {', '.join(names)} {version}"] = time.monotonic() - started
