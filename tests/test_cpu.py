"""The CPU's instruction sets, and the precision that does not fit them."""

from __future__ import annotations

from lookalike import cpu

AVX2_ONLY = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n"
)
SAPPHIRE = "flags\t\t: avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8\n"


def test_flags_are_read_from_cpuinfo():
    have = cpu.instruction_sets(AVX2_ONLY)
    assert have["avx2"] and not have["avx512f"] and not have["amx_bf16"]
    assert cpu.instruction_sets(SAPPHIRE)["amx_bf16"]
    assert cpu.describe(AVX2_ONLY).startswith("avx2=yes avx512f=no")
    assert not any(cpu.instruction_sets("").values())  # unreadable: nothing claimed


def test_bf16_warns_only_without_bf16_hardware():
    line = cpu.precision_warning("bf16", AVX2_ONLY)
    assert line and "no bf16 instructions" in line and "\n" not in line
    assert cpu.precision_warning("bf16", SAPPHIRE) is None
    assert cpu.precision_warning("fp32", AVX2_ONLY) is None
    assert cpu.precision_warning("int8", AVX2_ONLY) is None


def test_auto_precision_takes_int8_only_with_int8_instructions():
    assert cpu.auto_precision(AVX2_ONLY)[0] == "fp32"
    assert "precision: int8" in cpu.auto_precision(AVX2_ONLY)[1]
    assert cpu.auto_precision(SAPPHIRE)[0] == "int8"
    assert cpu.auto_precision("flags\t: avx2 avx_vnni\n")[0] == "int8"


def test_auto_is_a_precision_parameter():
    from lookalike import params

    assert not params.validate({"precision": "auto"})[1]
    assert params.validate({"precision": "int16"})[1]
