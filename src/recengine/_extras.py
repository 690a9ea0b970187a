"""Optional packages, imported only on the code paths that use them.

The core install serves and trains the core models; each extra in pyproject.toml brings the
packages of one feature (``text``: MiniLM embeddings, ``postgres``: a PostgreSQL store,
``tune``: optuna, ``plots``: matplotlib). A feature imports its package through :func:`require`
when it is first used, never at module level: the server's imports stay fast (torch, optuna and
matplotlib take seconds to import), and a missing package is one line naming the extra to
install instead of a traceback from deep inside.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from recengine.errors import MissingExtraError

__all__ = ["require"]


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """``module``, imported; :class:`MissingExtraError` naming ``extra`` if it cannot be.

    Any ImportError counts, not only the module's own absence: an extra installed in part (the
    MiniLM package without torch) is fixed by the same command.

    >>> require("json", extra="none", feature="JSON").__name__
    'json'
    >>> require("no_such_module", extra="plots", feature="plotting")
    Traceback (most recent call last):
    ...
    recengine.errors.MissingExtraError: plotting needs the 'plots' extra \
(no_such_module is not installed): pip install 'recengine[plots]'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingExtraError(feature, extra=extra,
                                reason=f"{exc.name} is not installed") from exc
    except ImportError as exc:  # installed, yet failing to load: say what it said
        raise MissingExtraError(feature, extra=extra, reason=str(exc)) from exc
