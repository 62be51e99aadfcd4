"""A quiet first run: the job's lines on the terminal, everything else the process (and its children) print in a log."""
import subprocess
import sys

from raymmrec.console import job_console


def test_job_console_keeps_only_the_jobs_lines_on_the_terminal(tmp_path, capfd):
    log = tmp_path / "logs" / "run.log"
    with job_console(log) as console:
        console.say("stage prepare: running")
        print("an INFO line from a library")
        print("a warning", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "print('a worker process line')"], check=True)
        console.note("trial 3 of 12 finished")
    out, err = capfd.readouterr()
    assert out == "stage prepare: running\n" and err == ""
    text = log.read_text()
    for line in ("stage prepare: running", "an INFO line", "a warning", "a worker process line", "trial 3 of 12"):
        assert line in text
    print("after")         # the terminal is restored
    assert capfd.readouterr().out == "after\n"


def test_verbose_console_redirects_nothing(tmp_path, capfd):
    with job_console(tmp_path / "run.log", verbose=True) as console:
        console.say("mine")
        print("theirs")
    assert capfd.readouterr().out == "mine\ntheirs\n" and not (tmp_path / "run.log").exists()


def test_the_terminal_is_restored_when_the_job_fails(tmp_path, capfd):
    try:
        with job_console(tmp_path / "run.log"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    print("error: shown", file=sys.stderr)
    assert capfd.readouterr().err == "error: shown\n"
