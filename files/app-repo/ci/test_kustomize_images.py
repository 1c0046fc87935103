"""Unit tests of the images: editor (stdlib only, so app-repo's own CI runs them: `cd ci && python3 -m unittest`)."""

import unittest

from gitops_git import authenticated_url
from kustomize_images import get_images, set_image

OVERLAY = """# dev overlay
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: boutique-dev
images:
  - name: cartservice
    newName: registry.local/boutique/app-repo/cartservice
    newTag: "1111111111111111111111111111111111111111"
  - name: frontend
    newName: registry.local/boutique/app-repo/frontend
    newTag: "1111111111111111111111111111111111111111"
replicas:
  - {name: frontend, count: 1}
"""


class SetImage(unittest.TestCase):
    def test_changes_only_the_tag_line_of_that_image(self):
        new = set_image(OVERLAY, "frontend", "registry.local/boutique/app-repo/frontend", "2" * 40)
        changed = [(a, b) for a, b in zip(OVERLAY.splitlines(), new.splitlines()) if a != b]
        self.assertEqual(changed, [('    newTag: "' + "1" * 40 + '"', '    newTag: "' + "2" * 40 + '"')])
        self.assertEqual(get_images(new)["cartservice"]["newTag"], "1" * 40)

    def test_keeps_comments_and_the_rest_of_the_file(self):
        new = set_image(OVERLAY, "cartservice", "registry.local/boutique/app-repo/cartservice", "abc1234")
        self.assertTrue(new.startswith("# dev overlay\n"))
        self.assertIn("replicas:\n  - {name: frontend, count: 1}\n", new)

    def test_adds_a_missing_image_inside_the_images_list(self):
        new = set_image(OVERLAY, "adservice", "registry.local/boutique/app-repo/adservice", "abc1234")
        self.assertEqual(get_images(new)["adservice"], {"newName": "registry.local/boutique/app-repo/adservice",
                                                        "newTag": "abc1234"})
        self.assertLess(new.index("name: adservice"), new.index("replicas:"))

    def test_changes_the_name_too(self):
        new = set_image(OVERLAY, "frontend", "registry.example/other/frontend", "abc1234")
        self.assertEqual(get_images(new)["frontend"]["newName"], "registry.example/other/frontend")

    def test_a_numeric_looking_sha_stays_a_string(self):
        new = set_image(OVERLAY, "frontend", "x/frontend", "1234567")
        self.assertIn('newTag: "1234567"', new)
        self.assertEqual(get_images(new)["frontend"]["newTag"], "1234567")

    def test_refuses_an_invalid_tag(self):
        with self.assertRaises(ValueError):
            set_image(OVERLAY, "frontend", "x/frontend", "bad tag")

    def test_a_kustomization_without_images_is_an_error(self):
        with self.assertRaises(ValueError):
            get_images("kind: Kustomization\n")


class Url(unittest.TestCase):
    def test_token_goes_into_https_urls_as_oauth2_user(self):
        self.assertEqual(authenticated_url("https://gitlab.local/boutique/gitops-repo.git", "glpat-x"),
                         "https://oauth2:glpat-x@gitlab.local/boutique/gitops-repo.git")

    def test_other_urls_are_left_alone(self):
        self.assertEqual(authenticated_url("/srv/git/gitops.git", "glpat-x"), "/srv/git/gitops.git")


if __name__ == "__main__":
    unittest.main()
