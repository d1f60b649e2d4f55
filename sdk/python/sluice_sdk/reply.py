"""Automatic replies (`sluice:rules/reply`, WIT 0.2.1): an out-of-office answer to the
sender, sent by the host on behalf of one of the group's recipients.

The step must be granted it (`reply = { once_per_days = 7 }` in the host's config). The host
picks who gets the reply (the envelope sender), builds it (RFC 3834), sends it only after the
recipient's copy was delivered, never answers lists, bulk or automatic mail, null or daemon
senders or the recipient itself, and answers one sender at most once per recipient in the
interval:

    from sluice_sdk import reply
    reply.send("bob@example.com", "I am away until Monday.", once_per_days=7)

A step without the grant, or a request the host refuses, raises `sluice_sdk.RuleFailure`.
Outside a component the requests are kept for `take_sent()`.
"""

from . import _wit

_sent = []


def send(recipient, text, subject=None, once_per_days=0):
    """Asks the host to answer the sender on behalf of `recipient` (a group recipient) with
    `text`; `subject` None gives `Auto: <original subject>`; `once_per_days` 0 takes the
    step's grant (a shorter interval than the grant's is raised to it)."""
    from . import RuleFailure

    if isinstance(once_per_days, bool) or not isinstance(once_per_days, int) \
            or not 0 <= once_per_days <= 0xFFFFFFFF:
        raise TypeError(f"once_per_days must be a whole number of days, not {once_per_days!r}")
    request = (str(recipient), str(text), None if subject is None else str(subject),
               once_per_days)
    if _wit.IN_COMPONENT:
        host = _wit.host_reply()
        if host is None:
            raise RuleFailure("reply needs WIT 0.2.1: build the rule against it (the default)")
        try:
            host.send(host.ReplyRequest(*request))
        except _wit.Err as e:
            raise RuleFailure(e.value.message, temporary=e.value.temporary) from None
        return
    _sent.append(request)


def take_sent():
    """Outside a component: the requests made since the last call, as
    (recipient, text, subject, once_per_days) tuples."""
    out = list(_sent)
    _sent.clear()
    return out
