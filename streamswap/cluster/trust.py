"""What a worker must share with the driver before it runs a chunk: the same StreamSwap version
and the same model files.

The driver sends `job_identity(options, engine)` to every worker it starts; the worker computes
its own and refuses the job, with one line, when they differ (`refusal`). So a machine with
another StreamSwap, or with other weights under the same model name, cannot mix its frames into
the output. Model hashes are the SHA-256 the model cache verifies files against (the catalogue's
or the pin recorded on first use, `models.registry`), the file's own hash where no pin exists yet
(and for a `--generator` file of one's own or the lite engine's dlib files, which are not in the
cache).

This is a consistency check, not a defence: joining a Ray cluster means trusting every member of
it (any member can run any code on the others).
"""

from __future__ import annotations

from typing import Any

from streamswap import __version__


def model_hashes(options: Any, engine: str) -> dict[str, str | None]:
    """{model file: SHA-256 or None (unknown here)} of the files engine `engine` loads."""
    from streamswap.engines.registry import engine_named

    return engine_named(engine).model_files(options)


def job_identity(options: Any, engine: str) -> dict[str, Any]:
    """What every worker of the job must match: {"version": ..., "models": {file: sha256}}."""
    return {"version": __version__, "models": model_hashes(options, engine)}


def refusal(expected: dict[str, Any], mine: dict[str, Any], *, worker: int, host: str) -> str | None:
    """Why this worker refuses the driver's job (one line), or None when it matches. A model the
    driver does not know the hash of is not compared (the worker still verifies it on loading)."""
    who = f"worker {worker} on {host}"
    if mine["version"] != expected["version"]:
        return (
            f"{who} runs streamswap {mine['version']}, the driver {expected['version']}: install the same "
            "version on every machine of the cluster"
        )
    for name, want in sorted(expected["models"].items()):
        have = mine["models"].get(name)
        if want is None or have == want:
            continue
        if have is None:
            return (
                f"{who} has no verified {name} (the driver's SHA-256 is {want[:16]}...): fetch the same file "
                "there (`streamswap models fetch`) or copy the driver's model cache"
            )
        return (
            f"{who} has another {name} (SHA-256 {have[:16]}..., the driver's {want[:16]}...): use the same "
            "model files on every machine of the cluster"
        )
    return None


__all__ = ["job_identity", "model_hashes", "refusal"]
