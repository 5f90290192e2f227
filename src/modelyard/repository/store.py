"""Change the files a repository holds: pull a model in, copy one under a new name, remove
one. Only files: the core's model service unloads and lists models around these steps.

New entries go into the first repository folder. An entry is written beside the repository
(a hidden `.pull-*` folder the scanner skips) and renamed into place whole, so a half-written
model is never served. A copy shares the model's files by hard links.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelyard.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    ModelyardError,
    NotFound,
)
from modelyard.repository.catalog import file_digest
from modelyard.repository.scan import read_entry
from modelyard.repository.sources import PullSource, link_or_copy, resolve
from modelyard.runtimes import PICKLE_SUFFIXES

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


#: Puts a staged entry into place as model NAME (the model service's part of a pull).
Install = Callable[[Path, str], Awaitable[None]]


@dataclass(frozen=True)
class PullPolicy:
    """What a pull may bring in: paths only from inside `pull_from`; models that run code
    when loaded (Python models, pickles) only with `pull_code`. A pulled model's own config
    never widens trust: its `trust_pickle` is dropped."""

    pull_from: tuple[Path, ...] = ()
    pull_code: bool = False


def vet(entry: Path, name: str, pull_code: bool) -> None:
    """Check a staged entry against the policy and drop its own trust settings (blocking)."""
    source = read_entry(entry)
    if source is None or source.error:
        reason = source.error if source is not None else "not a model"
        raise InvalidArgument(f"the pulled {entry.name} is not a model modelyard serves: {reason}")
    runs_code = source.config.runtime in ("python", "torchserve") or any(
        p.suffix.lower() in PICKLE_SUFFIXES for p in source.versions.values()
    )
    if runs_code and not pull_code:
        raise FailedPrecondition(
            f"model {name!r} runs code when it loads (a Python model, a TorchServe archive or "
            "a pickle); start the server with --pull-code (MODELYARD_PULL_CODE=1) to pull such "
            "models"
        )
    _drop_trust(entry)


def _drop_trust(entry: Path) -> None:
    """A pulled config cannot say `trust_pickle`: only the operator can (--trust-pickle)."""
    yml, pbtxt = entry / "model.yaml", entry / "config.pbtxt"
    if yml.is_file():
        data = yaml.safe_load(yml.read_text()) or {}
        parameters = data.get("parameters") if isinstance(data, dict) else None
        places = [p for p in (data, parameters) if isinstance(p, dict) and "trust_pickle" in p]
        for place in places:
            del place["trust_pickle"]
        if places:
            yml.unlink()  # the link, not the original
            yml.write_text(yaml.safe_dump(data, sort_keys=False))
    if pbtxt.is_file() and "trust_pickle" in pbtxt.read_text():
        _drop_pbtxt_trust(pbtxt)


def _drop_pbtxt_trust(pbtxt: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    message = model_config_pb2.ModelConfig()
    text_format.Parse(pbtxt.read_text(), message)
    if "trust_pickle" in message.parameters:
        del message.parameters["trust_pickle"]
    pbtxt.unlink()
    pbtxt.write_text(text_format.MessageToString(message))


class ModelStore:
    """The files of the first repository folder; one change at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._writing = asyncio.Lock()

    async def copy(self, origin: Path, source: str, destination: str) -> None:
        """Copy the entry at `origin` (model `source`) as model `destination`."""
        check_name(destination)
        async with self._writing:
            self.check_free(destination)
            target = self.root / (
                f"{destination}{origin.suffix}" if origin.is_file() else destination
            )
            await asyncio.to_thread(_copy_entry, origin, target, source, destination)
        log.info("copied model %s to %s (%s)", source, destination, target)

    async def remove(self, path: Path) -> None:
        async with self._writing:
            await asyncio.to_thread(_remove, path)

    async def pull(
        self, spec: str, name: str | None, install: Install, policy: PullPolicy
    ) -> AsyncGenerator[Progress, None]:
        """Progress of pulling the model `spec` names into the repository as `name` (the
        source's own name by default); `install` puts the staged entry into place. What
        `policy` does not allow is refused before any byte moves, or before installing."""
        source = await asyncio.to_thread(resolve, spec, policy.pull_from)
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
                await asyncio.to_thread(vet, target, name, policy.pull_code)
                yield Progress("verifying sha256 digest")
                digest = await asyncio.to_thread(_main_file_digest, target)
                if source.digest and digest != source.digest:
                    raise InvalidArgument(
                        f"the pulled file's sha256 {digest} is not the expected {source.digest}"
                    )
                yield Progress("writing manifest")
                await install(target, name)
            finally:
                await asyncio.to_thread(shutil.rmtree, staging, True)
        log.info("pulled %s into the repository as %s", spec, name)
        yield Progress("success")

    def place(self, staged: Path, name: str) -> None:
        """Rename a staged entry into the repository (its name must be free)."""
        self.check_free(name)
        staged.rename(self.root / staged.name)

    def check_free(self, name: str) -> None:
        if any(p.name == name or (p.is_file() and p.stem == name) for p in self.root.iterdir()):
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
