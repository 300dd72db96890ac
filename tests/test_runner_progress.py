"""Progress display: plain lines off a terminal (never escape codes), a Rich bar on one."""

from __future__ import annotations

import io

from agentdata_tui.records import Example
from agentdata_tui.runner.progress import PlainProgress, RichProgress, make_progress


def _ex(iid: str, reward: float, success: bool, error: str | None = None) -> Example:
    return Example(
        instance_id=iid,
        messages=[],
        reward=reward,
        success=success,
        error=error,
        exit_status="Submitted",
        model_calls=3,
    )


def test_plain_progress_lines_and_summary() -> None:
    buf = io.StringIO()
    p = PlainProgress(buf, every_s=0.0)
    p.run_started(total=4, pending=3, done_before=1)
    p.rollout_finished(_ex("a", 1.0, True), 2.5)
    p.rollout_finished(_ex("b", 0.0, False, error="ModelError: boom\nmore"), 1.0)
    p.tick()
    p.run_finished({}, 10.0, stopped=False)
    text = buf.getvalue()
    assert "3 rollouts to go of 4 (1 already done)" in text
    assert "[2/4] a#0 | Submitted | reward 1.00 | success" in text
    assert "[3/4] b#0" in text and "error: ModelError: boom" in text and "more" not in text
    # A resumed run: the whole run's figures first, this session's apart, both labelled.
    assert "progress: 3/4 done (1 before this session); whole run: success 50%" in text
    assert "this session: 2 done, success 50%, avg reward 0.500, errors 1" in text
    assert text.strip().splitlines()[-1].startswith("finished: 3/4 done")
    assert "\x1b" not in text


def test_plain_summary_only_every_interval() -> None:
    buf = io.StringIO()
    p = PlainProgress(buf, every_s=3600)
    p.run_started(total=1, pending=1, done_before=0)
    p.tick()
    assert "progress:" not in buf.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_progress_picks_by_terminal() -> None:
    assert isinstance(make_progress(io.StringIO()), PlainProgress)
    tty = _Tty()
    p = make_progress(tty)
    assert isinstance(p, RichProgress)
    p.run_started(total=2, pending=2, done_before=0)
    p.rollout_finished(_ex("a", 1.0, True), 1.0)
    p.rollout_finished(_ex("b", 0.0, False, error="SandboxError: gone"), 1.0)
    p.run_finished({}, 2.0, stopped=True)
    out = tty.getvalue()
    assert "2/2" in out and "stopped: 2/2 done" in out and "SandboxError: gone" in out
