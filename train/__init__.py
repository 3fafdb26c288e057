"""Training the GHOST generator: `python -m train`."""
