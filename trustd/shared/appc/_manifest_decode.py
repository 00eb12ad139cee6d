"""Decoding of the appc 0.8.11 image manifest from checked JSON (private).

Every function takes a :class:`View` of one JSON object and raises :class:`FieldError` with the
field path on the first fault; :func:`.manifest.parse_image_manifest` turns that into
a ManifestError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from trustd.shared.appc import _manifest_rules as rules
from trustd.shared.appc._json import Extras, FieldError, View, check_int, dumps
from trustd.shared.appc._manifest_model import (
    Annotation,
    App,
    Dependency,
    EnvironmentVariable,
    EventHandler,
    ImageManifest,
    Isolator,
    Label,
    MountPoint,
    Port,
)

IMAGE_MANIFEST_KIND: Final = "ImageManifest"
_UINT32_MAX: Final = 2**32 - 1
_SIZE_MAX: Final = 2**63 - 1
_T = TypeVar("_T")


def decode_manifest(v: View) -> ImageManifest:
    kind = v.req_str("acKind")
    if kind != IMAGE_MANIFEST_KIND:
        raise FieldError("acKind", f'expected "{IMAGE_MANIFEST_KIND}", got {kind!r}')
    app = v.raw("app")
    return ImageManifest(
        ac_kind=kind,
        ac_version=rules.semver(v.req_str("acVersion"), "acVersion"),
        name=rules.identifier(v.req_str("name"), "name"),
        labels=_decode_labels(v, "labels"),
        app=None if app is None else _decode_app(View(app, "app")),
        dependencies=_objects(v, "dependencies", _decode_dependency),
        path_whitelist=v.opt_str_list("pathWhitelist"),
        annotations=_decode_annotations(v),
        extra=v.extras(),
    )


def _objects(v: View, key: str, decode: Callable[[View], _T]) -> tuple[_T, ...] | None:
    items = v.opt_list(key)
    return None if items is None else tuple(decode(View(item, path)) for path, item in items)


def _named_pairs(v: View, key: str) -> list[tuple[str, str, str, Extras]] | None:
    """A list of {name, value} objects as (path, name, value, extras), checked as strings."""
    items = v.opt_list(key)
    if items is None:
        return None
    out = []
    for path, item in items:
        iv = View(item, path)
        name = iv.req_str("name")
        value = iv.opt_str("value")
        if value is None:
            raise FieldError(iv.at("value"), "is required and must be a string")
        out.append((path, name, value, iv.extras()))
    return out


def _decode_labels(v: View, key: str) -> tuple[Label, ...] | None:
    pairs = _named_pairs(v, key)
    if pairs is None:
        return None
    rules.labels([(p, n, val) for p, n, val, _ in pairs], v.at(key))
    return tuple(Label(rules.identifier(n, f"{p}.name"), val, extra) for p, n, val, extra in pairs)


def _decode_annotations(v: View) -> tuple[Annotation, ...] | None:
    pairs = _named_pairs(v, "annotations")
    if pairs is None:
        return None
    rules.unique([(f"{p}.name", n) for p, n, _, _ in pairs], "annotation")
    out = []
    for path, name, value, extra in pairs:
        rules.annotation_value(name, value, f"{path}.value")
        out.append(Annotation(rules.identifier(name, f"{path}.name"), value, extra))
    return tuple(out)


def _decode_environment(v: View) -> tuple[EnvironmentVariable, ...] | None:
    pairs = _named_pairs(v, "environment")
    if pairs is None:
        return None
    rules.unique([(f"{p}.name", n) for p, n, _, _ in pairs], "environment variable")
    return tuple(
        EnvironmentVariable(rules.env_name(n, f"{p}.name"), val, extra)
        for p, n, val, extra in pairs
    )


def _decode_exec(v: View, key: str) -> tuple[str, ...] | None:
    argv = v.opt_str_list(key)
    if argv:
        rules.absolute(argv[0], f"{v.at(key)}[0]")
    return argv


def _decode_app(v: View) -> App:
    handlers = _objects(v, "eventHandlers", _decode_event_handler)
    if handlers is not None:
        rules.unique(
            [(f"{v.at('eventHandlers')}[{i}].name", h.name) for i, h in enumerate(handlers)],
            "event handler",
        )
    workdir = v.opt_str("workingDirectory")
    if workdir:
        rules.absolute(workdir, v.at("workingDirectory"))
    gids = v.opt_list("supplementaryGIDs")
    return App(
        exec=_decode_exec(v, "exec"),
        user=v.req_str("user"),
        group=v.req_str("group"),
        supplementary_gids=None
        if gids is None
        else tuple(check_int(g, p, 0, _UINT32_MAX) for p, g in gids),
        event_handlers=handlers,
        working_directory=workdir,
        environment=_decode_environment(v),
        isolators=_objects(v, "isolators", _decode_isolator),
        mount_points=_objects(v, "mountPoints", _decode_mount_point),
        ports=_objects(v, "ports", _decode_port),
        user_annotations=v.opt_str_map("userAnnotations"),
        user_labels=v.opt_str_map("userLabels"),
        extra=v.extras(),
    )


def _decode_event_handler(v: View) -> EventHandler:
    name = v.req_str("name")
    if name not in rules.EVENT_HANDLER_NAMES:
        raise FieldError(v.at("name"), f'{name!r} is not "pre-start" or "post-stop"')
    argv = _decode_exec(v, "exec")
    if not argv:
        raise FieldError(v.at("exec"), "is required and must be a non-empty array of strings")
    return EventHandler(name, argv, v.extras())


def _decode_isolator(v: View) -> Isolator:
    name = rules.identifier(v.req_str("name"), v.at("name"))
    if not v.present("value"):
        raise FieldError(v.at("value"), "is required")
    return Isolator(name, dumps(v.raw("value")), v.extras())


def _decode_mount_point(v: View) -> MountPoint:
    name = rules.acname(v.req_str("name"), v.at("name"))
    return MountPoint(name, v.req_str("path"), v.opt_bool("readOnly"), v.extras())


def _decode_port(v: View) -> Port:
    name = rules.acname(v.req_str("name"), v.at("name"))
    protocol = v.req_str("protocol")
    port = v.opt_int("port", 1, 65535)
    if port is None:
        raise FieldError(v.at("port"), "is required (1..65535)")
    count = v.opt_int("count", 0, 65535)
    if port + max(count or 1, 1) > 65536:
        raise FieldError(v.at("count"), f"the range {port}+{count} ends past port 65535")
    return Port(name, protocol, port, count, v.opt_bool("socketActivated"), v.extras())


def _decode_dependency(v: View) -> Dependency:
    image_id = v.opt_str("imageID")
    return Dependency(
        image_name=rules.identifier(v.req_str("imageName"), v.at("imageName")),
        image_id=None if image_id is None else rules.image_hash(image_id, v.at("imageID")),
        labels=_decode_labels(v, "labels"),
        size=v.opt_int("size", 0, _SIZE_MAX),
        extra=v.extras(),
    )
