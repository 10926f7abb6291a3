"""The ``samkit`` command: the Typer app, ``--version`` and the error handling.

Every :class:`samkit.SamkitError` raised while a command runs, and every usage error
(unknown option, missing argument, bad choice), is reported as exactly one line
``samkit: error: <message>`` on stderr with exit status 2. Set ``SAMKIT_DEBUG=1`` to let
a samkit error propagate with its traceback instead.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from samkit.cli import auto, models, segment, synth, track, train
from samkit.cli import eval as eval_cmd
from samkit.cli.common import DEBUG_ENV, EXIT_ERROR, debug_enabled, one_line
from samkit.errors import SamkitError


class SamkitGroup(TyperGroup):
    """Top-level command group that turns samkit errors into one-line messages."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SamkitError as exc:
            if debug_enabled():
                raise
            typer.echo(f"samkit: error: {one_line(exc)}", err=True)
            raise typer.Exit(EXIT_ERROR) from None

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's entry point, with usage errors (unknown option, missing argument, a
        value outside its choices) also reported as one line, ``samkit: error: <message>
        (see 'samkit segment -h')``, exit status 2, instead of Typer's framed panel."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("samkit: aborted", err=True)
            sys.exit(1)
        except typer.TyperException as exc:  # Typer's (vendored) click exceptions
            if type(exc).__name__ == "NoArgsIsHelpError":  # `samkit` alone: the help screen
                return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
            format_message = getattr(exc, "format_message", None)
            text = format_message() if callable(format_message) else str(exc)
            message = " ".join(part.strip() for part in text.splitlines() if part.strip())
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
            typer.echo(f"samkit: error: {message}{hint}", err=True)
            sys.exit(getattr(exc, "exit_code", EXIT_ERROR))
        if rv == EXIT_INTERRUPTED:  # Typer's answer to Ctrl-C (KeyboardInterrupt)
            typer.echo("samkit: interrupted (outputs written so far are complete)", err=True)
        sys.exit(rv if isinstance(rv, int) else 0)


#: Exit status after Ctrl-C (128 + SIGINT, the shell convention Typer follows).
EXIT_INTERRUPTED = 130

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


def command_help(func: Callable[..., Any]) -> str:
    """A command's docstring as help text whose prose reflows to the terminal's width.

    Typer keeps every line break inside a paragraph, so docstring lines wrapped for the
    source file came out ragged in narrower terminals: here the lines of a prose paragraph
    are joined with spaces, and indented lines (examples) keep their own lines. Typer also
    dedents everything after the first paragraph by the indentation common to its lines
    but the first; an empty second paragraph makes that first line a blank one, so the
    examples keep their indentation (Typer drops the leading blank lines).
    """
    first, *rest = inspect.cleandoc(func.__doc__ or "").split("\n\n")
    paragraphs = [" ".join(line.strip() for line in first.split("\n"))]
    if rest:
        paragraphs.append("")
    for para in rest:
        lines = para.split("\n")
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(para)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


for _name, _func in (
    ("models", models.list_models_command),
    ("download", models.download_command),
    ("segment", segment.segment_command),
    ("auto", auto.auto_command),
    ("track", track.track_command),
    ("eval", eval_cmd.eval_command),
    ("train", train.train_command),
    ("synth", synth.synth_command),
):
    app.command(_name, help=command_help(_func))(_func)


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


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """Warnings (e.g. Pillow's ``DecompressionBombWarning`` for a very large image) as one
    ``samkit: warning: ...`` line instead of Python's two lines naming library source."""
    text = " ".join(str(message).split())
    return f"samkit: warning: {category.__name__}: {text}\n"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``samkit``); ``argv`` defaults to ``sys.argv[1:]``.

    The process's warnings are printed one line each (the library itself changes no
    global setting; this is the command-line program's own process)."""
    if not debug_enabled():
        warnings.formatwarning = _one_line_warning
    app(args=argv, prog_name="samkit")


if __name__ == "__main__":  # pragma: no cover
    main()
