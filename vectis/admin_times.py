"""Times, one way — in the admin's own lists and read-only fields too.

Django's admin prints a date-time field through `display_for_field` /
`display_for_value` ("Dec. 1, 2026, 7:38 a.m.") and offers no setting to change it; the
two names are looked up in the modules that render lists (`admin_list`) and read-only
fields (`helpers`). `install()` points those names at versions that show an aware
moment the Vectis way (vectis/timefmt.py) and leave every other value to Django.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.admin import helpers
from django.contrib.admin.templatetags import admin_list
from django.contrib.admin.utils import display_for_field, display_for_value
from django.utils import timezone

from .timefmt import when


def _is_moment(value: Any) -> bool:
    return isinstance(value, datetime) and timezone.is_aware(value)


def vectis_display_for_field(
    value: Any, field: Any, empty_value_display: str, *args: Any, **kwargs: Any
) -> Any:
    if _is_moment(value) and not getattr(field, "flatchoices", None):
        return when(value)
    return display_for_field(value, field, empty_value_display, *args, **kwargs)


def vectis_display_for_value(
    value: Any, empty_value_display: str, *args: Any, **kwargs: Any
) -> Any:
    if _is_moment(value):
        return when(value)
    return display_for_value(value, empty_value_display, *args, **kwargs)


def install() -> None:
    # (setattr: the stubs do not list these module-level names)
    setattr(admin_list, "display_for_field", vectis_display_for_field)  # noqa: B010
    setattr(admin_list, "display_for_value", vectis_display_for_value)  # noqa: B010
    setattr(helpers, "display_for_field", vectis_display_for_field)  # noqa: B010
