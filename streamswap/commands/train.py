"""`streamswap train ...`: the training app of the `train` package (prepare, fit, export)."""

from __future__ import annotations

from streamswap.app import app
from train.cli import train_app

app.add_typer(train_app, name="train")
