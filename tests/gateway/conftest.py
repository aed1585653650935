"""Shared fixtures of the gateway tests: throwaway PostgreSQL and Redis servers (skipped with a reason when absent)."""

from gateway.servers import postgres_url, redis_url  # noqa: F401 - pytest finds fixtures by name
