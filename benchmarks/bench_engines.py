"""Benchmark: which inference engine runs subct's networks fastest on this CPU, quiet and busy.

The every-CPU issue asks for the CPU inference engine to be chosen by measurement, on
the same windows, quiet and with two other busy processes on the machine. Each
configuration runs in a fresh process (so thread-pool environment variables such as
``OMP_WAIT_POLICY`` take effect before the libraries load) and times ``--repeats``
forward passes after one warm-up pass; it reports the median wall time per pass and
the CPU seconds (user + sys of all threads) per pass.

Engines:

* ``torch``: PyTorch eager (the training framework), channels-last 3D, fp32 or bf16
  autocast, with OpenMP's default wait policy (``OMP_WAIT_POLICY`` empty) or
  ``PASSIVE`` (what ``import subct`` sets unless the user set it);
* ``onnxruntime``: ONNX Runtime's CPU provider on the graph subct exports from the
  checkpoint (:mod:`subct.model.engines`), thread spinning on or off;
* ``openvino``: OpenVINO's CPU plugin on the same ONNX graph (fp32, and its bf16
  execution hint on CPUs with native bf16).

Networks: the shipped CT UNet on one 64³ window (its sliding-window unit) and on a
batch of the two windows that one TTA step runs together, and the real brainchop
MeshNet (``meshnet-subcortical``, from ``../shared/data``) on a 96³ tile.

Usage::

    python benchmarks/bench_engines.py                    # all engines, quiet and busy
    python benchmarks/bench_engines.py --network unet --no-busy --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Configurations: (label, engine, precision, environment additions, engine options).
CONFIGURATIONS: list[tuple[str, str, str, dict[str, str], dict[str, object]]] = [
    ("torch fp32", "torch", "fp32", {"OMP_WAIT_POLICY": ""}, {}),
    ("torch fp32 OMP passive", "torch", "fp32", {"OMP_WAIT_POLICY": "PASSIVE"}, {}),
    ("torch bf16", "torch", "bf16", {}, {}),
    ("onnxruntime fp32 spin", "onnxruntime", "fp32", {}, {"spinning": True}),
    ("onnxruntime fp32 no-spin", "onnxruntime", "fp32", {}, {"spinning": False}),
    ("openvino fp32", "openvino", "fp32", {}, {}),
    ("openvino bf16", "openvino", "bf16", {}, {}),
]


def _worker(args: argparse.Namespace) -> None:
    """One configuration in this process: print a JSON line with the timings."""
    import numpy as np

    from subct.model.runtime import cpu_info

    shape = tuple(args.shape)
    rng = np.random.default_rng(0)
    image = rng.random((args.batch, 1, *shape), dtype=np.float32)
    runner = _make_runner(args, image)
    runner()  # warm-up (graph compilation, allocator)
    walls, cpus = [], []
    for _ in range(args.repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        output = runner()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    np.save(args.output, output)
    print(json.dumps({"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
                      "cpu": cpu_info().model}))


def _make_runner(args: argparse.Namespace, image):  # type: ignore[no-untyped-def]
    """A zero-argument callable running the network on ``image`` with one engine."""
    import numpy as np

    if args.engine == "torch":
        import torch

        from subct.model.runtime import autocast

        network = _torch_network(args.network)
        torch.set_num_threads(args.threads)
        network = network.to(memory_format=torch.channels_last_3d)
        tensor = torch.from_numpy(image).contiguous(memory_format=torch.channels_last_3d)

        def run_torch() -> np.ndarray:
            with torch.inference_mode(), autocast(torch.device("cpu"), args.precision):
                return network(tensor).float().numpy()

        return run_torch
    graph = _onnx_graph(args.network)
    if args.engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if args.spinning else "0")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda: session.run(None, {name: image})[0]
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": args.threads,
              "INFERENCE_PRECISION_HINT": "bf16" if args.precision == "bf16" else "f32"}
    compiled = core.compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()

    def run_openvino() -> np.ndarray:
        request.infer({0: image})
        return np.asarray(request.get_output_tensor(0).data).copy()

    return run_openvino


def _torch_network(name: str):  # type: ignore[no-untyped-def]
    if name == "unet":
        import torch

        from subct.model.checkpoint import load_checkpoint
        from subct.model.registry import default_model_path

        return load_checkpoint(default_model_path(), torch.device("cpu")).network.eval()
    from subct.transfer.meshnet_network import default_model_dir, load_meshnet

    return load_meshnet(default_model_dir("meshnet-subcortical"))


def _onnx_graph(name: str) -> Path:
    if name == "unet":
        from subct.model.graphs import shipped_graph_path
        from subct.model.registry import default_model_path

        # the graph shipped beside the weights (tests check it records their hash)
        return shipped_graph_path(default_model_path())
    from subct.model.graphs import export_network
    from subct.transfer.meshnet import meshnet_graph
    from subct.transfer.meshnet_network import default_model_dir, load_meshnet

    network = load_meshnet(default_model_dir("meshnet-subcortical"))
    return meshnet_graph(network, export_network)


def _busy_processes(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` processes that each keep one core busy (a plain Python loop)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", choices=["unet", "meshnet", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-busy", action="store_true", help="skip the contention runs")
    parser.add_argument("--only", nargs="*", help="configuration labels to run")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--spinning", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--shape", type=int, nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    from subct.model.runtime import cpu_info

    info = cpu_info()
    print(f"# CPU: {info.model}; flags: {' '.join(info.relevant_flags) or 'none'}; "
          f"native bf16: {info.native_bf16}; cores: {os.cpu_count()}")
    cases = []
    if args.network in ("unet", "all"):
        cases += [("unet", (64, 64, 64), 1), ("unet", (64, 64, 64), 2)]
    if args.network in ("meshnet", "all"):
        cases += [("meshnet", (96, 96, 96), 1)]
    print("| network | input | engine | quiet wall s | quiet CPU s | busy wall s | "
          "busy CPU s | busy/quiet | max abs diff vs torch fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for network, shape, batch in cases:
            reference = None
            for label, engine, precision, env, options in CONFIGURATIONS:
                if args.only and label not in args.only:
                    continue
                if precision == "bf16" and not info.native_bf16 and engine == "openvino":
                    continue
                results = {}
                out = Path(scratch) / f"{network}_{label.replace(' ', '_')}.npy"
                for busy in ((False,) if args.no_busy else (False, True)):
                    command = [sys.executable, __file__, "--worker", "--network", network,
                               "--engine", engine, "--precision", precision,
                               "--threads", str(args.threads), "--repeats",
                               str(args.repeats), "--shape", *map(str, shape),
                               "--batch", str(batch), "--output", str(out),
                               "--spinning", str(int(bool(options.get("spinning", True))))]
                    hogs = _busy_processes(2) if busy else []
                    try:
                        time.sleep(0.5 if busy else 0.0)
                        completed = subprocess.run(command, capture_output=True, text=True,
                                                   env={**os.environ, **env}, timeout=1800)
                    finally:
                        for hog in hogs:
                            hog.kill()
                    if completed.returncode != 0:
                        print(f"<!-- {label} failed: {completed.stderr.strip()[-300:]} -->")
                        break
                    results[busy] = json.loads(completed.stdout.strip().splitlines()[-1])
                if not results:
                    continue
                import numpy as np

                output = np.load(out)
                if reference is None and label == "torch fp32":
                    reference = output
                diff = (float(np.abs(output - reference).max())
                        if reference is not None else float("nan"))
                quiet = results[False]
                busy_result = results.get(True)
                busy_text = (f"{busy_result['wall_s']:.3f} | {busy_result['cpu_s']:.3f} | "
                             f"{busy_result['wall_s'] / quiet['wall_s']:.1f}×"
                             if busy_result else "– | – | –")
                size = "×".join(map(str, shape)) + (f" ×{batch}" if batch > 1 else "")
                print(f"| {network} | {size} | {label} | {quiet['wall_s']:.3f} | "
                      f"{quiet['cpu_s']:.3f} | {busy_text} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
