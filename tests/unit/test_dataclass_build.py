"""trustd's ``@frozen``, a one-exec build of ``@dataclass(frozen=True, slots=True)``
(trustd/shared/_dataclass.py),
makes the classes the standard library makes: each shape here is built both ways and every
observable (init, repr, eq, hash, frozenness, slots, pickling, replace, fields, asdict, match
args, docstring, signature, errors) is compared."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
import sys
import types
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any, ClassVar

import pytest

from trustd.shared import _dataclass

MODULE = "trustd._dataclass_build_probe"  # the module the probe classes live in


@pytest.fixture(scope="module", autouse=True)
def _probe_module() -> Any:
    module = types.ModuleType(MODULE)
    module.__dict__["ClassVar"] = ClassVar  # as a module that imports it has it
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


def _STD_FROZEN(cls: Any) -> Any:
    return dataclasses.dataclass(frozen=True, slots=True)(cls)


def _both(name: str, namespace: Callable[[], dict[str, Any]]) -> tuple[Any, Any]:
    """The class built by the standard library and by trustd's build, from the same body."""
    built: list[Any] = []
    for decorate in (_STD_FROZEN, _dataclass.frozen):
        body = {"__module__": MODULE, "__qualname__": name, **namespace()}
        built.append(decorate(type(name, (), body)))
        setattr(sys.modules[MODULE], name, built[-1])  # pickle finds the class by name
    return built[0], built[1]


def _factory() -> tuple[int, ...]:
    return (1,)


SHAPES: dict[str, Callable[[], dict[str, Any]]] = {
    "plain": lambda: {"__annotations__": {"a": "int", "b": "str"}},
    "empty": lambda: {"__annotations__": {}},
    "one": lambda: {"__annotations__": {"a": "int"}},
    "defaults": lambda: {
        "__annotations__": {"a": "int", "b": "str", "c": "tuple[int, ...]", "d": "int | None"},
        "b": "x",
        "c": (),
        "d": None,
    },
    "fields": lambda: {
        "__annotations__": {"a": "int", "b": "tuple[int, ...]", "c": "int", "d": "str", "e": "int"},
        "b": dataclasses.field(default_factory=_factory),
        "c": dataclasses.field(default=3, repr=False, compare=False),
        "d": dataclasses.field(default="m", metadata={"k": "v"}),
        "e": dataclasses.field(default=5, hash=False),
    },
    "classvar": lambda: {"__annotations__": {"a": "int", "K": "ClassVar[int]"}, "K": 7},
    "documented": lambda: {"__annotations__": {"a": "int"}, "__doc__": "A documented class."},
    "post_init": lambda: {
        "__annotations__": {"a": "int"},
        "__post_init__": lambda self: object.__setattr__(self, "a", self.a * 2),
    },
}
VALUES: dict[str, tuple[Any, ...]] = {
    "plain": (1, "x"),
    "empty": (),
    "one": (1,),
    "defaults": (1,),
    "fields": (1,),
    "classvar": (1,),
    "documented": (1,),
    "post_init": (2,),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_each_shape_behaves_as_the_standard_library_builds_it(shape: str) -> None:
    std, fast = _both(f"Shape_{shape}", SHAPES[shape])
    assert fast is not std and fast.__dataclass_fields__.keys() == std.__dataclass_fields__.keys()
    args = VALUES[shape]
    a: Any = std(*args)
    b: Any = fast(*args)
    assert repr(b) == repr(a).replace(std.__qualname__, fast.__qualname__)
    assert hash(b) == hash(a)
    assert b == fast(*args) and b != a and (b == a) is False  # another class is never equal
    assert dataclasses.astuple(b) == dataclasses.astuple(a)
    assert dataclasses.asdict(b) == dataclasses.asdict(a)
    assert [f.name for f in dataclasses.fields(b)] == [f.name for f in dataclasses.fields(a)]
    assert fast.__dataclass_params__.__repr__() == std.__dataclass_params__.__repr__()
    assert fast.__slots__ == std.__slots__ and not hasattr(b, "__dict__")
    assert fast.__match_args__ == std.__match_args__
    assert fast.__doc__ == std.__doc__
    assert str(inspect.signature(fast)) == str(inspect.signature(std))
    assert pickle.loads(pickle.dumps(b)) == b  # noqa: S301 - the test's own bytes
    assert copy.deepcopy(b) == b
    for name in std.__match_args__:
        with pytest.raises(
            dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"
        ):
            setattr(b, name, 0)
        with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
            delattr(b, name)
    if std.__match_args__:
        first = std.__match_args__[0]
        change = {first: getattr(b, first)}
        changed = dataclasses.replace(b, **change)
        assert type(changed) is fast
        assert dataclasses.astuple(changed) == dataclasses.astuple(dataclasses.replace(a, **change))
    assert dataclasses.is_dataclass(fast) and dataclasses.is_dataclass(b)


def test_a_frozen_base_is_inherited_as_the_standard_library_does() -> None:
    std_base, fast_base = _both("Base", lambda: {"__annotations__": {"a": "int"}})
    std: Any = _dataclass._STD(frozen=True, slots=True)(
        type("Child", (std_base,), {"__module__": MODULE, "__annotations__": {"b": "int"}, "b": 2})
    )
    fast: Any = _dataclass.frozen(
        type("Child", (fast_base,), {"__module__": MODULE, "__annotations__": {"b": "int"}, "b": 2})
    )
    assert repr(fast(1)) == repr(std(1)) == "Child(a=1, b=2)"
    assert hash(fast(1)) == hash(std(1))
    assert fast.__doc__ == std.__doc__


def test_the_same_errors_as_the_standard_library() -> None:
    std, fast = _both("Err", lambda: {"__annotations__": {"a": "int", "b": "int"}})
    for cls in (std, fast):
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'b'"):
            cls(1)
        with pytest.raises(TypeError, match="unexpected keyword argument 'c'"):
            cls(1, 2, c=3)
    for decorate in (_STD_FROZEN, _dataclass.frozen):
        body = {"__module__": MODULE, "__annotations__": {"a": "int", "b": "int"}, "a": 1}
        with pytest.raises(TypeError, match="non-default argument 'b' follows default argument"):
            decorate(type("Bad", (), body))


def test_what_it_does_not_build_goes_to_the_standard_library() -> None:
    """A class with its own methods is left to the standard library, which builds it."""
    own_eq = {"__annotations__": {"a": "int"}, "__eq__": lambda self, other: True}
    assert _dataclass._build(type("Own", (), {"__module__": MODULE, **own_eq})) is None
    built: Any = _dataclass.frozen(type("Own2", (), {"__module__": MODULE, **own_eq}))
    assert built(1) == built(2)  # its own __eq__ kept
    assert dataclasses.is_dataclass(built)


def test_trustd_spells_it_out_and_patches_nothing() -> None:
    from trustd.shared import imageid  # noqa: PLC0415 - any trustd module

    assert dataclasses.dataclass is _dataclass._STD  # the standard library's, unchanged
    key = imageid.StoreKey("sha512-" + "a" * 128)
    assert repr(key) == f"StoreKey(id='sha512-{'a' * 128}')"
    assert type(key).__init__.__code__.co_filename == "<string>"  # built here, in one exec
    with pytest.raises(FrozenInstanceError):
        key.id = "x"  # type: ignore[misc]


def test_a_class_left_to_the_standard_library_reaches_it_unchanged() -> None:
    """A kw_only field is the standard library's to build: the field() before it still
    reaches it as a field (its repr=False kept), not as a bare default."""
    body = {
        "__module__": MODULE,
        "__annotations__": {"a": "int", "b": "int"},
        "a": dataclasses.field(default=1, repr=False),
        "b": dataclasses.field(default=2, kw_only=True),
    }
    built: Any = _dataclass.frozen(type("Kw", (), body))
    assert repr(built()) == "Kw(b=2)"
    assert [f.kw_only for f in dataclasses.fields(built)] == [False, True]
