"""Test helpers: a `Message` stand-in and a `context` builder, for `python -m unittest`.

    from sluice_sdk.testing import FakeMessage, context
    msg = FakeMessage.from_file("fixtures/external.eml")      # or FakeMessage(headers=[...], text="...")
    ctx = context(config={"tag": "[EXT]"}, spf="fail")
    actions = app.WitWorld().evaluate(msg, ctx)                # the exported entry point itself
    actions = MyRule().evaluate(msg, sluice.Context(ctx), config)   # the rule's own method

`context()` stands in for the host's WIT 0.2 `context` resource (methods, as the host's
handle has; `ctx.reads` counts the calls); `WitWorld().evaluate` wraps it in the
`sluice_sdk.Context` a rule's `evaluate` reads attributes from.

`FakeMessage.from_bytes` parses with Python's `email` package: close to the host's parser
for ordinary mail (decoded headers, first From address, text/HTML bodies, attachments), not
identical on malformed input. The real thing is `sluice run` on the built component.
"""

import email
import email.policy
import email.utils
import json

from . import _wit

types = _wit.types


def _truncate(text, max_bytes):
    if text is None or not max_bytes:
        return text
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", errors="ignore")


class FakeMessage:
    """The accessors of the WIT `message` resource, over given values."""

    def __init__(self, headers=(), text=None, html=None, attachments=(), raw=b"", parts=None):
        self._headers = [(str(n), str(v)) for n, v in headers]
        self._text = text
        self._html = html
        self._attachments = list(attachments)
        self._raw = bytes(raw)
        # Without `parts`, one part per attachment, numbered from 1 (0 is the message).
        self._parts = list(parts) if parts is not None else [
            types.PartInfo(id=i + 1, name=a.name, content_type=a.content_type, size=a.size,
                           disposition="attachment", sniffed=None, archive=None)
            for i, a in enumerate(self._attachments)]

    @classmethod
    def from_bytes(cls, raw):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        headers = [(name, " ".join(str(value).split())) for name, value in msg.items()]
        text = html = None
        attachments = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if part.is_attachment() or not ctype.startswith("text/"):
                payload = part.get_payload(decode=True) or b""
                attachments.append(types.AttachmentInfo(
                    name=part.get_filename(), content_type=ctype, size=len(payload)))
            elif ctype == "text/plain":
                text = (text or "") + part.get_content()
            elif ctype == "text/html":
                html = (html or "") + part.get_content()
        return cls(headers, text, html, attachments, raw)

    @classmethod
    def from_file(cls, path):
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def header(self, name):
        return [v for n, v in self._headers if n.lower() == name.lower()]

    def headers(self):
        return list(self._headers)

    def header_names(self):
        seen, out = set(), []
        for n, _ in self._headers:
            if n.lower() not in seen:
                seen.add(n.lower())
                out.append(n)
        return out

    def subject(self):
        values = self.header("Subject")
        return values[0] if values else None

    def from_(self):
        values = self.header("From")
        if not values:
            return None
        addresses = email.utils.getaddresses([values[0]])
        return (addresses[0][1] or None) if addresses else None

    def from_name(self):
        values = self.header("From")
        if not values:
            return None
        addresses = email.utils.getaddresses([values[0]])
        return (addresses[0][0] or None) if addresses else None

    def size(self):
        return len(self._raw)

    def text_body(self, max_bytes):
        return _truncate(self._text, max_bytes)

    def html_body(self, max_bytes):
        return _truncate(self._html, max_bytes)

    def attachments(self):
        return list(self._attachments)

    def parts(self):
        return list(self._parts)

    def raw(self):
        return self._raw


_VERDICTS = {
    "pass": types.Verdict.PASS,
    "fail": types.Verdict.FAIL,
    "gray": types.Verdict.GRAY,
    "processing-failed": types.Verdict.PROCESSING_FAILED,
    "disabled": types.Verdict.DISABLED,
    "unknown": types.Verdict.UNKNOWN,
}


def verdict(name):
    """`verdict("fail")` -> `Verdict.FAIL`; a `Verdict` is returned as is."""
    return _VERDICTS[name] if isinstance(name, str) else name


def context(config=None, domain="example.com", recipients=("bob@example.com",), mail_from="",
            spf="unknown", dkim="unknown", dmarc="unknown", spam="unknown", virus="unknown",
            dmarc_policy=None, received_at=0, message_id="test"):
    """A stand-in for the host's `context` resource (`sluice_sdk.types.Context`: `ctx.domain()`,
    `ctx.config()`, ...); `config` may be a dict (dumped to JSON) or a JSON string. Wrap it in
    `sluice_sdk.Context(...)` to call a rule's own `evaluate(msg, ctx, config)`."""
    if config is None:
        config = "{}"
    elif not isinstance(config, str):
        config = json.dumps(config)
    return types.Context(
        domain=domain,
        recipients=list(recipients),
        mail_from=mail_from,
        verdicts=types.Verdicts(
            spf=verdict(spf), dkim=verdict(dkim), dmarc=verdict(dmarc), spam=verdict(spam),
            virus=verdict(virus), dmarc_policy=dmarc_policy),
        received_at=received_at,
        message_id=message_id,
        config=config,
    )
