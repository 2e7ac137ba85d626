"""runv's command line: global flags, a lazy table of commands, and the one
place that turns an error into `runv: <message>` and an exit code."""
from __future__ import annotations

import argparse
import importlib
import sys

from runv import log
from runv.state import DEFAULT_ROOT, check_root

# name -> (module under runv.commands, one-line help)
COMMANDS = {
    "check": ("check", "report whether this host can run runv VMs, and how"),
    "create": ("create", "create a container"),
    "delete": ("delete", "delete a container and its VM"),
    "events": ("events", "display container events and statistics"),
    "exec": ("exec", "execute a new process inside the container"),
    "features": ("features", "show the features this runtime supports"),
    "kill": ("kill", "send a signal to the container's init process"),
    "list": ("list", "list the containers"),
    "pause": ("pause", "pause all processes of the container (freeze its VM)"),
    "ps": ("ps", "list the processes running in a container"),
    "resume": ("resume", "resume a paused container"),
    "run": ("run", "create and start a container"),
    "spec": ("spec", "create a new specification file"),
    "start": ("start", "start a created container"),
    "state": ("state", "output the state of a container"),
    "update": ("update", "update a container's resource limits, live"),
    "version": ("version", "show the version"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runv", description="runv: run OCI containers, each in its own lightweight VM")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="root directory for container state")
    parser.add_argument("--log", default=None, help="log file (default: stderr)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    parser.add_argument("--debug", action="store_true", help="enable debug output")
    # Flags that engines pass and runv accepts for compatibility.
    parser.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rootless", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--criu", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-v", "--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    # Only the module of the command being run is imported.
    wanted = next((a for a in argv if a in COMMANDS), None)
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == wanted:
            importlib.import_module(f"runv.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    log.setup(args.log, args.log_format, args.debug)
    if args.version and not args.verb:
        args.verb = "version"
    if not args.verb:
        parser.print_help()
        return 0
    try:
        check_root(args.root)
        module = importlib.import_module(f"runv.commands.{COMMANDS[args.verb][0]}")
        return module.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - the one place that turns bugs into one line too
        return _report(e, args.debug)


def report(argv: list[str], e: Exception) -> int:
    """What main would print and return had it met `e` running argv (runv.fast's
    light paths meet their errors outside main)."""
    args = build_parser(argv).parse_args(argv)
    log.setup(args.log, args.log_format, args.debug)
    return _report(e, args.debug)


def _report(e: Exception, debug: bool) -> int:
    from runv.errors import RunvError

    if isinstance(e, RunvError):
        return _fail(str(e), e.exit_code, debug)
    if debug:
        import traceback

        traceback.print_exc()
    return _fail(f"internal error: {type(e).__name__}: {e}", 1, debug)


def _fail(message: str, code: int, debug: bool) -> int:
    # One line, whatever a message quotes (a path or an arg with a newline in it).
    message = message.replace("\r", "\\r").replace("\n", "\\n") or "failed"
    message = message.encode(errors="backslashreplace").decode()  # no lone surrogate either
    log.error(message)
    print(f"runv: {message}", file=sys.stderr)
    return code


def entry() -> None:
    sys.exit(main())
