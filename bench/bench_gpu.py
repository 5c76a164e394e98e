"""Cost of one GpuCollector.sample(), per device, against the raw NVML calls it makes.

Usage:
    python bench/bench_gpu.py                 # real NVML (a GPU machine); falls back to the fake
    python bench/bench_gpu.py --fake t4-not-supported --rounds 2000

Both sides run in one process, interleaved round by round, so they see the same machine state.
The "raw" side calls exactly the pynvml functions the collector ends up calling on this host (the
supported ones, found by one probe round), with the same arguments, in a try/except, and builds
nothing; the collector side is the full GpuCollector.sample() (gateway, unsupported-field cache,
conversions, GpuSample records). The ratio is the collector's overhead over bare NVML.

With the fake module (tests/support/fake_nvml.py, recorded values, no driver) each "NVML call" is a
Python function call, far cheaper than a real driver round trip, so the ratio printed there is a
pessimistic upper bound on the overhead; the output says which backend was measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comet_agent.collectors import Unavailable  # noqa: E402
from comet_agent.collectors.gpu import GpuCollector  # noqa: E402
from comet_agent.sources.nvml import NVLINK_FIELDS  # noqa: E402


def _raw_calls(module, handles):
    """Every (function, args) a full GpuCollector tick asks for, per handle."""
    calls = []
    # The NVLink totals the collector asks for in one field-values call (sources/nvml.py NVLINK_FIELDS).
    nvlink_fields = [
        (getattr(module, constant), scope) if scope is not None else getattr(module, constant)
        for _, constant, scope, _ in NVLINK_FIELDS
    ]
    for handle in handles:
        for name, args, kwargs in (
            ("nvmlDeviceGetMemoryInfo", (handle,), {"version": getattr(module, "nvmlMemory_v2", None)}),
            ("nvmlDeviceGetMemoryInfo", (handle,), {}),
            ("nvmlDeviceGetUtilizationRates", (handle,), {}),
            ("nvmlDeviceGetTemperature", (handle, module.NVML_TEMPERATURE_GPU), {}),
            ("nvmlDeviceGetPowerUsage", (handle,), {}),
            ("nvmlDeviceGetEnforcedPowerLimit", (handle,), {}),
            ("nvmlDeviceGetClockInfo", (handle, module.NVML_CLOCK_SM), {}),
            ("nvmlDeviceGetClockInfo", (handle, module.NVML_CLOCK_MEM), {}),
            ("nvmlDeviceGetFanSpeed", (handle,), {}),
            ("nvmlDeviceGetCurrentClocksEventReasons", (handle,), {}),
            (
                "nvmlDeviceGetTotalEccErrors",
                (handle, module.NVML_MEMORY_ERROR_TYPE_CORRECTED, module.NVML_VOLATILE_ECC),
                {},
            ),
            (
                "nvmlDeviceGetTotalEccErrors",
                (handle, module.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, module.NVML_VOLATILE_ECC),
                {},
            ),
            ("nvmlDeviceGetPcieThroughput", (handle, module.NVML_PCIE_UTIL_TX_BYTES), {}),
            ("nvmlDeviceGetPcieThroughput", (handle, module.NVML_PCIE_UTIL_RX_BYTES), {}),
            ("nvmlDeviceGetFieldValues", (handle, nvlink_fields), {}),
            (
                "nvmlDeviceGetRetiredPages",
                (handle, module.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
                {},
            ),
            ("nvmlDeviceGetRetiredPages", (handle, module.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR), {}),
            ("nvmlDeviceGetRetiredPagesPendingStatus", (handle,), {}),
            ("nvmlDeviceGetRemappedRows", (handle,), {}),
        ):
            function = getattr(module, name, None)
            if function is not None:
                calls.append((function, args, {k: v for k, v in kwargs.items() if v is not None}))
    return calls


def _supported(module, calls):
    """The calls that answer on this host (one probe each); memory v1 only if v2 failed."""
    kept, memory_v2_ok = [], set()
    for function, args, kwargs in calls:
        if function.__name__.endswith("GetMemoryInfo") and not kwargs and args[0] in memory_v2_ok:
            continue
        try:
            function(*args, **kwargs)
        except module.NVMLError:
            continue
        if function.__name__.endswith("GetMemoryInfo") and kwargs:
            memory_v2_ok.add(args[0])
        kept.append((function, args, kwargs))
    return kept


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", metavar="MODEL", help="use tests/fixtures/nvml/MODEL.json instead of real NVML")
    parser.add_argument("--rounds", type=int, default=1000, help="interleaved rounds (default 1000)")
    args = parser.parse_args(argv)

    backend, module = "real NVML", None
    if args.fake is None:
        try:
            collector = GpuCollector(environ={})
        except Unavailable as error:
            print(f"real NVML unavailable ({error.reason}); falling back to the fake a100-sxm4-80gb")
            args.fake = "a100-sxm4-80gb"
    if args.fake is not None:
        from tests.support.fake_nvml import build_fake_nvml

        backend = f"FAKE pynvml ({args.fake}, recorded values, no driver)"
        module = build_fake_nvml(args.fake)
        collector = GpuCollector(nvml_module=module, environ={})
    module = collector._gateway.module  # bench only: the very module the collector uses
    gpus = collector.visible_gpus
    collector.sample(0)  # first tick learns which fields are unsupported; steady state from here
    raw = _supported(module, _raw_calls(module, [gpu.handle for gpu in gpus]))

    collector_ns, raw_ns = [], []
    clock = time.perf_counter_ns
    for round_index in range(args.rounds):
        start = clock()
        collector.sample(round_index)
        collector_ns.append(clock() - start)
        start = clock()
        for function, call_args, kwargs in raw:
            try:
                function(*call_args, **kwargs)
            except module.NVMLError:
                pass
        raw_ns.append(clock() - start)
    collector.close()

    devices = len(gpus)
    collector_us = statistics.median(collector_ns) / 1000 / devices
    raw_us = statistics.median(raw_ns) / 1000 / devices
    print(f"backend: {backend}")
    print(f"devices: {devices}; NVML calls per tick: {len(raw)}; rounds: {args.rounds} (median)")
    print(f"GpuCollector.sample(): {collector_us:9.1f} us per device")
    print(f"raw NVML calls:        {raw_us:9.1f} us per device")
    print(f"overhead per device:   {collector_us - raw_us:9.1f} us")
    print(f"ratio collector/raw:   {collector_us / raw_us:9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
