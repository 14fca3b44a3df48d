"""Sessions end when they should: after `VECTIS_SESSION_IDLE_HOURS` without a request
(settings: SESSION_COOKIE_AGE, the expiry moved on by `IdleTimeoutMiddleware`), and
everywhere at once when a user's role or password changes.

Django already ends a user's other sessions when the password changes (the session
carries a hash of it). A role change does not touch the password, so each session
records when it signed in, and a change of groups, staff or superuser flag or active
state sets `UserAccess.sessions_valid_after`: a session older than that is signed out on
its next request (`SignOutEverywhereMiddleware`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from .models import UserAccess
from .timezones import SESSION_KEY as TIME_ZONE_KEY

SIGNED_IN_AT = "vectis_signed_in_at"
# The minute of the session's latest save by IdleTimeoutMiddleware.
SEEN_MINUTE = "vectis_seen_minute"
ROLE_FIELDS = ("is_staff", "is_superuser", "is_active")


def sign_out_everywhere(user_ids: list[int], *, now: datetime) -> None:
    """Every session of these users started before `now` ends at its next request."""
    existing = set(
        UserAccess.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True)
    )
    UserAccess.objects.bulk_create(
        [UserAccess(user_id=pk) for pk in user_ids if pk not in existing],
        ignore_conflicts=True,
    )
    UserAccess.objects.filter(user_id__in=user_ids).update(sessions_valid_after=now)


def _remember_sign_in(sender: Any, request: HttpRequest, user: AbstractBaseUser, **_: Any) -> None:
    request.session[SIGNED_IN_AT] = timezone.now().isoformat()
    # The viewer's time zone, read once per session (access/timezones.py).
    request.session[TIME_ZONE_KEY] = (
        UserAccess.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first() or ""
    )


def _groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, **_: Any
) -> None:
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if reverse:  # a group's users were changed from the group's side
        user_ids = list(pk_set or [])
        if action == "post_clear":
            return  # (the users are unknown after a clear; Django's admin never does this)
    else:
        user_ids = [instance.pk]
    if user_ids:
        sign_out_everywhere(user_ids, now=timezone.now())


def _note_role_fields(sender: Any, instance: Any, **_: Any) -> None:
    if instance.pk is None:
        return
    before = sender.objects.filter(pk=instance.pk).values(*ROLE_FIELDS).first()
    instance._vectis_role_changed = before is not None and any(
        before[field] != getattr(instance, field) for field in ROLE_FIELDS
    )


def _role_fields_saved(sender: Any, instance: Any, created: bool, **_: Any) -> None:
    if not created and getattr(instance, "_vectis_role_changed", False):
        sign_out_everywhere([instance.pk], now=timezone.now())


def connect_signals() -> None:
    user_model = get_user_model()
    user_logged_in.connect(_remember_sign_in, dispatch_uid="access.signed_in_at")
    m2m_changed.connect(
        _groups_changed, sender=user_model.groups.through, dispatch_uid="access.groups"
    )
    pre_save.connect(_note_role_fields, sender=user_model, dispatch_uid="access.role_before")
    post_save.connect(_role_fields_saved, sender=user_model, dispatch_uid="access.role_after")


class IdleTimeoutMiddleware:
    """Keeps a signed-in session alive while it is used: the first request of each minute
    saves it, which moves its expiry `SESSION_COOKIE_AGE` on; the others leave it as it
    is. Saving it on every request (SESSION_SAVE_EVERY_REQUEST) let a request that only
    read it, overlapping one that stored something in it (a success message, a webhook's
    signing secret shown once), write its older copy back over it: the message was lost.
    Placed right after SessionMiddleware, so the mark is set before the session is saved."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        session = getattr(request, "session", None)
        if session is not None and not session.is_empty():
            minute = int(timezone.now().timestamp() // 60)
            if session.get(SEEN_MINUTE) != minute:
                session[SEEN_MINUTE] = minute
        return response


class SignOutEverywhereMiddleware:
    """Signs out a session started before its user's `sessions_valid_after`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            valid_after = (
                UserAccess.objects.filter(user_id=user.pk)
                .values_list("sessions_valid_after", flat=True)
                .first()
            )
            signed_in = request.session.get(SIGNED_IN_AT)
            if valid_after is not None and (
                signed_in is None or datetime.fromisoformat(signed_in) < valid_after
            ):
                logout(request)
                messages.info(
                    request, "Your role or password changed, so you were signed out. Sign in again."
                )
                target = urlencode({"next": request.get_full_path()})
                return HttpResponseRedirect(f"{reverse('account_login')}?{target}")
        return self.get_response(request)
