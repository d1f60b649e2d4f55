"""`probe-python`: calls the host's two granted capabilities, `lookup.get` and `http.send`,
for tests/all/languages.rs (the same rule as ../probe-js; see ../README.md). With
`strip = true` it instead lists `msg.parts()` and strips every executable part
(`replace-part`, WIT 0.2.1); with `reply = "TEXT"` it asks for an automatic reply."""

import json

import sluice_sdk as sluice
from sluice_sdk import http, lookup, reply


class Probe(sluice.Rule):
    defaults = {"table": "", "key": "", "url": "", "strip": False, "reply": ""}

    def evaluate(self, msg, ctx, config):
        if config.reply:
            # `reply`: ask the host for an automatic answer from the first recipient.
            reply.send(ctx.recipients[0], config.reply)
            return []
        if config.strip:
            parts = msg.parts()
            listed = " ".join(f"{p.id}:{p.sniffed or '-'}" for p in parts)
            actions = [sluice.add_header("X-Probe-Parts", listed)]
            for p in parts:
                if (p.sniffed or "").startswith("executable/"):
                    actions.append(sluice.replace_part(
                        p.id, f"{p.name or 'a file'} was removed by the probe."))
            return actions
        # A RuleFailure from either call propagates as it is (message and `temporary`).
        value = lookup.get(config.table, config.key)
        actions = [sluice.add_header("X-Probe-Lookup", "none" if value is None else value)]
        body = json.dumps({"subject": msg.subject() or ""}, separators=(",", ":"),
                          ensure_ascii=False)
        answer = http.post_json(config.url, body)
        actions.append(sluice.add_header("X-Probe-Status", str(answer.status)))
        actions.append(sluice.add_header("X-Probe-Body", answer.text()))
        return actions


WitWorld = sluice.export(Probe)
