"""A small kustomize: renders the kustomizations in ``deploy/kubernetes`` without ``kubectl``.

It does what those kustomizations use and refuses anything else: ``resources`` (files and
directories), strategic-merge ``patches`` from files (maps merged key by key, a ``null`` deletes a
key, the Pod spec's lists merged by their Kubernetes merge key, new items first as kustomize puts
them, ``$patch: delete`` removes an item) and ``images``. Where ``kubectl`` is installed the tests
check that it renders every kustomization exactly as ``kubectl kustomize`` does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "images"}
# The patchMergeKey of the Kubernetes API's merged lists the manifests patch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}

Document = dict[str, Any]


def render(directory: Path) -> list[Document]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    if unsupported:
        raise ValueError(f"{directory}: this renderer does not do {sorted(unsupported)}")
    documents: list[Document] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            documents.extend(render(path))
        else:
            documents.extend(document for document in yaml.safe_load_all(path.read_text()) if document)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise ValueError(f"{directory}: only strategic-merge patches from a file: {patch}")
        _apply_patch(documents, yaml.safe_load((directory / patch["path"]).read_text()))
    for image in kustomization.get("images", []):
        _set_image(documents, image)
    return documents


def _identity(document: Document) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def _apply_patch(documents: list[Document], patch: Document) -> None:
    for index, document in enumerate(documents):
        if _identity(document) == _identity(patch):
            documents[index] = merge(document, patch)
            return
    raise ValueError(f"the patch's target {_identity(patch)} is not among the resources")


def merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """``patch`` merged into ``base`` as a strategic-merge patch."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        return _merge_list(base, patch, MERGE_KEYS[field])
    return copy.deepcopy(patch)


def _merge_list(base: list[Any], patch: list[Any], key: str) -> list[Any]:
    merged = list(base)
    added = []
    for item in patch:
        index = next((i for i, existing in enumerate(merged) if existing.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            added.append(copy.deepcopy(item))
        else:
            merged[index] = merge(merged[index], item)
    return added + merged


def _set_image(documents: list[Document], image: dict[str, str]) -> None:
    for document in documents:
        template = document.get("spec", {}).get("template", {}).get("spec", {})
        for container in template.get("containers", []):
            if container["image"].split(":")[0] == image["name"]:
                name = image.get("newName", image["name"])
                container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
