"""Logging through the host's `log` import (the host tags each line with the step).

    from sluice_sdk import log
    log.info("tagged %s: %d keyword(s)", sender, n)   # %-style arguments, like `logging`
    log.write(log.Level.WARN, "plain text")

Outside a component (unit tests) the lines go to stderr as `[info] ...`.
"""

import sys

from . import _wit

Level = _wit.types.Level

_NAMES = {
    Level.TRACE: "trace",
    Level.DEBUG: "debug",
    Level.INFO: "info",
    Level.WARN: "warn",
    Level.ERROR: "error",
}


def level_name(level):
    """The WIT name of a level: `trace`, `debug`, `info`, `warn`, `error`."""
    return _NAMES[level]


def write(level, msg, *args):
    """Writes one log line at `level` (`msg % args` when arguments are given)."""
    text = (msg % args) if args else str(msg)
    if not _wit.host_log(level, text):
        print(f"[{level_name(level)}] {text}", file=sys.stderr)


def trace(msg, *args):
    write(Level.TRACE, msg, *args)


def debug(msg, *args):
    write(Level.DEBUG, msg, *args)


def info(msg, *args):
    write(Level.INFO, msg, *args)


def warn(msg, *args):
    write(Level.WARN, msg, *args)


warning = warn


def error(msg, *args):
    write(Level.ERROR, msg, *args)
