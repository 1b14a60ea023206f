"""How raw ids read as text become ids: one rule for files, encoders and typed ids.

A column of ids is int64 only when EVERY value is the canonical decimal form of an int64 (an
optional minus, no leading zero, no "+", no decimals, no spaces, at most int64's range);
otherwise every value stays the string it was. So "0003" and "3" are two ids, "1.0" is never
rounded to 1, and ids past int64 never overflow. :func:`int_id` applies the same rule to one
typed id (``rechub recall --user TEXT``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["ids_as_text", "int_id", "parse_id_column"]

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
