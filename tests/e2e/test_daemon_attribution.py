"""Which host GPUs the daemon feeds into a job's experiment (records built here; no NVML needed)."""

from __future__ import annotations

from comet_agent.daemon import RateLimiter
from comet_agent.engine.job import job_gpu_samples
from comet_agent.records import GpuSample

HOST = [GpuSample(gpu_index=i, taken_at_ms=1, uuid=f"GPU-{i}aaaa-{i}", utilization_percent=10.0 * i) for i in range(4)]


def _picked(samples):
    return [(s.gpu_index, s.uuid) for s in samples]


def test_cuda_visible_devices_selects_and_renumbers_as_the_job_sees_them():
    assert _picked(job_gpu_samples(HOST, cuda_visible_devices="2,0")) == [(0, "GPU-2aaaa-2"), (1, "GPU-0aaaa-0")]


def test_uuid_prefixes_and_cudas_stop_at_the_first_bad_entry():
    assert _picked(job_gpu_samples(HOST, cuda_visible_devices="GPU-3aa,7,1")) == [(0, "GPU-3aaaa-3")]


def test_without_cuda_visible_devices_the_nvml_process_list_decides():
    assert _picked(job_gpu_samples(HOST, cuda_visible_devices=None, used_gpu_indices=[3, 1, 3])) == [
        (0, "GPU-1aaaa-1"),
        (1, "GPU-3aaaa-3"),
    ]


def test_a_job_that_neither_names_nor_uses_a_gpu_gets_none():
    assert job_gpu_samples(HOST, cuda_visible_devices=None) == []
    assert job_gpu_samples(HOST, cuda_visible_devices="") == []
    assert job_gpu_samples([], cuda_visible_devices="0") == []


def test_the_values_stay_with_their_board():
    picked = job_gpu_samples(HOST, cuda_visible_devices="3")
    assert picked[0].utilization_percent == 30.0


def test_rate_limiter_is_per_user_and_slides():
    limiter = RateLimiter(2, window_s=60)
    assert limiter.allow(1000, now_s=0) and limiter.allow(1000, now_s=1)
    assert not limiter.allow(1000, now_s=2)
    assert limiter.allow(1001, now_s=2)  # another user is not affected
    assert limiter.allow(1000, now_s=61)
