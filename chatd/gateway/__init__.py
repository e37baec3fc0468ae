"""The gateway: translates HTTP and WebSocket to service calls, and nothing more."""
