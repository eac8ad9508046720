"""The CPU kernels torch uses are pinned before it loads, so a study trains to the same numbers on
an AVX-512 machine as on an AVX2 one; what the user sets wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ablation.cli import cpu_kernels

# what a command leaves torch using: its kernels once `main` has run (here `--help`, which exits)
PROBE = ("from ablation.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
         "import torch\nprint(torch.backends.cpu.get_cpu_capability())")


def _kernels_after_main(**env) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((set(line.split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return set()


@pytest.mark.skipif("avx2" not in _flags(), reason="needs an x86-64 Linux CPU with AVX2")
def test_a_command_pins_torch_to_avx2_kernels_and_a_users_setting_wins():
    assert cpu_kernels() == "avx2"
    assert _kernels_after_main() == "AVX2"
    assert _kernels_after_main(ATEN_CPU_CAPABILITY="default") == "DEFAULT"
