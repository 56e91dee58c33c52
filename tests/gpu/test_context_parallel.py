"""Context parallelism on 2 GPUs (skipped with fewer): a tiny Flux under diffusers' Ulysses attention with
`threshold` decides alike on both ranks, as one GPU does, and its output stays close to the one-GPU output."""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import diffskip

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")]

POLICY = "threshold:target=0.5,final=0"
STEPS = 8


def _model_and_inputs(device: str):
    from diffusers import FluxTransformer2DModel
    torch.manual_seed(0)
    m = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
                               num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                               axes_dims_rope=(4, 4, 8)).eval()
    side, txt = 4, 8  # 16 image + 8 text tokens: both split evenly over 2 ranks
    ids = torch.zeros(side, side, 3)
    ids[..., 1] += torch.arange(side)[:, None]
    ids[..., 2] += torch.arange(side)[None, :]
    kw = dict(encoder_hidden_states=torch.randn(1, txt, 32), pooled_projections=torch.randn(1, 32),
              img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(txt, 3))
    x = torch.randn(1, side * side, 16)
    return m.to(device), x.to(device), {k: v.to(device) for k, v in kw.items()}


def _denoise(m, x, kw):
    with torch.no_grad(), diffskip.session(m, POLICY, num_steps=STEPS) as s:
        for k in range(STEPS):
            x = x - m(x, timestep=torch.full((1,), 1 - k / STEPS, device=x.device), **kw, return_dict=False)[0] / STEPS
    return x.cpu(), [[c.computed, c.reused] for c in s.stats.calls]


def _worker(rank: int, port: int, out_dir: str) -> None:
    from diffusers import ContextParallelConfig
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=120))  # diverging collectives raise instead of hanging
    try:
        m, x, kw = _model_and_inputs(f"cuda:{rank}")
        m.enable_parallelism(config=ContextParallelConfig(ulysses_degree=2))
        diffskip.attach(m)  # the session finds the group in m._parallel_config
        torch.save(_denoise(m, x, kw), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_context_parallel_ranks_decide_alike_and_match_one_gpu(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    (out0, dec0), (out1, dec1) = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    m, x, kw = _model_and_inputs("cuda:0")
    ref, dec = _denoise(diffskip.attach(m), x, kw)
    assert dec0 == dec1 == dec
    assert sum(r for _, r in dec) > 0  # the gate reused something
    assert torch.allclose(out0, out1) and torch.allclose(out0, ref, atol=2e-3, rtol=2e-3)
