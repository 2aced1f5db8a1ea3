"""Authentication, authorization, rate limits and the request context of kcm's API (docs/security.md).

roles.py (the roles, in one place), scopes.py (consumer-group patterns), tokens.py (API-key tokens),
principal.py (who is calling), declarations.py (``@requires``: each operation's role, next to its view),
oidc.py (JWT verification), authenticate.py (bearer token -> principal), ratelimit.py (Flask-Limiter),
guard.py (the request hooks that tie them together).
"""
