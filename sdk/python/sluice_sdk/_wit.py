"""Which WIT types `sluice_sdk` uses: the generated bindings inside a component, else the
stand-ins of `_fallback`.

`componentize-py componentize` generates the `wit_world` package (and
`componentize_py_types`) for the world `rule` while it builds the component, and imports the
rule's module there (pre-initialisation), so the real bindings are found then. Anywhere else
the import fails and the stand-ins take their place.
"""

try:  # inside `componentize-py componentize` and the component it builds
    import wit_world as _world
    from wit_world.imports import host as _host
    from wit_world.imports import recipients as _recipients
    from wit_world.imports import lookup as _lookup
    from wit_world.imports import http as _http
    from wit_world.imports import flow as _flow
    from wit_world.imports import types
    from componentize_py_types import Err

    try:  # WIT 0.2.1; a build against an older WIT has no `reply`
        from wit_world.imports import reply as _reply
    except ImportError:
        _reply = None

    WorldBase = _world.WitWorld
    ForwardRequest = _recipients.ForwardRequest
    IN_COMPONENT = True
except ImportError:  # unit tests, a REPL: no bindings
    from . import _fallback as types
    from ._fallback import Err, ForwardRequest

    _host = None
    _recipients = None
    _lookup = None
    _http = None
    _flow = None
    _reply = None
    WorldBase = object
    IN_COMPONENT = False


def host_log(level, msg):
    """`host.log`, or False when there is no host to call."""
    if _host is None:
        return False
    try:
        _host.log(level, msg)
    except NotImplementedError:  # bindings generated for type checking, not a component
        return False
    return True


def host_recipients():
    """The `recipients` import module, or None outside a component."""
    return _recipients


def host_lookup():
    """The `lookup` import module (WIT 0.1.3), or None outside a component."""
    return _lookup


def host_http():
    """The `http` import module (WIT 0.1.4), or None outside a component."""
    return _http


def host_flow():
    """The `flow` import module (WIT 0.1.5), or None outside a component."""
    return _flow


def host_reply():
    """The `reply` import module (WIT 0.2.1), or None outside a component (or in a build
    against an older WIT)."""
    return _reply
