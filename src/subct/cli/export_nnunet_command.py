"""``subct export-nnunet`` / ``subct nnunet-to-labels``: to and from nnU-Net v2.

Either synthetic CT from label maps (``--label-maps``) or CT + label-map folders
(``--images`` / ``--labels``). The result is ready for
``nnUNetv2_plan_and_preprocess -d ID --verify_dataset_integrity``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from subct.cli.console import make_console, plain
from subct.errors import SubctConfigError


def register(app: typer.Typer) -> None:
    """Add ``subct export-nnunet`` to the CLI."""

    @app.command("export-nnunet")
    def export_nnunet_command(
        output_root: Path = typer.Argument(..., help="The nnUNet_raw folder."),
        dataset_id: int = typer.Option(..., "--id", help="nnU-Net dataset number (1..999)."),
        name: str = typer.Option("SubctCT", "--name", help="Dataset name."),
        label_maps: list[Path] = typer.Option(
            [], "--label-maps", help="Label maps to synthesise CT from (repeatable)."),
        samples_per_map: int = typer.Option(5, "--samples-per-map",
                                            help="Synthetic CTs per label map."),
        images: Path | None = typer.Option(None, "--images", help="Folder of CTs (HU)."),
        labels: Path | None = typer.Option(None, "--labels",
                                           help="Folder of label maps matching --images."),
        label_tool: str = typer.Option("freesurfer", "--label-tool",
                                       help="What the label values mean (freesurfer, ...)."),
        scheme: str = typer.Option("canonical", "--scheme",
                                   help="canonical (17), merged (9) or paper7 (7)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the split and the synthesis."),
        shape: tuple[int, int, int] = typer.Option(
            (160, 160, 160), "--shape", help="Synthetic image size in voxels (1 mm)."),
    ) -> None:
        """Export training data in nnU-Net v2 raw layout (dataset.json, imagesTr, labelsTr)."""
        from subct.dataset.nnunet import (
            NnunetExportConfig,
            check_nnunet_raw,
            export_pairs,
            export_synthetic,
        )

        config = NnunetExportConfig(output_root=output_root, dataset_id=dataset_id,
                                    dataset_name=name, label_scheme=scheme, seed=seed,
                                    synth={"output_shape": list(shape)})
        console = make_console(stderr=True)
        failures: list[str] = []
        if label_maps and (images or labels):
            raise SubctConfigError("use either --label-maps or --images/--labels, not both")
        if label_maps:
            folder = export_synthetic(label_maps, samples_per_map, config)
        elif images is not None and labels is not None:
            folder, failures = export_pairs(images, labels, config, label_tool)
        else:
            raise SubctConfigError("give --label-maps, or both --images and --labels")
        problems = check_nnunet_raw(folder)
        console.print(f"wrote {plain(folder)}")
        for line in failures + problems:
            console.print(f"[red]{plain(line)}[/]")
        if failures or problems:
            raise typer.Exit(1)

    @app.command("nnunet-to-labels")
    def nnunet_to_labels_command(
        predictions: Path = typer.Argument(..., help="Folder of nnU-Net predictions."),
        output: Path = typer.Argument(..., help="Folder for FreeSurfer-ID label maps."),
        dataset_json: Path = typer.Option(..., "--dataset-json",
                                          help="The dataset.json the network was trained on."),
    ) -> None:
        """Convert nnU-Net predictions (class indices) to FreeSurfer IDs for subct evaluate."""
        from subct.dataset.nnunet import nnunet_predictions_to_labels

        written, failures = nnunet_predictions_to_labels(predictions, dataset_json, output)
        console = make_console(stderr=True)
        console.print(f"wrote {len(written)} label maps to {plain(output)}")
        for line in failures:
            console.print(f"[red]{plain(line)}[/]")
        if failures:
            raise typer.Exit(1)
