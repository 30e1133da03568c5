"""Sign-in and sign-out: a signed session cookie, HttpOnly and SameSite, no row per session."""

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.deps import PageOperator, QueueDep, ReaderDep, SessionsDep, SettingsDep
from api.pages import local_path, render
from engine.constants import LOGIN_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE_S
from engine.operators.sessions import session_principal
from engine.operators.signin import SignInRefused, SignInThrottled, SignInUnavailable, sign_in

router = APIRouter(include_in_schema=False)
HOME = "/activity"


def _login_page(
    request: Request, sessions: SessionsDep, secure: bool, *, next_path: str, **context: object
) -> HTMLResponse:
    """Render the sign-in form with a fresh nonce cookie that its CSRF token is bound to."""
    nonce, cookie = sessions.login_nonce()
    context.setdefault("username", "")
    response = render(
        request,
        "login.html",
        None,
        csrf=sessions.csrf_token(nonce),
        next=next_path,
        **context,
    )
    response.set_cookie(
        LOGIN_COOKIE, cookie, httponly=True, samesite="strict", secure=secure, path="/login"
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request,
    session: ReaderDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    next: str | None = None,
) -> Response:
    """Show the sign-in form, or go on when the operator is signed in already."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if await session_principal(session, sessions, cookie) is not None:
        return RedirectResponse(local_path(next, HOME), status.HTTP_303_SEE_OTHER)
    return _login_page(request, sessions, settings.secure_cookies, next_path=local_path(next, HOME))


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    session: ReaderDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    queue: QueueDep,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
) -> Response:
    """Check the form's CSRF token and the credentials, then set the session cookie."""
    target = local_path(next, HOME)
    secure = settings.secure_cookies
    nonce = sessions.read_login_nonce(request.cookies.get(LOGIN_COOKIE))
    if not sessions.csrf_ok(nonce, csrf):
        error = "the sign-in form expired; please sign in again"
        return _login_page(
            request, sessions, secure, next_path=target, error=error, status_code=403
        )
    address = request.client.host if request.client else "unknown"
    try:
        operator = await sign_in(session, queue.redis, username, password, address)
    except (SignInRefused, SignInThrottled, SignInUnavailable) as refused:
        code = {SignInRefused: 401, SignInThrottled: 429, SignInUnavailable: 503}[type(refused)]
        return _login_page(
            request,
            sessions,
            secure,
            next_path=target,
            error=str(refused),
            username=username,
            status_code=code,
        )
    response = RedirectResponse(target, status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(operator),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=secure,
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(
    operator: PageOperator,
    sessions: SessionsDep,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Forget the session cookie in this browser and go back to the sign-in page."""
    response = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    if sessions.csrf_ok(operator.nonce, csrf):
        response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
async def home() -> RedirectResponse:
    """Send the operator to the Activity."""
    return RedirectResponse(HOME, status.HTTP_303_SEE_OTHER)
