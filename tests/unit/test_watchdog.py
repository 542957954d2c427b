"""The watchdog stops every recorded process group — and the descendants that left it — once its
supervisor is gone, however it went (here: SIGKILL)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

from minqing import watchdog

SUPERVISOR = textwrap.dedent("""
    import subprocess, sys, time
    from pathlib import Path
    from minqing.shell.runner import Watchdog
    run_dir = Path(sys.argv[1])
    (run_dir / "logs").mkdir(exist_ok=True)
    dog = Watchdog(run_dir)
    # a child in its own group, which starts a grandchild in a session of its own (like Erlang's helpers)
    child = subprocess.Popen([sys.executable, "-c",
        "import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " start_new_session=True); print(g.pid, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, start_new_session=True)
    dog.record(child.pid)
    grandchild = int(child.stdout.readline())
    print(dog.proc.pid, child.pid, grandchild, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    return pid in watchdog._processes()


def test_children_die_with_a_killed_supervisor(tmp_path):
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        dog, child, grandchild = map(int, sup.stdout.readline().split())
        assert _alive(child) and _alive(grandchild)
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait(10)
        deadline = time.monotonic() + 15
        while _alive(child) or _alive(grandchild) or _alive(dog):
            assert time.monotonic() < deadline, "the supervisor's children outlived it"
            time.sleep(0.1)
    finally:
        for pid in locals().get("child", 0), locals().get("grandchild", 0):
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert "stopping process groups" in (tmp_path / "logs" / "watchdog.log").read_text()


def test_a_clean_stop_leaves_nothing_to_kill(tmp_path):
    (tmp_path / "logs").mkdir()
    from minqing.shell.runner import Watchdog
    dog = Watchdog(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    dog.record(sleeper.pid)
    dog.forget(sleeper.pid)
    dog.close()
    assert dog.proc.returncode == 0
    assert sleeper.poll() is None         # forgotten: not the watchdog's to stop
    sleeper.kill()
    sleeper.wait()


def test_watch_reads_records_until_end_of_file():
    import io
    assert watchdog.watch(io.BytesIO(b"+10\n+11\n-10\ngarbage\n+12\n")) == {11, 12}
    assert watchdog.watch(io.BytesIO(b"+10\nclear\n")) == set()
