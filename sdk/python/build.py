#!/usr/bin/env python3
"""Builds a Python Sluice rule into a component.

    python3 sdk/python/build.py --rule DIR --out FILE.wasm [--wit WITDIR]

DIR holds `pyproject.toml` (`[project] name`) and `app.py`, the module componentize-py
builds: it must define `WitWorld` (`WitWorld = sluice_sdk.export(MyRule)`). This runs

    componentize-py -d WITDIR -w rule componentize app -o FILE.wasm -p DIR -p <this directory>

so `app` and its sibling modules come from DIR and `sluice_sdk` from this SDK (packages
installed in the Python environment componentize-py runs in are found too). WITDIR (a `.wit`
file or a directory) defaults to the frozen WIT 0.2.1 of the checkout this script sits in
(`sdk/python/../../wit/released/sluice-rules-0.2.1.wit`). The SDK also builds against 0.1.5
(`--wit .../sluice-rules-0.1.5.wit`, the context as a record): the host loads both tracks.

componentize-py is found as `$SLUICE_COMPONENTIZE_PY`, else next to the running Python
(`.venv/bin/componentize-py`), else on PATH. `sluice plugin build DIR --out OUTDIR` runs this
script; exit status 0 on success, 1 with a message on stderr otherwise.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

SDK_DIR = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WIT = os.path.normpath(
    os.path.join(SDK_DIR, "..", "..", "wit", "released", "sluice-rules-0.2.1.wit"))
WORLD = "rule"
APP_MODULE = "app"
INSTALL_HINT = "pip install -r sdk/python/requirements.txt"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class BuildFailure(Exception):
    pass


def read_project_name(rule_dir):
    """`[project] name` of `rule_dir/pyproject.toml`."""
    path = os.path.join(rule_dir, "pyproject.toml")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BuildFailure(f"{path}: {e.strerror}") from None
    try:
        import tomllib  # Python 3.11+
    except ImportError:
        tomllib = None
    if tomllib is not None:
        try:
            name = tomllib.loads(data.decode("utf-8")).get("project", {}).get("name")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise BuildFailure(f"{path}: {e}") from None
    else:  # older Pythons: the name line of the [project] table
        section, name = None, None
        for line in data.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[] ")
            elif section == "project":
                m = re.match(r"""name\s*=\s*["']([^"']*)["']""", line)
                if m:
                    name = m.group(1)
    if not isinstance(name, str) or not name:
        raise BuildFailure(f"{path}: no [project] name")
    if not NAME_RE.match(name):
        raise BuildFailure(
            f"{path}: [project] name {name!r} is not a valid rule name (ASCII letters, digits, "
            "`-` and `_`, starting with a letter, at most 64 characters)")
    return name


def find_componentize_py():
    explicit = os.environ.get("SLUICE_COMPONENTIZE_PY")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            raise BuildFailure(
                f"$SLUICE_COMPONENTIZE_PY={explicit} is not an executable file")
        return explicit
    beside = os.path.join(os.path.dirname(os.path.normpath(sys.executable)), "componentize-py")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("componentize-py")
    if found:
        return found
    raise BuildFailure(
        f"componentize-py not found (not next to {sys.executable}, not on PATH): "
        f"{INSTALL_HINT}")


def tail(text, lines=40):
    parts = text.strip().splitlines()
    cut = len(parts) - lines
    if cut > 0:
        return "\n".join([f"[... {cut} earlier lines]"] + parts[cut:])
    return "\n".join(parts)


def build(rule_dir, out, wit_dir):
    rule_dir = os.path.abspath(rule_dir)
    name = read_project_name(rule_dir)
    app = os.path.join(rule_dir, APP_MODULE + ".py")
    if not os.path.isfile(app):
        raise BuildFailure(f"{rule_dir}: no {APP_MODULE}.py (the module componentize-py builds)")
    if not os.path.exists(wit_dir):
        raise BuildFailure(f"no WIT directory or file at {wit_dir} (pass --wit)")
    tool = find_componentize_py()
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.{os.getpid()}.tmp")
    cmd = [tool, "-q", "-d", wit_dir, "-w", WORLD, "componentize", APP_MODULE, "-o", tmp,
           "-p", rule_dir, "-p", SDK_DIR]
    env = dict(os.environ)
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    try:
        proc = subprocess.run(cmd, cwd=rule_dir, env=env, capture_output=True, text=True)
    except OSError as e:
        raise BuildFailure(f"could not run {tool}: {e}") from None
    if proc.returncode != 0 or not os.path.isfile(tmp):
        if os.path.exists(tmp):
            os.unlink(tmp)
        output = tail((proc.stdout or "") + "\n" + (proc.stderr or ""))
        raise BuildFailure(
            f"componentize-py failed (exit {proc.returncode}) building {name} from {app}:\n"
            f"{output}")
    os.replace(tmp, out)
    return name, os.path.getsize(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build a Python Sluice rule into a component.")
    parser.add_argument("--rule", help="the rule directory (pyproject.toml, app.py)")
    parser.add_argument("--out", help="the component to write (FILE.wasm)")
    parser.add_argument("--wit", default=DEFAULT_WIT, help=f"WIT directory (default {DEFAULT_WIT})")
    parser.add_argument("--print-name", action="store_true",
                        help="only print the rule's name from pyproject.toml")
    parser.add_argument("--check-tool", action="store_true",
                        help="only print where componentize-py is (exit 1 if it is missing)")
    args = parser.parse_args(argv)
    if not args.check_tool and (args.rule is None or (args.out is None and not args.print_name)):
        parser.error("--rule and --out are required")
    try:
        if args.check_tool:
            print(find_componentize_py())
            return 0
        if args.print_name:
            print(read_project_name(os.path.abspath(args.rule)))
            return 0
        name, size = build(args.rule, args.out, os.path.abspath(args.wit))
    except BuildFailure as e:
        print(f"build.py: {e}", file=sys.stderr)
        return 1
    print(f"built {name} ({size} bytes) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
