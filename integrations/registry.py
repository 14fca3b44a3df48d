"""The provider registry: `kind` -> dotted path, imported lazily.

Adding a vendor means a sibling of `keepit/` and one line here.
"""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from .base import Provider

PROVIDERS: dict[str, str] = {
    "keepit": "keepit.provider.KeepitProvider",
}


class UnknownProvider(LookupError):
    pass


@cache
def get_provider(kind: str) -> Provider:
    try:
        path = PROVIDERS[kind]
    except KeyError:
        raise UnknownProvider(f"No integration provider named {kind!r}.") from None
    provider_class: type[Provider] = import_string(path)
    return provider_class()


def all_providers() -> list[Provider]:
    return [get_provider(kind) for kind in PROVIDERS]
