"""Users in the admin: their role, whether they have a second factor, and whether they
may use a password at all. allauth's registrations that would only confuse (e-mail
addresses it does not verify here, SSO apps configured by setting, provider tokens that
are never stored) are taken away."""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.socialaccount.models import SocialApp, SocialToken
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import kiosk
from .mfa import SECOND_FACTORS
from .models import KioskLink, UserAccess
from .roles import ROLE_NAMES

for model in (EmailAddress, SocialApp, SocialToken, Authenticator):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(Authenticator)
class AuthenticatorAdmin(admin.ModelAdmin[Authenticator]):
    """Second factors: seen and deleted (a lost phone), never read or edited — their
    data holds the (encrypted) TOTP secret."""

    list_display = ["user", "type", "created_at", "last_used_at"]
    list_filter = ["type"]
    search_fields = ["user__username", "user__email"]
    fields = ["user", "type", "created_at", "last_used_at"]
    readonly_fields = ["user", "type", "created_at", "last_used_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UserAccessInline(admin.StackedInline[UserAccess, User]):
    model = UserAccess
    fields = ["sso_only", "time_zone"]
    can_delete = False
    verbose_name = "Sign-in"
    verbose_name_plural = "Sign-in"


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(Group)
class RoleAwareGroupAdmin(GroupAdmin):
    """Groups; the three roles are defined by Vectis (access/roles.py, re-applied by every
    `migrate`) and shown read-only — copy one into a new group to make a variant."""

    def _is_role(self, group: Group | None) -> bool:
        return group is not None and group.name in ROLE_NAMES

    def has_change_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return not self._is_role(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Group | None = None) -> bool:
        return not self._is_role(obj) and super().has_delete_permission(request, obj)


@admin.register(User)
class VectisUserAdmin(UserAdmin[User]):
    inlines = [UserAccessInline]
    list_display = ["username", "email", "role", "second_factor", "is_active", "last_login"]
    list_filter = ["groups", "is_active", "is_superuser"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        second_factor = Authenticator.objects.filter(user=OuterRef("pk"), type__in=SECOND_FACTORS)
        users: QuerySet[User] = super().get_queryset(request)
        return users.prefetch_related("groups").annotate(has_second_factor=Exists(second_factor))

    @admin.display(description="Role")
    def role(self, user: User) -> str:
        names = [group.name for group in user.groups.all()]
        if user.is_superuser:
            names.insert(0, "Superuser")
        return ", ".join(names) or "—"

    @admin.display(description="Second factor", boolean=True, ordering="has_second_factor")
    def second_factor(self, user: Any) -> bool:
        return bool(user.has_second_factor)


@admin.register(KioskLink)
class KioskLinkAdmin(admin.ModelAdmin[KioskLink]):
    """Wallboard links for a TV: created here, shown once, revoked with one action."""

    list_display = ["name", "state", "created_by", "created_at", "last_used_at"]
    fields = ["name", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="State")
    def state(self, link: KioskLink) -> str:
        return "Revoked" if link.revoked_at else "Active"

    def save_model(self, request: HttpRequest, obj: KioskLink, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user if request.user.is_authenticated else None
        token = kiosk.issue(obj)
        url = request.build_absolute_uri(reverse("wallboard_kiosk", args=[token]))
        messages.warning(
            request,
            format_html(
                "Open this address on the screen (it is shown only now; anyone with it can "
                "see the wallboard until you revoke it): <code data-testid='kiosk-url'>{}</code>",
                url,
            ),
        )

    @admin.action(description="Revoke selected links")
    def revoke(self, request: HttpRequest, queryset: QuerySet[KioskLink]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, f"{count} link(s) revoked: their screens stop at the next refresh."
        )
