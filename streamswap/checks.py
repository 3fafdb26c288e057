"""One finding of `streamswap doctor` (`Check`): engines report theirs with the same record."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One finding. `ok`: True works, False broken, None absent (fine unless `needed`)."""

    area: str
    ok: bool | None
    detail: str
    fix: str = ""
    needed: bool = False

    @property
    def fatal(self) -> bool:
        return self.needed and not self.ok
