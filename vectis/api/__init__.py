"""The public REST API (/api/v1/): read the backup data, triage alerts, request a sync.
Django REST framework with an OpenAPI 3 schema (drf-spectacular); API keys made by
djangorestframework-api-key (vectis.models.ApiKey). Nothing in it writes to a vendor."""
