"""The caching buffer pool: large blocks are reused, stay valid after the pool is left,
small ones are untouched, the cap holds, and compiled models give the same outputs in it."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from sparseift.inference import cached_bytes, pooled_buffers, release_buffers

LARGE = 3 << 20  # floats: 12 MiB, well above the 1 MiB threshold


def test_large_blocks_are_reused_and_released(ext):
    release_buffers()
    with pooled_buffers() as active:
        assert active
        first = torch.empty(LARGE)
        address = first.data_ptr()
        assert address % (2 << 20) == 0  # huge-page aligned
        del first
        assert cached_bytes() >= 4 * LARGE
        again = torch.empty(LARGE)
        assert again.data_ptr() == address  # the same block, no new pages
        assert cached_bytes() == 0
        del again
    assert release_buffers() >= 4 * LARGE
    assert cached_bytes() == 0


def test_blocks_outlive_the_pool_and_small_tensors_are_untouched(ext):
    release_buffers()
    with pooled_buffers():
        big = torch.arange(LARGE, dtype=torch.float32)
        small = torch.ones(16)
        assert cached_bytes() == 0
    # after the pool is uninstalled the block is still valid and goes back to the pool on free
    assert big[-1].item() == LARGE - 1 and small.sum().item() == 16
    assert cached_bytes() == 0
    del big
    assert cached_bytes() >= 4 * LARGE
    with pooled_buffers():
        del small  # a block of the previous allocator freed while the pool is installed
    release_buffers()


def test_nested_pools_stay_installed_until_the_outermost_exits(ext):
    release_buffers()
    with pooled_buffers():
        with pooled_buffers():
            pass
        block = torch.empty(LARGE)
        address = block.data_ptr()
        del block
        assert torch.empty(LARGE).data_ptr() == address
    outside = torch.empty(LARGE)  # default allocator again: nothing is taken from the pool
    assert cached_bytes() >= 4 * LARGE
    del outside
    release_buffers()


def test_onednn_and_kernels_give_the_same_results_in_the_pool(ext):
    x = torch.randn(4, 32, 40, 40).contiguous(memory_format=torch.channels_last)
    w = torch.randn(48, 32, 3, 3).contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x, w, padding=1)
    with pooled_buffers():
        for _ in range(3):  # reused blocks hold old data: results must not depend on it
            assert torch.equal(F.conv2d(x, w, padding=1), expected)
    release_buffers()


def test_cap_from_environment(ext, tmp_path):
    code = (
        "import torch\n"
        "from sparseift.inference import cached_bytes, pooled_buffers\n"
        "with pooled_buffers() as active:\n"
        "    assert active\n"
        "    block = torch.empty(3 << 20)\n"
        "    del block\n"
        "print(cached_bytes())\n"
    )
    env = {**os.environ, "SPARSEIFT_POOL_MB": "4"}  # below the 12 MiB block: nothing is kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0"


def test_a_full_cache_makes_room_for_the_block_just_returned(ext):
    code = (
        "import torch\n"
        "from sparseift.inference import cached_bytes, pooled_buffers\n"
        "with pooled_buffers():\n"
        "    old = torch.empty(3 << 20)\n"  # 12 MiB: a block of an earlier model, cached on free
        "    del old\n"
        "    for _ in range(3):\n"  # the model running now: its 20 MiB block must be reused
        "        new = torch.empty(5 << 20)\n"
        "        pointers = {new.data_ptr()} if _ == 0 else pointers | {new.data_ptr()}\n"
        "        del new\n"
        "    print(len(pointers), cached_bytes() >> 20)\n"
    )
    env = {**os.environ, "SPARSEIFT_POOL_MB": "24"}  # room for one of the two blocks, not both
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "1 20"  # one block reused; the old one evicted
