"""Prove an output path writable before the work that fills it.

Permission bits do not say whether a write will succeed (root passes os.access on /proc, a
read-only mount or a full disk passes it too), so the checks create, write one byte to and
remove a probe file where the output will go. Nothing else is created: a folder that does
not exist yet is probed in its nearest existing ancestor, where the command will create it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .errors import UserError


def _nearest_existing(path: Path) -> Path | None:
    return next((p for p in (path, *path.parents) if p.exists()), None)


def _probe(folder: Path) -> str | None:
    """Why no file can be written in ``folder``, or None."""
    probe = folder / f".edge-guard-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    try:
        if os.write(fd, b"\0") != 1:
            return "no space left"
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass
    return None


def _folder_error(folder: Path, option: str, path: Path, verb: str = "write") -> str | None:
    existing = _nearest_existing(folder)
    if existing is None or not existing.is_dir():
        return f"cannot {verb} {option} {path}: {existing or folder} is not a folder"
    why = _probe(existing)
    if why is not None:
        return f"cannot {verb} {option} {path}: {existing} is not writable ({why})"
    return None


def check_file(path, option: str) -> None:
    """UserError (one line) unless the file ``path`` can be written: an existing file is
    opened for appending (left unchanged), a new one is probed in its folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file name, e.g. {path / 'results.json'}")
    if path.exists():
        try:
            # Non-blocking: a FIFO without a reader fails at once instead of hanging here.
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK))
        except OSError as exc:
            raise UserError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
        return
    why = _folder_error(path.parent if str(path.parent) else Path("."), option, path)
    if why is not None:
        raise UserError(why)


def check_folder(path, option: str) -> None:
    """UserError (one line) unless files can be written in the folder ``path`` (or, when it
    does not exist yet, in the ancestor it will be created in)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} exists and is not a folder")
    why = _folder_error(path, option, path, "write" if path.exists() else "create")
    if why is not None:
        raise UserError(why)


@contextlib.contextmanager
def removed_if_left_empty(folder):
    """Run the body; when it fails, remove ``folder`` and the parents it created, if they
    are still empty, so that a failed command leaves no empty output folder behind."""
    folder = Path(folder).expanduser()
    existing = _nearest_existing(folder.absolute())
    try:
        yield
    except BaseException:
        created = [p for p in (folder.absolute(), *folder.absolute().parents)
                   if existing is None or p not in (existing, *existing.parents)]
        for path in created:  # deepest first
            try:
                path.rmdir()  # only an empty folder
            except OSError:
                break
        raise
