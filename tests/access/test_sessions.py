"""Sessions end when they should: after 8 idle hours, and everywhere at once when the
user's role or password changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from access.roles import READ_ONLY, TECHNICIAN

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-enough-password"


def signed_in_browser(username: str = "tech") -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    return client


@pytest.fixture
def technician() -> User:
    user = User.objects.create_user("tech", "tech@msp.example", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=TECHNICIAN))
    return user


def test_a_session_ends_after_eight_idle_hours_and_lives_while_used(technician: User) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        busy = signed_in_browser()
        idle = signed_in_browser()
        for hours in range(1, 12):  # the busy one clicks every hour, for 11 hours
            clock.move_to(start + timedelta(hours=hours))
            assert busy.get("/admin/").status_code == 200
        response = idle.get("/admin/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_a_role_change_signs_the_user_out_everywhere(
    technician: User, admin_client: Client
) -> None:
    laptop, phone = signed_in_browser(), signed_in_browser()
    # An administrator makes the technician Read-only, in the admin.
    page = admin_client.get(f"/admin/auth/user/{technician.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {
        key: value
        for key, value in form.initial.items()
        if value is not None and key not in ("password", "groups", "user_permissions")
    }
    data.update(
        {
            "groups": [Group.objects.get(name=READ_ONLY).pk],
            "is_active": "on",
            "is_staff": "on",
            "date_joined_0": technician.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": technician.date_joined.strftime("%H:%M:%S"),
            "access-TOTAL_FORMS": "1",
            "access-INITIAL_FORMS": "0",
            "access-MIN_NUM_FORMS": "0",
            "access-MAX_NUM_FORMS": "1",
        }
    )
    data.pop("last_login", None)
    saved = admin_client.post(f"/admin/auth/user/{technician.pk}/change/", data)
    assert saved.status_code == 302, saved.content.decode()[:3000]
    for browser in (laptop, phone):
        response = browser.get("/admin/")
        assert response.status_code == 302
        assert "/login/" in response["Location"]
    # Signing in again gives the new role.
    again = signed_in_browser()
    assert again.get("/admin/alerts/alertrule/").status_code == 403


def test_a_password_change_signs_out_the_other_sessions(technician: User) -> None:
    laptop, phone = signed_in_browser(), signed_in_browser()
    changed = laptop.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "another-long-password-9",
            "password2": "another-long-password-9",
        },
    )
    assert changed.status_code == 302
    assert laptop.get("/admin/").status_code == 200  # where it was changed: still in
    response = phone.get("/admin/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_a_request_that_only_reads_the_session_never_writes_over_a_message_stored_meanwhile(
    admin_user: User,
) -> None:
    """Two requests of one browser overlap: a page that only reads the session began
    before a save stored its success message in it (or a webhook's signing secret, shown
    once). When the page ends it must not write its older copy of the session back over
    the message. (Saving the session on every request did: a browser test lost its "was
    added successfully" that way.)"""
    from django.conf import settings
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory

    from access.sessions import SIGNED_IN_AT, IdleTimeoutMiddleware

    admin_user.set_password(PASSWORD)
    admin_user.save()
    with time_machine.travel(timezone.now(), tick=False):  # one minute throughout
        browser = signed_in_browser(admin_user.username)
        key = browser.cookies[settings.SESSION_COOKIE_NAME].value
        form = browser.get("/admin/customers/customer/add/")
        inline = form.context["inline_admin_formsets"][0].formset.prefix
        data = {"name": "Northwind", f"{inline}-TOTAL_FORMS": "0", f"{inline}-INITIAL_FORMS": "0"}

        def page_meanwhile_saving(request: HttpRequest) -> HttpResponse:
            assert request.session.get(SIGNED_IN_AT)  # the page has read the session
            saved = browser.post("/admin/customers/customer/add/", data)
            assert saved.status_code == 302, saved.content.decode()[-2000:]
            return HttpResponse("a page")

        page = RequestFactory().get("/admin/")
        page.COOKIES[settings.SESSION_COOKIE_NAME] = key
        SessionMiddleware(IdleTimeoutMiddleware(page_meanwhile_saving))(page)
        listed = browser.get("/admin/customers/customer/").content.decode()
    assert "was added successfully" in listed
