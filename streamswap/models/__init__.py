"""Networks (GHOST) and their weights."""
