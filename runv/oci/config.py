"""Read and check a bundle's config.json against the OCI runtime-spec (spec/*.json).

Every problem is raised as a one-line SpecError. jsonschema is imported only when
a config is validated: it is slow to import and most commands never need it.
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from runv.errors import RunvError, SpecError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "spec")
SCHEMA_FILES = ("config-schema.json", "config-linux.json", "defs.json", "defs-linux.json")
ROOT_SCHEMA = SCHEMA_FILES[0]
T = TypeVar("T")
MAX_MESSAGE = 300  # characters of jsonschema's message kept (it quotes the bad value)


@dataclass(frozen=True)
class Bundle:
    path: str  # absolute bundle directory
    config: dict[str, Any]
    rootfs: str  # absolute root.path


def load(bundle: str, schema: bool = True) -> Bundle:
    """Read, validate and check <bundle>/config.json for create/run.

    With schema=False the jsonschema validation is left to the caller (the shim
    runs it while the VM boots); the checks here still hold, and a config too
    malformed for them is validated at once, for the precise message.
    """
    config_path = os.path.join(bundle, "config.json")
    try:
        with open(config_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SpecError(f"open {config_path}: {(e.strerror or str(e)).lower()}") from None
    try:
        config = json.loads(raw)
    except UnicodeDecodeError as e:
        raise SpecError(f"config.json: not UTF-8 text: {e.reason} at byte {e.start}") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"config.json: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise SpecError("config.json: invalid JSON: nested too deeply") from None
    check_strings(config, "config.json")
    if schema:
        validate(config)
    try:
        return _check(bundle, config)
    except (KeyError, TypeError, AttributeError):
        validate(config)
        raise SpecError("config.json: malformed") from None


def _check(bundle: str, config: dict[str, Any]) -> Bundle:
    process = config.get("process")
    if process is None:
        raise SpecError("config.json: process is required to create a container")
    if not process.get("args"):
        raise SpecError("config.json: process.args must not be empty")
    if not os.path.isabs(process["cwd"]):
        raise SpecError(f"config.json: process.cwd {process['cwd']!r} must be an absolute path")
    if "root" not in config:
        raise SpecError("config.json: root.path is required")
    path = os.path.abspath(bundle)
    rootfs = os.path.normpath(os.path.join(path, config["root"]["path"]))
    if not os.path.exists(rootfs):
        raise SpecError(f"rootfs ({rootfs}) does not exist")
    if not os.path.isdir(rootfs):
        raise SpecError(f"rootfs ({rootfs}) is not a directory")
    return Bundle(path=path, config=config, rootfs=rootfs)


def validate(config: Any) -> None:
    """Raise SpecError naming the most relevant place where config breaks the schema."""
    _raise_first(_validator(), config, "config.json")
    check_strings(config, "config.json")


VALID = b"+"  # the validating child's verdict: this byte, or "-" and the SpecError's message


@dataclass
class Validation:
    """config.json being validated in a forked child (`validating`), so that
    jsonschema's imports (8 MiB, 50 ms) never stay in the long-lived shim.
    `runv create` starts it before it forks the shim, which inherits `fd`
    and waits for the verdict before the first hook runs (or, without hooks,
    while the VM boots): the import overlaps the shim's own start-up."""
    pid: int
    fd: int

    def __call__(self) -> None:
        """Wait for the verdict: SpecError if the config is invalid, or if the child died without one."""
        with os.fdopen(self.fd, "rb") as f:
            verdict = f.read()
        self.reap()
        if verdict == VALID:
            return
        if verdict[:1] == b"-":
            raise SpecError(verdict[1:].decode(errors="replace"))
        raise SpecError("config.json: cannot be validated: the validating process died")

    def reap(self) -> None:
        """Reap the child, if this process forked it (the shim waits for one `runv create` forked)."""
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def validating(config: Any) -> Validation:
    """Start validating `config` in a forked child that dies with its parent."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # never returns: nothing of the caller may run twice
        try:
            import signal

            from runv.host import syscalls

            syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
            os.close(r)
            verdict = VALID
            try:
                validate(config)
            except SpecError as e:
                verdict = b"-" + str(e).encode()
            except BaseException as e:  # noqa: BLE001 - said to the parent, never a traceback
                verdict = f"-config.json: cannot be validated: {type(e).__name__}: {e}".encode()
            os.write(w, verdict)
        finally:
            os._exit(0)
    os.close(w)
    return Validation(pid, r)


def explained(config: Any, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on a config the schema has not checked yet: an unexpected error
    is most likely a malformed config, and then the schema's message names the
    field; if the schema finds nothing, the error was a bug and stays as it is."""
    try:
        return fn(*args)
    except RunvError:
        raise
    except Exception:
        validate(config)
        raise


def validate_process(process: Any, name: str) -> None:
    """An exec'd process (`runv exec --process FILE`): the schema of config.json's
    process, and what runc checks of it (args, an absolute cwd)."""
    _raise_first(_validator(PROCESS_SCHEMA), process, name)
    check_strings(process, name)
    if not process.get("args"):
        raise SpecError(f"{name}: args must not be empty")
    if not os.path.isabs(process["cwd"]):
        raise SpecError(f"{name}: cwd {process['cwd']!r} must be an absolute path")


def _raise_first(validator: Validator, document: Any, name: str) -> None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(document))
    if error is None:
        return
    where = json_path(error.absolute_path)
    message = " ".join(error.message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    raise SpecError(f"{name}: {where + ': ' if where else ''}{message}")


def check_strings(document: Any, name: str) -> None:
    """Every string (key or value) is text the guest can take: UTF-8 encodable
    (JSON can escape a lone surrogate) and without NUL, which would cut a
    C string short or shift the fields of an agent record."""
    stack: list[tuple[Any, list[Any]]] = [(document, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            for key, _ in items:
                _text(key, path, name)
            stack += [(v, path + [k]) for k, v in items]
        elif isinstance(node, list):
            stack += [(v, path + [i]) for i, v in enumerate(node)]
        else:
            _text(node, path, name)


def _text(value: Any, path: list[Any], name: str) -> None:
    if not isinstance(value, str):
        return
    where = json_path(path)
    if "\0" in value:
        raise SpecError(f"{name}: {where + ': ' if where else ''}a string contains a NUL character")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise SpecError(f"{name}: {where + ': ' if where else ''}a string is not valid Unicode") from None


def json_path(path: Any) -> str:
    """['process', 'user', 'uid'] -> 'process.user.uid'; indexes as [i]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


PROCESS_SCHEMA = f"{ROOT_SCHEMA}#/definitions/Process"


@functools.cache
def _validator(ref: str | None = None) -> Validator:
    """The schema (or the part of it at `ref`), compiled once per process; its
    $refs resolve among spec/*.json only."""
    from jsonschema.validators import validator_for
    from referencing import Registry, Resource

    schemas = {}
    for name in SCHEMA_FILES:
        with open(os.path.join(SCHEMA_DIR, name)) as f:
            schemas[name] = json.load(f)
    registry: Registry = Registry().with_resources(
        (name, Resource.from_contents(s)) for name, s in schemas.items())
    root = schemas[ROOT_SCHEMA]
    cls = validator_for(root)
    schema = {"$schema": root["$schema"], "$ref": ref} if ref else root
    return cls(schema, registry=registry)
