"""Frozen dataclasses for the appc 0.8.11 image manifest and their JSON encoding (private).

Import these names from :mod:`trustd.shared.appc.manifest`. A key that is absent or ``null`` in the
document is ``None`` here (Go's omitempty), so a document round-trips to the same JSON value.
Keys the model does not know are kept in ``extra`` as compact JSON text, in document order, and
written back after the known keys. Every value is immutable and hashable: raw JSON (isolator
values, extras) is held as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

from trustd.shared._dataclass import frozen
from trustd.shared.appc._json import Extras, JSONValue, emit
from trustd.shared.appc.identifier import ACIdentifier, ACName


class _Encodable(Protocol):
    def to_obj(self) -> dict[str, JSONValue]: ...


def _arr(items: Iterable[_Encodable] | None) -> JSONValue:
    return None if items is None else [item.to_obj() for item in items]


def _strs(items: Iterable[str] | Iterable[int] | None) -> JSONValue:
    return None if items is None else list(items)


def _map(pairs: tuple[tuple[str, str], ...] | None) -> JSONValue:
    return None if pairs is None else dict(pairs)


@frozen
class Label:
    name: ACIdentifier
    value: str
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        return emit([("name", self.name.value), ("value", self.value)], self.extra)


@frozen
class Annotation:
    name: ACIdentifier
    value: str
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        return emit([("name", self.name.value), ("value", self.value)], self.extra)


@frozen
class EnvironmentVariable:
    name: str
    value: str
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        return emit([("name", self.name), ("value", self.value)], self.extra)


@frozen
class EventHandler:
    name: str  # "pre-start" or "post-stop"
    exec: tuple[str, ...]
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        return emit([("name", self.name), ("exec", list(self.exec))], self.extra)


@frozen
class Isolator:
    """An isolator as written; ``value_json`` keeps its raw value for the layers that judge it."""

    name: ACIdentifier
    value_json: str
    extra: Extras = ()

    @property
    def value(self) -> JSONValue:
        result: JSONValue = json.loads(self.value_json)
        return result

    def to_obj(self) -> dict[str, JSONValue]:
        return emit([("name", self.name.value), ("value", self.value)], self.extra)


@frozen
class MountPoint:
    name: ACName
    path: str
    read_only: bool | None = None
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        fields: list[tuple[str, JSONValue]] = [
            ("name", self.name.value),
            ("path", self.path),
            ("readOnly", self.read_only),
        ]
        return emit(fields, self.extra)


@frozen
class Port:
    name: ACName
    protocol: str
    port: int
    count: int | None = None  # appc: absent or 0 means 1
    socket_activated: bool | None = None
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        fields: list[tuple[str, JSONValue]] = [
            ("name", self.name.value),
            ("protocol", self.protocol),
            ("port", self.port),
            ("count", self.count),
            ("socketActivated", self.socket_activated),
        ]
        return emit(fields, self.extra)


@frozen
class App:
    exec: tuple[str, ...] | None
    user: str
    group: str
    supplementary_gids: tuple[int, ...] | None = None
    event_handlers: tuple[EventHandler, ...] | None = None
    working_directory: str | None = None
    environment: tuple[EnvironmentVariable, ...] | None = None
    isolators: tuple[Isolator, ...] | None = None
    mount_points: tuple[MountPoint, ...] | None = None
    ports: tuple[Port, ...] | None = None
    user_annotations: tuple[tuple[str, str], ...] | None = None
    user_labels: tuple[tuple[str, str], ...] | None = None
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        fields: list[tuple[str, JSONValue]] = [
            ("exec", _strs(self.exec)),
            ("user", self.user),
            ("group", self.group),
            ("supplementaryGIDs", _strs(self.supplementary_gids)),
            ("eventHandlers", _arr(self.event_handlers)),
            ("workingDirectory", self.working_directory),
            ("environment", _arr(self.environment)),
            ("isolators", _arr(self.isolators)),
            ("mountPoints", _arr(self.mount_points)),
            ("ports", _arr(self.ports)),
            ("userAnnotations", _map(self.user_annotations)),
            ("userLabels", _map(self.user_labels)),
        ]
        return emit(fields, self.extra)


@frozen
class Dependency:
    image_name: ACIdentifier
    image_id: str | None = None
    labels: tuple[Label, ...] | None = None
    size: int | None = None
    extra: Extras = ()

    def to_obj(self) -> dict[str, JSONValue]:
        fields: list[tuple[str, JSONValue]] = [
            ("imageName", self.image_name.value),
            ("imageID", self.image_id),
            ("labels", _arr(self.labels)),
            ("size", self.size),
        ]
        return emit(fields, self.extra)


@frozen
class ImageManifest:
    """A checked appc image manifest. Build it with ``parse_image_manifest``."""

    ac_kind: str
    ac_version: str
    name: ACIdentifier
    labels: tuple[Label, ...] | None = None
    app: App | None = None
    dependencies: tuple[Dependency, ...] | None = None
    path_whitelist: tuple[str, ...] | None = None
    annotations: tuple[Annotation, ...] | None = None
    extra: Extras = ()

    def label(self, name: str) -> str | None:
        """The value of label ``name`` (``version``, ``os``, ``arch``, ...), or None."""
        return next((lbl.value for lbl in self.labels or () if lbl.name.value == name), None)

    def annotation(self, name: str) -> str | None:
        """The value of annotation ``name``, or None."""
        return next((a.value for a in self.annotations or () if a.name.value == name), None)

    def to_obj(self) -> dict[str, JSONValue]:
        fields: list[tuple[str, JSONValue]] = [
            ("acKind", self.ac_kind),
            ("acVersion", self.ac_version),
            ("name", self.name.value),
            ("labels", _arr(self.labels)),
            ("app", None if self.app is None else self.app.to_obj()),
            ("dependencies", _arr(self.dependencies)),
            ("pathWhitelist", _strs(self.path_whitelist)),
            ("annotations", _arr(self.annotations)),
        ]
        return emit(fields, self.extra)

    def to_json(self) -> str:
        """The manifest as JSON text; parsing it again gives an equal manifest."""
        return json.dumps(self.to_obj(), ensure_ascii=False, allow_nan=False)
