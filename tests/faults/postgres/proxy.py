"""A small TCP proxy between the library and PostgreSQL that can lose what matters.

It reads the wire protocol just enough to know, per connection, which statements a
transaction ran (``classify`` maps a statement's text to a tag such as ``"claim"``) and when
the server answers ``COMMIT`` (or, for statements outside an explicit transaction, is ready
again after their implicit commit). Then, per tag and with a seeded probability, it can reset the
connection *instead of* forwarding that answer: the transaction is committed on the server
but the client never hears so (the "commit outcome unknown" of Temporal's ExecuteAndTimeout).

It can also black-hole every connection (hold the bytes both ways, answer nothing, reset
nothing: a partition or a hung middlebox) and heal again, and it counts what it saw.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def classify(statement: str) -> str | None:
    """Which of the library's statements a transaction ran: a claim, a completion, or neither."""
    if "SET state = 1, run_attempt_count" in statement:
        return "claim"
    if "SET state = 2" in statement or "SET state = 3" in statement:
        return "complete"
    return None


def _reset(sock: socket.socket) -> None:
    """Close with an RST (linger 0), as a dropped connection looks to the peer.

    ``shutdown(SHUT_RD)`` first: a close alone does not wake a thread blocked in ``recv`` on
    the socket, and the kernel keeps the connection open until that thread lets go."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Conn:
    def __init__(self, proxy: PgProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server: socket.socket | None = None
        #: Tags of the statements run since the last COMMIT or idle ReadyForQuery.
        self.tags: set[str] = set()
        #: Prepared statement name -> tag, so a Bind of a named statement is classified too.
        self.prepared: dict[str, str | None] = {}
        self.dead = threading.Event()

    def kill(self) -> None:
        if self.dead.is_set():
            return
        self.dead.set()
        _reset(self.client)
        if self.server is not None:
            _reset(self.server)

    def run(self) -> None:
        try:
            if not self.proxy.wait_open(self.dead):
                return
            self.server = socket.create_connection(self.proxy.upstream, timeout=10)
            self.server.settimeout(None)
            self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump_server, daemon=True).start()
            self._pump_client()
        except OSError:
            pass
        finally:
            self.kill()
            self.proxy._forget(self)

    # -- client -> server ------------------------------------------------------------------------

    def _recv(self, sock: socket.socket, n: int) -> bytes:
        chunks = b""
        while len(chunks) < n:
            got = sock.recv(n - len(chunks))
            if not got:
                raise OSError("peer closed")
            chunks += got
        return chunks

    def _send(self, sock: socket.socket, data: bytes) -> None:
        if not self.proxy.wait_open(self.dead):
            raise OSError("proxy closed")
        sock.sendall(data)

    def _pump_client(self) -> None:
        assert self.server is not None
        while True:  # the startup packet has no type byte; SSL/GSS requests get a "no" from us
            head = self._recv(self.client, 8)
            length, code = struct.unpack("!ii", head)
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.client.sendall(b"N")
                continue
            self._send(self.server, head + self._recv(self.client, length - 8))
            break
        while not self.dead.is_set():
            head = self._recv(self.client, 5)
            body = self._recv(self.client, struct.unpack("!i", head[1:])[0] - 4)
            self._note_client_message(head[:1], body)
            self._send(self.server, head + body)

    def _note_client_message(self, kind: bytes, body: bytes) -> None:
        classify = self.proxy.classify
        if kind == b"Q":
            tag = classify(body[:-1].decode(errors="replace"))
        elif kind == b"P":
            name, query = body.split(b"\0")[:2]
            tag = classify(query.decode(errors="replace"))
            if name:
                self.prepared[name.decode()] = tag
        elif kind == b"B":
            statement = body.split(b"\0")[1].decode()
            tag = self.prepared.get(statement)
        else:
            return
        if tag is not None:
            self.tags.add(tag)

    # -- server -> client ------------------------------------------------------------------------

    def _pump_server(self) -> None:
        assert self.server is not None
        try:
            while not self.dead.is_set():
                head = self._recv(self.server, 5)
                body = self._recv(self.server, struct.unpack("!i", head[1:])[0] - 4)
                kind = head[:1]
                if kind == b"C" and body == b"COMMIT\0":
                    tags, self.tags = self.tags, set()
                    if self.proxy._commit_seen(tags):
                        self.kill()  # committed on the server; the client never hears it
                        return
                elif (kind == b"C" and body == b"ROLLBACK\0") or kind == b"E":
                    self.tags = set()  # nothing of it was committed
                elif kind == b"Z" and body == b"I":
                    # Idle again with tags pending: statements outside BEGIN ... COMMIT (an
                    # autocommitted claim), whose implicit transaction the server commits just
                    # before this ReadyForQuery. Losing it loses that commit's answer.
                    tags, self.tags = self.tags, set()
                    if tags and self.proxy._commit_seen(tags):
                        self.kill()
                        return
                self._send(self.client, head + body)
        except OSError:
            pass
        finally:
            self.kill()


class PgProxy:
    """Listens on 127.0.0.1:<port>; forwards to ``upstream`` unless told otherwise."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        classify: Callable[[str], str | None] = classify,
        seed: int = 0,
    ) -> None:
        self.upstream = upstream
        self.classify = classify
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: tag -> probability of dropping the connection at that transaction's COMMIT reply.
        self.drop_after_commit: dict[str, float] = {}
        #: Commits seen by tag ("" for untagged) and connections dropped by tag.
        self.commits: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.accepted = 0
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._conns: set[_Conn] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, name="pgproxy-accept", daemon=True).start()

    def url(self, base: str) -> str:
        """``base`` (a postgresql:// URL of the upstream) pointed at this proxy."""
        host = f"{self.upstream[0]}:{self.upstream[1]}"
        if host not in base:
            raise ValueError(f"{base!r} does not name {host}")
        url = base.replace(host, f"127.0.0.1:{self.port}")
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}sslmode=disable&gssencmode=disable"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self, client)
            with self._lock:
                self._conns.add(conn)
                self.accepted += 1
            threading.Thread(target=conn.run, name="pgproxy-conn", daemon=True).start()

    def _forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _commit_seen(self, tags: set[str]) -> bool:
        """Count a COMMIT answer; True when the connection is to be dropped instead."""
        with self._lock:
            for tag in tags or {""}:
                self.commits[tag] += 1
            for tag in sorted(tags):
                if self._rng.random() < self.drop_after_commit.get(tag, 0.0):
                    self.drops[tag] += 1
                    return True
        return False

    def wait_open(self, dead: threading.Event) -> bool:
        """Block while black-holed; False once the connection or the proxy is gone."""
        while not self._open.wait(0.1):
            if dead.is_set() or self._closed.is_set():
                return False
        return not (dead.is_set() or self._closed.is_set())

    def blackhole(self) -> None:
        """From now on nothing passes either way (held, not refused), and no new connection
        reaches the server: a partition, as both peers see it."""
        self._open.clear()

    def heal(self, *, reset: bool = False) -> None:
        """Let traffic pass again; with ``reset``, the held connections are dropped first
        (the partition outlived TCP's patience) instead of delivering what they held."""
        if reset:
            self.drop_connections()
        self._open.set()

    def drop_connections(self) -> int:
        """Reset every connection through the proxy now; how many."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.kill()
        return len(conns)

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        self._listener.close()
        self.drop_connections()
