"""What this CPU can do: its vector instruction sets, read from ``/proc/cpuinfo``.

The machines lookalike runs on differ from one day to the next (some have AVX-512, VNNI and
bf16, some only AVX2), and the same code runs several times faster on one than on another.
The benchmarks print :func:`describe` beside every figure, and the embedding stage uses
:func:`instruction_sets` to say when a precision does not fit the CPU
(:func:`precision_warning`).
"""

from __future__ import annotations

from pathlib import Path

#: The flags that decide VGG16's speed, as ``/proc/cpuinfo`` spells them.
FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "avx512_bf16",
)
#: Flags that give bf16 arithmetic its own hardware (oneDNN uses them).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: Flags that give int8 dot products their own instructions.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def instruction_sets(cpuinfo: str | None = None) -> dict[str, bool]:
    """Which of :data:`FLAGS` the CPU has.

    Parameters
    ----------
    cpuinfo : str, optional
        The text of ``/proc/cpuinfo`` (default: read it; every flag False where it cannot be
        read, e.g. not on Linux).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    have: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.split(":", 1)[0].strip() == "flags":
            have = set(line.split(":", 1)[1].split())
            break
    return {f: f in have for f in FLAGS}


def describe(cpuinfo: str | None = None) -> str:
    """``"avx2=yes avx512f=no ..."``: one line for a benchmark's output."""
    return " ".join(f"{f}={'yes' if v else 'no'}" for f, v in instruction_sets(cpuinfo).items())


def precision_warning(precision: str, cpuinfo: str | None = None) -> str | None:
    """One line saying why ``precision`` is a poor fit for this CPU, or None when it fits."""
    flags = instruction_sets(cpuinfo)
    if precision == "bf16" and not any(flags[f] for f in BF16_FLAGS):
        return (
            "precision bf16: this CPU has no bf16 instructions (avx512_bf16, amx_bf16), so bf16 "
            "is emulated and slower than fp32; use fp32, or int8 for speed"
        )
    return None


def auto_precision(cpuinfo: str | None = None) -> tuple[str, str]:
    """``precision: auto``: int8 where the CPU has int8 dot-product instructions (VNNI, AMX),
    fp32 elsewhere, and the reason in words.

    int8 is taken only because it was shown to group as well as fp32: on logos-dev, Devicon
    and emoji, P@1 and ARI within 0.01 of fp32 (docs/benchmarks.md, "Precision").
    """
    flags = instruction_sets(cpuinfo)
    if any(flags[f] for f in INT8_FLAGS):
        found = ", ".join(f for f in INT8_FLAGS if flags[f])
        return "int8", f"this CPU has int8 instructions ({found}); int8 groups as well as fp32"
    return "fp32", (
        "this CPU has no VNNI or AMX; int8 still ran about 2.2x faster than fp32 on such a "
        "CPU with the same quality (docs/benchmarks.md): set precision: int8 to take it"
    )
