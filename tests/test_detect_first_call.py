"""A model that only a probing call can describe is attached at once and detected on its first call."""
import torch
from torch import nn

import diffskip
from diffskip.engine import hooked


class Double(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, hidden_states, encoder_hidden_states, temb):
        return encoder_hidden_states + torch.tanh(self.b(encoder_hidden_states)), \
            hidden_states + torch.tanh(self.a(hidden_states)) * temb


class Single(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)

    def forward(self, hidden_states, temb):
        return hidden_states + torch.tanh(self.a(hidden_states)) * temb


class TwoLists(nn.Module):
    def __init__(self):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(Double() for _ in range(3))
        self.single_transformer_blocks = nn.ModuleList(Single() for _ in range(3))

    def forward(self, hidden_states, encoder_hidden_states, timestep):
        temb = 1 + timestep.view(-1, 1, 1) / 1000
        for blk in self.transformer_blocks:
            encoder_hidden_states, hidden_states = blk(hidden_states, encoder_hidden_states, temb)
        for blk in self.single_transformer_blocks:
            hidden_states = blk(hidden_states, temb)
        return hidden_states


def _loop(net, x, enc, steps=6):
    with torch.no_grad():
        for t in torch.linspace(999, 50, steps):
            x = x - 0.1 * net(x, enc, t.expand(x.shape[0]))
    return x


def test_detected_on_the_first_call_with_per_list_streams():
    torch.manual_seed(0)
    net = TwoLists().eval()
    x, enc = torch.randn(2, 4, 8), torch.randn(2, 3, 8)
    plain = _loop(net, x, enc)
    diffskip.attach(net)
    assert hooked(net).adapter is None  # two lists with different outputs: only a call can tell
    with diffskip.session(net, "never", num_steps=6) as s:
        assert torch.equal(_loop(net, x, enc), plain)
    units = hooked(net).units
    assert [u.streams for u in units] == [("encoder_hidden_states", "hidden_states")] * 3 + ["hidden_states"] * 3
    assert s.stats.steps == 6 and s.stats.computed == 6 * 2 * 5  # every step seen, 5 skippable units x 2 rows
    with diffskip.session(net, "interval:every=2", num_steps=6) as s:
        fast = _loop(net, x, enc)
    err = (fast - plain).abs().max().item()
    assert s.stats.reused == 2 * 2 * 5 and 0 < err < 0.1 * plain.abs().max().item(), err
    diffskip.detach(net)
    assert torch.equal(_loop(net, x, enc), plain)
