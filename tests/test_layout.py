"""The training step's memory format, chosen by measurement (gankernels.layout): timing
both formats leaves the run as it was, the choice is cached, reported and kept on resume."""

import dataclasses
from pathlib import Path

import pytest
import torch
from test_train import assert_same_state, load, tiny

import gankernels as gk
import gankernels.train as train_mod
from gankernels import fusion, layout
from gankernels.train import train

pytest.importorskip("sklearn", reason="the tests train on sklearn's digits")


def _fake_choose(answer: bool, calls: list):
    """A choose() that runs the step in both formats (as measuring does) and answers."""

    def choose(run_step, key, device):
        for channels_last in (True, False, True):
            run_step(channels_last)
            calls.append(key)
        return layout.LayoutDecision(answer, "measured", 2.0, 1.0 if answer else 3.0)

    return choose


@pytest.mark.parametrize(
    "model,loss,answer",
    [("dcgan", "wgan-gp", True), ("sngan", "hinge", False), ("stylegan2", "r1", True)],
)
def test_timing_the_step_leaves_the_run_unchanged(tmp_path, monkeypatch, model, loss, answer):
    """The timed steps draw batches, noise and dropout and update spectral norm's vectors
    and running statistics; all of it is put back, so the run equals one told the format."""
    extra = {"reg_every": 2} if loss == "r1" else {}
    told = tiny(tmp_path / "told", model=model, loss=loss, steps=3, channels_last=answer, **extra)
    train(told)
    calls: list = []
    monkeypatch.setattr(train_mod.layout, "choose", _fake_choose(answer, calls))
    timed = dataclasses.replace(told, channels_last=None, out=str(tmp_path / "timed"))
    result = train(timed)
    assert len(calls) == 3 and f"model {model}" in calls[0] and "step" in calls[0]
    a, b = load(Path(told.out) / "last.pt"), load(Path(timed.out) / "last.pt")
    assert b["channels_last"] is answer
    for part in ("G", "D", "G_ema", "opt_g", "opt_d", "data"):
        assert_same_state(a[part], b[part], where=part)
    assert len(result.history) == 2
    told_log = (Path(told.out) / "log.csv").read_text().splitlines()
    timed_log = (Path(timed.out) / "log.csv").read_text().splitlines()
    strip = [line.rsplit(",", 2)[0] for line in told_log]  # without img/s and seconds
    assert strip == [line.rsplit(",", 2)[0] for line in timed_log]


def test_the_choice_is_kept_on_resume_and_skipped_where_not_ours(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(train_mod.layout, "choose", _fake_choose(True, calls))
    first = tiny(tmp_path, loss="lsgan", steps=2, ckpt_every=1)
    train(first)
    assert load(Path(first.out) / "last.pt")["channels_last"] is True and len(calls) == 3

    def refuse(*args):
        raise AssertionError("a resumed run re-timed its layout")

    monkeypatch.setattr(train_mod.layout, "choose", refuse)
    train(dataclasses.replace(first, steps=3, resume=True))
    assert load(Path(first.out) / "last.pt")["channels_last"] is True
    # Plain torch keeps torch's default; an explicit setting is obeyed.
    for name, extra, expected in (
        ("reference", dict(reference=True), False),
        ("asked", dict(channels_last=True), True),
        ("asked-off", dict(channels_last=False), False),
    ):
        config = tiny(tmp_path / name, loss="lsgan", steps=1, **extra)
        train(config)
        assert load(Path(config.out) / "last.pt")["channels_last"] is expected


def test_auto_mode_measures_once_caches_and_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path / "cache"))
    fusion.clear_decisions()
    try:
        with gk.use_fusion("auto"):
            config = tiny(tmp_path / "a", loss="wgan-gp", steps=2, progress=True)
            train(config)
            said = capsys.readouterr().out
            assert "memory format:" in said and ", measured)" in said, said
            entries = [
                e for k, e in fusion._disk._load().items() if k.startswith("training step layout")
            ]
            assert len(entries) == 1 and entries[0]["choice"] in layout.FORMATS
            assert entries[0]["contiguous_ms"] > 0 and entries[0]["channels_last_ms"] > 0
            fusion.clear_decisions()
            train(dataclasses.replace(config, out=str(tmp_path / "b")))
            assert ", cache)" in capsys.readouterr().out
        # Whatever was chosen, the numbers are those of the contiguous run to tolerance.
        with gk.use_fusion("torch"):
            plain = dataclasses.replace(config, out=str(tmp_path / "c"), channels_last=False)
            train(plain)
        a, b = load(Path(config.out) / "last.pt"), load(Path(plain.out) / "last.pt")
        assert_same_state(a["G"], b["G"], atol=1e-4, rtol=1e-4)
        assert_same_state(a["D"], b["D"], atol=1e-4, rtol=1e-4)
    finally:
        fusion.clear_decisions()


def test_fixed_modes_keep_the_rule_without_timing():
    def run_step(channels_last):
        raise AssertionError("timed in a mode that never times")

    for mode in ("fixed", "fused", "torch"):
        with gk.use_fusion(mode):
            decision = layout.choose(run_step, "k", torch.device("cpu"))
        assert decision == layout.LayoutDecision(False, "rule")
    assert "contiguous (fixed rule)" in decision.why()
    measured = layout.LayoutDecision(True, "measured", 10.0, 7.0)
    assert measured.why() == "channels_last (step 7 ms vs 10 ms contiguous, measured)"
