"""A process that runs work keeps the heap it freed (engine/heap.py), where glibc allows it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc tunables: other C libraries keep their own behaviour",
)

# A thread fills ~40 MB of small blocks (its own glibc arena, as the dispatcher thread's
# SQLite page cache), frees them, and prints how much the resident size fell.
FREE_IN_A_THREAD = """
import gc, sys, threading
from workmanager.engine.heap import keep_freed_heap

def rss_kb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS:"))

if sys.argv[1] == "keep":
    assert keep_freed_heap()
result = {}
def fill_and_free():
    blocks = [bytearray(2000) for _ in range(20000)]
    result["peak"] = rss_kb()
    del blocks
    gc.collect()
    result["after"] = rss_kb()
thread = threading.Thread(target=fill_and_free)
thread.start()
thread.join()
print((result["peak"] - result["after"]) // 1024)
"""


def dropped_mb(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", FREE_IN_A_THREAD, mode], capture_output=True, text=True, timeout=60, check=True
    )
    return int(done.stdout.strip())


def test_by_default_glibc_hands_a_threads_freed_heap_back_to_the_kernel():
    assert dropped_mb("default") > 20


def test_a_process_that_runs_work_keeps_its_freed_heap():
    assert dropped_mb("keep") < 5


def test_keeping_the_freed_heap_twice_is_harmless():
    from workmanager.engine.heap import keep_freed_heap

    assert keep_freed_heap() == keep_freed_heap()
