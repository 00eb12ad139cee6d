"""Which images the pods on this host still need: gc and ``image rm`` never take those.

A pod references its images from the plan root wrote when it prepared it
(``<pod>/private/plan.json``, or ``<pod>/plan.json`` in the older layout), in every state
until gc removes the pod: prepared, running, exited and not yet collected. A plan that
exists but cannot be read or decoded stops gc (fail closed): it could reference anything.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from trustd.privileged.pod import PodStore
from trustd.shared.errors import LocalStateError
from trustd.shared.imageid import StoreKey, store_key

PLAN_NAMES = ("private/plan.json", "plan.json")
_MAX_PLAN = 16 << 20


def _plan_keys(path: Path) -> list[str]:
    return [key for key, _tree in _plan_apps(path)]


def _plan_apps(path: Path) -> list[tuple[str, str]]:
    """(image key, tree path) of each app in the plan at ``path``."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_PLAN + 1)  # a larger plan fails to decode below
        apps = [(a["image_key"], a["tree"]) for a in json.loads(raw[:_MAX_PLAN])["apps"]]
    except FileNotFoundError:
        return []
    except PermissionError as exc:
        raise LocalStateError(
            f"cannot read the plan {path}: it is root's",
            hint="gc stops rather than remove an image a pod may need; run rkt image gc as root",
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LocalStateError(
            f"cannot read the plan {path}: {exc}",
            hint="gc stops rather than remove an image a pod may need; remove the pod "
            "(rkt rm) or repair the plan",
        ) from exc
    if not all(isinstance(k, str) and isinstance(t, str) for k, t in apps):
        raise LocalStateError(f"plan {path}: an image key or tree is not a string")
    return apps


def referenced_images(data_dir: Path) -> dict[str, list[str]]:
    """Image key -> UUIDs of the pods referencing it. Both forms of each key are listed:
    the full image ID and rkt's ``sha512-<64 hex>`` store key (plans made before full IDs
    name the image by the latter)."""
    refs: dict[str, list[str]] = {}
    for pod in PodStore(data_dir).pods():
        for name in PLAN_NAMES:
            for key in _plan_keys(pod.path / name):
                forms = {key, store_key(key)}
                with contextlib.suppress(ValueError):
                    forms.add(StoreKey(key).blob_name)
                for form in forms:
                    refs.setdefault(form, []).append(pod.uuid)
    return refs


def pods_on_legacy_trees(data_dir: Path) -> list[str]:
    """Pods prepared by an older trustd, whose trees are in ``cas/tree``: while any is left,
    gc keeps that directory."""
    legacy = str(data_dir / "cas" / "tree")
    return sorted(
        {
            pod.uuid
            for pod in PodStore(data_dir).pods()
            for name in PLAN_NAMES
            for _key, tree in _plan_apps(pod.path / name)
            if tree.startswith(legacy + "/")
        }
    )
