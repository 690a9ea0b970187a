"""The HTTP API: ``create_app()`` builds the FastAPI application (see :mod:`.app`)."""

from recengine.serving.app import create_app
from recengine.serving.settings import Settings

__all__ = ["Settings", "create_app"]
