"""Container images: where the nodes pull the catalog (`images` in group_data) from, and the registry API
questions the deploy and the tools ask about them.

With `image_mirror_project` set, every node pulls the upstream registries through the private registry:
`registry.k8s.io/pause:3.10.2` comes from `<registry_domain>/<gitlab_group>/<project>/registry.k8s.io/pause:3.10.2`
(containerd's hosts.toml with `override_path`), authenticated as the read-only account `cluster-pull`. The
copies are made by `python3 -m tools.images copy`, verified by digest; before `kubeadm init` the deploy
checks that each image the cluster needs is there with exactly the digest the images lock pins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from tasks.settings import Settings
from tasks.state import LocalState

# The nodes' read-only account on the private registry (its password is generated into the state folder).
PULL_USER = "cluster-pull"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class RegistryError(RuntimeError):
    """One line: which registry call failed, and what to check."""


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str

    @classmethod
    def parse(cls, ref: str) -> Reference:
        name, tag = ref.rsplit(":", 1)
        registry, repository = name.split("/", 1)
        return cls(registry, repository, tag)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}"


def mirror_prefix(settings: Settings) -> str:
    """The private registry's path under which upstream images are copied (<group>/<project>)."""
    return f"{settings.gitlab_group}/{settings.image_mirror_project}"


def mirror_endpoint(settings: Settings, registry: str) -> str:
    """hosts.toml's mirror host for an upstream registry: the private registry's API at the copies' path."""
    return f"https://{settings.registry_domain}/v2/{mirror_prefix(settings)}/{registry}"


def mirror_repository(settings: Settings, ref: str) -> str:
    """Where the copy of `ref` lives in the private registry (repository path, without registry and tag)."""
    image = Reference.parse(ref)
    return f"{mirror_prefix(settings)}/{image.registry}/{image.repository}"


def pull_password(state: LocalState) -> str:
    return state.generated(state.registry_pull_password)


class RegistryClient:
    """The OCI distribution API of one registry: anonymous, HTTP Basic or token (Bearer) authentication, as
    the registry's challenge asks (GitLab's registry uses tokens, the CNCF registry with htpasswd Basic)."""

    def __init__(
        self, base_url: str, user: str = "", password: str = "", ca_file: str | bool = True, timeout: float = 30
    ) -> None:
        self.base_url, self.auth, self.verify, self.timeout = base_url.rstrip("/"), (user, password), ca_file, timeout
        self.session = requests.Session()
        self._tokens: dict[str, str] = {}

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest the registry serves for repository:reference (a tag or digest), None when absent."""
        url = f"{self.base_url}/v2/{repository}/manifests/{reference}"
        response = self._get(url, scope=f"repository:{repository}:pull", method="HEAD")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RegistryError(f"{url} answered {response.status_code}: check the credentials and the registry's log")
        digest = response.headers.get("Docker-Content-Digest", "")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise RegistryError(f"{url} sent no Docker-Content-Digest header: is it an OCI registry?")
        return digest

    def _get(self, url: str, scope: str, method: str = "GET") -> requests.Response:
        headers = {"Accept": MANIFEST_TYPES}
        if scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        try:
            response = self.session.request(
                method,
                url,
                headers=headers,
                verify=self.verify,
                timeout=self.timeout,
                auth=None if "Authorization" in headers or not self.auth[0] else self.auth,
            )
            challenge = response.headers.get("WWW-Authenticate", "")
            if response.status_code == 401 and challenge.lower().startswith("bearer "):
                self._tokens[scope] = self._token(challenge, scope)
                headers["Authorization"] = f"Bearer {self._tokens[scope]}"
                response = self.session.request(method, url, headers=headers, verify=self.verify, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RegistryError(
                f"cannot reach the registry at {self.base_url} ({exc}): check the address, that it is "
                "running, and the lab CA"
            ) from None
        return response

    def _token(self, challenge: str, scope: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        params = {"service": fields.get("service", ""), "scope": scope}
        auth = self.auth if self.auth[0] else None
        response = self.session.get(fields["realm"], params=params, auth=auth, verify=self.verify, timeout=self.timeout)
        if response.status_code >= 400:
            raise RegistryError(
                f"the registry's token service {fields['realm']} refused {scope} "
                f"({response.status_code}): check the credentials"
            )
        body = response.json()
        return str(body.get("token") or body.get("access_token"))


def private_registry(settings: Settings, state: LocalState) -> RegistryClient:
    """The private registry on the platform host, as the nodes' pull account, trusting the lab CA."""
    return RegistryClient(
        f"https://{settings.platform.address}", PULL_USER, pull_password(state), ca_file=str(state.ca_cert)
    )


def missing_from_mirror(settings: Settings, state: LocalState) -> list[str]:
    """The needed images the private registry does not serve at their pinned digest ("ref (why)")."""
    registry = private_registry(settings, state)
    missing = []
    for name in settings.needed_images():
        image = settings.images[name]
        tag = Reference.parse(image["ref"]).tag
        served = registry.manifest_digest(mirror_repository(settings, image["ref"]), tag)
        if served is None:
            missing.append(f"{image['ref']} (not copied)")
        elif served != image["digest"]:
            missing.append(f"{image['ref']} (serves {served}, the lock pins {image['digest']})")
    return missing
