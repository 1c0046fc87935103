"""tools/images.py: layers carry links and the owners an image needs (Argo CD's user owns its home); the pin tool's image overrides."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from tests.conftest import REPO
from tools import images


def members(layer: images.Layer) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob.read_bytes()))) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_a_files_layer_holds_the_links_of_a_multi_call_binary(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    binary = tmp_path / "argocd"
    binary.write_bytes(b"\x7fELF")
    binary.chmod(0o755)
    layer = images.files_layer({"usr/local/bin/argocd": binary}, {},
                               {"usr/local/bin/argocd-server": "/usr/local/bin/argocd"})
    found = members(layer)
    assert found["usr/local/bin/argocd"].mode == 0o755
    link = found["usr/local/bin/argocd-server"]
    assert link.issym() and link.linkname == "/usr/local/bin/argocd"
    assert found["usr/local/bin"].isdir()


def test_a_tree_keeps_root_as_owner_but_where_told(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    root = tmp_path / "rootfs"
    (root / "home/argocd").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    layer = images._store_layer(images._tar_tree(root, {"home/argocd": (999, 0)}))
    found = members(layer)
    assert (found["home/argocd"].uid, found["home/argocd"].gid) == (999, 0)
    assert (found["etc/passwd"].uid, found["home"].uid) == (0, 0)


def test_argocd_s_image_answers_to_every_name_its_manifest_runs():
    recipe = images.RECIPES["argocd"]
    assert recipe.entrypoint == ("/usr/bin/tini", "--") and recipe.user == "999"
    for name in ("argocd-server", "argocd-repo-server", "argocd-application-controller",
                 "argocd-applicationset-controller", "argocd-notifications", "argocd-cmp-server"):
        assert recipe.links[f"usr/local/bin/{name}"] == "/usr/local/bin/argocd"



def test_the_pin_tool_pins_what_an_inventory_pulls_with_its_overrides():
    from tools import pin_artifacts

    pulled = pin_artifacts.inventory_images(REPO / "inventories" / "sandbox.py")
    assert pulled["argocd-redis"] == "docker.io/library/redis:8.0.2"  # the sandbox's image_overrides
    assert "dex" not in pulled and "cilium" in pulled  # argocd_dex = False, cni = "cilium"
    with pytest.raises(pin_artifacts.PinError, match="inventory"):
        pin_artifacts.inventory_images(REPO / "tests" / "fixtures" / "no-such-inventory.py")


def test_every_online_boutique_service_is_built_for_the_lab_or_left_out_with_a_reason():
    """tools/boutique_images.py against the overlay's services: nothing missing, nothing both."""
    from tasks.gitops_repo import SERVICES
    from tools import boutique_images

    built, left_out = set(boutique_images.RECIPES), set(boutique_images.NOT_BUILT)
    assert built | left_out == set(SERVICES) and not built & left_out, (built, left_out)
    assert all(len(reason) > 40 for reason in boutique_images.NOT_BUILT.values())
    assert set(boutique_images.STAND_INS) == {"cartservice"}  # the C# one; everything else is upstream's code
