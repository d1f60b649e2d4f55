"""The independent reading of an edit: Python's `email` (standard library, no Sluice code)
reads each input and its edited output and says what a mail client would notice.

    email_reading.py BANNER IN OUT [IN OUT ...]

prints one JSON object per pair: {"in", "problems"}, where problems lists
- "non-text part changed": the parts that are not displayed text (attachments, images,
  attached messages, anything Python does not show as the body) differ in type or decoded
  content, in order;
- "text body lost": the input has a displayed body (`get_body()`), the output none;
- "banner missing": the output's displayed body does not contain BANNER.
An output identical to its input (edits declined) has no problems. Exits 0; the caller judges.
"""

import email
import email.policy
import hashlib
import json
import sys


def opaque_leaves(msg):
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype in ("text/plain", "text/html") and not part.is_attachment():
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:  # a defect Python cannot decode: compare the raw payload
            payload = None
        if payload is None:
            payload = str(part.get_payload()).encode("utf-8", "surrogateescape")
        out.append((ctype, hashlib.sha256(payload).hexdigest()))
    return out


def body(msg):
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
        return None if part is None else part.get_content()
    except Exception:
        return None


def judge(banner, raw_in, raw_out):
    if raw_in == raw_out:
        return []
    a = email.message_from_bytes(raw_in, policy=email.policy.default)
    b = email.message_from_bytes(raw_out, policy=email.policy.default)
    problems = []
    if opaque_leaves(a) != opaque_leaves(b):
        problems.append(
            "non-text part changed: %s -> %s"
            % ([t for t, _ in opaque_leaves(a)], [t for t, _ in opaque_leaves(b)])
        )
    before, after = body(a), body(b)
    if before is not None and after is None:
        problems.append("text body lost")
    elif after is not None and banner not in after:
        problems.append("banner missing")
    return problems


def main():
    banner, files = sys.argv[1], sys.argv[2:]
    for raw_in, raw_out in zip(files[::2], files[1::2]):
        with open(raw_in, "rb") as f:
            a = f.read()
        with open(raw_out, "rb") as f:
            b = f.read()
        print(json.dumps({"in": raw_in, "problems": judge(banner, a, b)}))


if __name__ == "__main__":
    main()
