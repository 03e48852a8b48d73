"""Files on disk: atomic writes, and reads whose errors name the file.

The base layer: imports nothing else of flowkit, and neither torch nor safetensors at
module level. Every write that a crash, a full disk or a kill could leave half-written goes
through :func:`atomic_path`: the content is written under a temporary name beside the
target (same file system, so the rename is atomic) and renamed into place only when it is
complete; on failure the temporary is removed, the target is untouched, and the error
names the target and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any


class FlowkitError(Exception):
    """An error meant for the user: its message names the value or file and the fix.

    The command line prints it as one ``flowkit COMMAND: error: ...`` line."""


class FileWriteError(FlowkitError, OSError):
    """A file could not be written (disk full, no permission, ...); nothing was left half
    written in its place."""


class FileReadError(FlowkitError, ValueError):
    """A file could not be read or parsed; the message names it."""


def write_hint(error: BaseException) -> str:
    """What to do about a failed write, by its cause."""
    code = getattr(error, "errno", None)
    text = str(error)
    if code == errno.ENOSPC or "os error 28" in text or "No space left" in text:
        return "the disk is full: free space (or write elsewhere) and run the same command again"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "no permission to write there: choose a writable location"
    if code == errno.ENOENT:
        return "its folder could not be created: check the path"
    return "check that the location is writable and has free space"


@contextmanager
def atomic_path(target: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success.

    Args:
        target: the file (or, with ``is_dir``, folder) to produce.
        is_dir: the content is a folder (an existing ``target`` folder is replaced).

    Raises:
        FileWriteError: the write failed (an ``OSError``, or any error whose text says the
            disk is full); the temporary is removed and ``target`` is left as it was.
    """
    target = Path(target)
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if is_dir and target.is_dir():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, FileWriteError) or not _is_write_failure(error):
            raise
        raise FileWriteError(
            f"could not write {str(target)!r}: {_reason(error)}; {write_hint(error)}"
        ) from error


def _is_write_failure(error: BaseException) -> bool:
    return isinstance(error, OSError) or "os error" in str(error)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(OSError):
            path.unlink()


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``target`` atomically; return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_json(target: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as indented JSON to ``target`` atomically; return the path."""
    return write_text(target, json.dumps(value, indent=2) + "\n")


def save_tensors(
    tensors: dict[str, Any], target: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """Save a dict of tensors as safetensors at ``target``, atomically; return the path."""
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return Path(target)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a missing or malformed file is an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileReadError(f"{what} {str(path)!r} is not valid JSON: {error}") from error


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict:
    """:func:`read_json` of a file that must hold a JSON object (a config, an index)."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise FileReadError(f"{what} {str(path)!r} is not a JSON object")
    return data


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a YAML file safely; a missing or malformed file is an error that names it."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise FileReadError(f"{what} {str(path)!r} is not valid YAML: {error}") from error


def load_tensors(path: str | os.PathLike, device: str = "cpu", what: str = "file") -> dict:
    """Load a safetensors file (never a pickle); errors name the file and the fix."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return load_file(path, device=device)
    except Exception as error:
        raise FileReadError(
            f"{what} {str(path)!r} is not a valid safetensors file ({error}); only "
            "safetensors are read: it may be corrupt, truncated or a pickle"
        ) from error


def safetensors_metadata(path: str | os.PathLike, what: str = "file") -> dict[str, str]:
    """The metadata of a safetensors file's header; errors name the file."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(path, framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as error:
        raise FileReadError(
            f"{what} {str(path)!r} is not a valid safetensors file ({error})"
        ) from error
