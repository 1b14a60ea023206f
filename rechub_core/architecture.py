"""What a model was built with: every constructor argument of its models and towers, defaults
included, so that a run folder can tell when the installed code would build another model.

A run folder's ``config.toml`` holds only the model parameters the user gave; the rest come
from the defaults of the installed plugins. When a default changes (a width, a number of
heads, a temperature), an old run folder would load into the new default: a shape error at
best, silently different scores at worst (``num_heads`` or ``temperature`` keep every shape).
So every :class:`MatchModel` and :class:`~rechub_core.towers.Tower` records the arguments of
its outermost constructor call (:class:`RecordsInitArgs`), :func:`describe` collects them per
submodule, a train writes the description into the run folder (``architecture.json``), and a
load compares (:func:`differences`) and refuses with the parameter named.

Only plain values are described: numbers, strings, booleans, ``None``, lists of them, and
attrs instances (the feature definitions) as dicts of theirs. Tensors, modules and other
objects are left out.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import attrs
from torch import nn

#: instance attribute holding ``(class name, {argument: value})`` of the outermost __init__
_RECORD = "_rechub_init_args"
_SKIP = object()


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready plain data, or ``_SKIP`` when it has none."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return _SKIP if any(v is _SKIP for v in items) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        entries = {k: _plain(v) for k, v in value.items()}
        return _SKIP if any(v is _SKIP for v in entries.values()) else entries
    if attrs.has(type(value)):
        fields = {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {"type": type(value).__name__} | {k: v for k, v in fields.items() if v is not _SKIP}
    return _SKIP


class RecordsInitArgs:
    """Mixin for ``nn.Module`` classes: each instance remembers the arguments its outermost
    ``__init__`` call bound (defaults applied; ``**kwargs`` flattened), read by
    :func:`describe`. Subclasses need do nothing: ``__init_subclass__`` wraps every
    ``__init__`` a subclass defines."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None or getattr(init, "_rechub_records", False):
            return

        @functools.wraps(init)
        def wrapped(self: Any, *args: Any, **kw: Any) -> None:
            outermost = _RECORD not in self.__dict__
            if outermost:  # set first, so the super().__init__ calls inside do not record
                object.__setattr__(self, _RECORD, None)
            init(self, *args, **kw)
            if outermost:
                object.__setattr__(self, _RECORD, (type(self).__name__, _bound(init, args, kw)))

        wrapped._rechub_records = True  # type: ignore[attr-defined]
        cls.__init__ = wrapped  # type: ignore[method-assign]


def _bound(init: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> dict[str, Any]:
    """The plain arguments of the call ``init(self, *args, **kw)``, defaults applied."""
    signature = inspect.signature(init)  # read now: defaults as the function holds them
    try:
        bound = signature.bind(None, *args, **kw)
    except TypeError:  # the call itself would have failed first
        return {}
    bound.apply_defaults()
    out: dict[str, Any] = {}
    for name, value in list(bound.arguments.items())[1:]:  # [0] is self
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            pairs = dict(value).items()
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            pairs = {f"{name}[{i}]": v for i, v in enumerate(value)}.items()
        else:
            pairs = {name: value}.items()
        for key, v in pairs:
            plain = _plain(v)
            if plain is not _SKIP:
                out[key] = plain
    return out


def describe(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{submodule path ("" for the model): {"class": name, "args": {argument: value}}}`` for
    every submodule that recorded its constructor arguments (:class:`RecordsInitArgs`)."""
    out: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        record = module.__dict__.get(_RECORD)
        if record is not None:
            out[path] = {"class": record[0], "args": record[1]}
    return out


def differences(trained: dict[str, dict[str, Any]], built: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences between two :func:`describe` results (empty: the same
    model), each naming the submodule and the argument with both values."""
    out: list[str] = []
    for path in sorted(set(trained) | set(built)):
        where = f"{path!r}" if path else "the model"
        a, b = trained.get(path), built.get(path)
        if a is None or b is None:
            cls = (a or b or {}).get("class", "?")
            state = "is not built now" if b is None else "was not in the trained model"
            out.append(f"{where} ({cls}) {state}")
            continue
        if a["class"] != b["class"]:
            out.append(f"{where} was a {a['class']}, is now a {b['class']}")
            continue
        for arg in sorted(set(a["args"]) | set(b["args"])):
            old, new = a["args"].get(arg, "(absent)"), b["args"].get(arg, "(absent)")
            if old != new:
                out.append(f"{where} ({a['class']}) {arg}: trained with {old!r}, built now {new!r}")
    return out
