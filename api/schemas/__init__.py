"""Marshmallow schemas of the HTTP API: what comes in (``*In``/``*Patch``) and what goes out."""
