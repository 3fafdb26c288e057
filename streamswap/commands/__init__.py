"""CLI command groups; `streamswap.cli` wires them into one app."""
