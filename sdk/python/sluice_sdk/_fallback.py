"""Stand-ins for the generated bindings, used outside the sandbox (unit tests, a REPL).

Inside a component, `componentize-py` generates the module `wit_world` from `wit/rules.wit`
and `sluice_sdk` uses its types. Outside, there is no `wit_world`, so these classes take its
place: the same names, fields and enum values as the generated `wit_world.imports.types`
and `wit_world.imports.recipients` (checked by `sdk/python/tests/test_sdk.py` against
`componentize-py bindings` when componentize-py is installed).
"""

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


@dataclass
class Context:
    domain: str
    recipients: List[str]
    mail_from: str
    verdicts: Verdicts
    received_at: int
    message_id: str
    config: str


@dataclass
class AttachmentInfo:
    name: Optional[str]
    content_type: str
    size: int


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
