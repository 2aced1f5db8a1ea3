"""Authentication, authorization, rate limits and the request context of kcm's API (docs/security.md).

roles.py (the roles, in one place), scopes.py (consumer-group patterns), tokens.py (API-key tokens),
principal.py (who is calling), declarations.py (``@requires``: each operation's role, next to its view),
oidc.py (JWT verification), authenticate.py (bearer token -> principal), ratelimit.py (the limits and the 429),
window_counter.py (their counting, in memory and in Redis), guard.py (the request hook that ties them together).
"""
