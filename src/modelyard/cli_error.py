"""How the `modelyard` command fails: one exception type, shown once as `error: MESSAGE`
with no traceback, exit code 1 (2 for a bad option). The command group translates what the
library and the client raise (`ModelyardError`, `ClientError`) and its own option checks
(`click.BadParameter`) into it, in one place."""

from __future__ import annotations

from typing import IO, Any

import click

from modelyard.client import ClientError
from modelyard.errors import ModelyardError


class CLIError(click.ClickException):
    """A user-facing failure of a command."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class BadOption(CLIError):
    """An option's value that does not read."""

    exit_code = 2


class Commands(click.Group):
    """The command group: every failure inside a command becomes a `CLIError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ModelyardError, ClientError) as exc:
            raise CLIError(exc.message) from None
        except click.BadParameter as exc:
            raise BadOption(exc.format_message()) from None
