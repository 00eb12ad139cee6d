"""``@frozen``: trustd's ``@dataclass(frozen=True, slots=True)``, built with one ``exec``.

CPython 3.11's :mod:`dataclasses` compiles each generated method (``__init__``, ``__repr__``,
``__eq__``, ``__hash__``, ``__setattr__``, ``__delattr__``) with its own ``exec`` and formats
``inspect.signature`` for the docstring: ~0.4 ms a class. The root program defines ~150 such
classes on the way to a pod start, a third of its run (issue #14). This builds the same class
(the same generated code, from the standard library's own helpers for each line, the same
``__dataclass_fields__`` and ``__dataclass_params__``, the same slotted class from
``dataclasses._add_slots``) but compiles its methods in one ``exec``, as CPython 3.13 does.

Each module that wants it says so: ``@frozen`` in place of the decorator (type checkers see
a dataclass through :func:`typing.dataclass_transform`); nothing in the standard library is
patched. Anything unusual (``InitVar``, ``KW_ONLY``, a field named ``self``, a method the class
defines itself, a non-frozen base), and any interpreter but CPython 3.11, whose private helpers
this build reuses, goes to the standard library unchanged, which also raises its errors (3.13
compiles in one ``exec`` itself, so this module goes once trustd moves past 3.11).
``tests/unit/test_dataclass_build.py`` compares both builds.
"""

from __future__ import annotations

import abc
import dataclasses as _dc
import inspect
import operator
import sys
from typing import Any, TypeVar, dataclass_transform

_STD = _dc.dataclass
_OWN = frozenset(
    [
        "__init__",
        "__repr__",
        "__eq__",
        "__hash__",
        "__setattr__",
        "__delattr__",
        "__slots__",
        "__match_args__",
        "__getstate__",
        "__setstate__",
    ]
)


_T = TypeVar("_T")
# The fast build reads CPython 3.11's private helpers; elsewhere the standard library builds.
_FAST = sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 11)


@dataclass_transform(frozen_default=True, field_specifiers=(_dc.field, _dc.Field))
def frozen(cls: type[_T], /) -> type[_T]:
    """``@dataclass(frozen=True, slots=True)``, with ``__init__`` compiled in one ``exec``."""
    if _FAST:
        built = _build(cls)
        if built is not None:
            return built  # type: ignore[no-any-return]
    return _STD(cls, frozen=True, slots=True)


def _inherited(cls: Any) -> dict[str, Any] | None:
    """The fields of the dataclass bases, or None for a non-frozen one (its error is the
    standard library's to raise)."""
    fields: dict[str, Any] = {}
    for base in cls.__mro__[-1:0:-1]:
        base_fields = getattr(base, _dc._FIELDS, None)  # type: ignore[attr-defined]
        if base_fields is not None:
            if not getattr(base, _dc._PARAMS).frozen:  # type: ignore[attr-defined]
                return None
            fields.update((f.name, f) for f in base_fields.values())
    return fields


def _fields(cls: Any, annotations: dict[str, Any]) -> dict[str, Any] | None:
    """``_process_class``'s fields, or None to leave the class to the standard library.
    Every reason to leave it is found before the class is changed (a ``field()`` default
    replaced by its value), so the standard library then sees the class as written."""
    fields = _inherited(cls)
    if fields is None or any("KW_ONLY" in str(t) for t in annotations.values()):
        return None
    own = [_dc._get_field(cls, n, t, False) for n, t in annotations.items()]  # type: ignore[attr-defined]
    kinds = (_dc._FIELD, _dc._FIELD_CLASSVAR)  # type: ignore[attr-defined]
    if (
        any(f._field_type not in kinds for f in own)  # an InitVar
        or any(f.kw_only is True for f in (*fields.values(), *own))
        or any(isinstance(v, _dc.Field) and n not in annotations for n, v in cls.__dict__.items())
    ):
        return None
    for f in own:
        fields[f.name] = f
        if isinstance(getattr(cls, f.name, None), _dc.Field):
            if f.default is _dc.MISSING:
                delattr(cls, f.name)
            else:
                setattr(cls, f.name, f.default)
    return fields


def _build(cls: Any) -> Any:
    """The class as ``dataclass(frozen=True, slots=True)`` builds it, or None to leave it to
    the standard library."""
    annotations = inspect.get_annotations(cls)  # the class's own, as strings here
    if any(name in cls.__dict__ for name in _OWN) or "self" in annotations:
        return None
    fields = _fields(cls, annotations)
    if fields is None or "self" in fields:
        return None
    module = sys.modules.get(cls.__module__)
    globals_ = module.__dict__ if module is not None else {}
    setattr(cls, _dc._PARAMS, _dc._DataclassParams(True, True, True, False, False, True))  # type: ignore[attr-defined]
    setattr(cls, _dc._FIELDS, fields)  # type: ignore[attr-defined]
    init_fields = [f for f in fields.values() if f._field_type is _dc._FIELD]  # type: ignore[attr-defined]
    std_init, kw_init = _dc._fields_in_init_order(init_fields)  # type: ignore[attr-defined]
    if kw_init:
        return None
    seen_default = False
    for f in std_init:
        if f.init:
            if not (f.default is _dc.MISSING and f.default_factory is _dc.MISSING):
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {f.name!r} follows default argument")

    # __init__ is compiled from the standard library's own text for each line (_init_fn's,
    # with its names for the closure's variables); the other methods need no code of their
    # own: closures over the field names do what its generated ones do.
    local: dict[str, Any] = {f"_type_{f.name}": f.type for f in init_fields}
    local.update(
        MISSING=_dc.MISSING,
        _HAS_DEFAULT_FACTORY=_dc._HAS_DEFAULT_FACTORY,  # type: ignore[attr-defined]
        __dataclass_builtins_object__=object,
        _return_type=None,
    )
    body = [_dc._field_init(f, True, local, "self", True) for f in init_fields]  # type: ignore[attr-defined]
    lines = [b for b in body if b]
    if hasattr(cls, _dc._POST_INIT_NAME):  # type: ignore[attr-defined]
        lines.append(f"self.{_dc._POST_INIT_NAME}()")  # type: ignore[attr-defined]
    params = ",".join(["self", *(_dc._init_param(f) for f in std_init)])  # type: ignore[attr-defined]
    text = "\n".join(f"  {line}" for line in lines or ["pass"])
    source = (
        f"def __create_fn__({', '.join(local)}):\n"
        f" def __init__({params})->_return_type:\n{text}\n return __init__"
    )
    namespace: dict[str, Any] = {}
    # dont_inherit: not this module's ``from __future__ import annotations``; the annotations
    # are the objects in ``local``, as the standard library's are
    code = compile(source, "<string>", "exec", dont_inherit=True)
    exec(code, globals_, namespace)  # noqa: S102 - text from the field names, as dataclasses'
    init = namespace["__create_fn__"](**local)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init
    names = tuple(f.name for f in init_fields)
    for name, fn in _methods(
        cls,
        tuple(f.name for f in init_fields if f.repr),
        tuple(f.name for f in init_fields if f.compare),
        tuple(f.name for f in init_fields if (f.compare if f.hash is None else f.hash)),
        names,
    ):
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    if not getattr(cls, "__doc__"):  # noqa: B009 - as the standard library tests it
        cls.__doc__ = cls.__name__ + "(" + ", ".join(_param_text(f) for f in std_init) + ")"
    cls.__match_args__ = tuple(f.name for f in std_init)  # type: ignore[misc]
    cls = _dc._add_slots(cls, True, False)  # type: ignore[attr-defined]
    abc.update_abstractmethods(cls)
    return cls


def _tuple_of(names: tuple[str, ...]) -> Any:
    """``obj -> (obj.a, obj.b, ...)``, the tuple the generated methods build."""
    if len(names) == 1:
        (name,) = names
        return lambda obj: (getattr(obj, name),)
    return operator.attrgetter(*names) if names else lambda obj: ()


def _methods(
    cls: Any,
    shown: tuple[str, ...],
    compared: tuple[str, ...],
    hashed: tuple[str, ...],
    names: tuple[str, ...],
) -> list[tuple[str, Any]]:
    """__repr__, __eq__, __hash__, __setattr__ and __delattr__ as dataclasses generates them
    for ``frozen=True`` (``cls`` is the class before slots, as there)."""
    compare, hash_tuple = _tuple_of(compared), _tuple_of(hashed)
    frozen_error = _dc.FrozenInstanceError

    def __repr__(self: Any) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({fields})"

    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return compare(self) == compare(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(hash_tuple(self))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise frozen_error(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise frozen_error(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return [
        ("__repr__", _dc._recursive_repr(__repr__)),  # type: ignore[attr-defined]
        ("__eq__", __eq__),
        ("__hash__", __hash__),
        ("__setattr__", __setattr__),
        ("__delattr__", __delattr__),
    ]


def _param_text(f: Any) -> str:
    """A parameter as ``str(inspect.signature(cls))`` shows it, without building one."""
    text = f"{f.name}: {inspect.formatannotation(f.type)}"
    if f.default is not _dc.MISSING:
        return f"{text} = {f.default!r}"
    if f.default_factory is not _dc.MISSING:
        return f"{text} = <factory>"
    return text
