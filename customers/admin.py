from __future__ import annotations

from django.contrib import admin

from .models import Customer


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin[Customer]):
    list_display = ["name", "created_at"]
    search_fields = ["name", "normalized_name"]
