"""Automatic adapters: a denoiser's block lists and their residual streams, from its signatures and one call.

Block lists: `ModuleList`s of same-class blocks named "*blocks" / "*layers" that the forward runs once per call,
block after block (nested only when the model has none; refiners and lists whose outputs continue no input are
not cached). Streams, from one probing call: the input of block i+1 that *is* output k of block i; else the one
input of block i with that output's shape; else none (replayed as cached). UNets (2-D and 3-D) reuse each layer's
output, DeepCache style. Registered adapters win (`find_adapter` first); docs/adapters.md has the rules."""
from __future__ import annotations

import inspect
import itertools
import logging
import re
import textwrap
from typing import Any, Callable

import torch
from torch import nn

from .base import Adapter, Spec, UnsupportedModelError, find_adapter, resolve_layout

__all__ = ["detect", "describe", "detect_static"]
logger = logging.getLogger(__name__)

_LIST_NAME = re.compile(r"(blocks|layers)$")
_TIMESTEPS = ("timestep", "timesteps", "t", "sigma", "sigmas")
_STREAM_NAMES = ("hidden_states", "x", "hidden", "img", "sample")  # first block argument, for static detection
_UNET_LAYERS = ("resnets", "temp_convs", "attentions", "temp_attentions", "motion_modules")  # execution order
_RESAMPLERS = ("downsamplers", "upsamplers")
_COMPILED = "_compiled_call_impl"  # where Module.compile() puts a block's compiled callable

Record = list  # [call order, named inputs, output] of one block call


def detect(model: nn.Module, probe: Callable[[], Any] | None = None) -> Adapter:
    """Return an adapter for a denoiser with no registered one: statically, or from one call of `probe()`.

    `probe` runs the model's forward once (e.g. `lambda: model(**inputs)`); hooks on the candidate blocks
    record their inputs and outputs during that call and are removed afterwards. Without a probe only an
    unambiguous model is detected (a UNet, or one block list returning one tensor).

    Raises:
        UnsupportedModelError: the evidence is ambiguous; the one-line message shows the register() call to write.
    """
    timestep = _timestep(model)
    if _is_unet(model):
        return _unet(model, timestep)
    lists = [(p, m) for p, m in _candidates(model) if "refiner" not in p]
    lists = [(p, m) for p, m in lists if "." not in p] or lists  # nested lists (embedders) only when no top-level
    if not lists:
        raise _refuse(model, "it has no ModuleList of repeated blocks named *blocks or *layers", (), timestep)
    return _static(model, lists, timestep) if probe is None else _probed(model, lists, probe, timestep)


def _probed(model: nn.Module, lists: list[tuple[str, nn.ModuleList]], probe: Callable[[], Any],
            timestep: str) -> Adapter:
    """Run the probe once; keep the lists it ran once each in order whose outputs continue inputs."""
    calls = _record(model, lists, probe)
    why: list[str] = []  # lists left out (not cached) and why
    specs, unbatched = [], set()
    for path, blocks in _ran(lists, calls, why):
        spec, unb = _streams(model, path, [calls[id(b)][0] for b in blocks], timestep)
        if spec is None:
            why.append(f"the outputs of {path}'s blocks match none of their inputs")
            continue
        specs.append((path, spec))
        unbatched |= unb
    if not specs:
        raise _refuse(model, "; ".join(why) or f"the probing call ran none of {[p for p, _ in lists]}",
                      tuple(p for p, _ in lists), timestep)
    for reason in why:
        logger.info("%s: not cached: %s", type(model).__name__, reason)
    first = specs[0][1]
    return Adapter(units=tuple(p for p, _ in specs), reuse="residual", streams=first, timestep=timestep,
                   list_streams=tuple((p, s) for p, s in specs[1:] if s != first), unbatched=tuple(sorted(unbatched)))


def describe(model: nn.Module, adapter: Adapter | None = None, probe: Callable[[], Any] | None = None) -> dict:
    """Return what diffskip caches on a model, JSON-ready: source, lists, reuse, streams, units, timestep.

    `adapter` None: the registered one ("explicit"), else `detect(model, probe)`; a given one is "explicit" when
    it is the one registered for the model's class, else "automatic"."""
    try:
        found: Adapter | None = find_adapter(model)
    except UnsupportedModelError:
        found = None
    adapter = adapter or found or detect(model, probe)
    streams = {p: (s if isinstance(s, str) else list(s))
               for p in adapter.units if (s := adapter.streams_of(p)) is not None}
    return {"source": "explicit" if adapter == found else "automatic", "lists": list(adapter.units),
            "reuse": adapter.reuse, "streams": streams, "units": len(resolve_layout(model, adapter)),
            "timestep": adapter.timestep}


def _refuse(model: nn.Module, reason: str, units: tuple, timestep: str | None,
            streams: Spec = "hidden_states") -> UnsupportedModelError:
    name = type(model).__name__
    return UnsupportedModelError(
        f"cannot detect the cacheable blocks of {name}: {reason}. Register them, e.g. diffskip.register({name}, "
        f"units={tuple(units) or ('blocks',)!r}, reuse='residual', streams={streams!r}, "
        f"timestep={timestep or 'timestep'!r})")


def _timestep(model: nn.Module) -> str:
    params = inspect.signature(model.forward).parameters
    found = [n for n in _TIMESTEPS if n in params]
    if not found:
        raise _refuse(model, f"its forward has no timestep argument (looked for {_TIMESTEPS}; it takes "
                             f"{list(params)})", (), None)
    return found[0]


def _candidates(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    """Return the ModuleLists of same-class blocks named *blocks / *layers, outermost first."""
    found: list[tuple[str, nn.ModuleList]] = []
    for path, m in model.named_modules():
        if not isinstance(m, nn.ModuleList) or not len(m) or not _LIST_NAME.search(path.rsplit(".", 1)[-1]):
            continue
        if any(path.startswith(p + ".") for p, _ in found) or len({type(b) for b in m}) != 1:
            continue  # a list inside a block of another list, or not repeated blocks
        found.append((path, m))
    return found


def _is_unet(model: nn.Module) -> bool:
    return all(isinstance(getattr(model, n, None), nn.ModuleList) for n in ("down_blocks", "up_blocks"))


def _unet(model: nn.Module, timestep: str) -> Adapter:
    """DeepCache at layer granularity; the last up layer (all its lists at the last index) stays live."""
    units = ("down_blocks", "mid_block", "up_blocks") if hasattr(model, "mid_block") else ("down_blocks", "up_blocks")
    blocks = [*model.down_blocks, getattr(model, "mid_block", None), *model.up_blocks]

    def present(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in names if any(isinstance(getattr(b, n, None), nn.ModuleList) for b in blocks))

    layers, resamplers = present(_UNET_LAYERS), present(_RESAMPLERS)
    last = model.up_blocks[-1]
    lens = [len(getattr(last, n, None) or ()) for n in layers]
    tail = sum(1 for n in lens if n == max(lens, default=0) > 0) + sum(len(getattr(last, n, None) or ())
                                                                         for n in resamplers)
    return Adapter(units=units, reuse="output", head=0, tail=tail, timestep=timestep,
                   layers=tuple(g for g in (layers, resamplers) if g))


def _static(model: nn.Module, lists: list[tuple[str, nn.ModuleList]], timestep: str) -> Adapter:
    """One top-level block list that the forward names, whose blocks return one tensor: streams = first argument."""
    try:
        src = textwrap.dedent(inspect.getsource(type(model).forward))
    except (OSError, TypeError):
        src = ""
    run = [(p, m) for p, m in lists if "." not in p and re.search(rf"self\.{p}\b", src)]
    paths = tuple(p for p, _ in lists)
    if len(run) != 1:
        raise _refuse(model, f"block lists {list(paths)} need a probing call to tell which run and how "
                             f"(pass probe= to detect)", paths, timestep)
    path, blocks = run[0]
    sig = inspect.signature(blocks[0].forward)
    first = next(iter(sig.parameters), None)
    ret = sig.return_annotation
    if first not in _STREAM_NAMES or ret not in (torch.Tensor, "torch.Tensor", "Tensor"):
        raise _refuse(model, f"{type(blocks[0]).__name__}.forward{sig} needs a probing call to tell its streams "
                             f"(pass probe= to detect)", (path,), timestep)
    return Adapter(units=(path,), reuse="residual", streams=first, timestep=timestep)


def _named(sig: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Return a block call's arguments by name; the i-th of a *args forward is "args[i]"."""
    bound = sig.bind(*args, **kwargs)
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named.update((f"{name}[{i}]", v) for i, v in enumerate(value))
        elif kind is not inspect.Parameter.VAR_KEYWORD:
            named[name] = value
    return named


def _record(model: nn.Module, lists: list[tuple[str, nn.ModuleList]], probe: Callable[[], Any]) -> dict[int, list]:
    """Run `probe()` once with hooks on every candidate block; return id(block) -> its call records.

    Blocks the user compiled run eagerly during the probe (their compiled callable is set aside and put back),
    so the recording hooks are never traced (fullgraph=True would refuse their side effects).
    """
    calls: dict[int, list[Record]] = {}
    order = itertools.count()
    handles, compiled = [], []
    for _, blocks in lists:
        for block in blocks:
            sig = inspect.signature(block.forward)

            def pre(mod, args, kwargs, sig=sig):
                calls.setdefault(id(mod), []).append([next(order), _named(sig, args, kwargs), None])

            def post(mod, args, kwargs, out):
                calls[id(mod)][-1][2] = out

            handles += [block.register_forward_pre_hook(pre, with_kwargs=True),
                        block.register_forward_hook(post, with_kwargs=True)]
            if block.__dict__.get(_COMPILED) is not None:
                compiled.append((block, block.__dict__[_COMPILED]))
                object.__setattr__(block, _COMPILED, None)
    try:
        with torch.no_grad():
            probe()
    finally:
        for handle in handles:
            handle.remove()
        for block, fn in compiled:
            object.__setattr__(block, _COMPILED, fn)
    return calls


def _ran(lists: list, calls: dict, why: list[str]) -> list[tuple[str, nn.ModuleList]]:
    """Return the lists the probe ran, each block once and in order, sorted by when they ran; note the others."""
    ran = []
    for path, blocks in lists:
        counts = [len(calls.get(id(b), ())) for b in blocks]
        if not any(counts):
            continue  # the forward does not run this list
        orders = [calls[id(b)][0][0] for b in blocks] if set(counts) == {1} else []
        if not orders or orders != sorted(orders):
            why.append(f"the blocks of {path} ran {counts} times in one call, not once each in order")
            continue
        ran.append((orders[0], path, blocks))
    return [(path, blocks) for _, path, blocks in sorted(ran, key=lambda r: r[0])]


def _streams(model: nn.Module, path: str, recs: list[Record], timestep: str) -> tuple[Spec | None, set[str]]:
    """Return one list's stream spec (None: no output continues an input) and its unbatched arguments."""
    single = all(isinstance(r[2], torch.Tensor) for r in recs)
    outs = [(r[2],) if single else r[2] for r in recs]
    ins = [r[1] for r in recs]
    if not single and not all(isinstance(o, (tuple, list)) and len(o) == len(outs[0]) for o in outs):
        raise _refuse(model, f"the blocks of {path} return {type(recs[0][2]).__name__}, not a tensor or a tuple "
                             f"of one length", (path,), timestep)
    names: list[str | None] = [_fed(outs, ins, k) for k in range(len(outs[0]))]
    for k, name in enumerate(names):
        if name is None:
            names[k] = _same_shape(model, path, outs, ins, k, {n for n in names if n}, timestep)
    taken = [n for n in names if n]
    if not taken:
        return None, set()
    if len(set(taken)) != len(taken):
        raise _refuse(model, f"the outputs of {path}'s blocks match inputs {names}: one input twice", (path,),
                      timestep)
    spec: Spec = names[0] if single else tuple(names)
    batch = next((v.shape[0] for n in taken if isinstance(v := ins[0].get(n), torch.Tensor) and v.dim()), None)
    return spec, set() if batch is None else _unbatched(ins[0], batch, set(taken))


def _fed(outs: list[tuple], ins: list[dict], k: int) -> str | None:
    """Return the input of block i+1 that is output k of block i, for every consecutive pair, if one."""
    sets = [{n for n, v in ins[i + 1].items() if v is outs[i][k]}
            for i in range(len(outs) - 1) if isinstance(outs[i][k], torch.Tensor)]
    common = set.intersection(*sets) if sets else set()
    return common.pop() if len(common) == 1 else None


def _same_shape(model: nn.Module, path: str, outs: list[tuple], ins: list[dict], k: int, taken: set[str],
                timestep: str) -> str | None:
    """Return the one input of each block with output k's shape (none: None; several: ambiguous)."""
    sets = [{n for n, v in ins[i].items() if isinstance(v, torch.Tensor) and v.shape == outs[i][k].shape} - taken
            for i in range(len(outs)) if isinstance(outs[i][k], torch.Tensor)]
    common = set.intersection(*sets) if sets else set()
    if len(common) > 1:
        raise _refuse(model, f"output {k} of {path}'s blocks has the shape of inputs {sorted(common)}", (path,),
                      timestep)
    return common.pop() if common else None


def _unbatched(named: dict[str, Any], batch: int, streams: set[str]) -> set[str]:
    """Return the arguments holding tensors none of which has the batch as dim 0 (rotary tables, shared masks)."""
    out = set()
    for name, value in named.items():
        leaves = [t for t in _leaves(value) if t.dim() > 0]
        if name not in streams and leaves and all(t.shape[0] != batch for t in leaves):
            out.add(name)
    return out


def _leaves(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for v in x for t in _leaves(v)] if isinstance(x, (tuple, list)) else []


def detect_static(model: nn.Module) -> Adapter | None:
    """Return the registered or statically detected adapter; None when only a probing call can tell; else raise."""
    try:
        return find_adapter(model)
    except UnsupportedModelError:
        try:
            return detect(model)
        except UnsupportedModelError:
            _timestep(model)  # no timestep argument, or no block list at all: a probe cannot help, raise now
            if not [p for p, _ in _candidates(model) if "refiner" not in p]:
                raise
            return None
