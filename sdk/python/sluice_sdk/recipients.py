"""Per-recipient decisions and forwarded copies (`sluice:rules/recipients`, WIT 0.1.2).

The `bounce` and `drop` actions refuse the whole recipient group; these calls refuse or
discard one address, or ask the host to relay a re-originated copy. Like actions, they take
effect only when `evaluate` returns normally and the step is enforced.

    from sluice_sdk import recipients
    recipients.refuse("old@example.com", 550, "5.1.1", "mailbox unavailable")
    recipients.discard("noreply@example.com")
    recipients.forward(["me@gmail.example"], subject_prefix="[fwd] ")

Outside a component the requests are recorded; `take_recorded()` returns them (for tests).
"""

from . import _wit

_recorded = []


def refuse(recipient, code, status, text):
    """Refuses `recipient` with a bounce (`code` 4xx/5xx, a matching enhanced `status`)."""
    bounce = _wit.types.Bounce(code=code, status=status, text=text)
    host = _wit.host_recipients()
    if host is None:
        _recorded.append(("refuse", recipient, bounce))
    else:
        host.refuse(recipient, bounce)


def discard(recipient):
    """Discards the message for `recipient`, silently."""
    host = _wit.host_recipients()
    if host is None:
        _recorded.append(("discard", recipient))
    else:
        host.discard(recipient)


def forward(to, from_=None, subject_prefix=None, redirect=False):
    """Relays a copy to the addresses `to` (`redirect=True`: instead of the group's
    recipients). `from_`: the verified sender for the copy (None: the host's `[relay] from`)."""
    request = _wit.ForwardRequest(
        to=[str(a) for a in to],
        from_=from_,
        subject_prefix=subject_prefix,
        redirect=bool(redirect),
    )
    host = _wit.host_recipients()
    if host is None:
        _recorded.append(("forward", request))
    else:
        host.forward(request)


def take_recorded():
    """The requests made since the last call, outside a component: tuples
    `("refuse", recipient, Bounce)`, `("discard", recipient)`, `("forward", ForwardRequest)`."""
    out = list(_recorded)
    _recorded.clear()
    return out
