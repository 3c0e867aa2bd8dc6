"""The per-operation shortcuts around the model keep its inputs the same: the workload's random
draws, the moment an open-loop operation is planned, and what the records hold."""
from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.drivers.base import Driver
from sim.engine import Environment
from sim.plan import Plan
from sim.records import OP_COLUMNS, OpRecords
from sim.runner import simulate
from sim.scenario import Mix, Scenario
from sim.workloads import GUIDE_BUCKETS, Draws, MixState, MixStream


@settings(max_examples=60)
@given(seed=st.integers(0, 2**63 - 1), exclusive=st.booleans(),
       calls=st.lists(st.one_of(st.none(), st.integers(1, 40), st.integers(1, 2**32 - 1),
                                st.sampled_from([1, 2, 2**31 + 1, 2**32 - 1])), min_size=1, max_size=200))
def test_draws_are_the_generators_interleaved(seed, exclusive, calls):
    """None draws a uniform, n an integer below n (rejections and the bit generator's 32-bit
    buffer included): the values of rng.random() and rng.integers(n) in the same order, with the
    outputs fetched in batches or one by one, and the generator left where they leave it."""
    expected_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
    draws = Draws(rng, exclusive)
    for n in calls:
        if n is None:
            assert draws.random() == expected_rng.random()
        else:
            assert draws.integers(n) == expected_rng.integers(n)
    draws.release()
    assert rng.bit_generator.state == expected_rng.bit_generator.state
    assert draws.random() == expected_rng.random()  # and the draws go on from there


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), file_choice=st.sampled_from(["zipf", "uniform", "sequential"]),
       volumes=st.booleans(), operations=st.integers(1, 400))
def test_a_closed_loops_batched_draws_make_the_same_operations(seed, file_choice, volumes, operations):
    """A stream fetching its generator's outputs in batches (exclusive) makes the same
    operations, in the same order, as one drawing each from the generator, and leaves the
    generator in the same state."""
    ops = {"read": 0.3, "write": 0.1, "append": 0.05, "stat": 0.05, "chmod": 0.05, "truncate": 0.05,
           "create": 0.2, "delete": 0.1, "rename": 0.1}
    spec = Mix(ops=ops, file_choice=file_choice, volume_fraction=0.3 if volumes else 0.0, operations=operations)
    files = [f"d{i % 7}/f{i}" for i in range(60)]
    state = MixState(spec, files, np.random.default_rng(seed))
    made, rngs = [], []
    for exclusive in (False, True):
        rng = np.random.default_rng(seed + 1)
        stream = MixStream(state, 3, 1, rng, operations, ["v/a", "v/b"] if volumes else [],
                           ["v"] if volumes else [], exclusive=exclusive)
        sequence = []
        while (op := stream.next_op(0.0)) is not None:
            sequence.append(op)
        made.append(sequence)
        rngs.append(rng.bit_generator.state)
    assert made[0] == made[1] and len(made[0]) == operations
    assert rngs[0] == rngs[1]


def ranks_are_the_bisections(count: int, zipf_s: float, draws: list[float]) -> MixState:
    files = [f"f{i}" for i in range(count)]
    state = MixState(Mix(ops={"read": 1}, file_choice="zipf", zipf_s=zipf_s, operations=1), files,
                     np.random.default_rng(0))
    weights = 1.0 / np.arange(1, count + 1) ** zipf_s
    rounded = np.cumsum(weights / weights.sum()).tolist()
    assert state.rank_cdf[:-1] == rounded[:-1] and state.rank_cdf[-1] == 1.0
    for u in draws + [k / GUIDE_BUCKETS for k in range(0, GUIDE_BUCKETS, 97)]:
        assert state.rank(u) == min(bisect_right(rounded, u), count - 1)
    return state


@given(count=st.integers(1, 50_000), zipf_s=st.floats(0.5, 3.0),
       draws=st.lists(st.one_of(st.floats(0.0, 1.0, exclude_max=True),
                                st.sampled_from([0.0, 0.5, 1.0 - 2**-53, 1.0 - 2**-52])), min_size=1))
def test_zipf_ranks_are_the_clipped_bisection_of_the_rounded_cdf(count, zipf_s, draws):
    """The CDF ends at exactly 1.0 instead of each index being clipped, and a draw's rank is
    looked up through the guide instead of bisecting the whole CDF: the same ranks."""
    ranks_are_the_bisections(count, zipf_s, draws)


def test_zipf_ranks_where_the_rounded_cdf_passes_one():
    """100,000 files at s = 3: rounded sums pass 1.0 before the last; the ranks are still the
    bisection's, near 1.0 too."""
    state = ranks_are_the_bisections(100_000, 3.0, [1.0 - k * 2**-53 for k in range(1, 400)] + [1.0 - 2**-16])
    assert state.rank_cdf is not None and max(state.rank_cdf[:-1]) > 1.0


def test_open_loop_operations_are_planned_when_their_process_starts(monkeypatch):
    """An arrival's operation must be planned when SimPy first runs its process, not in the
    arrivals process that created it."""
    planned_in = []
    arrivals = []
    apply = Driver.apply

    def recording_apply(self, cid, op):
        planned_in.append(arrivals[0].env.active_process)
        return apply(self, cid, op)

    original_process = Environment.process

    def spying_process(env, generator):
        created = original_process(env, generator)
        if generator.__name__ == "mix_arrivals":
            arrivals.append(created)
        return created

    monkeypatch.setattr(Driver, "apply", recording_apply)
    monkeypatch.setattr(Environment, "process", spying_process)
    scenario = Scenario.model_validate({
        "name": "open", "seed": 3, "containers": {"count": 2},
        "image": {"layers": 2, "files_per_layer": 30, "dir_depth": 2},
        "workload": {"mode": "open", "arrival_rate": 5000, "duration": 0.02}})
    assert simulate(scenario).summary["ops"] > 20
    assert len(arrivals) == 2 and len(planned_in) > 20
    assert not any(active in arrivals for active in planned_in)


@settings(max_examples=30)
@given(rows=st.lists(st.tuples(
    st.text(max_size=4), st.integers(-2**63, 2**63 - 1), st.text(max_size=6), st.text(max_size=12),
    st.integers(0, 2**62), st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=5, max_size=5),
    st.lists(st.integers(0, 2**62), min_size=6, max_size=6), st.sampled_from(["", "ENOENT", "EXDEV"])),
    max_size=40), batch_rows=st.integers(1, 9))
def test_records_hold_every_value_in_its_column(rows, batch_rows):
    """Whatever the batch size, each value added comes back in its own column, exactly."""
    records = OpRecords(batch_rows=batch_rows)
    expected = []
    for container, worker, op, path, nbytes, start, end, phases, counts, error in rows:
        plan = Plan()
        plan.copy_ups, plan.copy_up_bytes, plan.error = counts[0], counts[1], error
        records.add(container, worker, op, path, nbytes, start, end, plan, list(phases), *counts[2:])
        expected.append((container, worker, op, path, nbytes, start, end - start, *phases, *counts, error))
    assert len(records) == len(rows)
    table = records.frame()
    pd.testing.assert_frame_equal(table, pd.DataFrame(expected, columns=list(OP_COLUMNS)).astype(table.dtypes),
                                  check_exact=True)
    assert all(math.copysign(1, a) == math.copysign(1, b)  # negative zeros stay negative
               for a, b in zip(table["start_s"], (row[5] for row in rows)))
