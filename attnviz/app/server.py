"""``attnviz serve``: start the service with uvicorn.

Command-line options override the ``ATTNVIZ_*`` environment variables, which override
the defaults (127.0.0.1:8000, the bundled checkpoints/, device auto).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from attnviz.app.logs import configure_logging
from attnviz.app.main import create_app
from attnviz.app.settings import Settings
from attnviz.model.train import resolve_device


def serve_command(
    host: str | None = None,
    port: int | None = None,
    models_dir: str | Path | None = None,
    device: str | None = None,
) -> int:
    """Serve until interrupted; 2 with a message on stderr for a bad option."""
    import uvicorn

    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("models_dir", models_dir),
            ("device", device),
        )
        if value is not None
    }
    try:
        settings = Settings(**overrides)
        resolve_device(settings.device)
    except (ValidationError, ValueError) as e:
        print(f"attnviz serve: {e}", file=sys.stderr)
        return 2
    if not settings.models_dir.is_dir():
        print(
            f"attnviz serve: the models directory {settings.models_dir} does not exist "
            "(--models-dir or ATTNVIZ_MODELS_DIR)",
            file=sys.stderr,
        )
        return 2
    configure_logging()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":  # python -m attnviz.app.server: settings from ATTNVIZ_* only
    raise SystemExit(serve_command())
