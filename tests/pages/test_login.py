"""Sign-in: the /login page, a signed HttpOnly SameSite cookie, CSRF, limits, refusals."""

import httpx
from playwright.sync_api import Page, expect

from engine.constants import SESSION_COOKIE, SIGNIN_MAX_PER_USER
from tests.harness import Usher
from tests.operators import Account, create_account, usher_cli
from tests.pages.conftest import shoot, sign_in


def test_an_operator_signs_in_and_reaches_the_activity(
    page: Page, usher: Usher, admin: Account
) -> None:
    """Anonymous pages go to /login; the form signs in and returns to the page asked for."""
    page.goto(f"{usher.api}/activity")
    expect(page).to_have_url(f"{usher.api}/login?next=/activity")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shoot(page, "login")
    page.get_by_label("Username").fill(admin.username)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("wrong username or password")

    sign_in(page, usher, admin)
    expect(page.get_by_role("heading", name="Activity")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert admin.password not in cookie["value"]


def test_anonymous_pages_and_evidence_are_refused(usher: Usher) -> None:
    """No session: pages redirect to sign-in, the API and evidence answer 401."""
    with httpx.Client(base_url=usher.api) as client:
        for path in ("/activity", "/jobs/x", "/jobs/x/events"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert client.get("/api/evidence/anything").status_code == 401
        assert client.get("/api/jobs/anything").status_code == 401
        forged = client.get("/activity", cookies={SESSION_COOKIE: "eyJvIjoieCJ9.forged.sig"})
        assert forged.status_code == 303


def test_the_sign_in_form_needs_its_csrf_token(usher: Usher, admin: Account) -> None:
    """A form posted without the token its page carried is refused, right password or not."""
    with httpx.Client(base_url=usher.api) as client:
        answer = client.post(
            "/login", data={"username": admin.username, "password": admin.password}
        )
    assert answer.status_code == 403
    assert SESSION_COOKIE not in answer.cookies


def attempt(client: httpx.Client, account: Account, password: str) -> httpx.Response:
    """Fetch the sign-in form and post it with its CSRF token."""
    form = client.get("/login").text
    token = form.split('name="csrf" value="')[1].split('"')[0]
    data = {"username": account.username, "password": password, "csrf": token}
    return client.post("/login", data=data)


def test_failed_sign_ins_are_limited_per_user(usher: Usher) -> None:
    """Signing in never counts against anyone; after the limit of failures, even the right
    password waits for the window to pass."""
    target = create_account(usher, "viewer")
    with httpx.Client(base_url=usher.api) as client:
        for _ in range(SIGNIN_MAX_PER_USER + 2):
            assert attempt(client, target, target.password).status_code == 303
            client.cookies.clear()
        for _ in range(SIGNIN_MAX_PER_USER):
            assert attempt(client, target, "wrong-wrong-wrong").status_code == 401
        throttled = attempt(client, target, target.password)
    assert throttled.status_code == 429
    assert "too many sign-in attempts" in throttled.text


def test_a_disabled_operator_is_signed_out_at_the_next_request(
    usher: Usher, signed_in_client
) -> None:
    """Disabling takes effect without a session table: the cookie's operator is read each time."""
    leaving = create_account(usher, "viewer")
    client, _csrf = signed_in_client(leaving)
    assert client.get("/activity").status_code == 200
    result = usher_cli(usher, "operators", "disable", leaving.username)
    assert result.exit_code == 0, result.output
    assert client.get("/activity").status_code == 303
    listed = usher_cli(usher, "operators", "list")
    assert any(
        leaving.username in line and "disabled" in line for line in listed.output.splitlines()
    )
