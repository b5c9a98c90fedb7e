"""kit.progress: bars in notebooks, lines in headless runs, and progress out of llama.cpp child processes."""

import io
import re

from tqdm.auto import tqdm as auto_tqdm

from kit import progress
from kit.models import llamacpp

LINE = re.compile(r"^» (?P<desc>.+?) (?P<n>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<pct>\d+)%\) · (?P<rest>.+)$")


def count_to(n: int, report=None) -> int:
    """Runs in a child process (kit.models.llamacpp.isolated): reports each of n items."""
    for _ in range(n):
        report()
    return n


def test_lines_say_what_is_done_with_elapsed_and_remaining_time():
    out = io.StringIO()
    bar = progress.Lines(range(4), desc="scoring tuned", unit="batches", every_s=0.0, file=out)
    assert list(bar) == [0, 1, 2, 3]
    lines = out.getvalue().splitlines()
    parsed = [LINE.match(ln) for ln in lines]
    assert all(parsed), lines
    assert [int(m["n"]) for m in parsed] == [0, 1, 2, 3, 4]  # started, three steps, done
    assert {m["desc"] for m in parsed} == {"scoring tuned"} and {m["unit"] for m in parsed} == {"batches"}
    assert "elapsed" in parsed[0]["rest"] and "left" not in parsed[0]["rest"]  # nothing done: no estimate yet
    assert all(re.fullmatch(r"\d+:\d\d elapsed, ~\d+:\d\d left", m["rest"]) for m in parsed[1:4])
    assert re.fullmatch(r"done in \d+:\d\d", parsed[4]["rest"])


def test_lines_are_rate_limited_but_the_first_and_last_always_come():
    out = io.StringIO()
    with progress.Lines(total=1000, desc="training", unit="steps", every_s=3600, file=out) as bar:
        for _ in range(1000):
            bar.update()
        bar.set_postfix_str("loss 0.1234")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("» training 0/1000 steps (0%)")
    assert lines[1].startswith("» training 1000/1000 steps (100%) · loss 0.1234 · done in")


def test_a_bar_closed_before_its_end_says_it_stopped():
    out = io.StringIO()
    with progress.Lines(total=3, desc="converting", unit="steps", file=out) as bar:
        bar.update()
    assert re.search(r"1/3 steps \(33%\) · stopped after \d+:\d\d$", out.getvalue().splitlines()[-1])


def test_the_environment_chooses_lines_widgets_or_nothing(monkeypatch):
    monkeypatch.setenv(progress.ENV, "lines")
    assert isinstance(progress.bar(total=3, desc="x"), progress.Lines)
    monkeypatch.delenv(progress.ENV)
    b = progress.bar(total=3, desc="x")
    assert isinstance(b, auto_tqdm) and not b.disable
    b.close()
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.bar(total=3, desc="x").disable
    monkeypatch.setenv(progress.ENV, "lines")
    assert not isinstance(progress.bar(total=3, desc="x", disable=True), progress.Lines)  # disable wins


def test_steps_name_the_running_step_and_count_it_when_done(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", out)
    monkeypatch.setenv(progress.ENV, "lines")
    bar = progress.steps(2, desc="export")
    step = progress.step_in(bar)
    with step("merge"):
        assert bar.postfix == "merge"
    with step("convert f16"):
        pass
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("» export 1/2 steps (50%) · merge done · ")
    assert lines[2].startswith("» export 2/2 steps (100%) · convert f16 done · done in")


def test_line_echo_passes_on_only_progress_lines_even_when_split_across_writes():
    got = []
    echo = progress.LineEcho(got.append)
    echo.write("FutureWarning: something\n» scoring tu")
    echo.write("ned 3/8 batches (38%) · 0:02 elapsed, ~0:03 left\n\rLoading weights: 50%\n")
    assert got == ["  » scoring tuned 3/8 batches (38%) · 0:02 elapsed, ~0:03 left"]


def test_a_llama_cpp_child_process_moves_the_parents_bar():
    out = io.StringIO()
    bar = progress.Lines(total=5, desc="parity q8_0", unit="answers", every_s=0.0, file=out)
    assert llamacpp.isolated(count_to, 5, what="counting", gguf="x.gguf", progress=bar) == 5
    assert bar.n == 5
    bar.close()
    assert [int(LINE.match(ln)["n"]) for ln in out.getvalue().splitlines()] == [0, 1, 2, 3, 4, 5]
