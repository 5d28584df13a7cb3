"""Shared code of the CTR AIOps services: settings, events, bus, storage, observability."""
