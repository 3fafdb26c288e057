"""The model cache: where each model file is, whether it is the file we pinned, and fetching it.

Layout under `home` (`$STREAMSWAP_HOME`, default `~/.cache/streamswap`):

    models/NAME.ext          a single-file model
    models/PACK/NAME.ext     a file extracted from an insightface pack
    models.lock.json         SHA-256 pinned on first use, for files the catalogue has no hash for

Lookup order for a file: `models_dir` (a folder the user filled by hand, read-only to us),
then the cache. Verification: against the catalogue's hash when it has one, else against the
lock file's entry (trust on first use), else the file is pinned now. A download is pinned only
after `trust` accepted it (size range, format, completeness); fetching holds `NAME.lock` beside
the file, so concurrent fetchers (Ray actors, two CLIs) download it once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

from streamswap.errors import ModelError
from streamswap.files import sha256_of
from streamswap.models.catalog import MODELS, ModelSpec, Pack, find_model, find_pack
from streamswap.models.download import DownloadSettings, Progress, download
from streamswap.models.files import disk_error, exclusive, temp_beside
from streamswap.models.trust import HEAD_BYTES, Expect, format_problem

LOCK_NAME = "models.lock.json"


@dataclass(frozen=True)
class RegistryConfig:
    """Where models live and whether the network may be used."""

    home: Path
    models_dir: Path | None = None
    offline: bool = False
    mirror: str | None = None  # replaces the release hosts' prefix, e.g. an internal mirror
    download: DownloadSettings = field(default_factory=DownloadSettings)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, models_dir: Path | None = None, offline: bool | None = None
    ) -> RegistryConfig:
        """Settings from `STREAMSWAP_HOME`, `STREAMSWAP_MODELS_DIR`, `STREAMSWAP_OFFLINE`,
        `STREAMSWAP_MIRROR`, `STREAMSWAP_DOWNLOAD_ATTEMPTS`; explicit arguments (CLI flags) win."""
        env = os.environ if env is None else env
        home = Path(env.get("STREAMSWAP_HOME") or Path.home() / ".cache" / "streamswap").expanduser()
        mdir = models_dir or (Path(env["STREAMSWAP_MODELS_DIR"]) if env.get("STREAMSWAP_MODELS_DIR") else None)
        off = offline if offline is not None else env.get("STREAMSWAP_OFFLINE", "") not in ("", "0", "false")
        attempts = env.get("STREAMSWAP_DOWNLOAD_ATTEMPTS", "")
        settings = DownloadSettings(attempts=max(1, int(attempts))) if attempts.isdigit() else DownloadSettings()
        return cls(
            home=home,
            models_dir=mdir.expanduser() if mdir else None,
            offline=off,
            mirror=env.get("STREAMSWAP_MIRROR") or None,
            download=settings,
        )


class Status(str, Enum):
    """What `verify` found for one model."""

    MISSING = "missing"
    VERIFIED = "verified"  # matches the catalogue hash or the pinned hash
    PINNED_NOW = "pinned now"  # present, no hash known before: pinned on this check
    MISMATCH = "MISMATCH"


@dataclass(frozen=True)
class ModelState:
    """One row of `models list`: the spec, where the file is (if anywhere) and its status."""

    spec: ModelSpec
    path: Path | None
    status: Status
    hash_source: str  # "catalogue", "pinned on first use YYYY-MM-DD", "not yet pinned"
    size: int | None


class Registry:
    """The model cache. Construct with a `RegistryConfig`; no state outside the cache folder."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config

    # -- where things are -------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.config.home / "models"

    @property
    def lock_path(self) -> Path:
        return self.config.home / LOCK_NAME

    def spec(self, name: str) -> ModelSpec:
        """The catalogue entry for `name`; `ModelError` listing the known names otherwise."""
        spec = find_model(name)
        if spec is None:
            known = ", ".join(m.name for m in MODELS)
            raise ModelError(f"unknown model {name!r}; known models: {known}")
        return spec

    def _candidates(self, spec: ModelSpec) -> list[Path]:
        rel = [Path(spec.filename)] + ([Path(spec.pack) / spec.filename] if spec.pack else [])
        roots = ([self.config.models_dir] if self.config.models_dir else []) + [self.cache_dir]
        return [root / r for root in roots for r in rel]

    def find(self, spec: ModelSpec) -> Path | None:
        """The local file for `spec`, or None when it is nowhere."""
        return next((p for p in self._candidates(spec) if p.is_file()), None)

    def cache_path(self, spec: ModelSpec) -> Path:
        return self.cache_dir / spec.pack / spec.filename if spec.pack else self.cache_dir / spec.filename

    def url(self, item: ModelSpec | Pack) -> str:
        url = item.url
        if url is None:  # a pack member (a Pack always has a url)
            assert isinstance(item, ModelSpec)
            url = self._pack(item).url
        if self.config.mirror:
            tail = url.split("/releases/download/", 1)[-1]
            url = self.config.mirror.rstrip("/") + "/" + tail
        return url

    def _pack(self, spec: ModelSpec) -> Pack:
        pack = find_pack(spec.pack or "")
        if pack is None:
            raise ModelError(f"{spec.name}: its pack {spec.pack!r} is not in the catalogue")
        return pack

    # -- the lock file (trust on first use) -----------------------------------------------
    def read_lock(self) -> dict[str, dict[str, str | int]]:
        try:
            data = json.loads(self.lock_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"the lock file {self.lock_path} is unreadable ({exc}); move it away to "
                "re-pin every model on its next use"
            ) from exc
        return data if isinstance(data, dict) else {}

    def _pin(self, filename: str, digest: str, size: int, source: str) -> None:
        try:
            self.config.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise disk_error(exc, self.config.home) from exc
        # read-modify-write: two processes pinning different files must not drop each other's entry
        with exclusive(self.lock_path.with_name(LOCK_NAME + ".lock"), LOCK_NAME):
            lock = self.read_lock()
            lock[filename] = {
                "sha256": digest,
                "size": size,
                "source": source,
                "pinned": datetime.now(UTC).strftime("%Y-%m-%d"),
            }
            _atomic_write_text(self.lock_path, json.dumps(lock, indent=2, sort_keys=True) + "\n")

    def expected_hash(self, item: ModelSpec | Pack) -> tuple[str | None, str]:
        """(hash or None, where it comes from) for a model or pack."""
        if item.sha256:
            return item.sha256, "catalogue"
        entry = self.read_lock().get(item.filename)
        if entry:
            return str(entry["sha256"]), f"pinned on first use {entry.get('pinned', '')}".strip()
        return None, "not yet pinned"

    # -- checking ----------------------------------------------------------------------
    def state(self, spec: ModelSpec) -> ModelState:
        """Where `spec` is and whether it matches its hash (re-hashes the file; pins it if no hash
        is known yet)."""
        path = self.find(spec)
        expected, source = self.expected_hash(spec)
        if path is None:
            return ModelState(spec, None, Status.MISSING, source, None)
        size = path.stat().st_size
        digest = sha256_of(path)
        if expected is None:
            self._pin(spec.filename, digest, size, str(path))
            _, source = self.expected_hash(spec)
            return ModelState(spec, path, Status.PINNED_NOW, source, size)
        status = Status.VERIFIED if digest == expected else Status.MISMATCH
        return ModelState(spec, path, status, source, size)

    def states(self) -> list[ModelState]:
        return [self.state(spec) for spec in MODELS]

    def path(self, name: str) -> Path:
        """The local path of model `name`; `ModelError` (saying how to get it) when absent."""
        spec = self.spec(name)
        path = self.find(spec)
        if path is None:
            raise ModelError(
                f"model {spec.name} ({spec.filename}) is not in {self.cache_dir}"
                + (f" or {self.config.models_dir}" if self.config.models_dir else "")
                + f"; run `streamswap models fetch {spec.name}` or download {self.url(spec)} "
                "and pass its folder with --models-dir"
            )
        return path

    def require(self, name: str) -> Path:
        """The local path of model `name`, fetched if absent and allowed, always verified."""
        spec = self.spec(name)
        if self.find(spec) is None:
            self.fetch(spec.name)
        state = self.state(spec)
        if state.status is Status.MISMATCH:
            raise ModelError(
                f"{state.path} does not match its pinned SHA-256 ({state.hash_source}); "
                "delete it and run `streamswap models fetch " + spec.name + "`"
            )
        assert state.path is not None
        return state.path

    # -- fetching ----------------------------------------------------------------------
    def fetch(self, name: str, progress: Progress | None = None, *, force: bool = False) -> Path:
        """Download model `name` into the cache (its pack, for pack members) and verify it."""
        spec = self.spec(name)
        existing = self.find(spec)
        if existing is not None and not force:
            return existing
        pack = self._pack(spec) if spec.pack else None
        item: ModelSpec | Pack = spec if pack is None else pack
        url = self.url(item)
        if self.config.offline:
            raise ModelError(
                f"offline (STREAMSWAP_OFFLINE=1): {item.filename} is not in {self.cache_dir}; "
                f"fetch {url} on another machine and pass its folder with --models-dir"
            )
        self._check_writable()
        with self._fetching(item):
            existing = self.find(spec)  # a concurrent fetcher may have finished while we waited
            if existing is not None and not force:
                return existing
            expected, _ = self.expected_hash(item)  # re-read: that fetcher may have pinned it
            if pack is not None:
                self._fetch_pack(pack, url, expected, progress)
            else:
                dest = self.cache_path(spec)
                digest = download(
                    url,
                    dest,
                    expected_sha256=expected,
                    expect=self.expectation(spec),
                    settings=self.config.download,
                    progress=progress,
                )
                if expected is None:
                    self._pin(spec.filename, digest, dest.stat().st_size, url)
        return self.path(spec.name)

    def expectation(self, item: ModelSpec | Pack) -> Expect:
        """What a download of `item` must look like: the catalogue's size range and its format."""
        return Expect.for_file(item.filename, item.size_range)

    @contextmanager
    def _fetching(self, item: ModelSpec | Pack) -> Iterator[None]:
        """Exclusive right to fetch `item`: `NAME.lock` beside its download target."""
        lock = self.cache_dir / (item.filename + ".lock")
        with exclusive(lock, item.filename):
            yield

    def _fetch_pack(self, pack: Pack, url: str, expected: str | None, progress: Progress | None) -> None:
        archive = self.cache_dir / pack.filename
        digest = download(
            url,
            archive,
            expected_sha256=expected,
            expect=self.expectation(pack),
            settings=self.config.download,
            progress=progress,
        )
        size = archive.stat().st_size
        try:
            _extract_flat(archive, self.cache_dir / pack.name)
        except zipfile.BadZipFile as exc:
            raise ModelError(
                f"{pack.filename} from {url} is not a valid zip archive; it was removed and "
                "not pinned; check the URL (or STREAMSWAP_MIRROR) and retry"
            ) from exc
        finally:
            archive.unlink(missing_ok=True)  # the members are what we keep
        members = [(spec, self.cache_path(spec)) for spec in MODELS if spec.pack == pack.name]
        members = [(spec, path) for spec, path in members if path.is_file()]
        bad = [(spec, problem) for spec, path in members if (problem := _member_problem(path))]
        if bad:  # nothing of a pack with a wrong member is kept or pinned
            for _, path in members:
                path.unlink(missing_ok=True)
            spec, problem = bad[0]
            raise ModelError(
                f"{spec.filename} in {pack.filename} from {url} is {problem}; the pack was removed "
                "and nothing pinned; check the URL (or STREAMSWAP_MIRROR) and retry"
            )
        if expected is None:
            self._pin(pack.filename, digest, size, url)
        for spec, path in members:
            if self.expected_hash(spec)[0] is None:
                self._pin(spec.filename, sha256_of(path), path.stat().st_size, f"{url}!{spec.filename}")

    def _check_writable(self) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.cache_dir, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise ModelError(
                f"the model cache {self.cache_dir} is not writable ({exc.strerror or exc}); "
                "set STREAMSWAP_HOME to a writable folder"
            ) from exc


def _extract_flat(archive: Path, dest: Path) -> None:
    """Extract the files of a zip into `dest` by base name (insightface packs nest a folder).

    Member names are never joined to paths, so a hostile archive cannot write outside `dest`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = Path(info.filename).name
            if info.is_dir() or not name or name.startswith("."):
                continue
            fd, tmp = temp_beside(dest / name)  # a random O_EXCL name: no planted symlink is followed
            try:
                with zf.open(info) as src, os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                os.replace(tmp, dest / name)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise


def _member_problem(path: Path) -> str | None:
    """Why an extracted pack member is not of its suffix's format, or None."""
    with open(path, "rb") as f:
        return format_problem(f.read(HEAD_BYTES), Expect.for_file(path.name))


def _atomic_write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
    except OSError as exc:
        raise disk_error(exc, path) from exc
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
