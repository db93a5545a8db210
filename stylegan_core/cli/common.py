"""What the command-line tools share: plugin loading with reports, error printing, exit codes."""
from __future__ import annotations

import os
import re
import sys
import warnings
from typing import Any, Callable, NoReturn, Optional

from ..plugins import PluginSet, load_plugins
from ..registry import DuplicateComponentError, RegistryError, UnknownComponentError

EXIT_SPEC = 2  # invalid spec
EXIT_UNKNOWN = 3  # unknown plugin or part, or a part that breaks its contract
EXIT_RUNTIME = 1
EXIT_CHECKPOINT = 4  # an official checkpoint that is unsafe, unreadable or cannot be converted


#: pydantic's documentation link under each error of a ValidationError's text
_PYDANTIC_LINK = re.compile(r"\n?[ \t]*For further information visit https://errors\.pydantic\.dev\S*")


def err(msg: str) -> None:
    print(_PYDANTIC_LINK.sub("", str(msg)), file=sys.stderr)


def fail(msg: str, code: int) -> NoReturn:
    err(msg)
    raise SystemExit(code)


def load_plugins_reporting(quiet: bool = False) -> PluginSet:
    """Load every plugin; a plugin that fails is reported by name on stderr (unless ``quiet``: the caller lists
    failures itself) and the others load. A plugin slow to import or register is named while it runs."""
    ps = load_plugins(on_slow=lambda msg: err(f"warning: {msg}"))
    if not quiet:
        for f in ps.failed.values():
            err(f"warning: {f}")
    return ps


def quiet_on_closed_pipe(fn: Callable[..., int], *args: Any) -> int:
    """``fn(*args)``, ending quietly when stdout is closed early (``stylegan-plugins | head``): no
    BrokenPipeError traceback, and none at interpreter exit when Python flushes stdout."""
    try:
        code = fn(*args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    """Python's documented recipe for a reader that went away: stdout to /dev/null, so that the flush at exit
    does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, as a shell reports a command ended by a closed pipe


def _warning_line(message: Any, category: type, filename: str, lineno: int, line: Optional[str] = None) -> str:
    return f"warning: {message}\n"


def guarded(fn: Callable[[], int]) -> int:
    """Turn the library's errors into one clear line and the documented exit code; warnings are printed as one
    line each (``warning: ...``, without the library's file and source line)."""
    saved = warnings.formatwarning
    warnings.formatwarning = _warning_line  # type: ignore[assignment]
    try:
        return _guarded(fn)
    finally:
        warnings.formatwarning = saved


def _guarded(fn: Callable[[], int]) -> int:
    import pydantic

    from ..build import PartBuildError
    from ..data.image_folder import DatasetError
    from ..io import WeightsFileError
    from ..official import CheckpointError
    from ..spec import SpecError
    from ..spec.errors import pydantic_message

    try:
        code = fn()
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # stdout closed by its reader (| head): end quietly
        return _closed_pipe()
    except SpecError as e:
        err(str(e))
        return e.exit_code
    except UnknownComponentError as e:
        err(f"error: {e}")
        return EXIT_UNKNOWN
    except DuplicateComponentError as e:
        err(f"error: {e}")
        return EXIT_UNKNOWN
    except RegistryError as e:  # e.g. a part that is not an instance of its kind's interface
        err(f"error: {e}")
        return EXIT_UNKNOWN
    except CheckpointError as e:  # the message names the file and what is wrong with it
        err(f"error: {e}")
        return EXIT_CHECKPOINT
    except WeightsFileError as e:  # model.safetensors or a snapshot: the message names the file
        err(f"error: {e}")
        return EXIT_RUNTIME
    except PartBuildError as e:  # names the part, its plugin and its spec line
        err(f"error: {e}")
        return EXIT_RUNTIME
    except DatasetError as e:  # a dataset's files (an unreadable image, bad labels): the message names the file
        err(f"error: {e}")
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as e:  # one clear line; the traceback on request
        import traceback

        if os.environ.get("STYLEGAN_DEBUG"):
            traceback.print_exc()
        text = pydantic_message(e) if isinstance(e, pydantic.ValidationError) else str(e)
        err(f"error: {type(e).__name__}: {text}" + ("" if os.environ.get("STYLEGAN_DEBUG") else
                                                     " (set STYLEGAN_DEBUG=1 for the traceback)"))
        return EXIT_RUNTIME
