"""The sharingan-store command: every command, every user error as one `error:` line, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import sharingan_store as ss
from sharingan_store.cli import main
from tests.store.helpers import make_store
from tests.store.helpers import clone, flip_byte


def run(*args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    assert "Traceback" not in (result.output or ""), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def test_ls_and_info(cli_store):
    out = run("ls", cli_store)
    assert out.exit_code == 0
    header = out.output.splitlines()[0].split()
    assert header[:3] == ["run", "status", "size"]
    assert "complete" in out.output and "KiB" in out.output
    assert json.loads(run("ls", cli_store, "--json").output)[0]["run"] == "a"
    assert run("ls", cli_store, "--status", "failed").output.strip() == "(no runs)"
    info = run("info", cli_store, "a")
    assert info.exit_code == 0
    for key in ("weights_fingerprint", "config_hash", "text_sha256", "library_versions", "size", "note=hello",
                "attention_kind", "codec"):
        assert key in info.output
    assert json.loads(run("info", cli_store, "a", "--json").output)["status"] == "complete"


def test_verify(cli_store, tmp_path):
    out = run("verify", cli_store)
    assert out.exit_code == 0 and out.output.startswith("ok: 2 run(s)")
    bad = clone(cli_store, tmp_path / "bad")
    flip_byte(os.path.join(bad, "runs", "b", "attention", "c", "1", "0", "3", "2"))
    out = run("verify", bad)
    assert out.exit_code == 1 and "b: attention chunk c/1/0/3/2" in out.output
    assert run("verify", bad, "a").exit_code == 0


def test_cp_rm_compare(cli_store, tmp_path):
    store = clone(cli_store, tmp_path / "s")
    archive = tmp_path / "a.zip"
    assert run("cp", store, "a", archive).exit_code == 0
    assert "a" in run("ls", archive).output
    assert run("cp", store, "a", tmp_path / "d", "--as", "a2").exit_code == 0
    assert ss.open_store(tmp_path / "d", mode="r").run_ids() == ["a2"]
    out = run("rm", store, "b", input="n\n")
    assert out.exit_code == 1 and "aborted" in out.output
    assert run("rm", store, "b", "--yes").exit_code == 0
    assert ss.open_store(store, mode="r").run_ids() == ["a"]
    cmp = run("compare", cli_store, "a", "b")
    assert cmp.exit_code == 0 and "Jensen-Shannon" in cmp.output
    same = json.loads(run("compare", cli_store, "a", "a", "--json").output)
    assert same["0"]["0"] == 0.0 and set(same) == {"0", "1"}
    cos = json.loads(run("compare", cli_store, "a", "a", "--metric", "cosine", "--json").output)
    assert abs(cos["1"]["3"] - 1) < 1e-5


def test_view_and_metrics(cli_store, tmp_path):
    pytest.importorskip("matplotlib")
    out = run("view", cli_store, "a", "--layer", 1, "--head", 2, "--local", 30, "--window", 5, "--log",
              "--out", tmp_path / "l.png")
    assert out.exit_code == 0 and (tmp_path / "l.png").stat().st_size > 1000
    out = run("view", cli_store, "a", "--layer", 0, "--head", 0, "--global", 16, "--out", tmp_path / "g.png")
    assert out.exit_code == 0 and (tmp_path / "g.png").exists()
    for metric in ("entropy", "sinks", "importance", "distance", "similarity", "rollout"):
        out = run("metrics", cli_store, "a", "--metric", metric)
        assert out.exit_code == 0, (metric, out.output)
    rows = json.loads(run("metrics", cli_store, "a", "--metric", "entropy", "--layer", 1, "--json").output)
    assert {r["layer"] for r in rows} == {1} and len(rows) == 4


@pytest.mark.parametrize("args, message", [
    (["ls", "/no/such/store"], "error: no store at /no/such/store"),
    (["info", "{s}", "zz"], "error: no run 'zz' in"),
    (["verify", "{s}", "zz"], "available runs: a, b"),
    (["cp", "{s}", "zz", "{t}/x.zip"], "error: no run 'zz'"),
    (["cp", "{s}", "a", "{s}"], "error: copying run 'a' onto itself"),
    (["rm", "{s}", "zz", "--yes"], "error: no run 'zz'"),
    (["compare", "{s}", "a", "zz"], "error: no run 'zz'"),
    (["view", "{s}", "a", "--layer", "9", "--head", "0", "--out", "{t}/x.png"], "error: layer [9] not in this run"),
    (["view", "{s}", "a", "--layer", "0", "--head", "0", "--local", "999", "--out", "{t}/x.png"], "error: "),
    (["view", "{s}", "a", "--layer", "0", "--head", "0", "--local", "3", "--global", "8", "--out", "{t}/x.png"],
     "either --local or --global"),
    (["metrics", "{s}", "a", "--metric", "entropy", "--layer", "7"], "error: layer [7] not in this run"),
    (["metrics", "{s}", "a", "--metric", "bogus"], "Invalid value for '--metric'"),
    (["info", "{t}/file.txt", "a"], "is a file, not a sharingan store"),
])
def test_user_errors_are_one_line(cli_store, tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    out = run(*[a.format(s=cli_store, t=tmp_path) for a in args])
    assert out.exit_code in (1, 2)
    assert message in out.output
    errors = [line for line in out.output.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1


def test_rm_on_read_only_zip(cli_store, tmp_path):
    archive = tmp_path / "a.zip"
    run("cp", cli_store, "a", archive)
    out = run("rm", archive, "a", "--yes")
    assert out.exit_code == 1 and "zip archive" in out.output


def test_console_script_subprocess(cli_store, tmp_path):
    exe = shutil.which("sharingan-store", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "sharingan_store.cli"]
    ok = subprocess.run(cmd + ["ls", cli_store], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "complete" in ok.stdout
    bad = subprocess.run(cmd + ["info", cli_store, "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == f"error: no run 'nope' in {cli_store}; available runs: a, b"
    assert "Traceback" not in bad.stderr


def test_pyramid_command(tmp_path):
    make_store(tmp_path / "p", runs={"r": {"seed": 0}})
    out = run("pyramid", tmp_path / "p", "r")
    assert out.exit_code == 0 and "pyramid levels x2" in out.output
    assert ss.open_store(tmp_path / "p", mode="r").open("r").pyramid
    out = run("pyramid", tmp_path / "p", "nope")
    assert out.exit_code == 1 and "no run 'nope'" in out.output
