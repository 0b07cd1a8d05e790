"""What stands between the dashboard and a hostile page or network (reliability.md,
"Security expectations" §3): the Host allowlist (DNS rebinding), the token for anything
but loopback, CSRF on every mutation, and the security headers on every response."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CSRF_COOKIE", "TOKEN_COOKIE", "Guard", "csrf_ok", "is_loopback", "split_host"]

TOKEN_COOKIE = "wm_token"
CSRF_COOKIE = "wm_csrf"
#: Pages load only our own script and style; nothing may frame them.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost.

    >>> [is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.1.2.3")]
    [True, True, True, True, False, False]
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The host part of a Host header (no port), lower-cased; IPv6 keeps its brackets.

    >>> split_host("127.0.0.1:8000"), split_host("[::1]:80"), split_host("Example.ORG")
    ('127.0.0.1', '[::1]', 'example.org')
    """
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _cookies(headers: Headers) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header: as if none were sent
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


class Guard:
    """ASGI middleware in front of every dashboard route.

    - The Host header must name an allowed host: a page on evil.example that rebinds its
      name to 127.0.0.1 still sends ``Host: evil.example`` and gets 400.
    - With a token, every request must carry it (``Authorization: Bearer``, or the cookie
      set by opening any page once with ``?token=``). Without one, only loopback clients
      are served (unless ``allow_remote``: the host app authenticates).
    - Every response gets the security headers and, if missing, a CSRF cookie.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Iterable[str],
        allow_remote: bool = False,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        #: Ends the app's open event streams; a server calls it when it starts to stop.
        self.close_streams = on_close
        self.token = token
        self.allowed_hosts = frozenset(split_host(h) for h in allowed_hosts)
        self.allow_remote = allow_remote

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        response = self._refuse(scope, headers)
        cookies = _cookies(headers)
        if response is None and self.token is not None:
            response = self._authenticate(scope, headers, cookies)
        csrf = cookies.get(CSRF_COOKIE) or ""
        new_csrf = None
        if len(csrf) < 32:
            csrf = new_csrf = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = csrf
        cookie_path = (scope.get("root_path") or "") or "/"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                if new_csrf is not None:
                    extra.append(
                        (
                            b"set-cookie",
                            f"{CSRF_COOKIE}={new_csrf}; Path={cookie_path}; HttpOnly; SameSite=Strict".encode(),
                        )
                    )
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refuse(self, scope: Scope, headers: Headers) -> Response | None:
        host = split_host(headers.get("host", ""))
        if "*" not in self.allowed_hosts and host not in self.allowed_hosts:
            return PlainTextResponse(f"host {host!r} is not allowed (allowed: see --allow-host)", 400)
        client = scope.get("client")
        if self.token is None and not self.allow_remote and not (client and is_loopback(str(client[0]))):
            return PlainTextResponse("this dashboard serves only this machine; start it with --token", 403)
        return None

    def _authenticate(self, scope: Scope, headers: Headers, cookies: dict[str, str]) -> Response | None:
        assert self.token is not None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if scope["method"] == "GET" and hmac.compare_digest(
            query.get("token", "").encode(), self.token.encode()
        ):
            # Trade the token in the address for a cookie, and drop it from the address bar.
            query.pop("token")
            location = scope["path"] + ("?" + urlencode(query) if query else "")
            redirect = RedirectResponse(location, status_code=303)
            redirect.set_cookie(
                TOKEN_COOKIE,
                self.token,
                path=(scope.get("root_path") or "") or "/",
                httponly=True,
                samesite="strict",
            )
            return redirect
        offered = ""
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            offered = authorization[7:].strip()
        offered = offered or cookies.get(TOKEN_COOKIE, "")
        if offered and hmac.compare_digest(offered.encode(), self.token.encode()):
            return None
        return PlainTextResponse("a token is required: open the dashboard with ?token=...", 401)


def csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    """A mutation must come from our own page: same origin, and the form's CSRF field equal to
    the cookie (which another site can neither read nor, being SameSite=Strict, send)."""
    expected = request.scope.get("state", {}).get("csrf", "")
    offered = str(form.get("csrf", ""))
    if not offered or not hmac.compare_digest(offered.encode(), str(expected).encode()):
        return False
    if request.cookies.get(CSRF_COOKIE) is None:
        return False  # the guard made a fresh one: this request carried none
    host = split_host(request.headers.get("host", ""))
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True  # no browser omits both on a cross-site POST; the token above is the check
    if source == "null":
        return False
    return split_host(urlsplit(source).netloc) == host
