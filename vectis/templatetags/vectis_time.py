"""`{{ moment|when }}` and `{{ moment|stamp }}`: the only ways templates show a moment
(vectis/timefmt.py)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils.safestring import SafeString

from vectis import timefmt

register = template.Library()


@register.filter
def when(moment: datetime | None, empty: str = "—") -> SafeString:
    return timefmt.when(moment, empty=empty)


@register.filter
def stamp(moment: datetime | None, empty: str = "—") -> SafeString:
    return timefmt.stamp(moment, empty=empty)
