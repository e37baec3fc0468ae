"""The core: domain models, ports and services. Imports only the stdlib and chatd.core."""
