"""Where a result comes from: the command that made it, the code's commit, the date."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from fedpriv.version import __version__

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The commit of the code that runs (``+dirty`` with uncommitted changes), or the version."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"fedpriv {__version__} (no git checkout)"
    return head + ("+dirty" if dirty else "")


# The `fedpriv` command line sets this to the arguments it was given (``python -m``, a
# console script and a test calling ``main`` all name the same command).
_COMMAND: list[str] | None = None


def set_command(argv: list[str]) -> None:
    """Record that this process runs ``fedpriv ARGV``."""
    global _COMMAND
    _COMMAND = ["fedpriv", *argv]


def command() -> str:
    """The command line of this process, as a user would type it."""
    if _COMMAND is not None:
        return shlex.join(_COMMAND)
    program = Path(sys.argv[0]).name if sys.argv else "python"
    return shlex.join([program, *sys.argv[1:]])


def today() -> str:
    """The local date and time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def code_digest(*folders: str) -> str:
    """A digest of the Python sources under ``folders`` (relative to the project root).

    Results made by other code are not reused: changing an attack's source reruns it.
    """
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (``missing`` for one that is not installed)."""
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found
