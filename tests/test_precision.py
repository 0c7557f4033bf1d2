"""The precision choice on machines with and without bf16 units (the detection is patched both ways)."""

import pytest
import torch

from spanqa import precision
from spanqa.errors import SpanqaError


@pytest.fixture(params=[True, False], ids=["bf16-units", "avx2-only"])
def bf16_units(request, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: request.param)
    return request.param


def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_natively(bf16_units):
    assert precision.resolve_precision("auto", torch.device("cpu")) == ("bf16" if bf16_units else "fp32")
    assert ("no native bf16" in precision.describe("fp32", torch.device("cpu"))) != bf16_units


def test_an_explicit_precision_is_kept_and_fp16_needs_a_gpu(bf16_units):
    cpu = torch.device("cpu")
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(SpanqaError, match="fp16 needs a CUDA GPU"):
        precision.resolve_precision("fp16", cpu)


def test_the_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    precision._cpuinfo.cache_clear()
    try:
        for flags, expected in (("fpu avx2 fma", False), ("fpu avx512f avx512_bf16", True), ("amx_bf16 amx_tile", True)):
            fake = tmp_path / "cpuinfo"
            fake.write_text(f"model name\t: test\nflags\t\t: {flags}\n")
            monkeypatch.setattr(precision, "Path", lambda _p, fake=fake: fake)
            precision._cpuinfo.cache_clear()
            assert precision.cpu_has_native_bf16() is expected
    finally:
        monkeypatch.undo()
        precision._cpuinfo.cache_clear()


def test_a_onednn_isa_cap_below_bf16_means_no_bf16_units(tmp_path, monkeypatch):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: test\nflags\t\t: avx2 avx512f avx512_bf16\n")
    monkeypatch.setattr(precision, "Path", lambda _p: fake)
    precision._cpuinfo.cache_clear()
    try:
        for cap, expected in (("", True), ("avx2", False), ("AVX512_CORE_VNNI", False), ("AVX512_CORE_BF16", True),
                              ("ALL", True)):
            monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
            assert precision.cpu_has_native_bf16() is expected, cap
        # measurements taken under a cap are not reused without it (backends.choose compares signatures)
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
        assert precision.cpu_signature().endswith("| oneDNN ISA <= AVX2")
    finally:
        monkeypatch.undo()
        precision._cpuinfo.cache_clear()


def test_bf16_asked_for_on_a_cpu_without_bf16_units_warns_once(bf16_units, monkeypatch, caplog):
    import logging

    monkeypatch.setattr(precision, "_warned", [])
    with caplog.at_level(logging.WARNING, logger="spanqa.precision"):
        for _ in range(3):
            assert precision.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    warnings = [r for r in caplog.records if "without bf16 units" in r.getMessage()]
    assert len(warnings) == (0 if bf16_units else 1)


def test_ask_and_predict_say_which_backend_and_precision_answer(tiny_model, tmp_path, capsys):
    from conftest import V1

    from spanqa.cli import main

    assert main(["ask", "--model", str(tiny_model), "--question", "Who?", "--context", "Ada wrote it.",
                 "--precision", "fp32", "--device", "cpu"]) == 0
    assert "(torch fp32 on cpu)" in capsys.readouterr().err
    assert main(["predict", V1, "--model", str(tiny_model), "--output", str(tmp_path / "p.json"),
                 "--precision", "fp32", "--device", "cpu"]) == 0
    assert "torch fp32 on cpu; wrote" in capsys.readouterr().err
