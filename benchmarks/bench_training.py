"""Training and inference speed of the CT networks on this machine.

Measures, for a network configuration:

* forward time of one brain-centred inference crop (default 128×128×112 voxels at
  1 mm) with fp32 / bf16 autocast, default and channels_last_3d memory layout;
* training steps per second (forward + backward + Adam step, Dice+CE loss) at the
  training patch size, with the layouts above, on random tensors (data loading is
  measured separately: synthetic sample generation time at the patch size).

Usage::

    python benchmarks/bench_training.py --channels 16 32 64 128 256 \
        --crop 128 128 112 --patch 96 96 96 --batch 2 --repeats 3

Prints a Markdown table for ``docs/benchmarks.md``. Run on an idle machine; note the
``uptime`` load next to the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext

import torch

from subct.model.losses import build_loss
from subct.model.networks import build_network, count_parameters
from subct.model.runtime import autocast as subct_autocast


def _timed(function, repeats: int) -> float:  # type: ignore[no-untyped-def]
    function()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def end_to_end(config_path: str, steps: int) -> None:
    """Steps/s of the real training loop (data synthesis + step) on ``config_path``."""
    import tempfile

    from subct.training.config import load_training_config
    from subct.training.loop import train

    with tempfile.TemporaryDirectory() as output:
        config = load_training_config(config_path, [
            f"output_dir={output}", f"data.samples_per_epoch={steps}", "schedule.epochs=1",
            "data.validation_samples=1", "evaluate_after_training=false",
            "progress_bar=false"])
        stamps: list[float] = []
        start = time.perf_counter()
        train(config, on_step=lambda _step, _loss: stamps.append(time.perf_counter()))
        total = time.perf_counter() - start
    per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    print(f"end-to-end {config_path}: {len(stamps)} steps, {per_step:.2f} s/step "
          f"({1 / per_step:.3f} steps/s) after the first; whole run incl. setup and "
          f"validation {total:.1f} s; load {os.getloadavg()[0]:.2f}")


def main() -> None:
    from subct.model.runtime import cpu_line

    print(cpu_line(), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="unet3d")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--crop", type=int, nargs=3, default=[128, 128, 112])
    parser.add_argument("--patch", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--classes", type=int, default=18)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-synth", action="store_true")
    parser.add_argument("--config", default=None,
                        help="instead: run `subct train` on this config for --steps steps "
                             "(real data pipeline incl. synthesis) and report steps/s")
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    if args.config:
        end_to_end(args.config, args.steps)
        return
    device = torch.device(args.device)
    network = build_network(args.network, 1, args.classes, channels=args.channels).to(device)
    print(f"network {args.network} channels {args.channels}: "
          f"{count_parameters(network) / 1e6:.2f} M parameters; device {device}; "
          f"threads {torch.get_num_threads()}; load {os.getloadavg()[0]:.2f}")
    loss_fn = build_loss("dice_ce").to(device)
    rows = []
    for layout in ("default", "channels_last_3d"):
        fmt = torch.channels_last_3d if layout == "channels_last_3d" else torch.contiguous_format
        net = network.to(memory_format=fmt)  # type: ignore[call-overload]
        for precision in ("fp32", "bf16"):
            # bf16 is timed on purpose on every CPU (fp32 vs bf16 is what this table
            # compares), through the policy's own context with an explicit precision.
            autocast = (subct_autocast(device, "bf16")
                        if precision == "bf16" else nullcontext())
            crop = torch.rand(1, 1, *args.crop, device=device).contiguous(memory_format=fmt)

            def forward(net: torch.nn.Module = net, autocast: object = autocast,
                        crop: torch.Tensor = crop) -> None:
                net.eval()
                with torch.no_grad(), autocast:  # type: ignore[attr-defined]
                    net(crop)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            forward_s = _timed(forward, args.repeats)
            patch = torch.rand(args.batch, 1, *args.patch, device=device).contiguous(
                memory_format=fmt)
            target = torch.randint(0, args.classes, (args.batch, *args.patch), device=device)
            optimiser = torch.optim.Adam(net.parameters(), lr=1e-4)

            def step(net: torch.nn.Module = net, autocast: object = autocast,
                     patch: torch.Tensor = patch, target: torch.Tensor = target,
                     optimiser: torch.optim.Optimizer = optimiser) -> None:
                net.train()
                optimiser.zero_grad()
                with autocast:  # type: ignore[attr-defined]
                    logits = net(patch)
                loss_fn(logits.float(), target).backward()
                optimiser.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()

            step_s = _timed(step, args.repeats)
            rows.append((layout, precision, forward_s, step_s))
    print(f"\n| layout | precision | forward {'×'.join(map(str, args.crop))} (s) | "
          f"train step batch {args.batch}×{'×'.join(map(str, args.patch))} (s) | steps/s |")
    print("|---|---|---|---|---|")
    for layout, precision, forward_s, step_s in rows:
        print(f"| {layout} | {precision} | {forward_s:.2f} | {step_s:.2f} | {1 / step_s:.2f} |")
    if not args.skip_synth:
        import glob

        from subct.paths import shared_data_dir
        from subct.synth import SynthConfig, SynthGenerator

        pattern = shared_data_dir() / "label_maps/synthseg/training_seg_0[1-2]*"
        maps = sorted(glob.glob(str(pattern)))
        generator = SynthGenerator(maps, SynthConfig(output_shape=tuple(args.patch)), seed=0)
        synth_s = _timed(generator.sample, args.repeats)
        print(f"\nsynthetic sample {'×'.join(map(str, args.patch))}: {synth_s:.2f} s each")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
