"""kcm's shared vocabulary: states, Redis key names, settings, the database models and the worker spec.

Every other package imports names from here; nothing else spells a state or formats a Redis key.
"""
