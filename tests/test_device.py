"""The disk shares its bandwidth, pages in flight make readers wait, and measured work starts on
a quiet host (docs/model.md, "Time and resources")."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
from benchmarks.device_sharing import at_once, makespan, mean_latency, serve, settled_host
from sim.operation import Op
from sim.engine import Engine
from sim.profile import load_profile

MiB = 2**20


def device(queue_depth: int = 32, latency: float = 50e-6, bandwidth: float = 1e9) -> Engine:
    profile = load_profile("ssd").model_copy(deep=True)
    profile.disk = profile.disk.model_copy(update=dict(
        queue_depth=queue_depth, read_latency=latency, write_latency=latency, read_bandwidth=bandwidth,
        write_bandwidth=bandwidth / 2))
    return Engine(profile)


def solo(engine: Engine, nbytes: int, write: bool, requests: int) -> float:
    disk = engine.profile.disk
    latency, bandwidth = ((disk.write_latency, disk.write_bandwidth) if write
                          else (disk.read_latency, disk.read_bandwidth))
    return requests * latency + nbytes / bandwidth


JOBS = st.lists(st.tuples(st.sampled_from([0.0, 1e-5, 1e-4, 1e-3, 2e-3]), st.integers(0, 8 * MiB), st.booleans(),
                          st.integers(1, 8)), min_size=1, max_size=24)


@settings(max_examples=60)
@given(jobs=JOBS, queue_depth=st.sampled_from([1, 2, 32]))
def test_sharing_conserves_work_and_never_beats_a_request_alone(jobs, queue_depth):
    engine = device(queue_depth)
    done = serve(engine, jobs)
    for (issue, finish), (_, nbytes, write, requests) in zip(done, jobs):
        assert finish - issue >= solo(engine, nbytes, write, requests) * (1 - 1e-9)
    disk = engine.profile.disk
    transfer = sum(n / (disk.write_bandwidth if w else disk.read_bandwidth) for _, n, w, _ in jobs)
    access = sum(r * disk.read_latency for *_, r in jobs)
    start, makespan = min(i for i, _ in done), max(f for _, f in done)
    assert makespan - start >= transfer * (1 - 1e-9)  # one device: no more than its bandwidth
    # and never idle while it holds work: at most every access time after every transfer
    assert makespan - start <= access + transfer + max(i for i, _ in done) - start + 1e-9


@settings(max_examples=30)
@given(jobs=JOBS, data=st.data())
def test_sharing_is_exact_and_deterministic_whatever_the_order_of_simultaneous_requests(jobs, data):
    """With enough channels, requests issued together end at the same times in any order; and a
    second run gives the very same floats."""
    order = data.draw(st.permutations(range(len(jobs))))
    first = serve(device(64), jobs)
    again = serve(device(64), jobs)
    shuffled = serve(device(64), [jobs[i] for i in order])
    assert first == again
    for position, index in enumerate(order):
        assert shuffled[position][1] == pytest.approx(first[index][1], rel=1e-12, abs=1e-15)


def test_requests_issued_together_end_as_processor_sharing_says():
    """n transfers of works w1 <= ... <= wn starting together: the k-th ends at
    w1 + ... + w(k-1) + (n - k + 1) wk."""
    engine = device(64, latency=0.0, bandwidth=1e9)
    sizes = [1 * MiB, 3 * MiB, 3 * MiB, 10 * MiB, 40 * MiB]
    done = serve(engine, [(0.0, n, False, 1) for n in sizes])
    works = [n / 1e9 for n in sizes]
    expected = [sum(works[:k]) + (len(works) - k) * works[k] for k in range(len(works))]
    assert [f for _, f in done] == pytest.approx(expected, rel=1e-12)


def test_queue_depth_overlaps_access_times_not_bandwidth():
    """64 random 4 KiB reads: IOPS grow with queue_depth; 8 big reads take 8 times one whatever it is."""
    small = [(0.0, 4096, False, 1)] * 64
    shallow, deep = (max(f for _, f in serve(device(q, latency=100e-6), small)) for q in (1, 32))
    assert shallow == pytest.approx(64 * 100e-6 + 4096 / 1e9)  # one at a time
    # 32 at a time: the second round's access times overlap the first round's transfers
    assert deep == pytest.approx(100e-6 + 64 * 4096 / 1e9)
    big = [(0.0, 64 * MiB, False, 1)] * 8
    for queue_depth in (1, 8, 64):
        one = serve(device(queue_depth), big[:1])[0][1]
        assert max(f for _, f in serve(device(queue_depth), big)) == pytest.approx(8 * one, rel=0.01)


@pytest.mark.parametrize("profile", ["ssd", "host-calibrated"])
def test_concurrent_copy_ups_share_the_disk(profile):
    """8 containers copying up a 16 MiB file at once take >= 3x as long as one, and each of them
    nearly all of that time (the real overlayfs on ext4 here: x1 / x1.6 / x2.9 / x6.1 for 1/2/4/8)."""
    def run(count):
        host, target = settled_host("overlay2", profile, count, 16 * MiB)
        return at_once(host, [(cid, 0.0, Op("write", target, 0, 4096, sync=True)) for cid in range(count)])

    one, eight = run(1), run(8)
    assert makespan(eight) >= 3 * makespan(one)
    assert mean_latency(eight) >= 0.7 * makespan(eight)


@pytest.mark.parametrize("driver", ["btrfs", "vfs"])
def test_two_readers_of_a_big_file_with_private_caches_take_longer_than_one(driver):
    def run(count):
        host, target = settled_host(driver, "ssd", count, 256 * MiB)
        return makespan(at_once(host, [(cid, 0.0, Op("read", target, 0, 256 * MiB)) for cid in range(count)]))

    assert run(2) >= 1.6 * run(1)


def test_the_second_reader_of_a_cold_file_waits_for_its_pages():
    """Under overlay2 the page cache is shared: the second reader finds the first one's pages in
    flight and cannot finish before they arrive."""
    host, target = settled_host("overlay2", "ssd", 2, 64 * MiB)
    first, second = at_once(host, [(0, 0.0, Op("read", target, 0, 64 * MiB)),
                                   (1, 1e-4, Op("read", target, 0, 64 * MiB))])
    assert second[1] >= first[1]
    disk = host.engine.profile.disk
    assert second[1] - second[0] >= 0.9 * (64 * MiB / disk.read_bandwidth - 1e-4)
    assert host.engine.disk.bytes_read < 65 * MiB  # read once


def test_measured_lookups_do_not_pay_for_the_image_setup():
    lookups = {size: sim.probe("overlay2", profile="hdd", file_size=size)["lookup_s"] for size in (4096, 2**30)}
    assert lookups[4096] == pytest.approx(lookups[2**30], rel=1e-9)  # was 31 ms against 7.7 s


def test_btrfs_first_write_does_not_grow_with_file_size_from_setup_traffic():
    small, big = (sim.probe("btrfs", profile="hdd", file_size=size)["first_write_s"] for size in (MiB, 64 * MiB))
    assert big == pytest.approx(small, rel=0.01)


def test_settling_counts_in_setup_and_can_be_turned_off():
    spec = {"name": "settle", "profile": "hdd", "image": {"kind": "probe", "file_size": "256MiB"},
            "workload": {"kind": "copyup_probe", "write_size": 4096}}
    quiet = sim.run_scenario(spec)
    busy = sim.run_scenario({**spec, "settle": False})
    flush = 256 * MiB / load_profile("hdd").disk.write_bandwidth
    assert quiet.summary["setup_s"].iloc[0] >= flush
    assert busy.summary["setup_s"].iloc[0] < flush
    assert "settle" in set(quiet.ops["op"]) and "settle" not in set(busy.ops["op"])
