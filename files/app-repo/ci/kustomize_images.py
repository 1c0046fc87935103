"""Edit the `images:` list of a kustomization.yaml the way `kustomize edit set image` does, keeping the
file's formatting and comments (a YAML round trip would rewrite the whole file)."""

from __future__ import annotations

import re

_ITEM = re.compile(r"^(?P<indent>\s*)- name: (?P<name>\S+)\s*$")
_FIELD = re.compile(r"^(?P<indent>\s*)(?P<key>newName|newTag|digest): [\"']?(?P<value>[^\"'\s]+)[\"']?\s*$")


def _quoted(tag: str) -> str:
    """Tags are always quoted: a commit SHA such as 1234567 or 1e10abc would otherwise be read as a number."""
    return f'"{tag}"'


def _images_block(lines: list[str]) -> tuple[int, int]:
    """Line range [start, end) of the entries under the top-level `images:` key."""
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip() == "images:") + 1
    except StopIteration:
        raise ValueError("the kustomization has no top-level images: list") from None
    end = start
    while end < len(lines) and (lines[end].startswith((" ", "-")) or not lines[end].strip()):
        end += 1
    return start, end


def get_images(text: str) -> dict[str, dict[str, str]]:
    """{name: {"newName": ..., "newTag": ...}} for every entry of `images:`."""
    lines = text.splitlines()
    start, end = _images_block(lines)
    images: dict[str, dict[str, str]] = {}
    current = None
    for line in lines[start:end]:
        if m := _ITEM.match(line):
            current = images.setdefault(m["name"], {})
        elif (m := _FIELD.match(line)) and current is not None:
            current[m["key"]] = m["value"]
    return images


def set_image(text: str, name: str, new_name: str, new_tag: str) -> str:
    """Point image `name` at new_name:new_tag. Adds the entry at the end of `images:` if it is missing."""
    if not re.fullmatch(r"[\w][\w.-]{0,127}", new_tag):
        raise ValueError(f"{new_tag!r} is not a valid image tag")
    lines = text.splitlines(keepends=True)
    start, end = _images_block([line.rstrip("\n") for line in lines])
    for i in range(start, end):
        m = _ITEM.match(lines[i].rstrip("\n"))
        if not m or m["name"] != name:
            continue
        field_indent = m["indent"] + "  "
        j, seen = i + 1, set()
        while j < end and not _ITEM.match(lines[j].rstrip("\n")):
            f = _FIELD.match(lines[j].rstrip("\n"))
            if f and f["key"] == "newName":
                lines[j], seen = f"{f['indent']}newName: {new_name}\n", seen | {"newName"}
            elif f and f["key"] == "newTag":
                lines[j], seen = f"{f['indent']}newTag: {_quoted(new_tag)}\n", seen | {"newTag"}
            j += 1
        missing = [f"{field_indent}{k}: {v}\n" for k, v in (("newName", new_name), ("newTag", _quoted(new_tag)))
               if k not in seen]
        lines[j:j] = missing
        return "".join(lines)
    indent = re.match(r"\s*", lines[start]).group(0) if start < len(lines) else "  "
    entry = [f"{indent}- name: {name}\n", f"{indent}  newName: {new_name}\n", f"{indent}  newTag: {_quoted(new_tag)}\n"]
    insert_at = end
    while insert_at > start and not lines[insert_at - 1].strip():
        insert_at -= 1
    lines[insert_at:insert_at] = entry
    return "".join(lines)
