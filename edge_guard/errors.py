"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A mistake in the user's input (bad path, value, file): one line, no traceback."""


class DataError(UserError):
    """A data folder or file that cannot be used as given."""


class MissingDependency(UserError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, purpose: str):
    """Import an optional heavy dependency, or raise MissingDependency naming the extra.

    Example: ``torch = require("torch", "offline", "training")``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'edge-guard[{extra}]'" + (
                " (install torch==2.13.0 first)" if module.startswith("torch") else "")
        ) from exc
