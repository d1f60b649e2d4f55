"""Outgoing HTTP to the services the step is granted (`sluice:rules/http`, WIT 0.1.4).

A step may call only the URL prefixes its config lists (`http = { allow =
["https://classifier.internal:8443/"] }`); any other URL raises `sluice_sdk.RuleFailure` and
nothing is sent. The host never follows redirects (a 3xx comes back as it is), caps the
response body and bounds the call by the grant's `timeout_ms` and the step's deadline:

    from sluice_sdk import http
    answer = http.post_json("https://classifier.internal:8443/v1/score", '{"subject": "hi"}')
    if answer.status == 200 and '"spam":true' in answer.text():
        ...

A failed call is an ordinary rule error: let the `RuleFailure` propagate and the step's
`on_error` applies (temporary when the service could not be reached in time).

Outside a component the services are a test double: answer a URL prefix with
`respond(prefix, status, body)` (the longest matching prefix wins), make one fail with
`fail(prefix, RuleFailure(...))`, see what was sent with `take_sent()`, reset with `clear()`.
"""

import json as _json
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from . import _wit

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class Request:
    """A request: an upper-case method (`GET`, `POST`, ...), an absolute `http(s)` URL, header
    fields as (name, value) pairs (the host sets `Host`, `Content-Length` and `Connection`)
    and an optional body."""

    method: str
    url: str
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: Optional[bytes] = None


@dataclass
class Response:
    """A service's answer, whatever its status (3xx, 4xx and 5xx are answers too): `status`,
    `headers` ((name, value) pairs, names lower-cased by the host) and `body` (bytes, at most
    the grant's `max_response_kb`)."""

    status: int
    headers: List[Tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def text(self):
        """The body as text (UTF-8, invalid bytes replaced)."""
        return bytes(self.body).decode("utf-8", errors="replace")

    def header(self, name):
        """The first value of a header field (`name` in any case), or None."""
        name = str(name).translate(_ASCII_LOWER)
        for n, v in self.headers:
            if n.translate(_ASCII_LOWER) == name:
                return v
        return None


def _body(body):
    if body is None:
        return None
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    raise TypeError(f"an HTTP body must be str or bytes, not {type(body).__name__}")


def _headers(headers):
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    out = []
    for i, pair in enumerate(items):
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError(f"header {i} must be a (name, value) pair, not {pair!r}") from None
        out.append((str(name), str(value)))
    return out


def _status(status):
    if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
        raise TypeError(f"an HTTP status must be an integer, not {status!r}")
    return status


def _normalised(request):
    if not isinstance(request, Request):
        raise TypeError(f"http.send takes an http.Request, not {type(request).__name__}")
    if not request.url:
        raise TypeError("http.send: the request has no url")
    return Request(str(request.method), str(request.url), _headers(request.headers),
                   _body(request.body))


def send(request):
    """Sends `request` (a `Request`; headers may also be a dict, a str body is sent as UTF-8)
    and waits for the whole response. Returns a `Response`; raises `RuleFailure` when the URL
    is not granted or the request is malformed (permanent), or the service could not be
    reached in time (temporary)."""
    from . import RuleFailure

    request = _normalised(request)
    host = _wit.host_http()
    if host is not None:
        try:
            answer = host.send(host.Request(
                method=request.method,
                url=request.url,
                headers=request.headers,
                body=request.body,
            ))
        except _wit.Err as e:
            raise RuleFailure(e.value.message, temporary=e.value.temporary) from None
        return Response(answer.status, list(answer.headers), bytes(answer.body))
    _sent.append(request)
    best = None
    for prefix, answer in _answers:
        # `>=`: of two equal prefixes, the later one wins.
        if request.url.startswith(prefix) and (best is None or len(prefix) >= len(best[0])):
            best = (prefix, answer)
    if best is None:
        raise RuleFailure(
            f"http: {request.url} is not granted to this step "
            "(test double: call http.respond first)")
    answer = best[1]
    if not isinstance(answer, Response):
        raise answer
    return Response(answer.status, list(answer.headers), answer.body)


def get(url):
    """`GET url`."""
    return send(Request("GET", url))


def post_json(url, json):
    """`POST url` with `Content-Type: application/json` and the body `json` (text, or a value
    to `json.dumps`)."""
    if not isinstance(json, (str, bytes, bytearray)):
        json = _json.dumps(json)
    return send(Request("POST", url, [("Content-Type", "application/json")], json))


# ---------------------------------------------------------------------------------------------
# The test double (outside a component)

_answers = []
_sent = []


def respond(prefix, status, body="", headers=()):
    """Outside a component: answers every request whose URL starts with `prefix` with
    `status` and `body` (str or bytes) and `headers` ((name, value) pairs)."""
    _answers.append((str(prefix), Response(_status(status), _headers(headers), _body(body) or b"")))


def fail(prefix, error):
    """Outside a component: every request whose URL starts with `prefix` raises `error` (a
    `RuleFailure`, e.g. `RuleFailure("timed out", temporary=True)`)."""
    _answers.append((str(prefix), error))


def clear():
    """Outside a component: empties the double (answers, failures and the record of what was
    sent)."""
    _answers.clear()
    _sent.clear()


def take_sent():
    """The `Request`s sent since the last call, outside a component."""
    out = list(_sent)
    _sent.clear()
    return out
