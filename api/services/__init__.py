"""The service layer: transactions on the state database, command publishing, status reads from Redis.

Views call these; they never open sessions, build Redis keys, or talk to Kafka themselves.
"""
