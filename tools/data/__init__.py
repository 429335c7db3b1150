"""The event store and what fills it."""
