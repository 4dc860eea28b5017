"""Name -> factory registries (timm's ``list_models`` style) and did-you-mean suggestions.

A registered factory takes its recipe parameters as keyword-only arguments with type
hints and defaults; :func:`params_of` reads them, so the factory's signature is the one
source of truth for what a recipe section may contain.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
REQUIRED: Any = inspect.Parameter.empty


def suggest(word: str, choices: Iterable[str]) -> str:
    """A ' Did you mean 'x'?' suffix for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class ParamSpec:
    """One keyword parameter of a registered factory: its type hint and default."""

    name: str
    hint: Any
    default: Any  # REQUIRED when the recipe must give it


def params_of(factory: Callable[..., Any]) -> dict[str, ParamSpec]:
    """The keyword-only parameters of ``factory`` (a function or a class), in order."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = typing.get_type_hints(target, include_extras=True)
    # a dataclass field with default_factory shows a sentinel as its __init__ default
    factories = {f.name: f.default_factory for f in dataclasses.fields(factory)
                 if f.default_factory is not dataclasses.MISSING} if dataclasses.is_dataclass(factory) else {}
    out = {}
    for p in inspect.signature(factory).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            default = factories[p.name]() if p.name in factories else p.default
            out[p.name] = ParamSpec(p.name, hints.get(p.name, Any), default)
    return out


def first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: T
    help: str
    extra: dict[str, Any]


class Registry(Generic[T]):
    """A named collection of factories of one kind (datasets, models, methods, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, help: str | None = None, **extra: Any) -> Callable[[T], T]:
        def deco(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, factory, help or first_doc_line(factory), extra)
            return factory

        return deco

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} '{name}'. Known: {', '.join(self._entries)}."
                + suggest(name, self._entries)
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).factory


@dataclass(frozen=True)
class Range:
    """Bounds for a numeric parameter, used as ``Annotated[float, Range(gt=0)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violation(self, v: float) -> str | None:
        for bound, ok, word in (
            (self.ge, lambda b: v >= b, ">="),
            (self.gt, lambda b: v > b, ">"),
            (self.le, lambda b: v <= b, "<="),
            (self.lt, lambda b: v < b, "<"),
        ):
            if bound is not None and not ok(bound):
                return f"must be {word} {bound:g}"
        return None


PosInt = typing.Annotated[int, Range(ge=1)]
NonNegInt = typing.Annotated[int, Range(ge=0)]
PosFloat = typing.Annotated[float, Range(gt=0)]
NonNegFloat = typing.Annotated[float, Range(ge=0)]
Fraction = typing.Annotated[float, Range(ge=0, le=1)]


def _from_yaml(hint: Any, value: Any) -> Any:
    """Turn a canonical recipe value back into the typed value a factory expects."""
    from trainbench.timeunits import Time

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if origin is typing.Annotated:
        return _from_yaml(args[0], value)
    if origin in (typing.Union, types.UnionType):
        return _from_yaml(next(a for a in args if a is not type(None)), value)
    if hint is Time:
        return Time.parse(value)
    if origin is list and args:
        return [_from_yaml(args[0], v) for v in value]
    return value


def instantiate(factory: Callable[..., T], params: dict[str, Any], *args: Any, **runtime: Any) -> T:
    """Call ``factory`` with the recipe ``params`` it declares (others, like 'name', are
    ignored), typed back from their YAML form, plus positional/runtime arguments."""
    specs = params_of(factory)
    kwargs = {k: _from_yaml(specs[k].hint, v) for k, v in params.items() if k in specs}
    return factory(*args, **kwargs, **runtime)
