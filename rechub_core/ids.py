"""How raw ids read as text become ids: one rule for files, encoders and typed ids.

A column of ids is int64 only when EVERY value is the canonical decimal form of an int64 (an
optional minus, no leading zero, no "+", no decimals, no spaces, at most int64's range);
otherwise every value stays the string it was. So "0003" and "3" are two ids, "1.0" is never
rounded to 1, and ids past int64 never overflow. :func:`int_id` applies the same rule to one
typed id (``rechub recall --user TEXT``).

:class:`IdEncoder` maps the raw ids of one field to contiguous codes ``1..n`` (0 is padding)
and back, and saves itself with the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rechub_core.errors import InputError
from rechub_core.io import write_text

__all__ = ["IdEncoder", "ids_as_text", "int_id", "parse_id_column", "to_python"]

#: an id that is read as an int64: optional minus, no leading zero, no "+", no decimals
_INT_ID = r"(?:0|-?[1-9][0-9]*)"
_INT64_DIGITS = 18  # any integer of at most this many digits fits int64


def int_id(text: str) -> int | None:
    """``text`` as an int64 id when it is the canonical decimal form of one, else None
    (``"0003"``, ``"+3"``, ``"3.0"``, ``" 3"`` and ``"9" * 30`` are not)."""
    if re.fullmatch(_INT_ID, text, flags=re.ASCII) is None:
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def parse_id_column(values: pd.Series) -> np.ndarray:
    """Raw ids read as text -> int64 when EVERY value is a canonical int64 (:func:`int_id`),
    else the strings themselves (object array). Nothing is merged or rounded: ``"0003"`` and
    ``"3"`` stay two ids. Shape ``(N,)``."""
    text = values.astype(str)
    if len(text) and bool(text.str.fullmatch(_INT_ID).all()):
        digits = text.str.len() - text.str.startswith("-")
        long = (digits > _INT64_DIGITS).to_numpy()
        if not long.any():
            return text.astype(np.int64).to_numpy()
        if all(int_id(t) is not None for t in text[long]):
            return np.array([int(t) for t in text], dtype=np.int64)
    return text.to_numpy(dtype=object)


def ids_as_text(col: pd.Series) -> pd.Series:
    """An id column of any dtype as text (a typed integer column in its decimal form)."""
    if pd.api.types.is_integer_dtype(col):
        return col.astype(str) if col.dtype.kind == "u" else col.astype(np.int64).astype(str)
    return col.astype(str)


_JSON_SCALARS = (bool, int, float, str)


def to_python(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _as_array(values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """Raw ids as a numpy array without numpy's fixed-width strings (they drop trailing NULs)."""
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy()
    elif isinstance(values, np.ndarray):
        arr = values
    else:
        arr = np.asarray(values if isinstance(values, list | tuple) else list(values), dtype=object)
        if arr.size and pd.api.types.infer_dtype(arr.reshape(-1), skipna=False) == "integer":
            with contextlib.suppress(OverflowError):  # ints beyond int64 stay Python ints
                arr = arr.astype(np.int64)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    return arr


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Unique values in a deterministic order: natural order, or by (type name, str) if mixed."""
    uniq = pd.unique(pd.Series(values, copy=False))
    try:
        return np.asarray(np.sort(uniq))
    except TypeError:  # mixed types (e.g. int and str) cannot be compared directly
        ordered = sorted(uniq.tolist(), key=lambda v: (type(v).__name__, str(v)))
        out = np.empty(len(ordered), dtype=object)
        out[:] = ordered
        return out


class IdEncoder:
    """Maps raw ids (str or int) of one field to contiguous ints ``1..n``; ``0`` is padding.

    Codes follow the sorted order of the raw ids (ints numerically, strings lexically), so they
    are deterministic and ``code(a) < code(b)`` iff ``a < b``. ``len(encoder)`` is the vocabulary
    size **including** the padding code, i.e. ``n + 1``.

    :attr:`id_type` says how raw ids read as text map onto the vocabulary: ``"int64"`` (every
    raw id an int64), ``"str"`` (every raw id a string) or ``"mixed"``; it is saved with the
    encoder and :meth:`parse` applies it to a typed id (``rechub recall --user TEXT``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._values: np.ndarray = np.empty(0, dtype=object)
        self._index: pd.Index = pd.Index(self._values)
        self._fitted = False

    def __repr__(self) -> str:
        return f"IdEncoder({self.name!r}, n={len(self._values)})"

    def __len__(self) -> int:
        return len(self._values) + 1

    @property
    def id_type(self) -> str:
        """``"int64"``, ``"str"`` or ``"mixed"``: the type of the raw ids."""
        if self._values.dtype.kind in "iu":
            return "int64"
        values = self._values.tolist()
        if all(isinstance(v, str) for v in values):
            return "str"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "int64" if all(-(2**63) <= v < 2**63 for v in values) else "mixed"
        return "mixed"

    def parse(self, text: str) -> Any:
        """The raw id a user typed as ``text``, as this encoder holds it: an int for int64
        ids (only the canonical form: ``"0003"`` is not ``3``), the text itself for str ids.

        Raises:
            InputError: int64 ids and ``text`` is not one (names the field and the text).
        """
        value = int_id(text)
        if self.id_type == "int64":
            if value is None:
                raise InputError(
                    f"{self.name} ids of this run are integers; {text!r} is not one (write it "
                    "without leading zeros, '+' or decimals)"
                )
            return value
        if self.id_type == "mixed" and value is not None and value in self._index:
            return value
        return text

    @property
    def classes(self) -> np.ndarray:
        """The raw ids; ``classes[c - 1]`` is the raw id of code ``c``. Shape ``(n,)``."""
        return self._values

    def _set_values(self, values: np.ndarray) -> None:
        self._values = values
        self._index = pd.Index(values)
        self._fitted = True

    def fit(self, values: Iterable[Any] | np.ndarray | pd.Series) -> IdEncoder:
        """Learn the vocabulary from ``values`` (any 1-d array-like of raw ids); returns self."""
        arr = _as_array(values).reshape(-1)
        if len(arr) and pd.isna(pd.Series(arr, copy=False)).any():
            raise InputError(
                f"field {self.name!r}: the values contain NaN/None; drop or fill those rows "
                "before encoding"
            )
        self._set_values(_sorted_unique(arr))
        return self

    def transform(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Encode raw ids: same shape as ``values``, int64 codes in ``1..n``.

        Raises :class:`InputError` naming the field and one unknown value if any id was not seen
        by :meth:`fit`.
        """
        if not self._fitted:
            raise InputError(f"encoder {self.name!r} is not fitted; call fit(values) first")
        arr = _as_array(values)
        shape = arr.shape
        flat = arr.reshape(-1)
        pos = self._index.get_indexer(flat)
        missing = pos < 0
        if missing.any():
            bad = flat[np.flatnonzero(missing)[0]]
            raise InputError(
                f"field {self.name!r}: {int(missing.sum())} value(s) are not in the vocabulary, "
                f"e.g. {to_python(bad)!r} (type {type(to_python(bad)).__name__}); fit the "
                f"encoder on data that contains them, or drop those rows "
                f"(vocabulary has {len(self._values)} ids)"
            )
        return (pos.astype(np.int64) + 1).reshape(shape)

    def inverse(self, codes: Iterable[int] | np.ndarray) -> np.ndarray:
        """Decode int codes (any shape) back to raw ids; ``0`` (padding) or out of range raises."""
        arr = np.asarray(codes)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"field {self.name!r}: codes must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 1) | (arr > len(self._values))
        if bad.any():
            first = int(arr[bad].reshape(-1)[0])
            raise InputError(
                f"field {self.name!r}: code {first} has no raw id (valid codes are "
                f"1..{len(self._values)}; 0 is padding); drop padding before decoding"
            )
        return self._values[arr - 1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict; raw ids keep their type (int stays int, str stays str)."""
        out: list[Any] = []
        for value in self._values.tolist():
            value = to_python(value)
            if not isinstance(value, _JSON_SCALARS):
                raise InputError(
                    f"field {self.name!r}: raw id {value!r} of type {type(value).__name__} "
                    "cannot be saved as JSON; use str or int ids"
                )
            out.append(value)
        return {"name": self.name, "id_type": self.id_type, "values": out}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdEncoder:
        """Rebuild an encoder from :meth:`to_dict` output."""
        try:
            name, values = data["name"], data["values"]
        except (KeyError, TypeError) as exc:
            raise InputError(
                f"encoder dict must have keys 'name' and 'values', got {data!r:.200}"
            ) from exc
        enc = cls(str(name))
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
        if ints and all(-(2**63) <= v < 2**63 for v in values):
            arr: np.ndarray = np.asarray(values, dtype=np.int64)
        else:  # str ids, or ints beyond int64 (kept as Python ints, never overflowing)
            arr = np.empty(len(values), dtype=object)
            arr[:] = list(values)
        if len(pd.Index(arr).unique()) != len(arr):
            raise InputError(f"encoder {name!r}: the saved values contain duplicates")
        enc._set_values(arr)
        return enc

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON to ``path`` atomically (temp file + ``os.replace``)."""
        write_text(Path(path), json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IdEncoder:
        """Read an encoder written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read encoder file {os.fspath(path)!r}: {exc}") from exc
        return cls.from_dict(data)
