"""A real OpenID Connect provider (django-oauth-toolkit) that tests run in a separate
process, so Vectis's SSO is exercised against genuine discovery, PKCE, signed ID tokens
and a login page rather than a hand-written fake. Start it through `tests.sso_provider`.
"""
