"""The ``samkit`` command: the Typer app, ``--version`` and the error handling.

Every :class:`samkit.SamkitError` raised while a command runs is reported as exactly one
line ``samkit: error: <message>`` on stderr with exit status 2 (the status Typer uses for
usage errors too). Set ``SAMKIT_DEBUG=1`` to let the exception propagate with its
traceback instead.
"""

from __future__ import annotations

from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from samkit.cli import auto, models, segment, synth, track, train
from samkit.cli import eval as eval_cmd
from samkit.cli.common import DEBUG_ENV, EXIT_ERROR, debug_enabled, one_line
from samkit.errors import SamkitError


class SamkitGroup(TyperGroup):
    """Top-level command group that turns samkit errors into one-line messages."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SamkitError as exc:
            if debug_enabled():
                raise
            click.echo(f"samkit: error: {one_line(exc)}", err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    name="samkit",
    cls=SamkitGroup,
    help=(
        "Promptable segmentation with the Segment Anything family: official checkpoints, "
        "same outputs, faster.\n\n"
        f"Errors are reported on one line with exit status {EXIT_ERROR}; "
        f"set {DEBUG_ENV}=1 to see the full traceback."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("models")(models.list_models_command)
app.command("download")(models.download_command)
app.command("segment")(segment.segment_command)
app.command("auto")(auto.auto_command)
app.command("track")(track.track_command)
app.command("eval")(eval_cmd.eval_command)
app.command("train")(train.train_command)
app.command("synth")(synth.synth_command)


def _version_callback(value: bool) -> None:
    if value:
        from samkit import __version__

        typer.echo(f"samkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the samkit version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Promptable segmentation with the Segment Anything family."""


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``samkit``); ``argv`` defaults to ``sys.argv[1:]``."""
    app(args=argv, prog_name="samkit")


if __name__ == "__main__":  # pragma: no cover
    main()
