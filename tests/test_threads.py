"""Sessions are per thread: a plain call in another thread is bit-exact while a session runs there."""
import threading

import torch

import diffskip
from models import build, inputs


def _loop(model, x, kw, steps=6):
    with torch.no_grad():
        for t in torch.linspace(999, 50, steps):
            x = x - 0.1 * model(x, timestep=t.expand(x.shape[0]), return_dict=False, **kw)[0]
    return x


def test_plain_calls_in_another_thread_stay_exact_while_a_session_runs():
    torch.manual_seed(0)
    model = diffskip.attach(build("pixart"))
    x, kw = inputs("pixart", 2)
    plain = _loop(model, x, kw)
    with diffskip.session(model, "interval:every=2", num_steps=6):
        cached = _loop(model, x, kw)
    assert not torch.equal(cached, plain)  # the session does change its own thread's output
    errors, outs, start = [], [], threading.Barrier(2)

    def accelerated():
        start.wait()
        try:
            for _ in range(8):
                with diffskip.session(model, "interval:every=2", num_steps=6):
                    outs.append(("fast", _loop(model, x, kw)))
        except Exception as e:  # noqa: BLE001  (reported by the assert below)
            errors.append(e)

    def unaccelerated():
        start.wait()
        for _ in range(8):
            outs.append(("plain", _loop(model, x, kw)))

    threads = [threading.Thread(target=accelerated), threading.Thread(target=unaccelerated)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [k for k, _ in outs].count("plain") == 8 and [k for k, _ in outs].count("fast") == 8
    assert all(torch.equal(o, plain if k == "plain" else cached) for k, o in outs)


def test_two_sessions_in_two_threads_each_match_their_solo_run():
    torch.manual_seed(0)
    model = diffskip.attach(build("pixart"))
    x, kw = inputs("pixart", 1)
    solo = {}
    for spec in ("interval:every=2", "interval:every=3"):
        with diffskip.session(model, spec, num_steps=6) as s:
            solo[spec] = (_loop(model, x, kw), s.stats.computed)
    got = {}

    def run(spec):
        for _ in range(4):
            with diffskip.session(model, spec, num_steps=6) as s:
                got.setdefault(spec, []).append((_loop(model, x, kw), s.stats.computed))

    threads = [threading.Thread(target=run, args=(spec,)) for spec in solo]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert solo["interval:every=2"][1] != solo["interval:every=3"][1]
    for spec, (out, computed) in solo.items():
        assert len(got[spec]) == 4 and all(torch.equal(o, out) and c == computed for o, c in got[spec])
