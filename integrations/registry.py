"""The provider registry: `kind` -> provider, from `settings.VECTIS_PROVIDERS` (dotted
paths imported on first use). The framework therefore imports no provider, and a second
vendor is one more line in settings. Never branch on `if provider == "keepit"`: ask the
registry."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from .base import Provider


class UnknownProvider(LookupError):
    pass


@cache
def _load(kind: str, path: str) -> Provider:
    provider_class: type[Provider] = import_string(path)
    provider = provider_class()
    if provider.kind != kind:
        raise UnknownProvider(
            f"VECTIS_PROVIDERS[{kind!r}] is a provider of kind {provider.kind!r}."
        )
    return provider


def get_provider(kind: str) -> Provider:
    try:
        path = settings.VECTIS_PROVIDERS[kind]
    except KeyError:
        raise UnknownProvider(f"No integration provider named {kind!r}.") from None
    return _load(kind, path)


def all_providers() -> list[Provider]:
    return [get_provider(kind) for kind in settings.VECTIS_PROVIDERS]


def provider_label(kind: str) -> str:
    """The provider's name as pages and messages show it; the raw kind when
    the provider is not (or no longer) configured."""
    try:
        return get_provider(kind).name
    except UnknownProvider:
        return kind


def settings_prefixes() -> tuple[str, ...]:
    """The prefixes of the settings that shape a sync: Vectis's own and each provider's."""
    return ("VECTIS_", *(p.settings_prefix for p in all_providers() if p.settings_prefix))
