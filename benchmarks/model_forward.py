"""Forward+backward throughput of the VLMo forward modes (torch only). Prints one JSON document.

    python benchmarks/model_forward.py --config vlmo_base_patch16 --batch-size 32 --steps 20 --device cuda
    python benchmarks/model_forward.py --config vlmo_tiny --batch-size 8 --steps 5 --device cpu

Modes: ``image`` (image-only pass → ITC embedding), ``text`` (text-only pass → ITC embedding), ``fused``
(fusion pass → pooler). bf16 autocast on CUDA, fp32 on CPU (override with ``--dtype``). FLOPs of one step
are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls/convolutions/attention, forward
and backward), so ``achieved_tflops`` = counted FLOPs × steps / measured time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without install

from vlmo_pipeline.models import create_model  # noqa: E402

MODES = ("image", "text", "fused")


def make_inputs(model, batch_size: int, device: torch.device):
    config = model.config
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (batch_size, config.max_text_len), generator=generator)
    masks = torch.ones(batch_size, config.max_text_len, dtype=torch.long)
    lengths = torch.randint(8, config.max_text_len + 1, (batch_size,), generator=generator)
    masks[torch.arange(config.max_text_len)[None, :] >= lengths[:, None]] = 0  # realistic padding
    images = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
    return ids.to(device), masks.to(device), images.to(device)


def step_function(model, mode: str, ids, masks, images, compile_forward: bool = False):
    def forward():
        if mode == "image":
            return model.infer_image(images, with_vlffn=False).cls_feats
        if mode == "text":
            return model.infer_text(ids, masks, with_vlffn=False).cls_feats
        return model.fuse(ids, masks, images).cls_feats

    forward_fn = torch.compile(forward) if compile_forward else forward

    def step():
        forward_fn().float().sum().backward()

    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_mode(model, mode, inputs, args, device, autocast_dtype):
    step = step_function(model, mode, *inputs, compile_forward=args.compile)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32)
    with autocast:
        counter = FlopCounterMode(display=False)
        with counter:
            step()
        flops_per_step = counter.get_total_flops()
        model.zero_grad(set_to_none=True)
        for _ in range(args.warmup):
            step()
            model.zero_grad(set_to_none=True)
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
            model.zero_grad(set_to_none=True)
        synchronize(device)
        elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        peak_kind = "cuda_max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process-wide high-water mark
        peak_kind = "process_max_rss"
    return {
        "mode": mode,
        "samples_per_s": round(args.batch_size * args.steps / elapsed, 3),
        "step_ms": round(1000 * elapsed / args.steps, 3),
        "flops_per_step": flops_per_step,
        "achieved_tflops": round(flops_per_step * args.steps / elapsed / 1e12, 4),
        "peak_memory_mb": round(peak / 2**20, 1),
        "peak_memory_kind": peak_kind,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="vlmo_tiny", help="registered config name")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--attention", default="sdpa", choices=["sdpa", "reference"])
    parser.add_argument("--modes", default=",".join(MODES), help="comma list of " + ", ".join(MODES))
    parser.add_argument("--compile", action="store_true", help="torch.compile each mode's forward")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args(argv)

    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    dtype_name = args.dtype if args.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    autocast_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}")

    torch.manual_seed(0)
    model = (
        create_model(args.config, loss_names=("itc", "itm", "mlm"), attention_impl=args.attention).to(device).train()
    )
    inputs = make_inputs(model, args.batch_size, device)
    results = [benchmark_mode(model, mode, inputs, args, device, autocast_dtype) for mode in modes]
    report = {
        "benchmark": "model_forward_backward",
        "config": args.config,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "dtype": dtype_name,
        "attention": args.attention,
        "torch": torch.__version__,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
