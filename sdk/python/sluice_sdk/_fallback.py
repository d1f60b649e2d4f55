"""Stand-ins for the generated bindings, used outside the sandbox (unit tests, a REPL).

Inside a component, `componentize-py` generates the module `wit_world` from the WIT
(`wit/released/sluice-rules-0.2.0.wit`) and `sluice_sdk` uses its types. Outside, there is no
`wit_world`, so these classes take its place: the same names, fields, methods and enum values
as the generated `wit_world.imports.types` and `wit_world.imports.recipients` (checked by
`sdk/python/tests/test_sdk.py` against `componentize-py bindings` when componentize-py is
installed).
"""

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Generic, List, Optional, TypeVar, Union

E = TypeVar("E")


@dataclass(frozen=True)
class Err(Generic[E], Exception):
    """The failure case of a WIT `result` (as `componentize_py_types.Err`)."""

    value: E


class Verdict(Enum):
    PASS = 0
    FAIL = 1
    GRAY = 2
    PROCESSING_FAILED = 3
    DISABLED = 4
    UNKNOWN = 5


@dataclass
class Verdicts:
    spf: Verdict
    dkim: Verdict
    dmarc: Verdict
    spam: Verdict
    virus: Verdict
    dmarc_policy: Optional[str]


class Context:
    """The WIT 0.2 `context` resource: one method per field, as the generated class has.
    Built from plain values (`sluice_sdk.testing.context()` fills in defaults); `reads`
    counts the calls per field, so a test can see what a rule asked the host for."""

    FIELDS = ("domain", "recipients", "mail_from", "verdicts", "received_at", "message_id",
              "config")

    def __init__(self, domain, recipients, mail_from, verdicts, received_at, message_id,
                 config):
        self._values = {
            "domain": domain, "recipients": list(recipients), "mail_from": mail_from,
            "verdicts": verdicts, "received_at": received_at, "message_id": message_id,
            "config": config,
        }
        self.reads = {field: 0 for field in self.FIELDS}

    def _get(self, field):
        self.reads[field] += 1
        value = self._values[field]
        # A copy, as the host lowers a fresh value into the rule on every call.
        if isinstance(value, list):
            return list(value)
        if isinstance(value, Verdicts):
            return dataclasses.replace(value)
        return value

    def domain(self) -> str:
        return self._get("domain")

    def recipients(self) -> List[str]:
        return self._get("recipients")

    def mail_from(self) -> str:
        return self._get("mail_from")

    def verdicts(self) -> Verdicts:
        return self._get("verdicts")

    def received_at(self) -> int:
        return self._get("received_at")

    def message_id(self) -> str:
        return self._get("message_id")

    def config(self) -> str:
        return self._get("config")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._values.items() if k != "config")
        return f"Context({fields}, config=<{len(self._values['config'])} chars>)"


@dataclass
class AttachmentInfo:
    name: Optional[str]
    content_type: str
    size: int


@dataclass
class ArchiveInfo:
    names: List[str]
    encrypted: bool
    complete: bool


@dataclass
class PartInfo:
    id: int
    name: Optional[str]
    content_type: str
    size: int
    disposition: Optional[str]
    sniffed: Optional[str]
    archive: Optional[ArchiveInfo]


@dataclass
class PartReplacement:
    id: int
    text: str


@dataclass
class Header:
    name: str
    value: str


class Position(Enum):
    TOP = 0
    BOTTOM = 1


@dataclass
class Banner:
    text: str
    html: Optional[str]
    position: Position


@dataclass
class Bounce:
    code: int
    status: str
    text: str


@dataclass
class Action_AddHeader:
    value: Header


@dataclass
class Action_SetHeader:
    value: Header


@dataclass
class Action_RemoveHeader:
    value: str


@dataclass
class Action_PrefixSubject:
    value: str


@dataclass
class Action_AddBanner:
    value: Banner


@dataclass
class Action_SetRecipients:
    value: List[str]


@dataclass
class Action_AddRecipients:
    value: List[str]


@dataclass
class Action_FileInto:
    value: str


@dataclass
class Action_Bounce:
    value: Bounce


@dataclass
class Action_Drop:
    pass


@dataclass
class Action_Stop:
    pass


@dataclass
class Action_ReplacePart:
    value: PartReplacement


Action = Union[
    Action_AddHeader,
    Action_SetHeader,
    Action_RemoveHeader,
    Action_PrefixSubject,
    Action_AddBanner,
    Action_SetRecipients,
    Action_AddRecipients,
    Action_FileInto,
    Action_Bounce,
    Action_Drop,
    Action_Stop,
    Action_ReplacePart,
]


@dataclass
class RuleError:
    message: str
    temporary: bool


class Level(Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


class Message:
    """Only the host has messages; use `sluice_sdk.testing.FakeMessage` in tests."""


@dataclass
class ForwardRequest:
    to: List[str]
    from_: Optional[str]
    subject_prefix: Optional[str]
    redirect: bool
