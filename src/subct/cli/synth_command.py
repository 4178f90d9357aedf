"""``subct synth LABELMAP... -o OUT -n N``: write synthetic training images to look at.

Thin layer over :func:`subct.synth.export.write_synthetic_samples`: builds a
:class:`subct.synth.SynthConfig` from an optional YAML file plus the command-line
overrides, then writes N image/label NIfTI pairs and a PNG mosaic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from subct.cli.console import make_console
from subct.errors import SubctConfigError, SubctInputError


def build_config(
    config_file: Path | None,
    mode: str | None,
    shape: tuple[int, int, int] | None,
    scheme: str | None,
    ct_noise_probability: float | None,
    pathology: str | None = None,
    scanner: bool = False,
) -> Any:
    """SynthConfig from a YAML file (whole file or its ``synth:`` block) plus overrides."""
    from pydantic import ValidationError

    from subct.synth import SynthConfig

    values: dict[str, Any] = {}
    if config_file is not None:
        if not config_file.is_file():
            raise SubctInputError(config_file, "no such configuration file")
        try:
            loaded = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise SubctInputError(config_file, f"not valid YAML ({error})") from error
        if not isinstance(loaded, dict):
            raise SubctInputError(config_file, "expected a mapping of synth settings")
        values = dict(loaded.get("synth", loaded))
    if mode is not None:
        values["mode"] = mode
    if shape is not None:
        values["output_shape"] = shape
    if scheme is not None:
        values["target_scheme"] = scheme
    if ct_noise_probability is not None:
        ct = dict(values.get("ct", {}))
        ct["noise"] = {**dict(ct.get("noise", {})), "probability": ct_noise_probability}
        values["ct"] = ct
    try:
        config = SynthConfig.from_dict(values)
        if pathology:
            from subct.synth.config import PathologyConfig

            kinds = [kind.strip() for kind in pathology.split(",") if kind.strip()]
            source = PathologyConfig.clinical()
            config.pathology = (source if kinds == ["clinical"] else source.only(kinds))
        if scanner:
            from subct.synth.config import ScannerConfig

            config.scanner = ScannerConfig.clinical()
        return config
    except ValueError as error:
        if not isinstance(error, ValidationError):
            raise SubctConfigError(f"--pathology: {error}") from error
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SubctConfigError(f"invalid synth setting {where}: {first['msg']}") from error


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        label_maps: list[Path] = typer.Argument(
            ..., help="Whole-head label maps (FreeSurfer IDs + extra-cerebral 502-530)."),
        output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
        count: int = typer.Option(4, "-n", "--count", min=1, help="Number of samples."),
        mode: str | None = typer.Option(None, "--mode", help="ct (default) or generic."),
        seed: int | None = typer.Option(None, "--seed", help="Seed for reproducible output."),
        shape: tuple[int, int, int] | None = typer.Option(
            None, "--shape", help="Output crop X Y Z in voxels (1 mm); default 160 160 160."),
        scheme: str | None = typer.Option(
            None, "--scheme", help="Target scheme: canonical, merged or paper7."),
        config_file: Path | None = typer.Option(
            None, "--config", help="YAML with SynthConfig settings (or a 'synth:' block)."),
        background: Path | None = typer.Option(
            None, "--background",
            help="Whole-head map that hosts subcortical-only label maps."),
        ct_noise: float | None = typer.Option(
            None, "--ct-noise", min=0.0, max=1.0,
            help="Probability of CT projection noise (FBP) per sample."),
        device: str = typer.Option("cpu", "--device", help="torch device, e.g. cuda."),
        pathology: str | None = typer.Option(
            None, "--pathology",
            help="Comma-separated kinds drawn in every sample: infarct, "
                 "white_matter_hypodensity, ventricle_enlargement, sulcal_widening, "
                 "haemorrhage, calcification; or 'clinical' for the training mix."),
        scanner: bool = typer.Option(
            False, "--scanner", help="Clinical scanner effects (noise, kernels, streaks, "
                                     "partial field of view) at training probabilities."),
    ) -> None:
        """Write N synthetic image/label NIfTI pairs and a PNG mosaic of them."""

        from subct.synth.export import write_synthetic_samples

        if mode is not None and mode not in ("ct", "generic"):
            raise SubctConfigError(f"--mode must be ct or generic, not {mode!r}")
        config = build_config(config_file, mode, shape, scheme, ct_noise, pathology, scanner)
        console = make_console(stderr=True)
        with console.status(f"generating {count} samples") as status:
            result = write_synthetic_samples(
                label_maps, output, count, config=config, seed=seed, background=background,
                device=device,
                progress=lambda done: status.update(f"generated {done}/{count} samples"),
            )
        typer.echo(f"wrote {len(result.image_paths)} image/label pairs to {output}")
        if result.mosaic_path is not None:
            typer.echo(f"mosaic: {result.mosaic_path}")
