"""Services: the use cases of chatd, each over ports only."""
