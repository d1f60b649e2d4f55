"""`subject-tag` in Python: the specification is `plugins/subject-tag/README.md`.

Tags mail from outside, records the authentication verdicts, files mail that mentions watched
keywords, and warns when both SPF and DKIM failed. The same rule exists in Rust (`../src`)
and JavaScript (`../js`); all three must return identical actions.
"""

import sluice_sdk as sluice
from sluice_sdk import flow, log

AUTH_WARNING = "Warning: this message failed sender authentication."


def ascii_lower(s):
    """Lower-cases `A`-`Z` only (as Rust's `to_ascii_lowercase`)."""
    return sluice.ascii_lower(s)


def keywords_found(text, keywords):
    """The keywords (as configured, in config order, each once) whose ASCII-lower-cased form
    occurs in `text`, compared ASCII case-insensitively."""
    text = ascii_lower(text)
    found = []
    for k in keywords:
        if k not in found and ascii_lower(k) in text:
            found.append(k)
    return found


def decide(sender, text, verdicts, config):
    """The decision over plain values (testable without the sandbox)."""
    if sender is not None and "@" in sender:
        domain = ascii_lower(sender.rpartition("@")[2])
        if any(ascii_lower(d) == domain for d in config.internal_domains):
            return []
    actions = [
        sluice.prefix_subject(config.tag + " "),
        sluice.add_header(
            "X-Sluice-Auth",
            "spf=%s dkim=%s dmarc=%s" % (
                sluice.verdict_name(verdicts.spf),
                sluice.verdict_name(verdicts.dkim),
                sluice.verdict_name(verdicts.dmarc),
            ),
        ),
    ]
    found = keywords_found(text, config.keywords)
    if found:
        actions.append(sluice.set_header("X-Sluice-Keywords", ", ".join(found)))
        actions.append(sluice.file_into(config.keyword_folder))
    if sluice.failed(verdicts.spf) and sluice.failed(verdicts.dkim):
        actions.append(sluice.banner_top(AUTH_WARNING))
    return actions


def decide_outbound(recipients, config):
    """Step 0: outbound mail is tagged when some recipient is not in an internal domain."""
    internal = [ascii_lower(d) for d in config.internal_domains]

    def is_internal(address):
        return "@" in address and ascii_lower(address.rpartition("@")[2]) in internal

    if all(is_internal(r) for r in recipients):
        return []
    return [sluice.prefix_subject(config.tag + " ")]


class SubjectTag(sluice.Rule):
    defaults = {
        "tag": "[EXTERNAL]",
        "internal_domains": sluice.list_of(str),
        "keywords": sluice.list_of(str),
        "keyword_folder": "Review",
    }

    def check(self, config):
        if config.tag == "":
            return "`tag` must not be empty"
        if config.keyword_folder == "":
            return "`keyword_folder` must not be empty"
        if any(k == "" for k in config.keywords):
            return "`keywords` must not contain an empty string"
        return None

    def evaluate(self, msg, ctx, config):
        if flow.is_outbound():
            return decide_outbound(ctx.recipients, config)
        sender = msg.from_()
        text = msg.text_body(4096) or ""
        actions = decide(sender, text, ctx.verdicts, config)
        if actions:
            log.info("tagged %s: %d keyword(s)",
                     sender if sender is not None else "(no from)",
                     len(keywords_found(text, config.keywords)))
        return actions


WitWorld = sluice.export(SubjectTag)
