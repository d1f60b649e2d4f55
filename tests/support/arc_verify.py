"""Verifies the ARC chain of messages with dkimpy, an implementation independent of Sluice's
(mail-auth). The key is served by a DNS stand-in: dkimpy's `dnsfunc` answers the one TXT
name given and nothing else, so no lookup leaves the machine.

    arc_verify.py NAME RECORD FILE...

prints one JSON object per file: {"file", "cv", "reason", "instances"} and exits 0 (the
caller judges the results)."""

import json
import sys

import dkim


def main():
    name, record, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    asked = []

    def dns(qname, timeout=5):
        if isinstance(qname, bytes):
            qname = qname.decode()
        asked.append(qname)
        if qname.rstrip(".") == name:
            return record.encode()
        return None

    for path in files:
        with open(path, "rb") as f:
            message = f.read()
        cv, results, reason = dkim.arc_verify(message, dnsfunc=dns)
        print(json.dumps({
            "file": path,
            "cv": cv.decode() if isinstance(cv, bytes) else cv,
            "reason": reason,
            "instances": len(results),
            "asked": sorted(set(asked)),
        }))


if __name__ == "__main__":
    main()
