"""Server-rendered pages: one Jinja2 environment, the operator and a CSRF token in each."""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from engine.operators.sessions import Principal, Sessions

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
STATIC_DIR = Path(__file__).parent / "static"


def render(
    request: Request,
    name: str,
    operator: Principal | None,
    *,
    status_code: int = 200,
    csrf: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the operator, their CSRF token, and nothing cached by the browser."""
    sessions: Sessions = request.app.state.sessions
    if csrf is None and operator is not None and operator.nonce is not None:
        csrf = sessions.csrf_token(operator.nonce)
    response = TEMPLATES.TemplateResponse(
        request, name, {"operator": operator, "csrf": csrf, **context}, status_code=status_code
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def local_path(target: str | None, default: str) -> str:
    """Return a path on this site to go to after sign-in, never another site's URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
