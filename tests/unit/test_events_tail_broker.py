"""`minqing events tail --broker` without MINQING_AMQP_* in the shell (issue #18.8): it uses the broker
the running `minqing run` recorded, or says in one sentence how to point it at one — no traceback."""
import os
import subprocess
import sys

from minqing.shell import devstack


def _tail(run_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINQING_")}
    env["MINQING_RUN_DIR"] = str(run_dir)
    return subprocess.run([sys.executable, "-m", "minqing.shell.cli", "events", "tail", "--broker"], env=env,
                          capture_output=True, text=True, timeout=60)


def test_no_recorded_broker_is_one_sentence(tmp_path):
    result = _tail(tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "start it with `make run`" in result.stderr and "MINQING_AMQP_URI" in result.stderr


def test_an_unreachable_recorded_broker_is_one_sentence_without_its_password(tmp_path):
    port = devstack.free_port()
    (tmp_path / "broker.uri").write_text(f"pyamqp://guest:s3cret@127.0.0.1:{port}//\n")
    result = _tail(tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and str(tmp_path / "broker.uri") in result.stderr
    assert "s3cret" not in result.stderr
