"""Drift: the reference profile (nb2prod.authoring.profile) and the served monitor (nb2prod.runtime.drift)."""

import gc
import json
import logging
import math
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from nb2prod.authoring.profile import profile
from nb2prod.runtime.drift import EPSILON, DriftMonitor, psi


def draw(n, seed, shift=0.0, mix=(0.7, 0.2, 0.1)):
    """``n`` rows of the test population; ``shift`` moves ``x`` by that many sd."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(10.0 + 2.0 * shift, 2.0, n),
        "y": rng.exponential(1.0, n),
        "k": rng.integers(0, 4, n),
        "city": pd.array(rng.choice(["paris", "lyon", "nice"], n, p=list(mix)), dtype="str"),
        "member": rng.random(n) < 0.3,
    })


REFERENCE = draw(20_000, seed=0)
PROFILE = profile(REFERENCE)


def feed(monitor, X, batch):
    """Observe ``X`` in requests of ``batch`` rows; every feature ``observe`` returned."""
    crossed = []
    for i in range(0, len(X), batch):
        crossed += monitor.observe(X.iloc[i:i + batch])
    return crossed


def statuses(monitor):
    return {n: f["status"] for n, f in monitor.report()["features"].items()}


# --- the profile --------------------------------------------------------------------

def test_profile_round_trips_through_strict_json_and_is_stable():
    text = json.dumps(PROFILE, allow_nan=False)
    assert json.loads(text) == PROFILE
    assert profile(REFERENCE.sample(frac=1, random_state=3)) == PROFILE  # row order is irrelevant
    assert len(text) < 3_000  # small: no per-row data
    for name, f in PROFILE["features"].items():
        total = sum(f["proportions"]) + f.get("other", 0) + f["null"]
        assert math.isclose(total, 1, abs_tol=1e-5), name


def test_profile_numeric_has_decile_edges_and_open_outer_bins():
    x = PROFILE["features"]["x"]
    assert x["kind"] == "numeric" and len(x["edges"]) == 9 and len(x["proportions"]) == 10
    assert x["edges"] == sorted(set(x["edges"]))
    assert all(abs(p - 0.1) < 0.002 for p in x["proportions"])
    bins = DriftMonitor(PROFILE).histogram("x")["bins"]
    assert bins[0].startswith("[-inf, ") and bins[-2].endswith(", inf)") and bins[-1] == "null"


def test_profile_kinds_nulls_and_skipped_columns():
    df = pd.DataFrame({"n": pd.array([1, None, 3, 4], dtype="Int64"),
                       "s": ["a", None, "b", "a"],
                       "c": pd.Categorical(["u", "v", "u", None], categories=["u", "v", "w"]),
                       "b": [True, False, True, True],
                       "t": pd.to_datetime(["2024-01-01"] * 4)})
    p = profile(df)
    kinds = {n: f["kind"] for n, f in p["features"].items()}
    assert kinds == {"n": "numeric", "s": "categorical", "c": "categorical", "b": "categorical"}
    assert p["skipped"] == {"t": str(df["t"].dtype)}
    assert p["features"]["n"]["null"] == 0.25 and p["features"]["s"]["null"] == 0.25
    assert p["features"]["c"]["categories"] == ["u", "v"]  # the unused category is not listed
    assert p["features"]["b"]["categories"] == [True, False]


def test_profile_keeps_top_k_categories_and_the_rest_as_other():
    df = pd.DataFrame({"s": ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + ["d"] * 1})
    s = profile(df, top_k=2)["features"]["s"]
    assert s["categories"] == ["a", "b"] and s["proportions"] == [0.5, 0.3]
    assert s["other"] == 0.2


def test_profile_refuses_bad_arguments():
    with pytest.raises(ValueError, match="no rows"):
        profile(REFERENCE.head(0))
    with pytest.raises(ValueError, match="bins"):
        profile(REFERENCE, bins=1)


# --- PSI ----------------------------------------------------------------------------

def test_psi_formula():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([0.7, 0.3], [0.3, 0.7]) == pytest.approx(0.8 * math.log(7 / 3))
    # an empty bin is floored at EPSILON, not infinite
    assert psi([1.0, 0.0], [0.9, 0.1]) == pytest.approx(
        (0.9 - 1) * math.log(0.9) + (0.1 - EPSILON) * math.log(0.1 / EPSILON))


def test_same_distribution_stays_below_0_1():
    monitor = DriftMonitor(PROFILE, window=5_000)
    assert feed(monitor, draw(5_000, seed=1), batch=50) == []
    report = monitor.report()
    assert report["status"] == "ok" and report["rows"] == 5_000
    assert all(f["psi"] < 0.1 for f in report["features"].values()), report


def test_mean_shift_of_one_sd_crosses_0_2():
    monitor = DriftMonitor(PROFILE, window=5_000)
    feed(monitor, draw(5_000, seed=2, shift=1.0), batch=100)
    report = monitor.report()
    assert report["features"]["x"]["psi"] > 0.2 and report["drifting"] == ["x"]
    assert report["status"] == "drift"


def test_flipped_category_mix_crosses_0_2():
    monitor = DriftMonitor(PROFILE, window=5_000)
    feed(monitor, draw(5_000, seed=3, mix=(0.1, 0.2, 0.7)), batch=100)
    assert monitor.report()["drifting"] == ["city"]


# --- the window ---------------------------------------------------------------------

def test_window_memory_is_constant_after_100k_rows():
    monitor = DriftMonitor(PROFILE, window=2_000)
    held = monitor.nbytes
    rows = draw(1_000, seed=4)
    # Requests made up front: the test's own slicing must not count as the monitor's.
    requests = [rows.iloc[i:i + 100].copy() for i in range(0, 1_000, 100)]
    for X in requests:  # warm up
        monitor.observe(X)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        for X in requests:
            monitor.observe(X)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert monitor.nbytes == held
    assert grown < 10_000, f"{grown} bytes retained after 100k rows"
    assert monitor.report()["rows"] == 2_000 and monitor.report()["observed"] == 101_000


def test_shift_then_return_for_a_full_window_is_ok_again():
    monitor = DriftMonitor(PROFILE, window=2_000)
    feed(monitor, draw(2_000, seed=5, shift=1.0), batch=25)
    assert statuses(monitor)["x"] == "drift"
    feed(monitor, draw(2_000, seed=6), batch=25)
    assert monitor.report()["status"] == "ok"


def test_window_holds_exactly_the_last_rows_whatever_the_batch_sizes():
    rng = np.random.default_rng(7)
    X = draw(6_000, seed=7)
    monitor = DriftMonitor(PROFILE, window=700, min_rows=100)
    i = 0
    while i < len(X):
        n = int(rng.integers(1, 400))
        monitor.observe(X.iloc[i:i + n])
        i += n
    last = X["city"].iloc[-700:].value_counts(normalize=True)
    hist = monitor.histogram("city")
    window = dict(zip(hist["bins"], hist["window"]))
    assert hist["rows"] == 700
    assert all(window[c] == pytest.approx(last.get(c, 0.0)) for c in ("paris", "lyon", "nice"))


def test_a_batch_larger_than_the_window_keeps_its_newest_rows():
    monitor = DriftMonitor(profile(pd.DataFrame({"s": ["a", "b"]})), window=100, min_rows=10)
    monitor.observe(pd.DataFrame({"s": ["a"] * 50 + ["b"] * 100}))
    assert monitor.histogram("s")["window"] == [0.0, 1.0, 0.0, 0.0]  # a, b, other, null
    assert monitor.report()["observed"] == 150


# --- statuses and warnings ----------------------------------------------------------

def test_one_warning_per_crossing(caplog):
    monitor = DriftMonitor(PROFILE, window=1_000, min_rows=200, check_every=20)
    with caplog.at_level(logging.INFO, logger="nb2prod"):
        crossed = feed(monitor, draw(3_000, seed=8, shift=1.0), batch=1)
        assert crossed == ["x"]
        feed(monitor, draw(2_000, seed=9), batch=10)
        assert statuses(monitor)["x"] == "ok"
        crossed = feed(monitor, draw(3_000, seed=10, shift=1.0), batch=7)
        assert crossed == ["x"]
        monitor.report()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("'x'" in r.getMessage() for r in warnings)
    assert sum("back to" in r.getMessage() for r in caplog.records) == 1


def test_insufficient_data_until_min_rows():
    monitor = DriftMonitor(PROFILE, window=1_000, min_rows=500, check_every=1)
    assert monitor.report()["features"]["x"]["psi"] is None
    assert feed(monitor, draw(499, seed=11, shift=3.0), batch=1) == []
    report = monitor.report()
    assert report["status"] == "insufficient_data" and report["rows"] == 499
    assert set(statuses(monitor).values()) == {"insufficient_data"}
    assert report["features"]["x"]["psi"] > 0.2  # still shown
    assert monitor.observe(draw(1, seed=12, shift=3.0)) == ["x"]  # the 500th row decides


# --- binning of served values -------------------------------------------------------

def test_unknown_categories_go_to_other_and_nulls_to_null():
    monitor = DriftMonitor(PROFILE, window=100, min_rows=1)
    live = draw(10, seed=13)
    live["city"] = pd.array(["paris", "lyon", "rome", "oslo", None, np.nan, "nice", "nice",
                             "paris", "paris"], dtype="str")
    live["member"] = pd.array([True, None, False, True, True, True, True, True, True, True],
                              dtype="boolean")
    monitor.observe(live)
    city = dict(zip(*[monitor.histogram("city")[k] for k in ("bins", "window")]))
    assert city == {"paris": 0.3, "nice": 0.2, "lyon": 0.1, "__other__": 0.2, "null": 0.2}
    member = dict(zip(*[monitor.histogram("member")[k] for k in ("bins", "window")]))
    assert member == {"False": 0.1, "True": 0.8, "__other__": 0.0, "null": 0.1}


def test_categorical_dtype_and_object_columns_are_binned_by_value():
    p = profile(pd.DataFrame({"c": pd.Categorical(["u", "v"] * 50), "o": [1, "two"] * 50}))
    monitor = DriftMonitor(p, window=10, min_rows=1)
    live = pd.Categorical(["v", "w", None], categories=["u", "v", "w"])
    monitor.observe(pd.DataFrame({"c": live, "o": [1, "two", [3]]}))  # [3]: unhashable
    assert monitor.histogram("c")["window"] == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3])
    assert monitor.histogram("o")["window"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])


def test_numeric_nulls_and_infinities():
    monitor = DriftMonitor(PROFILE, window=10, min_rows=1)
    live = draw(4, seed=14).astype({"k": "Int64"})
    live["x"] = [np.nan, -np.inf, np.inf, 10.0]
    live.loc[0, "k"] = pd.NA
    monitor.observe(live)
    x = monitor.histogram("x")["window"]
    assert x[0] == x[-2] == x[-1] == 0.25  # -inf, +inf in the outer bins; NaN null
    assert monitor.histogram("k")["window"][-1] == 0.25


def test_constant_column_has_a_bin_either_side():
    ref = pd.DataFrame({"c": np.full(1_000, 5.0)})
    p = profile(ref)
    assert p["features"]["c"]["edges"] == [5.0, float(np.nextafter(5.0, np.inf))]
    for value, expected in ((5.0, "ok"), (6.0, "drift"), (4.0, "drift")):
        monitor = DriftMonitor(p, window=100, min_rows=100)
        monitor.observe(pd.DataFrame({"c": np.full(100, value)}))
        assert monitor.report()["status"] == expected, value
    assert DriftMonitor(p).histogram("c")["bins"] == ["[-inf, 5.0)", "= 5.0",
                                                      "(5.0, inf)", "null"]


def test_discrete_column_gives_each_value_its_own_bin():
    ref = pd.DataFrame({"d": np.r_[np.zeros(700), np.ones(300)]})
    p = profile(ref)
    monitor = DriftMonitor(p, window=100, min_rows=100)
    monitor.observe(pd.DataFrame({"d": np.r_[np.zeros(70), np.ones(20), np.full(10, 2.0)]}))
    hist = monitor.histogram("d")
    assert hist["bins"] == ["[-inf, 0.0)", "= 0.0", "(0.0, 1.0)", "= 1.0", "(1.0, inf)", "null"]
    assert hist["reference"] == [0.0, 0.7, 0.0, 0.3, 0.0, 0.0]
    assert hist["window"] == pytest.approx([0.0, 0.7, 0.0, 0.2, 0.1, 0.0])
    assert monitor.report()["status"] == "drift"  # 10% of a never-seen value


def test_mostly_zero_column_isolates_the_zeros():
    rng = np.random.default_rng(15)
    ref = pd.DataFrame({"z": np.where(rng.random(10_000) < 0.6, 0.0, rng.exponential(1, 10_000))})
    hist = DriftMonitor(profile(ref)).histogram("z")
    zeros = hist["reference"][hist["bins"].index("= 0.0")]
    assert zeros == pytest.approx(0.6, abs=0.02)  # not mixed with the small positive values


def test_records_are_binned_like_the_frame_the_service_makes_of_them():
    from nb2prod.core.spec import ColumnSpec
    from nb2prod.runtime.schema import FrameMaker

    columns = (ColumnSpec("x", "float", True), ColumnSpec("k", "integer", True),
               ColumnSpec("city", "category", True, ("paris", "lyon", "nice", "rome")),
               ColumnSpec("member", "boolean", True), ColumnSpec("y", "float", False))
    records = draw(300, seed=19).to_dict("records")
    for i, r in enumerate(records[:40]):  # nulls, and a category the reference never had
        r[["x", "k", "city", "member"][i % 4]] = None
        r["city"] = "rome" if i % 4 == 1 else r["city"]
    frame = FrameMaker(columns)(records)
    as_frame, as_records = (DriftMonitor(PROFILE, window=500, min_rows=1) for _ in range(2))
    as_frame.observe(frame)
    as_records.observe_records(records)
    for name in PROFILE["features"]:
        assert as_records.histogram(name) == as_frame.histogram(name), name
    city = dict(zip(*[as_records.histogram("city")[k] for k in ("bins", "window")]))
    assert city["__other__"] == pytest.approx(10 / 300) and city["null"] == pytest.approx(10 / 300)


def test_the_service_bins_from_the_frame_or_the_records_alike():
    """``bins`` reads an all-float frame as one array and anything else from the records;
    either way the window holds what ``observe`` would put there."""
    rng = np.random.default_rng(20)
    numeric = pd.DataFrame(rng.normal(size=(3_000, 4))).add_prefix("f")
    ref = profile(numeric)
    records = numeric.iloc[:700].to_dict("records")
    records[3]["f1"] = None  # a null in a nullable column
    frame = pd.DataFrame(records, dtype=float)
    via_frame, via_records, observed = (DriftMonitor(ref, window=500, min_rows=1)
                                        for _ in range(3))
    assert via_frame.add(via_frame.bins(frame, records), len(records)) == []
    via_records.add(via_records.bins(None, records), len(records))
    observed.observe(frame)
    for name in ref["features"]:
        assert via_frame.histogram(name) == observed.histogram(name) \
            == via_records.histogram(name), name
    assert via_frame.report()["observed"] == 700 and via_frame.report()["rows"] == 500


# --- robustness -----------------------------------------------------------------------

def test_a_big_request_is_binned_like_small_ones():
    rng = np.random.default_rng(18)
    wide = pd.DataFrame(rng.normal(size=(2_000, 200))).add_prefix("f")  # binned in chunks
    big, small = (DriftMonitor(profile(wide), window=2_000, min_rows=1) for _ in range(2))
    big.observe(wide)
    feed(small, wide, batch=100)
    for name in ("f0", "f99", "f199"):
        assert big.histogram(name) == small.histogram(name)


def test_eight_threads_observe_concurrently_with_exact_counts():
    X = draw(8 * 3_000, seed=16)
    parts = [X.iloc[t * 3_000:(t + 1) * 3_000] for t in range(8)]
    sizes = [1, 3, 17, 100]
    shared = DriftMonitor(PROFILE, window=len(X), min_rows=1)

    def work(t):
        i, j = 0, 0
        while i < len(parts[t]):
            shared.observe(parts[t].iloc[i:i + sizes[j % 4]])
            i, j = i + sizes[j % 4], j + 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show up
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    alone = DriftMonitor(PROFILE, window=len(X), min_rows=1)
    alone.observe(X)
    assert shared.report()["observed"] == shared.report()["rows"] == len(X)
    for name in PROFILE["features"]:
        assert shared.histogram(name) == alone.histogram(name), name


def test_observe_refuses_a_frame_without_a_profiled_column():
    with pytest.raises(ValueError, match="city"):
        DriftMonitor(PROFILE).observe(draw(3, seed=17).drop(columns="city"))


def test_monitor_refuses_bad_settings_and_foreign_profiles():
    with pytest.raises(ValueError, match="min_rows"):
        DriftMonitor(PROFILE, window=100, min_rows=500)
    with pytest.raises(ValueError, match="format"):
        DriftMonitor({"features": {}})


def test_report_is_json():
    monitor = DriftMonitor(PROFILE, window=1_000, min_rows=10)
    monitor.observe(draw(100, seed=18))
    report = json.loads(json.dumps(monitor.report(), allow_nan=False))
    assert list(report["features"]) == list(PROFILE["features"])
    assert report["threshold"] == 0.2 and report["window"] == 1_000


def test_served_side_imports_neither_great_expectations_nor_sklearn():
    code = ("import sys, nb2prod.runtime.drift; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'great_expectations', 'sklearn', 'scipy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
