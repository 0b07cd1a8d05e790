"""Work ids: UUIDv7 (RFC 9562), time-ordered so that new rows land at the end of an index.

A random (v4) id puts every insert on a random leaf of the primary key and of every index
that carries the key (the tag table, the dashboard's lists); over a large table each insert
then touches a page nobody touched recently. A time-ordered id appends, and its text form
sorts in creation order too. 74 of its bits stay random, so ids are still unguessable.

Within one process ids are strictly increasing (RFC 9562 §6.2, method 1: the 12-bit
``rand_a`` field counts ids made in the same millisecond, and a full counter borrows the
next millisecond).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF
#: Where the stamp comes from (tests replace it).
_now_ns = time.time_ns

#: Random bytes from the OS, drawn a block at a time: one getrandom() call per id was a
#: syscall on every enqueue (two, with the notify file's token).
_POOL_SIZE = 4096
_pool = b""
_pool_at = 0


def _forget_pool() -> None:
    """A forked child must not hand out the bytes its parent hands out too (same ids)."""
    global _pool, _pool_at
    _pool, _pool_at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def random_bytes(n: int) -> bytes:
    """``n`` (at most 64) bytes from the OS's CSPRNG, as ``os.urandom`` but buffered."""
    with _lock:
        return _take_random(n)


def _take_random(n: int) -> bytes:
    # _lock held
    global _pool, _pool_at
    if _pool_at + n > len(_pool):
        _pool, _pool_at = os.urandom(_POOL_SIZE), 0
    chunk = _pool[_pool_at : _pool_at + n]
    _pool_at += n
    return chunk


def uuid7() -> uuid.UUID:
    """A new UUIDv7; each call in this process returns a larger one than the last."""
    global _last_ms, _counter
    # Wall time only stamps the id (it is never compared with anything); a clock that
    # steps back keeps the last stamp, so ids still increase.
    now_ms = _now_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:
            _last_ms, _counter = _last_ms + 1, 0
        stamp, counter = _last_ms, _counter
        rand_b = int.from_bytes(_take_random(8)) & 0x3FFF_FFFF_FFFF_FFFF
    value = (stamp & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return _uuid_of(value)


def _uuid_of(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to be a valid 128-bit UUID, without the
    constructor's argument parsing and checks (a third of an id's cost, on every request)."""
    made = object.__new__(uuid.UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", uuid.SafeUUID.unknown)
    return made


def timestamp_ms(work_id: uuid.UUID) -> int | None:
    """The millisecond stamped in a UUIDv7, or None for another version (an id set by the user)."""
    return work_id.int >> 80 if work_id.version == 7 else None


def short_id(work_id: uuid.UUID | str) -> str:
    """Eight characters to tell work apart at a glance (lists, graphs, logs): the *last*
    eight, which are random in a UUIDv7 as in any uuid4; the first eight are the time and
    are the same for everything enqueued within about a minute."""
    return str(work_id)[-8:]
