"""The benchmarks' shared machinery: repeated figures with their spread, verdicts on the
median, result files that say what code ran, open-loop latency from the schedule, and
the stage profile's attribution of sampled stacks."""

from __future__ import annotations

import time

from bench import common, e2e_autoscaling, hot_path, loadgen, operator_scale


def test_spread_is_median_min_max_of_what_was_measured() -> None:
    s = common.spread([3.0, None, 1.0, 2.0, 10.0])
    assert s == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4, "values": [3.0, 1.0, 2.0, 10.0]}
    assert common.spread([None, None]) is None
    assert common.median(s) == 2.5
    assert common.median(7.0) == 7.0
    assert common.show(s) == "2.50 [1.00, 10.00]"
    assert common.show(common.spread([4.0])) == "4.00"
    assert common.show(None) == "-"


def test_a_verdict_is_on_the_median_and_keeps_the_spread() -> None:
    # One repetition under the limit does not make the figure meet it.
    t = common.target(common.spread([0.7, 0.9, 0.75]), at_least=0.8, text="ratio")
    assert (t["value"], t["min"], t["max"], t["met"]) == (0.75, 0.7, 0.9, False)
    assert common.target(None, at_most=1.0, text="x")["met"] is None
    assert common.target(0.5, at_most=1.0, text="x") == {
        "value": 0.5, "min": None, "max": None, "target": "x", "met": True,
    }  # fmt: skip


def test_a_result_records_the_commit_and_whether_the_tree_was_clean() -> None:
    facts = common.machine()
    assert len(facts["commit"]) >= 7
    assert facts["tree_clean"] in (True, False)


async def test_open_loop_latency_counts_from_the_scheduled_send() -> None:
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            time.sleep(0.05)  # noqa: ASYNC251 - holds the loop: the second call leaves late
        return "ok"

    samples, _ = await loadgen.scheduled(call, [0.0, 0.001])
    late = samples[1]
    assert late.lag > 0
    assert late.latency >= late.lag  # the wait to be sent is part of the latency


def test_a_stack_is_charged_to_its_innermost_stage() -> None:
    outer = [("run", "asyncio/base_events.py"), ("handle", "kiu/gateway/awsjson.py")]
    hashing = [*outer, ("authenticate", "kiu/gateway/auth.py"), ("_sha256", "kiu/gateway/auth.py")]
    grpc_call = [("_run", "asyncio/events.py"), ("_invoke", "grpc/aio/_call.py")]
    assert hot_path.classify(hashing) == "SigV4: body hash"
    assert hot_path.classify(outer) == "AWS JSON adapter"
    assert hot_path.classify(grpc_call) == "unit client (KServe v2 gRPC)"
    assert hot_path.classify([("main", "somewhere.py")]) == hot_path.OTHER


def test_py_spy_raw_output_is_counted_per_stage() -> None:
    raw = (
        "<module> (kiu/__main__.py:5);_invoke (grpc/aio/_call.py:595) 7\n"
        "<module> (kiu/__main__.py:5);split_image (kiu/gateway/awsjson.py:200) 3\n"
        "garbage line\n"
    )
    counts = hot_path.parse_raw(raw)
    assert counts == {"unit client (KServe v2 gRPC)": 7, "JSON parse of the request": 3}
    rows = hot_path.table(counts, cpu_ms_per_call=1.0)
    assert rows[0] == {"stage": "unit client (KServe v2 gRPC)", "share_pct": 70.0,
                       "ms_per_call": 0.7}  # fmt: skip


def test_cluster_benchmarks_summarise_their_repetitions() -> None:
    runs = [
        {"all_running_s": 40.0, "running_progress": [(1.0, 5)], "note": "a"},
        {"all_running_s": 50.0, "running_progress": [(2.0, 5)], "note": "b"},
        {"all_running_s": 45.0, "running_progress": [(3.0, 5)], "note": "c"},
    ]
    size = operator_scale.summarise(runs)
    assert size["all_running_s"] == 45.0
    assert (size["spread"]["all_running_s"]["min"], size["spread"]["all_running_s"]["max"]) == (
        40.0,
        50.0,
    )
    assert size["running_progress"] == [(1.0, 5)]
    assert size["runs"] == runs
    measured = e2e_autoscaling._spreads([{"up_s": 4.0, "x": None}, {"up_s": 6.0, "x": None}])
    assert measured["up_s"] == common.spread([4.0, 6.0])
    assert measured["x"] is None
