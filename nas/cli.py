"""What every command line of the project shares: one-line usage errors with exit code 2, and
loading MODEL arguments (a zoo name or an ArchSpec JSON file)."""

from __future__ import annotations

import argparse
import errno
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from nas.core.names import printable
from nas.core.registry import UnknownModelError, model_spec
from nas.core.spec import MAX_CLASSES, MAX_INPUT_SIZE, ArchSpec, SpecError

USAGE_ERROR = 2
FAILED = 1
# exit codes of a command ended by a signal, as a shell reports them: 128 + the signal's number
INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}
_resume_hint = ""
_prog = "nas"  # the running command, for end_now


def set_resume_hint(text: str) -> None:
    """What to print after "interrupted: " once the command knows how it can be resumed."""
    global _resume_hint
    _resume_hint = text


class Interrupted(BaseException):
    """SIGTERM, raised where the command is, like Ctrl-C's KeyboardInterrupt, so that the
    command's cleanup (its ``finally`` blocks, its helper processes) runs."""


def interrupted(signum: int) -> BaseException:
    """The exception that ends a command on ``signum``: KeyboardInterrupt for SIGINT, else
    :class:`Interrupted`."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def _raise_interrupted(signum: int, frame) -> None:
    raise Interrupted(signum)


def _interrupted_line(prog: str) -> str:
    return f"{prog}: interrupted" + (f": {_resume_hint}" if _resume_hint else "")


def end_now(signum: int) -> NoReturn:
    """End the command at once on ``signum``, with the line and exit code :func:`run` gives
    it, skipping every clean-up: for a signal that has already ended the helpers that clean-up
    would wait on."""
    sys.stdout.flush()
    print(_interrupted_line(_prog), file=sys.stderr, flush=True)
    os._exit(INTERRUPTED[signum])


class UsageError(Exception):
    """An expected mistake of the user: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump), exit code 2, and no abbreviated flags
    (``--resume`` checks which flags were given, so a flag must be spelt out)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; all of them where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise ValueError(text)
    return value


port.__name__ = "port (1-65535)"


def finite_positive(text: str) -> float:
    """An argparse type: a finite number above zero."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


finite_positive.__name__ = "finite positive number"


def int_range(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (``what`` names it in the error:
    ``invalid input size (1-8192) value: '0'``)."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    parse.__name__ = f"{what} ({low}-{high})"
    return parse


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, finite, above 0 and at most an hour (a timed
    run of ``nan`` or ``1e300`` seconds never ends)."""
    value = finite_positive(text)
    if value > 3600:
        raise ValueError(text)
    return value


seconds.__name__ = "number of seconds (0 < s <= 3600)"


def add_spec_options(parser) -> None:
    """``--input-size`` and ``--classes``, checked against the spec's limits as they are parsed."""
    parser.add_argument(
        "--input-size",
        type=int_range(1, MAX_INPUT_SIZE, "input size"),
        help="input side in pixels (default: 224)",
    )
    parser.add_argument(
        "--classes",
        type=int_range(1, MAX_CLASSES, "number of classes"),
        help="number of classes (default: 1000)",
    )


def run(
    prog: str, main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None
) -> int:
    """Run a CLI ``main``; expected mistakes become one line on stderr and exit code 2: a usage
    error, a bad spec or model name, a file that cannot be read or written (the message names
    it). A full disk is one line and exit code 1; Ctrl-C and SIGTERM end it with one line (and
    how to resume, where the command said) and exit codes 130 and 143."""
    global _prog
    _prog = prog
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        return main(argv)
    except (UsageError, SpecError, UnknownModelError) as e:
        print(f"{prog}: error: {printable(str(e))}", file=sys.stderr)
        return USAGE_ERROR
    except (KeyboardInterrupt, Interrupted) as e:
        sig = signal.SIGTERM if isinstance(e, Interrupted) else signal.SIGINT
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: the clean-up goes on
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # CPython marks a KeyboardInterrupt that left code run by exec() (a dataclass's or
        # namedtuple's methods being made) as unhandled, and then exits by SIGINT whatever the
        # command returns; evaluating a string clears that mark
        exec("")
        print(_interrupted_line(prog), file=sys.stderr)
        return INTERRUPTED[sig]
    except BrokenPipeError:  # output piped into `head`
        return 0
    except OSError as e:
        if e.errno == errno.ENOSPC:
            where = f" ({printable(str(e.filename))})" if e.filename else ""
            again = _resume_hint or "run the command again"
            print(
                f"{prog}: error: no space left on the device{where}: no file was left half "
                f"written and nothing earlier was lost; free some space, then {again}",
                file=sys.stderr,
            )
            return FAILED
        if e.filename is None:
            raise
        print(
            f"{prog}: error: cannot use {printable(str(e.filename))}: {e.strerror or e}",
            file=sys.stderr,
        )
        return USAGE_ERROR


def load_model_arg(
    model: str, input_size: int | None = None, classes: int | None = None
) -> ArchSpec:
    """A MODEL argument: a path to an ArchSpec JSON file, or a registered model name."""
    options = {k: v for k, v in (("input_size", input_size), ("classes", classes)) if v is not None}
    if model.endswith(".json") or Path(model).is_file():
        spec = ArchSpec.load(model)
        return spec.replace(**options) if options else spec
    return model_spec(model, **options)


def duration(seconds: float) -> str:
    """``seconds`` for a person: 40 s, 12 min, 3.4 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
