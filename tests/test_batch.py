"""autoglmm batch: real Dask clusters (a LocalCluster, and scheduler + worker subprocesses).

Four small simulated countries with a small forest keep each cluster run to seconds. The
reference for every task is ``search`` run alone on that country's rows with the task's
seed: the batch must reproduce it exactly (result.json equal, timings aside).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import autoglmm
from autoglmm.batching import folder_name, task_frame, task_seed
from autoglmm.batching.overview import selection_matrix, task_selection
from autoglmm.batching.tasks import key_text, plan_tasks, row_from_result
from autoglmm.cli import app
from autoglmm.datasets import simulate_lsa
from autoglmm.errors import DataError, UsageError
from autoglmm.report import OUTPUT_FILES

COUNTRIES = (36, 40, 124, 152)
SEED = 7
OPTIONS = {"ntree": 40}
SAME = {"n_jobs": 1}  # what the batch passes when n_jobs is not given


def _countries() -> pd.DataFrame:
    frames = []
    for k, code in enumerate(COUNTRIES):
        data = simulate_lsa(seed=100 + k, n_schools=24, n_items=20, n_school_items=5).data
        data.insert(0, "country", code)
        frames.append(data)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def countries() -> pd.DataFrame:
    return _countries()


def _result(folder: Path) -> dict:
    data = json.loads((folder / "result.json").read_text())
    data["manifest"].pop("timings")
    return data


@pytest.fixture(scope="module")
def standalone(countries) -> dict[str, dict]:
    """result.json of ``search`` run alone on each country's rows, with the task's seed."""
    out = {}
    for code in COUNTRIES:
        res = autoglmm.search(
            task_frame(countries, "country", code), "math", "school",
            seed=task_seed(SEED, code), progress=False, **OPTIONS, **SAME,
        )  # fmt: skip
        data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
        data["manifest"].pop("timings")
        out[str(code)] = data
    return out


@pytest.fixture(scope="module")
def local_run(countries, tmp_path_factory):
    """One batch on a LocalCluster of 2 worker processes."""
    out = tmp_path_factory.mktemp("local") / "out"
    summary = autoglmm.batch(countries, "math", "school", by="country", out=out, workers=2,
                             seed=SEED, progress=False, **OPTIONS)  # fmt: skip
    return out, summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def external_scheduler():
    """``dask scheduler`` and ``dask worker`` subprocesses on 127.0.0.1, stopped by PID."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker"]
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*dask, "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        procs.append(subprocess.Popen(
            [*worker, address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- on a LocalCluster -----------------------------------------------------------------------


def test_local_cluster_summary_is_complete(local_run, countries):
    out, summary = local_run
    assert list(summary["value"]) == [str(c) for c in COUNTRIES]
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    for code in COUNTRIES:
        rows = countries[countries["country"] == code]
        row = summary.set_index("value").loc[str(code)]
        folder = out / row["folder"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)
        result = json.loads((folder / "result.json").read_text())
        assert row["n_obs"] == result["n_obs"] <= len(rows)
        assert row["icc"] == pytest.approx(result["icc"], abs=0)
        assert row["formula"] == result["models"]["optimal"]["formula"]
        assert row["seed"] == task_seed(SEED, code) == result["manifest"]["seed"]
        assert row["seconds"] > 0
    on_disk = pd.read_csv(out / "summary.csv", dtype={"value": str}, keep_default_na=False)
    assert list(on_disk["value"]) == list(summary["value"])
    assert list(on_disk["formula"]) == list(summary["formula"])
    assert not list(out.glob(".*"))  # no scratch folders or files left behind
    page = (out / "summary.html").read_text()
    assert page.count('/report.html">') == len(COUNTRIES)
    assert "data:image/svg+xml;base64," in page


def test_local_cluster_equals_standalone_search(local_run, standalone):
    out, summary = local_run
    for code in COUNTRIES:
        assert _result(out / folder_name("country", str(code))) == standalone[str(code)]


def test_resume_runs_only_the_missing_task(local_run, tmp_path, external_scheduler):
    src, _ = local_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    missing = out / folder_name("country", "124")
    shutil.rmtree(missing)
    (out / ".country=40.dead.tmp").mkdir()  # left by a killed run
    before = {p.name: p.stat().st_ino for p in out.iterdir() if p.is_dir()}
    summary = autoglmm.batch(_countries(), "math", "school", by="country", out=out,
                             scheduler=external_scheduler, progress=False, **OPTIONS)  # fmt: skip
    assert (summary["status"] == "done").all()
    after = {p.name: p.stat().st_ino for p in out.iterdir() if p.is_dir()}
    assert set(after) == {folder_name("country", str(c)) for c in COUNTRIES}
    for name, inode in before.items():
        if not name.startswith("."):
            assert after[name] == inode, f"{name} was rewritten"
    assert _result(missing) == _result(src / missing.name)  # same seed: reused from batch.json
    seconds = summary.set_index("value")["seconds"]
    assert seconds.notna().all()  # resumed rows keep the earlier run's times


def test_rerun_of_a_complete_batch_starts_no_cluster(local_run, tmp_path, monkeypatch):
    src, first = local_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    import autoglmm.batching.cluster as cluster

    monkeypatch.setattr(cluster, "open_client", None)  # any use would raise TypeError
    summary = autoglmm.batch(_countries(), "math", "school", by="country", out=out,
                             seed=SEED, progress=False, **OPTIONS)  # fmt: skip
    pd.testing.assert_frame_equal(summary, first)


def test_rerun_with_other_settings_is_refused(local_run, tmp_path):
    src, _ = local_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    with pytest.raises(UsageError, match="ntree = 40, not 41"):
        autoglmm.batch(_countries(), "math", "school", by="country", out=out,
                       progress=False, ntree=41)  # fmt: skip
    with pytest.raises(UsageError, match="seed = 7, not 8"):
        autoglmm.batch(_countries(), "math", "school", by="country", out=out, seed=8,
                       progress=False, **OPTIONS)  # fmt: skip


# --- on an external scheduler ----------------------------------------------------------------


def test_external_scheduler_equals_standalone_search(
    countries, standalone, external_scheduler, tmp_path
):
    out = tmp_path / "out"
    summary = autoglmm.batch(countries, "math", "school", by="country", out=out,
                             scheduler=external_scheduler, seed=SEED, progress=False,
                             **OPTIONS)  # fmt: skip
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    for code in COUNTRIES:
        assert _result(out / folder_name("country", str(code))) == standalone[str(code)]


def test_cli_failed_task_is_recorded_and_others_finish(countries, external_scheduler, tmp_path):
    bad = countries[countries["country"] == 40].copy()
    bad["country"] = "one school"
    bad["school"] = 1  # a single group: the search refuses it
    data = tmp_path / "data.csv"
    pd.concat([countries, bad], ignore_index=True).to_csv(data, index=False)
    out = tmp_path / "out"
    args = ["batch", str(data), "--by", "country", "--outcome", "math", "--group", "school",
            "--out", str(out), "--scheduler", external_scheduler, "--seed", str(SEED),
            "--ntree", "40", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    summary = pd.read_csv(out / "summary.csv", dtype={"value": str}, keep_default_na=False)
    failed = summary[summary["status"] == "failed"]
    assert list(failed["value"]) == ["one school"]
    assert "group" in failed["error"].iloc[0] and "\n" not in failed["error"].iloc[0]
    assert (summary[summary["value"] != "one school"]["status"] == "done").all()
    assert not (out / folder_name("country", "one school")).exists()
    assert len([p for p in out.iterdir() if p.is_dir()]) == len(COUNTRIES)
    assert "failed: country=one school" in result.output


# --- without a cluster -------------------------------------------------------------------------


def test_task_seed_is_stable_across_processes():
    code = "from autoglmm.batching import task_seed; print(task_seed(3, 'AUS'), hash('AUS'))"
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": str(k)}).stdout.split()
            for k in (1, 2)]  # fmt: skip
    assert runs[0][1] != runs[1][1]  # Python's hash() differs between processes...
    assert runs[0][0] == runs[1][0] == str(task_seed(3, "AUS"))  # ...the task seed does not
    assert task_seed(3, "AUS") != task_seed(4, "AUS") != task_seed(3, "AUT")
    assert task_seed(3, 36) == task_seed(3, 36.0) == task_seed(3, "36")
    assert 0 <= task_seed(3, "AUS") < 2**31


def test_folder_names_are_safe_and_distinct():
    assert folder_name("IDCNTRY", key_text(36.0)) == "IDCNTRY=36"
    assert folder_name("cnt", "a/b") == "cnt=a%2Fb"
    assert folder_name("cnt", "..") == "cnt=%2E."
    assert folder_name("cnt", "50%") == "cnt=50%25"
    assert folder_name("cnt", "Côte d'Ivoire") == "cnt=Côte d%27Ivoire"
    frame = pd.DataFrame({"c": pd.Series([36, "36", 40], dtype=object), "y": [1, 2, 3]})
    with pytest.raises(DataError, match="both give the task 'c=36'"):
        plan_tasks(frame, "c", 1)
    with pytest.raises(DataError, match="'cc' is not in the data"):
        plan_tasks(frame, "cc", 1)


def test_plan_counts_rows_without_a_value():
    frame = pd.DataFrame({"c": [2.0, None, 1.0, 2.0], "y": [1, 2, 3, 4]})
    tasks, missing = plan_tasks(frame, "c", 5)
    assert [(t.key, t.n_rows, t.seed) for t in tasks] == [
        ("1", 1, task_seed(5, 1)), ("2", 2, task_seed(5, 2)),
    ]  # fmt: skip
    assert missing == 1
    part = task_frame(frame, "c", 2)
    assert list(part.columns) == ["c", "y"] and list(part["y"]) == [1, 4]
    assert list(part.index) == [0, 1]


def test_bad_options_are_usage_errors(countries, tmp_path):
    with pytest.raises(UsageError, match="unknown search option.*ntrees"):
        autoglmm.batch(countries, "math", "school", by="country", out=tmp_path, ntrees=5)
    with pytest.raises(UsageError, match="either --workers"):
        autoglmm.batch(countries, "math", "school", by="country", out=tmp_path / "o",
                       workers=2, scheduler="tcp://127.0.0.1:1", progress=False)  # fmt: skip
    result = CliRunner().invoke(app, ["batch", "x.csv", "--by", "c", "--out", str(tmp_path)])
    assert result.exit_code == 2  # --outcome and --group are required, as for search


def test_selection_shares_of_single_and_plausible_value_tasks():
    single = {
        "group": "school",
        "optimal_terms": {
            "fixed": ["ses", "conf"],
            "interactions": ["ses:conf"],
            "random_slopes": ["ses"],
        },
    }
    assert task_selection(single) == {"ses": 1.0, "conf": 1.0, "ses:conf": 1.0,
                                      "(ses | school)": 1.0}  # fmt: skip
    shares = {"ses": 1.0, "conf": 0.6, "anx": 0.4, "ses:conf": 0.6, "(ses | school)": 0.8}
    pv = {
        **single,
        "plausible_values": {
            "selection_frequency": shares,
            "per_outcome": [{}] * 5,
            "pooled": {"formula": "BSMMAT0[1-5] ~ ses + conf"},
        },
    }
    assert task_selection(pv) == shares
    row = row_from_result(pv)
    assert (row["fixed"], row["interactions"], row["random_slopes"]) == (
        "ses;conf",
        "ses:conf",
        "ses",
    )
    assert row["formula"] == "BSMMAT0[1-5] ~ ses + conf" and row["n_analyses"] == 5
    matrix = selection_matrix({"A": task_selection(single), "B": shares})
    assert list(matrix.columns) == ["A", "B"]
    # fixed effects, then interactions, then slopes; most often selected first
    assert list(matrix.index) == ["ses", "conf", "anx", "ses:conf", "(ses | school)"]
    assert matrix.loc["anx"].tolist() == [0.0, 0.4]
    assert matrix.loc["(ses | school)"].tolist() == [1.0, 0.8]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies awaiting a reaper do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_interrupt_leaves_only_complete_folders(countries, tmp_path):
    """Ctrl-C (SIGINT) mid-batch: exit 130, no partial folder, no worker left; resume works."""
    data = tmp_path / "data.csv"
    countries.to_csv(data, index=False)
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "autoglmm"), "batch", str(data), "--by", "country",
           "--outcome", "math", "--group", "school", "--out", str(out), "--workers", "1",
           "--seed", str(SEED), "--ntree", "40"]  # fmt: skip
    # its own process group, with SIGINT's default action even when pytest runs in the
    # background (where the shell makes SIGINT ignored, and children inherit that)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(out.glob("country=*")):
            time.sleep(0.2)  # wait for the first finished task
        os.killpg(proc.pid, signal.SIGINT)  # to the whole group, as a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 30  # helpers (resource tracker) exit once the client has
    while _live_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _live_members(proc.pid) == []  # the cluster's processes have all ended
    assert "rerun the same command to resume" in err
    assert not list(out.glob(".*.tmp"))
    done = [p for p in out.glob("country=*")]
    assert 1 <= len(done) < len(COUNTRIES)
    for folder in done:
        assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES)
    summary = pd.read_csv(out / "summary.csv", dtype={"value": str}, keep_default_na=False)
    assert set(summary["status"]) <= {"done", "not_run"}
    assert (summary["status"] == "done").sum() == len(done)


def test_cli_batch_passes_every_search_option():
    """Each option of `autoglmm search` reaches search() from `autoglmm batch` as well."""
    import inspect

    from autoglmm.cli import _search_options, batch_command, search_command
    from autoglmm.selection import search

    names = [n for n in inspect.signature(search_command).parameters if n not in ("data", "out")]
    passed = _search_options({n: None for n in names})
    assert sorted(passed) == sorted(names)  # a new search flag must be added to _search_options
    assert set(passed) <= set(inspect.signature(search).parameters)
    assert set(names) <= set(inspect.signature(batch_command).parameters)


def test_plausible_values_and_merge_file_equal_standalone_search(external_scheduler, tmp_path):
    """TIMSS-shaped files: 5 PVs in one task per country, the school file merged per task."""
    from autoglmm.lsa.simulate import simulate_timss

    sim = simulate_timss(tmp_path / "files", seed=3, n_schools=40, n_items=20, n_countries=2)
    out = tmp_path / "out"
    options = {"ntree": 40, "merge": [str(sim.school_path)]}
    summary = autoglmm.batch(str(sim.student_path), "BSMMAT0[1-5]", "IDSCHOOL", by="IDCNTRY",
                             out=out, scheduler=external_scheduler, seed=SEED, progress=False,
                             **options)  # fmt: skip
    assert (summary["status"] == "done").all(), summary["error"].tolist()
    assert list(summary["n_analyses"]) == [5, 5]
    student = autoglmm.read_data(sim.student_path)
    for row in summary.itertuples(index=False):
        alone = autoglmm.search(task_frame(student, "IDCNTRY", row.value), "BSMMAT0[1-5]",
                                "IDSCHOOL", seed=task_seed(SEED, row.value), progress=False,
                                **options, **SAME)  # fmt: skip
        expected = json.loads(json.dumps(alone.to_dict(), allow_nan=False))
        got = json.loads((out / row.folder / "result.json").read_text())
        for data in (expected, got):
            data["manifest"].pop("timings")
            data["manifest"]["params"].pop("merge")  # the file's path alone, its rows in batch
        assert got == expected
        assert row.formula == expected["plausible_values"]["pooled"]["formula"]
