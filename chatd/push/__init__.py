"""Push delivery: the providers' shared HTTP client, the endpoint guard, the outbox worker."""
