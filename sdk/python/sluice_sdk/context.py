"""The step's context as a rule sees it: `ctx.domain`, `ctx.recipients`, `ctx.verdicts.spf`,
`ctx.config`, ... read lazily.

Since WIT 0.2 the host hands `evaluate` a `context` *resource* rather than a record: each
field is a call into the host that copies the value into the rule (the step's config, which
can be hundreds of kilobytes, included). `Context` wraps that handle so a rule keeps reading
attributes: each one asks the host on first use and keeps the answer for the rest of the
call, so a rule pays only for the fields it reads, and for each once. It reads a WIT 0.1
record (a rule built with `build.py --wit .../sluice-rules-0.1.5.wit`) the same way.
"""

_UNREAD = object()


class Context:
    """What `Rule.evaluate(msg, ctx, config)` gets as `ctx`. Valid during that call only (the
    host's handle is borrowed for it). `Context(sluice_sdk.testing.context(...))` builds one
    in tests."""

    __slots__ = ("_handle", "_domain", "_recipients", "_mail_from", "_verdicts",
                 "_received_at", "_message_id", "_config")

    def __init__(self, handle):
        if handle is None:
            raise TypeError("Context wraps the context the host passed to evaluate, not None")
        self._handle = handle
        self._domain = self._recipients = self._mail_from = self._verdicts = _UNREAD
        self._received_at = self._message_id = self._config = _UNREAD

    def _ask(self, field):
        """The host's answer (a resource method) or the record's field."""
        value = getattr(self._handle, field)
        return value() if callable(value) else value

    @property
    def domain(self):
        """The configured domain whose chain is running (`*` for the catch-all chain)."""
        if self._domain is _UNREAD:
            self._domain = self._ask("domain")
        return self._domain

    @property
    def recipients(self):
        """The group's current recipients (after earlier steps' `set-recipients` /
        `add-recipients`), as bare addresses `local@domain`."""
        if self._recipients is _UNREAD:
            self._recipients = self._ask("recipients")
        return self._recipients

    @property
    def mail_from(self):
        """The envelope sender (MAIL FROM); empty for a null sender (bounces)."""
        if self._mail_from is _UNREAD:
            self._mail_from = self._ask("mail_from")
        return self._mail_from

    @property
    def verdicts(self):
        """The SES verdicts (`ctx.verdicts.spf`, ...)."""
        if self._verdicts is _UNREAD:
            self._verdicts = self._ask("verdicts")
        return self._verdicts

    @property
    def received_at(self):
        """Receipt time, milliseconds since the Unix epoch."""
        if self._received_at is _UNREAD:
            self._received_at = self._ask("received_at")
        return self._received_at

    @property
    def message_id(self):
        """The SES message id (or the host's id for a message read from a file)."""
        if self._message_id is _UNREAD:
            self._message_id = self._ask("message_id")
        return self._message_id

    @property
    def config(self):
        """The step's config as JSON text. `evaluate` already gets it parsed (read from the
        host once per instance); this is for rules that want the text itself."""
        if self._config is _UNREAD:
            self._config = self._ask("config")
        return self._config

    def __repr__(self):
        known = []
        for field in ("domain", "recipients", "mail_from", "verdicts", "received_at",
                      "message_id"):
            value = getattr(self, "_" + field)
            known.append(f"{field}={'<unread>' if value is _UNREAD else repr(value)}")
        return f"Context({', '.join(known)})"
