"""The ``subct`` command line: a thin typer layer over the Python API.

Each command lives in its own module of this package and registers itself on
:data:`app`. Errors that are the user's to fix (:class:`subct.errors.SubctError`)
print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from subct import __version__
from subct.errors import SubctError

app = typer.Typer(
    name="subct",
    help="Segment subcortical brain structures in head CT, and build/train the models that do it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": False}

#: Command modules, each defining ``register(app)``. Order = order in ``subct --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "subct.cli.segment_command",
    "subct.cli.demo_command",
    "subct.cli.info_command",
    "subct.cli.evaluate_command",
    "subct.cli.mri_seg_command",
    "subct.cli.fuse_command",
    "subct.cli.register_command",
    "subct.cli.synth_command",
    "subct.cli.build_dataset_command",
    "subct.cli.train_command",
    "subct.cli.average_command",
    "subct.cli.export_onnx_command",
    "subct.cli.export_nnunet_command",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"subct {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
    ),
) -> None:
    """subct: subcortical segmentation of head CT."""
    _state["debug"] = debug


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``subct`` executable."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # With standalone_mode=False click returns the code of a raised typer.Exit.
        exit_code = app(args=args, standalone_mode=False)
    except SubctError as error:
        if debug:
            raise
        error_console.print(f"[bold red]error:[/] {error}", markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as error:  # click usage errors carry their own exit code
        import click

        if isinstance(error, click.ClickException):
            error.show()
            sys.exit(2)
        if isinstance(error, click.exceptions.Exit):
            sys.exit(error.exit_code)
        raise
    sys.exit(exit_code if isinstance(exit_code, int) else 0)
