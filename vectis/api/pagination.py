"""How the API's lists are cut into pages."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination, PageNumberPagination


class Pages(PageNumberPagination):
    """`?page=2&page_size=100` (at most 500)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class EventCursor(CursorPagination):
    """Newest first; `next` and `previous` are links with an opaque cursor, stable while
    new events arrive."""

    ordering = ("-occurred_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500
