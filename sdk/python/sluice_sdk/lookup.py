"""Granted tables (`sluice:rules/lookup`, WIT 0.1.3).

A step reads only the tables its config grants (`lookups = ["aliases"]`):

    from sluice_sdk import lookup
    record = lookup.get("aliases", "info@example.com")  # a str (JSON for aliases) or None

A table that is not granted, or fails, raises `sluice_sdk.RuleFailure`; let a temporary one
propagate, and the host retries the message instead of routing it without the data.

Outside a component `get` answers from a test double: `set(table, key, value)`,
`fail(table, RuleFailure(...))`, `clear()`, `take_asked()`.
"""

from . import _wit

_tables = {}
_failing = {}
_asked = []


def get(table, key):
    """The value under `key` in `table`, or None when there is no entry."""
    from . import RuleFailure

    table, key = str(table), str(key)
    host = _wit.host_lookup()
    if host is not None:
        try:
            return host.get(table, key)
        except _wit.Err as e:
            raise RuleFailure(e.value.message, temporary=e.value.temporary) from None
    _asked.append((table, key))
    if table in _failing:
        raise _failing[table]
    if table not in _tables:
        raise RuleFailure(
            f"table {table!r} is not granted to this step (test double: call lookup.set first)"
        )
    return _tables[table].get(key)


def set(table, key, value):  # noqa: A001 - the double's verb
    """Outside a component: puts `value` under `key` in `table` (and grants the table)."""
    _tables.setdefault(str(table), {})[str(key)] = str(value)


def fail(table, error):
    """Outside a component: every lookup in `table` raises `error` (a RuleFailure)."""
    _failing[str(table)] = error


def clear():
    """Outside a component: empties the double."""
    _tables.clear()
    _failing.clear()
    _asked.clear()


def take_asked():
    """The (table, key) pairs asked since the last call."""
    out = list(_asked)
    _asked.clear()
    return out
