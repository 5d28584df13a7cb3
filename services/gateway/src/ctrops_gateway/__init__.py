"""The gateway: the platform's only public REST + WebSocket surface."""
