"""Data: the small, immutable, JSON-like payload of input, output and progress.

A value is ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``, or a
list of one of those (a list of strings may hold ``None``, as Android's string
arrays may hold null). Lists come back as tuples, so a ``Data`` is truly immutable.
Data is stored as JSON text; ``bytes`` become ``{"$b": base64}``. It is never pickled.
"""

from __future__ import annotations

import base64
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, TypeAlias, Union

__all__ = [
    "ArrayCreatingInputMerger",
    "Data",
    "DataLike",
    "DataTooLargeError",
    "InputMerger",
    "OverwritingInputMerger",
    "input_merger_by_name",
]

Scalar: TypeAlias = bool | int | float | str | bytes | None
Value: TypeAlias = Scalar | tuple[Scalar, ...]
DataLike: TypeAlias = Union["Data", Mapping[str, Any], None]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class DataTooLargeError(ValueError):
    """Serialized Data is larger than the configured limit."""

    def __init__(self, size: int, limit: int, what: str = "Data") -> None:
        super().__init__(
            f"{what} occupies {size} bytes when serialized, more than the limit of {limit} bytes; "
            "store large payloads elsewhere and pass a key (or raise Configuration.max_data_bytes)"
        )
        self.size = size
        self.limit = limit


def _scalar_kind(key: str, value: object) -> type | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return bool
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise TypeError(f"Data key {key!r}: int {value} does not fit in 64 bits")
        return int
    if isinstance(value, float):
        if not math.isfinite(value):
            # JSON has no NaN or Infinity: Python would write a non-standard token that other
            # readers of the database (and PostgreSQL's jsonb) reject.
            raise TypeError(f"Data key {key!r}: float {value} is not finite; use a finite float or None")
        return float
    for kind in (str, bytes):
        if isinstance(value, kind):
            return kind
    raise TypeError(
        f"Data key {key!r} has unsupported type {type(value).__name__}; "
        "use None, bool, int, float, str, bytes or a list of one of those"
    )


def _check_value(key: object, value: object) -> Value:
    if type(key) is not str and not isinstance(key, str):
        raise TypeError(f"Data keys must be str, got {type(key).__name__} ({key!r})")
    kind = type(value)
    if kind is str or kind is bool or value is None:  # the common values, decided at once
        return value  # type: ignore[return-value]
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
            raise TypeError(f"Data key {key!r}: int {value} does not fit in 64 bits")
        return value  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        all_kinds = {_scalar_kind(key, item) for item in value}
        kinds = {k for k in all_kinds if k is not None}
        if None in all_kinds and kinds - {str}:
            raise TypeError(f"Data key {key!r}: only a list of str may hold None")
        if len(kinds) > 1:
            names = ", ".join(sorted(k.__name__ for k in kinds))
            raise TypeError(f"Data key {key!r}: a list must hold one type, got {names}")
        return tuple(value)
    _scalar_kind(key, value)
    return value  # type: ignore[return-value]


def _encode(value: Value) -> Any:
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Value:
    if isinstance(value, dict):
        return base64.b64decode(value["$b"], validate=True)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)  # type: ignore[misc]
    return value  # type: ignore[no-any-return]


#: One encoder for every Data: json.dumps with options builds a new one per call.
_STORED_FORM = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
#: The C encoder behind it, made once: JSONEncoder.encode makes a new one per call, which
#: was two thirds of the cost of encoding a small Data (a request's input, on every enqueue).
#: The same function and arguments JSONEncoder.iterencode passes; None where there is no C
#: accelerator (then _STORED_FORM does it).
_C_ENCODER = (
    None
    if json.encoder.c_make_encoder is None  # type: ignore[attr-defined]
    else json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _STORED_FORM.default, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True
    )
)


def _stored_text(obj: dict[str, Any]) -> str:
    """``obj`` as compact JSON with sorted keys (what _STORED_FORM.encode returns)."""
    if _C_ENCODER is None:
        return _STORED_FORM.encode(obj)
    return "".join(_C_ENCODER(obj, 0))


class Data(Mapping[str, Value]):
    """An immutable mapping of str to JSON-like values.

    >>> d = Data({"path": "a.jpg", "sizes": [1, 2]})
    >>> d["sizes"], d == {"path": "a.jpg", "sizes": [1, 2]}
    ((1, 2), True)
    """

    MAX_DATA_BYTES: ClassVar[int] = 10 * 1024
    EMPTY: ClassVar[Data]

    __slots__ = ("_json", "_values")

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, /) -> None:
        # type() first: isinstance against the Mapping ABC is the slow check, and a dict the
        # common argument.
        items = values.items() if type(values) is dict or isinstance(values, Mapping) else (values or ())
        self._values: dict[str, Value] = {k: _check_value(k, v) for k, v in items}
        self._json: str | None = None

    @classmethod
    def of(cls, value: DataLike) -> Data:
        """``value`` as Data (a dict is accepted anywhere Data is)."""
        if isinstance(value, Data):
            return value
        if value is None:
            return cls.EMPTY
        return cls(value)

    def __getitem__(self, key: str) -> Value:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        # Compare the stored form: it keeps types apart (True, 1 and 1.0 differ, as on Android)
        # and agrees with __hash__.
        if isinstance(other, Data):
            return self.to_json() == other.to_json()
        if isinstance(other, Mapping):
            try:
                return self.to_json() == Data(other).to_json()
            except TypeError:
                return False
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Data({self._values!r})"

    def to_json(self) -> str:
        """The stored form: compact JSON text with sorted keys."""
        if self._json is None:
            values = self._values
            for value in values.values():
                if type(value) is bytes or type(value) is tuple:  # stored in another form
                    values = {k: _encode(v) for k, v in values.items()}
                    break
            self._json = _stored_text(values)
        return self._json

    @classmethod
    def from_json(cls, text: str | None) -> Data:
        """Read the stored form back (``None`` or ``""`` is empty)."""
        if not text or text == "{}":
            return cls.EMPTY
        raw = json.loads(text)
        data = cls.__new__(cls)
        # With no list and no nested object in the text, every value is a scalar and stays as
        # JSON read it: _decode (once per value of every run's input) has nothing to do.
        flat = type(raw) is dict and type(text) is str and "[" not in text and text.count("{") == 1
        data._values = raw if flat else {k: _decode(v) for k, v in raw.items()}
        data._json = text
        return data

    def size_in_bytes(self) -> int:
        """Size of the serialized, uncompressed form, which the limit applies to."""
        return len(self.to_json().encode("utf-8"))

    def check_size(self, limit: int | None = None, what: str = "Data") -> Data:
        """Raise :class:`DataTooLargeError` when larger than ``limit``; return self."""
        limit = self.MAX_DATA_BYTES if limit is None else limit
        if len(self.to_json()) * 4 <= limit:
            return self  # UTF-8 takes at most 4 bytes a character: no need to encode and measure
        size = self.size_in_bytes()
        if size > limit:
            raise DataTooLargeError(size, limit, what)
        return self


Data.EMPTY = Data()


class InputMerger(ABC):
    """Turns the inputs of a work (its own input first, then its prerequisites' outputs) into one."""

    name: ClassVar[str]

    @abstractmethod
    def merge(self, inputs: list[Data]) -> Data: ...


class OverwritingInputMerger(InputMerger):
    """Later inputs win for the same key (Android's default)."""

    name = "OverwritingInputMerger"

    def merge(self, inputs: list[Data]) -> Data:
        merged: dict[str, Value] = {}
        for data in inputs:
            merged.update(data)
        return Data(merged)


class ArrayCreatingInputMerger(InputMerger):
    """Values of the same key are gathered into lists; mismatched types raise ``TypeError``."""

    name = "ArrayCreatingInputMerger"

    def merge(self, inputs: list[Data]) -> Data:
        merged: dict[str, list[Scalar]] = {}
        kinds: dict[str, type | None] = {}
        for data in inputs:
            for key, value in data.items():
                items = list(value) if isinstance(value, tuple) else [value]
                kind = next((_scalar_kind(key, i) for i in items if i is not None), None)
                if key in merged:
                    known = kinds[key]
                    if kind is not None and known is not None and kind is not known:
                        raise TypeError(
                            f"ArrayCreatingInputMerger: key {key!r} mixes {known.__name__} and {kind.__name__}"
                        )
                    kinds[key] = known or kind
                    merged[key].extend(items)
                else:
                    merged[key] = items
                    kinds[key] = kind
        return Data(merged)


_MERGERS: dict[str, type[InputMerger]] = {
    m.name: m for m in (OverwritingInputMerger, ArrayCreatingInputMerger)
}


def input_merger_by_name(name: str) -> InputMerger:
    """The merger stored under ``name``; never imports anything named by the database."""
    try:
        return _MERGERS[name]()
    except KeyError:
        raise ValueError(f"unknown input merger {name!r}; known: {sorted(_MERGERS)}") from None


def register_input_merger(merger: type[InputMerger]) -> type[InputMerger]:
    """Make a custom merger known by its ``name``."""
    _MERGERS[merger.name] = merger
    return merger
