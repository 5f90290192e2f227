"""Change what a repository holds: pull a model in, copy one under a new name, delete one.

New entries go into the first repository folder. An entry is written beside the repository
(a hidden `.pull-*` folder the scanner skips) and renamed into place whole, so a half-written
model is never served. A copy shares the model's files by hard links; a delete unloads the
model (waiting for the requests it serves) before removing its files. Not in model control
mode `none`, where nothing loads a model after start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ModelyardError,
    NotFound,
)
from modelyard.repository.catalog import file_digest
from modelyard.repository.manager import ModelRepository
from modelyard.repository.sources import PullSource, link_or_copy, resolve

log = logging.getLogger("modelyard.repository")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
#: Seconds between progress reports while a pull writes.
PROGRESS_EVERY_S = 0.2


@dataclass
class Progress:
    """One step of a pull: what is happening, and for the transfer, bytes done of total."""

    status: str
    digest: str = ""
    total: int = 0
    completed: int = 0


class ModelStore:
    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository
        self._writing = asyncio.Lock()

    @property
    def root(self) -> Path:
        return self.repository.roots[0]

    # ---- copy and delete ---------------------------------------------------------------------

    async def copy(self, source: str, destination: str) -> None:
        self._check_writable("copy")
        check_name(destination)
        entry = self.repository.entry(source)
        async with self._writing:
            self._check_free(destination)
            origin = entry.source.path
            target = self.root / (
                f"{destination}{origin.suffix}" if origin.is_file() else destination
            )
            await asyncio.to_thread(_copy_entry, origin, target, source, destination)
            self.repository.register(destination)
        log.info("copied model %s to %s (%s)", source, destination, target)

    async def delete(self, name: str) -> None:
        self._check_writable("delete")
        path = self.repository.entry(name).source.path
        async with self._writing:
            await self.repository.forget(name)
            await asyncio.to_thread(_remove, path)
        log.info("deleted model %s (%s)", name, path)

    # ---- pull ----------------------------------------------------------------------------------

    async def pull(self, spec: str, name: str | None = None) -> AsyncGenerator[Progress, None]:
        """Progress of pulling the model `spec` names into the repository as `name` (the
        source's own name by default)."""
        self._check_writable("pull")
        source = await asyncio.to_thread(resolve, spec)
        name = name or source.name
        check_name(name)
        yield Progress("pulling manifest")
        async with self._writing:
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".pull-"))
            try:
                target = staging / source.entry(name)
                async for step in _transfer(source, target):
                    yield step
                await asyncio.to_thread(rename_in_config, target, source.name, name)
                yield Progress("verifying sha256 digest")
                digest = await asyncio.to_thread(_main_file_digest, target)
                if source.digest and digest != source.digest:
                    raise InvalidArgument(
                        f"the pulled file's sha256 {digest} is not the expected {source.digest}"
                    )
                yield Progress("writing manifest")
                await self._install(target, name)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info("pulled %s into the repository as %s", spec, name)
        yield Progress("success")

    async def _install(self, staged: Path, name: str) -> None:
        if name in self.repository.entries:  # a new pull replaces the model
            old = self.repository.entry(name).source.path
            await self.repository.forget(name)
            await asyncio.to_thread(_remove, old)
        self._check_free(name)
        staged.rename(self.root / staged.name)
        self.repository.register(name)

    # ---- checks --------------------------------------------------------------------------------

    def _check_writable(self, action: str) -> None:
        if self.repository.control_mode == "none":
            raise FailedPrecondition(
                f"cannot {action} models in model control mode 'none' (models load only at "
                "start); start the server with --model-control-mode ondemand"
            )

    def _check_free(self, name: str) -> None:
        if name in self.repository.entries or any(
            p.name == name or (p.is_file() and p.stem == name) for p in self.root.iterdir()
        ):
            raise InvalidArgument(f"a model named {name!r} already exists; delete it first")


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"{name!r} is not a valid model name: letters, digits and . _ : + - only, "
            "starting with a letter or digit, at most 128 characters"
        )


async def _transfer(source: PullSource, target: Path) -> AsyncIterator[Progress]:
    """Run the source's fetch on a thread, reporting the bytes that appear at `target`."""
    digest = f"sha256:{source.digest}" if source.digest else ""
    status = f"pulling {source.digest[:12]}" if source.digest else f"pulling {source.name}"
    job = asyncio.ensure_future(asyncio.to_thread(source.fetch, target))
    try:
        while not job.done():
            done = await asyncio.to_thread(_bytes_under, target)
            yield Progress(status, digest, source.total, min(done, source.total or done))
            await asyncio.wait([job], timeout=PROGRESS_EVERY_S)
        job.result()
    except ModelyardError:
        raise
    except Exception as exc:  # the file system's or the package's own errors
        raise Internal(f"pulling {source.name} failed: {exc}") from exc
    finally:
        if not job.done():  # the client went away: drop what the thread goes on writing
            job.add_done_callback(lambda _: shutil.rmtree(target.parent, ignore_errors=True))
    total = await asyncio.to_thread(_bytes_under, target)
    yield Progress(status, digest, source.total or total, source.total or total)


def _bytes_under(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


def _main_file_digest(entry: Path) -> str:
    """The sha256 of the entry's model file: the file itself, or the biggest in its folder."""
    if entry.is_file():
        return file_digest(entry)
    files = [p for p in entry.rglob("*") if p.is_file()]
    return file_digest(max(files, key=lambda p: p.stat().st_size)) if files else ""


def _copy_entry(origin: Path, target: Path, old: str, new: str) -> None:
    if origin.is_file():
        link_or_copy(origin, target)
        return
    shutil.copytree(origin, target, copy_function=link_or_copy)
    rename_in_config(target, old, new)


def rename_in_config(folder: Path, old: str, new: str) -> None:
    """A Triton config may name its model: in a copy it must name the copy."""
    pbtxt = folder / "config.pbtxt"
    if old == new or not pbtxt.is_file():
        return
    text = pbtxt.read_text()
    pbtxt.unlink()  # the link, not the original
    pattern = rf'^(\s*name\s*:\s*)"{re.escape(old)}"'
    pbtxt.write_text(re.sub(pattern, rf'\g<1>"{new}"', text, flags=re.MULTILINE))


def _remove(path: Path) -> None:
    if not path.exists():
        raise NotFound(f"{path} is already gone")
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
