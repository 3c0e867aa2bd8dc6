"""The engine's shortcuts change how fast a run goes, never what it measures."""
import gc

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import engine
from sim.engine import Engine
from sim.plan import LOOKUP, Plan
from sim.profile import load_profile
from sim.records import SETUP_OPS
from sim.runner import simulate
from sim.scenario import Scenario

MIX = {"name": "shortcuts", "seed": 9, "containers": {"count": 4},
       "image": {"layers": 3, "files_per_layer": 80, "dir_depth": 2},
       "workload": {"ops": {"read": .5, "write": .2, "append": .1, "create": .1, "delete": .05, "stat": .05},
                    "workers": 2, "operations": 600}}
OPEN = {**MIX, "workload": {**MIX["workload"], "mode": "open", "arrival_rate": 2000, "operations": None,
                            "duration": 0.2}}


@pytest.mark.parametrize("spec", [MIX, OPEN], ids=["closed", "open"])
def test_skipping_events_changes_no_record(spec, monkeypatch):
    scenario = Scenario.model_validate(spec)
    skipped = []
    original = engine.Environment.skip_ahead

    def counting(self, delay):
        done = original(self, delay)
        skipped.append(done)
        return done

    monkeypatch.setattr(engine.Environment, "skip_ahead", counting)
    fast = simulate(scenario)
    assert any(skipped) and not all(skipped)  # the shortcut was taken, and not always
    monkeypatch.setattr(engine.Environment, "skip_ahead", lambda self, delay: False)
    slow = simulate(scenario)
    pd.testing.assert_frame_equal(fast.ops, slow.ops, check_exact=True)
    assert fast.summary == slow.summary


def test_collector_thresholds_restored_after_a_run():
    before = gc.get_threshold()
    simulate(Scenario.model_validate(MIX))
    assert gc.get_threshold() == before


def test_no_skip_while_another_process_waits_on_the_same_event():
    """Two processes woken by one event: the first must not move the clock before the second runs."""
    machine = Engine(load_profile("ssd"))
    env = machine.env
    gate = env.event()
    woken = []

    def first():
        yield gate
        yield from machine.execute(Plan().cpu(LOOKUP, 0.5))

    def second():
        yield gate
        woken.append(env.now)

    def opener():
        yield env.timeout(1.0)
        gate.succeed()
        yield env.timeout(10.0)  # nothing else is due while the first one computes

    for body in (first, second, opener):
        env.process(body())
    env.run()
    assert woken == [1.0]


DRIVERS = [("overlay2", {}), ("overlay2", {"tmpfile": False}), ("aufs", {}), ("fuse-overlayfs", {"threads": 1}),
           ("devicemapper", {})]  # copy-ups in parallel, under one rename lock, an inode lock, one daemon thread


@settings(max_examples=30)
@given(driver=st.sampled_from(DRIVERS), containers=st.integers(1, 4), workers=st.integers(1, 3),
       open_loop=st.booleans(), seed=st.integers(0, 2**16), profile=st.sampled_from(["ssd", "hdd"]))
def test_skipping_events_changes_no_record_of_any_mix(driver, containers, workers, open_loop, seed, profile):
    """Whatever runs at once (containers, workers, open-loop arrivals, locks, a FUSE daemon), a run
    with the shortcut and one without it record the same floats: the disk's alarms may not depend
    on which waits were skipped (a re-reckoning at every alarm once made them)."""
    name, options = driver
    workload = {"ops": {"read": .4, "write": .25, "append": .1, "create": .15, "delete": .05, "stat": .05},
                "workers": workers, "operations": 150}
    if open_loop:
        workload.update(mode="open", arrival_rate=4000, operations=None, duration=0.04)
    scenario = Scenario.model_validate({"name": "shortcuts", "seed": seed, "profile": profile,
                                        "driver": {"name": name, "options": options},
                                        "containers": {"count": containers},
                                        "image": {"layers": 2, "files_per_layer": 30, "dir_depth": 2},
                                        "workload": workload})
    fast = simulate(scenario)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine.Environment, "skip_ahead", lambda self, delay: False)
        slow = simulate(scenario)
    pd.testing.assert_frame_equal(fast.ops, slow.ops, check_exact=True)
    assert fast.summary == slow.summary


def _closed_loop_records(one_generator: bool) -> pd.DataFrame:
    """Two containers, each a closed loop of reads, writes and creates; run as one generator per
    container (``Host.run_ops``) or as one ``run_op`` generator per operation."""
    from sim.drivers import get_driver
    from sim.host import Host
    from sim.image import probe_image
    from sim.operation import Op

    profile = load_profile("ssd")
    machine = Engine(profile)
    host = Host(get_driver("overlay2")({}, profile), machine)
    image, target = probe_image(file_size=2**18, layers=2, dir_depth=3)
    ops = [Op("read", target, 0, 4096), Op("write", target, 0, 4096, sync=True), Op("create", target + ".new"),
           Op("read", target + ".new", 0, 10), Op("write", target, 4096, 2**17), Op("stat", target)]
    ended = []

    def setup():
        yield from host.prepare_image(image)
        for cid in (0, 1):
            yield from host.create_container(cid, image)

    def loop(cid):
        if one_generator:
            yield from host.run_ops(cid, 0, iter(ops))
        else:
            for op in ops:
                yield from host.run_op(cid, 0, op)

    machine.env.process(setup())
    machine.env.run()
    host.completed = ended.append
    for cid in (0, 1):
        machine.env.process(loop(cid))
    machine.env.run()
    assert sorted(ended) == [0] * len(ops) + [1] * len(ops)  # the completion hook, once per operation
    return host.records.frame()


def test_one_generator_per_closed_loop_records_what_one_per_operation_does():
    together, apart = _closed_loop_records(True), _closed_loop_records(False)
    assert len(together) == 3 + 2 * 6 and together["copy_ups"].sum() > 0 and together["cache_miss_bytes"].sum() > 0
    pd.testing.assert_frame_equal(together, apart, check_exact=True)


def test_a_closed_loop_with_think_time_waits_it_between_operations():
    think = 5e-4
    spec = {**MIX, "workload": {**MIX["workload"], "operations": 200, "think_time": think}}
    ops = simulate(Scenario.model_validate(spec)).ops
    work = ops[~ops["op"].isin(SETUP_OPS)]
    assert len(work) == 200
    for _, rows in work.groupby(["container", "worker"]):
        ends = (rows["start_s"] + rows["latency_s"]).to_numpy()
        assert rows["start_s"].to_numpy()[1:] == pytest.approx(ends[:-1] + think, rel=0, abs=1e-12)
