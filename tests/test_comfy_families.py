"""ComfyUI's DiT families (Wan with VACE, HunyuanVideo, LTX-Video, Mochi, Cosmos Predict2, Qwen-Image, Lumina 2,
HiDream, HunyuanDiT) through the policy nodes, on stand-ins that reproduce each family's call conventions from its
ComfyUI source file (tests/fake_comfy_wan.py, fake_comfy_video.py, fake_comfy_image.py)."""
from __future__ import annotations

import pytest
import torch

import fake_comfy as fc
from diffskip import comfy as dc
from diffskip.adapters import UnsupportedModelError, find_adapter, resolve_units

FAMILIES = sorted(fc.FAMILIES)


_node = fc.node


def _count_block_runs(net) -> list[int]:
    """Count, per cacheable block, the runs of its first layer (it runs only when the block computes)."""
    counts = []
    for i, unit in enumerate(resolve_units(net, find_adapter(net))):
        counts.append(0)
        next(unit.children()).register_forward_hook(lambda m, a, o, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("kind", FAMILIES)
def test_family_is_patched_computes_fewer_blocks_and_never_is_bit_exact(kind):
    p = fc.patcher(kind)
    counts = _count_block_runs(p.model.diffusion_model)
    n = len(counts)
    base = fc.sample(p)
    assert n >= 3 and counts == [6] * n and torch.isfinite(base).all()
    never = _node("DiffSkipNever", p)
    assert torch.equal(fc.sample(never), base)  # the node's clone with `never`: bit-exact
    counts[:] = [0] * n
    fast = _node("DiffSkipInterval", p, every=3)
    assert p.wrappers == {} and fast.wrappers["outer_sample"]["diffskip"]  # the input model is untouched
    out = fc.sample(fast)
    # 6 steps: the head block every step, the others at steps 0 and 3 and the final step 5
    assert counts == [6] + [3] * (n - 1)
    st = dc.last_stats(fast)
    assert (st.steps, st.num_units, st.skippable) == (6, n, n - 1)
    assert (st.computed, st.reused) == (3 * (n - 1) * 2, 3 * (n - 1) * 2)  # CFG: cond and uncond rows
    assert torch.isfinite(out).all() and not torch.equal(out, base)
    assert (out - base).abs().max() < base.abs().max()
    counts[:] = [0] * n
    assert torch.equal(fc.sample(p), base) and counts == [6] * n  # the unpatched model: full cost, bit-exact
    assert dc.last_stats(p) is None


@pytest.mark.parametrize("kind", ["qwen_image", "mochi", "hidream"])
def test_two_stream_families_take_per_sample_threshold_decisions(kind):
    p = fc.patcher(kind)
    base = fc.sample(p, steps=8, batch=2)
    fast = _node("DiffSkipThreshold", p)  # target=0.5: about half of the steps compute, per sample
    out = fc.sample(fast, steps=8, batch=2)
    per_call = [c.computed for c in dc.last_stats(fast).calls]
    assert per_call[0] == 4 * (len(resolve_units(p.model.diffusion_model, find_adapter(p.model.diffusion_model))) - 1)
    assert sum(per_call) < per_call[0] * 8 and torch.isfinite(out).all() and not torch.equal(out, base)


def test_wan22_image_to_video_per_frame_timesteps_advance_the_step_clock():
    p = fc.patcher("wan22-i2v")
    seen = []
    p.model.diffusion_model.register_forward_pre_hook(lambda m, a: seen.append(a[1].clone()))
    fast = _node("DiffSkipInterval", p, every=3)
    fc.sample(fast)
    assert seen[0].shape == (2, 3) and (seen[0][:, 0] == 0).all() and (seen[0][:, 1:] > 0).all()
    st = dc.last_stats(fast)
    assert st.steps == 6 and (st.computed, st.reused) == (3 * 3 * 2, 3 * 3 * 2)  # steps, not guidance passes


def test_the_refiners_single_stream_and_vace_blocks_stay_live():
    for kind, live in (("lumina2", ("noise_refiner", "context_refiner")), ("hidream", ("single_stream_blocks",)),
                       ("wan_vace", ("vace_blocks",))):
        p = fc.patcher(kind)
        net = p.model.diffusion_model
        runs = []
        for name in live:
            for block in getattr(net, name):
                next(block.children()).register_forward_hook(lambda m, a, o: runs.append(1))
        fc.sample(_node("DiffSkipInterval", p, every=3))
        assert len(runs) == 6 * sum(len(getattr(net, name)) for name in live)  # every step, whatever the policy


def test_flux_style_single_stream_blocks_are_cached_with_their_own_stream():
    for kind in ("flux", "hunyuan_video"):  # double blocks return (img, txt); single blocks take and return x
        p = fc.patcher(kind)
        net = p.model.diffusion_model
        runs = []
        for block in net.single_blocks:
            next(block.children()).register_forward_hook(lambda m, a, o: runs.append(1))
        fast = _node("DiffSkipInterval", p, every=3)
        fc.sample(fast)
        assert len(runs) == 3 * len(net.single_blocks)  # steps 0, 3 and the final step 5 of 6
        assert dc.last_stats(fast).num_units == len(net.double_blocks) + len(net.single_blocks)


def test_cosmos1_general_dit_is_refused_with_the_register_line():
    class GeneralDIT(torch.nn.Module):  # comfy/ldm/cosmos/model.py: blocks in a ModuleDict, (T, H, W, B, D) layout
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleDict({f"block{i}": torch.nn.Linear(4, 4) for i in range(3)})

    GeneralDIT.__module__ = "comfy.ldm.cosmos.model"
    p = fc.patcher("wan")
    p.model.diffusion_model = GeneralDIT()
    with pytest.raises(UnsupportedModelError, match=r"no diffskip adapter for comfy:GeneralDIT.*diffskip.register\("):
        _node("DiffSkipInterval", p, every=3)
