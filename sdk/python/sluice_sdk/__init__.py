"""Write Sluice mail rules in Python.

A rule is a class with `defaults` (its config keys and default values), an optional
`check(config)`, and `evaluate(msg, ctx, config)` returning a list of actions. `export(Rule)`
turns it into the `WitWorld` class componentize-py needs:

    import sluice_sdk as sluice

    class TagExternal(sluice.Rule):
        defaults = {"tag": "[ext]", "internal_domains": sluice.list_of(str)}

        def evaluate(self, msg, ctx, config):
            sender = msg.from_() or ""
            if sluice.is_in_domains(sender, config.internal_domains) or sluice.failed(ctx.verdicts.spf):
                return []
            sluice.log.info("tagging mail from %s", sender)
            return [sluice.prefix_subject(config.tag)]

    WitWorld = sluice.export(TagExternal)

`ctx` is a `Context`: `ctx.domain`, `ctx.recipients`, `ctx.verdicts`, `ctx.config`, ... ask
the host (WIT 0.2 hands over a `context` resource) on first use and keep the answer for the
call. Inside a component the WIT types are those componentize-py generates (`wit_world`);
outside (unit tests) stand-ins with the same names and fields, so a rule's logic runs under
plain `python -m unittest`. See `sdk/python/README.md`.
"""

import json
import traceback

from . import _wit, flow, http, log, lookup, recipients, reply
from .context import Context

types = _wit.types
Err = _wit.Err
IN_COMPONENT = _wit.IN_COMPONENT

Verdict = types.Verdict
Verdicts = types.Verdicts
Header = types.Header
Banner = types.Banner
Position = types.Position
Bounce = types.Bounce
RuleError = types.RuleError
AttachmentInfo = types.AttachmentInfo
# WIT 0.2.1; absent from a build against an older WIT (`build.py --wit ...0.1.5.wit`).
PartInfo = getattr(types, "PartInfo", None)
ArchiveInfo = getattr(types, "ArchiveInfo", None)
PartReplacement = getattr(types, "PartReplacement", None)
Level = types.Level
Message = types.Message

#: Every action class (a WIT `variant` is a Union of one dataclass per case).
ACTION_TYPES = (
    types.Action_AddHeader,
    types.Action_SetHeader,
    types.Action_RemoveHeader,
    types.Action_PrefixSubject,
    types.Action_AddBanner,
    types.Action_SetRecipients,
    types.Action_AddRecipients,
    types.Action_FileInto,
    types.Action_Bounce,
    types.Action_Drop,
    types.Action_Stop,
) + tuple(t for t in (getattr(types, "Action_ReplacePart", None),) if t is not None)

__all__ = [
    "Rule", "export", "RuleFailure", "ConfigError", "Config", "parse_config", "list_of",
    "required", "add_header", "set_header", "remove_header", "prefix_subject", "banner",
    "banner_top", "banner_bottom", "set_recipients", "add_recipients", "file_into", "bounce",
    "reject", "drop", "stop", "replace_part", "passed", "failed", "verdict_name", "domain_of", "local_part",
    "is_domain_in", "is_in_domains", "ascii_lower", "first_header", "log", "lookup", "http", "recipients", "flow",
    "reply",
    "Verdict", "Verdicts",
    "Context", "Header", "Banner", "Position", "Bounce", "RuleError", "AttachmentInfo",
    "PartInfo", "ArchiveInfo", "PartReplacement", "Level",
    "Message", "ACTION_TYPES", "IN_COMPONENT",
]


# ---------------------------------------------------------------------------------------------
# Actions


def add_header(name, value):
    """`add-header`: add a field at the top of the header block."""
    return types.Action_AddHeader(types.Header(name=name, value=value))


def set_header(name, value):
    """`set-header`: replace every field with this name by one field (or add it)."""
    return types.Action_SetHeader(types.Header(name=name, value=value))


def remove_header(name):
    """`remove-header`: remove every field with this name (protected names are refused)."""
    return types.Action_RemoveHeader(name)


def prefix_subject(prefix):
    """`prefix-subject`: prefix the Subject unless it already starts with `prefix`."""
    return types.Action_PrefixSubject(prefix)


def banner(text, html=None, position=None):
    """`add-banner` with optional HTML and a position (default `Position.TOP`)."""
    if position is None:
        position = types.Position.TOP
    return types.Action_AddBanner(types.Banner(text=text, html=html, position=position))


def banner_top(text):
    """`add-banner` of a plain-text banner at the top (the host escapes it for HTML parts)."""
    return banner(text, None, types.Position.TOP)


def banner_bottom(text):
    """`add-banner` of a plain-text banner at the bottom."""
    return banner(text, None, types.Position.BOTTOM)


def set_recipients(addresses):
    """`set-recipients`: replace the group's recipients."""
    return types.Action_SetRecipients([str(a) for a in addresses])


def add_recipients(addresses):
    """`add-recipients`: forward a copy to these addresses too."""
    return types.Action_AddRecipients([str(a) for a in addresses])


def file_into(folder):
    """`file-into`: deliver local recipients into `folder` instead of `INBOX`."""
    return types.Action_FileInto(folder)


def bounce(code, status, text):
    """`bounce` with an SMTP code and an RFC 3463 status: `bounce(550, "5.1.1", "no such user")`."""
    return types.Action_Bounce(types.Bounce(code=int(code), status=status, text=text))


def reject(text):
    """A policy refusal: `bounce` 550 5.7.1 with `text`."""
    return bounce(550, "5.7.1", text)


def drop():
    """`drop`: discard the message for the whole group, silently."""
    return types.Action_Drop()


def stop():
    """`stop`: run no further steps of this chain for this group."""
    return types.Action_Stop()


def replace_part(part_id, note):
    """`replace-part` (WIT 0.2.1): strip part `part_id` (an id from `msg.parts()`) and put a
    short text/plain note in its place; every other byte of the message is kept."""
    if isinstance(part_id, bool) or not isinstance(part_id, int) or not 0 <= part_id <= 0xFFFFFFFF:
        raise TypeError(f"replace_part id must be a part id from msg.parts(), not {part_id!r}")
    if PartReplacement is None:
        raise RuleFailure("replace-part needs WIT 0.2.1: build the rule against it (the default)")
    return types.Action_ReplacePart(types.PartReplacement(id=part_id, text=str(note)))


# ---------------------------------------------------------------------------------------------
# Verdicts and messages

_VERDICT_NAMES = {
    types.Verdict.PASS: "pass",
    types.Verdict.FAIL: "fail",
    types.Verdict.GRAY: "gray",
    types.Verdict.PROCESSING_FAILED: "processing-failed",
    types.Verdict.DISABLED: "disabled",
    types.Verdict.UNKNOWN: "unknown",
}


def verdict_name(verdict):
    """The WIT name: `pass`, `fail`, `gray`, `processing-failed`, `disabled`, `unknown`."""
    return _VERDICT_NAMES[verdict]


def passed(verdict):
    """True for `pass`."""
    return verdict == types.Verdict.PASS


def failed(verdict):
    """True for `fail` only (not `gray`, `processing-failed`, `disabled`, `unknown`)."""
    return verdict == types.Verdict.FAIL


def first_header(msg, name):
    """The first value of the named header, or None."""
    values = msg.header(name)
    return values[0] if values else None


# ---------------------------------------------------------------------------------------------
# Addresses (the same rules as the Rust SDK's `address` module)


def _bare(addr):
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">") and len(addr) >= 2:
        addr = addr[1:-1]
    return addr.strip()


def domain_of(addr):
    """The domain of a bare address, split at the last `@` (case kept, a trailing root dot
    dropped): `domain_of("Ann@Example.COM") == "Example.COM"`. None without a domain."""
    if addr is None:
        return None
    local, at, domain = _bare(addr).rpartition("@")
    if not at:
        return None
    if domain.endswith("."):
        domain = domain[:-1]
    return domain or None


def local_part(addr):
    """The local part of a bare address: `local_part("ann+x@example.com") == "ann+x"`."""
    if addr is None:
        return None
    local, at, _ = _bare(addr).rpartition("@")
    if not at:
        return None
    return local or None


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(s):
    """Lower-cases `A`-`Z` only (as Rust's `to_ascii_lowercase`); other characters stay."""
    return s.translate(_ASCII_LOWER)


def is_domain_in(domain, domains):
    """Whether `domain` is one of `domains` or a subdomain of one, ignoring ASCII case.
    Entries may be written `example.com`, `@example.com`, `.example.com`, `*.example.com`;
    empty entries match nothing. `badexample.com` is not in `["example.com"]`."""
    domain = ascii_lower(domain.strip().rstrip("."))
    if not domain:
        return False
    for entry in domains:
        entry = entry.strip().rstrip(".")
        for prefix in ("*.", "@", "."):
            if entry.startswith(prefix):
                entry = entry[len(prefix):]
                break
        entry = ascii_lower(entry)
        if not entry:
            continue
        if domain == entry or domain.endswith("." + entry):
            return True
    return False


def is_in_domains(addr, domains):
    """Whether the address's domain is in `domains` (subdomains included, see
    `is_domain_in`); False for an address without a domain (or None)."""
    domain = domain_of(addr)
    return domain is not None and is_domain_in(domain, domains)


# ---------------------------------------------------------------------------------------------
# Config


class ConfigError(Exception):
    """A bad step config. `validate-config` returns its text; `evaluate` fails permanently."""


class RuleFailure(Exception):
    """Raise it from `evaluate` to fail the step with a `rule-error` (the step's `on_error`
    applies). `temporary=True`: the problem may go away on retry."""

    def __init__(self, message, temporary=False):
        super().__init__(message)
        self.message = str(message)
        self.temporary = bool(temporary)


_MISSING = object()

_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a table",
}


class Field:
    """One config key: the accepted type, the default (or required), list item type."""

    def __init__(self, type_=None, default=_MISSING, item=None):
        self.type = type_
        self.default = default
        self.item = item

    @classmethod
    def of(cls, default):
        if isinstance(default, Field):
            return default
        if default is None:
            return cls(None, None)
        if isinstance(default, tuple):
            default = list(default)
        kind = type(default)
        if kind not in _TYPE_NAMES:
            raise TypeError(f"unsupported config default {default!r}")
        return cls(kind, default)


def list_of(item_type, default=()):
    """A config key holding a list whose items are `item_type` (str, int, float, bool)."""
    return Field(list, list(default), item=item_type)


def required(type_):
    """A config key that must be given (`type_`: str, int, float, bool, list or dict)."""
    return Field(type_)


def _type_ok(value, type_):
    if type_ is None:
        return True
    if type_ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type_)


def _describe(value):
    return json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__


class Config(dict):
    """A parsed config: a dict whose keys are also attributes (`config.tag`)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no config key `{name}`") from None


def parse_config(text, defaults):
    """Parses a step's JSON config against `defaults` ({key: default value | Field}).

    An empty string means `{}`. Raises `ConfigError` for invalid JSON, a non-object, an
    unknown key (``unknown field `txt`, expected one of `tag`, `keywords` ``), a missing
    required key or a value of the wrong type. Keys left out get (a copy of) their default."""
    fields = {key: Field.of(value) for key, value in (defaults or {}).items()}
    if text is None or not text.strip():
        raw = {}
    else:
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a table of settings, got {_describe(raw)}")
    for key in raw:
        if key not in fields:
            if fields:
                expected = ", ".join(f"`{k}`" for k in fields)
                raise ConfigError(f"unknown field `{key}`, expected one of {expected}")
            raise ConfigError(f"unknown field `{key}`: this rule takes no config")
    out = Config()
    for key, field in fields.items():
        if key not in raw:
            if field.default is _MISSING:
                raise ConfigError(f"missing field `{key}`")
            default = field.default
            out[key] = list(default) if isinstance(default, list) else (
                dict(default) if isinstance(default, dict) else default)
            continue
        value = raw[key]
        if not _type_ok(value, field.type):
            raise ConfigError(
                f"`{key}`: expected {_TYPE_NAMES[field.type]}, got {_describe(value)}")
        if field.item is not None:
            for i, item in enumerate(value):
                if not _type_ok(item, field.item):
                    raise ConfigError(
                        f"`{key}`[{i}]: expected {_TYPE_NAMES.get(field.item, field.item)}, "
                        f"got {_describe(item)}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# Rules


class Rule:
    """Base class of a rule. Override `evaluate` (and `defaults`, `check` as needed), then
    `WitWorld = sluice_sdk.export(MyRule)` in the module componentize-py builds (`app.py`)."""

    #: Config keys and their defaults: a plain value (its type is enforced), `list_of(str)`,
    #: `required(str)`, or `None` (any JSON value). Keys not listed are refused.
    defaults = {}

    def parse(self, text):
        """`parse_config(text, self.defaults)` then `self.check(config)`; raises ConfigError."""
        config = parse_config(text, self.defaults)
        problem = self.check(config)
        if problem:
            raise ConfigError(str(problem))
        return config

    def check(self, config):
        """Checks beyond types (e.g. "`tag` must not be empty"): raise `ConfigError` or
        return an error string; None accepts. Runs in `validate-config` and whenever
        `evaluate` parses the config (once per instance)."""
        return None

    def evaluate(self, msg, ctx, config):
        """Returns the list of actions for `msg` (a `Message`) and `ctx` (a `Context`: read
        `ctx.verdicts`, `ctx.recipients`, ... as attributes)."""
        return []


def _check_actions(actions):
    out = list(actions or [])
    for i, action in enumerate(out):
        if not isinstance(action, ACTION_TYPES):
            raise TypeError(
                f"evaluate returned {type(action).__name__} at index {i}, not an action "
                "(build actions with sluice_sdk.prefix_subject(...), add_header(...), ...)")
    return out


def export(rule):
    """The `WitWorld` class for `rule` (a `Rule` subclass or instance):
    `WitWorld = sluice_sdk.export(MyRule)`.

    - `validate_config(json)`: `rule.parse(json)`; a `ConfigError` becomes the `err` string.
    - `evaluate(msg, ctx)`: wraps the host's `context` in a `Context` (lazy attributes) and
      parses the step's config (a bad config is a permanent `rule-error`, "invalid config:
      ..."). The host never runs one instance for two steps (WIT 0.2), so inside a component
      the config is read and parsed on the instance's first message only: a warm instance
      (`instances = "warm"`) passes the same `Config` to every message it serves, so treat it
      as read-only. Outside a component (tests, where one `WitWorld` sees many contexts) it is
      parsed again whenever its text differs. Then calls `rule.evaluate`; `RuleFailure`
      becomes a
      `rule-error`, any other exception is logged with its traceback at `error` level and
      becomes a permanent `rule-error` naming it. The returned list must hold actions.

    Outside a component the class derives from `object` and can be called from tests."""
    instance = rule() if isinstance(rule, type) else rule
    # (config text, parsed Config) once one parsed; a config that fails is not kept (the next
    # message tries again).
    kept = []

    def config_for(ctx):
        if kept and _wit.IN_COMPONENT:
            return kept[1]
        text = ctx.config
        if not kept or kept[0] != text:
            config = instance.parse(text)
            kept[:] = [text, config]
        return kept[1]

    class WitWorld(_wit.WorldBase):
        def validate_config(self, config):
            try:
                instance.parse(config)
            except ConfigError as e:
                raise Err(str(e)) from None
            except Exception as e:  # a bug in check(): report it as the config error
                log.error("validate-config raised: %s", traceback.format_exc())
                raise Err(f"checking the config raised {type(e).__name__}: {e}") from None

        def evaluate(self, msg, ctx):
            if not isinstance(ctx, Context):
                ctx = Context(ctx)
            try:
                config = config_for(ctx)
            except ConfigError as e:
                raise Err(types.RuleError(f"invalid config: {e}", False)) from None
            try:
                return _check_actions(instance.evaluate(msg, ctx, config))
            except RuleFailure as e:
                raise Err(types.RuleError(e.message, e.temporary)) from None
            except Err:
                raise
            except Exception as e:
                log.error("rule raised: %s", traceback.format_exc())
                raise Err(types.RuleError(f"rule raised {type(e).__name__}: {e}", False)) from None

    WitWorld.rule = instance
    WitWorld.__qualname__ = "WitWorld"
    return WitWorld
