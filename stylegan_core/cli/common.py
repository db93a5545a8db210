"""What the command-line tools share: plugin loading with reports, error printing, exit codes."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from ..plugins import PluginSet, load_plugins
from ..registry import DuplicateComponentError, RegistryError, UnknownComponentError

EXIT_SPEC = 2  # invalid spec
EXIT_UNKNOWN = 3  # unknown plugin or part, or a part that breaks its contract
EXIT_RUNTIME = 1
EXIT_CHECKPOINT = 4  # an official checkpoint that is unsafe, unreadable or cannot be converted


def err(msg: str) -> None:
    print(msg, file=sys.stderr)


def fail(msg: str, code: int) -> NoReturn:
    err(msg)
    raise SystemExit(code)


def load_plugins_reporting() -> PluginSet:
    """Load every plugin; a plugin that fails is reported by name on stderr and the others load."""
    ps = load_plugins()
    for f in ps.failed.values():
        err(f"warning: {f}")
    return ps


def guarded(fn: Callable[[], int]) -> int:
    """Turn the library's errors into one clear line and the documented exit code."""
    from ..io import WeightsFileError
    from ..spec import SpecError
    from ..official import CheckpointError

    try:
        return fn()
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
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except Exception as e:  # one clear line; the traceback on request
        import os
        import traceback

        if os.environ.get("STYLEGAN_DEBUG"):
            traceback.print_exc()
        err(f"error: {type(e).__name__}: {e}" + ("" if os.environ.get("STYLEGAN_DEBUG") else
                                                  " (set STYLEGAN_DEBUG=1 for the traceback)"))
        return EXIT_RUNTIME
