"""Which way the message goes (`sluice:rules/flow`, WIT 0.1.5).

    from sluice_sdk import flow
    if flow.is_outbound():  # mail a local user sends: an [[outbound]] chain
        login = flow.authenticated_sender()  # their SMTP AUTH login, or None

`direction()` answers `"inbound"` (received mail) or `"outbound"`. Outside a component the
answers come from a test double: `set(direction, authenticated_sender=None)` (inbound until
then).
"""

from . import _wit

_double = {"direction": "inbound", "authenticated_sender": None}


def direction():
    """`"inbound"` or `"outbound"`."""
    host = _wit.host_flow()
    if host is not None:
        # The bindings' enum: Direction.INBOUND / Direction.OUTBOUND.
        return host.message_direction().name.lower()
    return _double["direction"]


def is_outbound():
    """Whether the message is mail a local user sends."""
    return direction() == "outbound"


def authenticated_sender():
    """The SMTP AUTH login the sender used, or None (received mail, or no AUTH)."""
    host = _wit.host_flow()
    if host is not None:
        return host.authenticated_sender()
    return _double["authenticated_sender"]


def set(direction, authenticated_sender=None):  # noqa: A001 - the double's verb
    """Outside a component: what `direction()` and `authenticated_sender()` answer."""
    if direction not in ("inbound", "outbound"):
        raise ValueError(f"direction must be 'inbound' or 'outbound', not {direction!r}")
    _double["direction"] = direction
    _double["authenticated_sender"] = authenticated_sender
