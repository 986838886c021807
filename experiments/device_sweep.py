"""Run a list of ``spanlib train`` jobs side by side on one machine, within a wall-clock budget.

    python experiments/device_sweep.py --jobs experiments/real_faces_gpu.jobs --slots 4 \
        --budget-s 330 --out runs/ --var LONG=9000 -- --set data.root=...

Each line of the jobs file is ``LABEL  ARGS...`` (``spanlib train`` arguments without ``--out``;
``{NAME}`` is replaced by ``--var NAME=VALUE``; ``#`` starts a comment). Jobs start in file order
while a slot is free and at least ``--min-left-s`` of the budget remains; at the end of the budget
a running job gets SIGINT and keeps its last checkpoint (every ``train.checkpoint_every``). The
summary (``OUT/summary.json``) lists per job: the command, status (done / cut / failed / not
started), wall time, the last iteration, the validation history and images/s from the checkpoint.
Arguments after ``--`` are appended to every job (the data location of the machine).

Run again on the same ``--out`` (a second call on a machine still warm), it goes on where the
last run stopped: a job whose checkpoint has all its iterations is kept as it is ("done earlier"),
one cut short is restarted with ``spanlib train --resume`` (same schedule, from its last checkpoint).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


def read_jobs(path: Path, variables: dict[str, str]) -> list[tuple[str, list[str]]]:
    jobs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        for name, value in variables.items():
            line = line.replace("{" + name + "}", value)
        if "{" in line:
            raise SystemExit(f"{path}:{number}: unreplaced variable in {line!r} (pass --var NAME=VALUE)")
        label, *args = shlex.split(line)
        jobs.append((label, args))
    labels = [label for label, _ in jobs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"{path}: duplicate labels")
    return jobs


def summarise(label: str, out_dir: Path, record: dict) -> dict:
    from spanlib.inference.checkpoint import read_checkpoint
    from spanlib.utils.provenance import machine_sidecar

    ckpt_path = out_dir / label / "checkpoint.pt"
    entry = dict(record)
    if ckpt_path.is_file():
        try:
            ckpt = read_checkpoint(ckpt_path)
            metrics = ckpt.get("metrics") or {}
            sidecar = machine_sidecar(ckpt_path)  # wall-time figures: beside the checkpoint, not in it
            speed = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
            entry.update(iteration=int(ckpt["iteration"]), total=int(ckpt["params"]["train"]["iterations"]),
                         val_history=metrics.get("val_history", []), images_per_s=speed.get("images_per_s"),
                         variant=ckpt["variant"], seed=ckpt["params"].get("seed"),
                         code_version=ckpt.get("code_version"))
        except Exception as exc:  # a checkpoint cut mid-write is reported, not fatal
            entry["checkpoint_error"] = f"{type(exc).__name__}: {exc}"
    return entry


def checkpoint_progress(path: Path) -> tuple[int, int] | None:
    """(iteration, total) of the checkpoint at ``path``, or None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    from spanlib.inference.checkpoint import read_checkpoint

    try:
        ckpt = read_checkpoint(path)
        return int(ckpt["iteration"]), int(ckpt["params"]["train"]["iterations"])
    except Exception:  # a checkpoint cut mid-write: start the job again
        return None


def plan(jobs: list[tuple[str, list[str]]], out: Path) -> tuple[list[tuple[str, list[str]]], dict[str, dict]]:
    """(jobs to start, in order, with ``--resume`` where a cut checkpoint exists; a record per
    job, "done earlier" for those whose checkpoint has all its iterations)."""
    pending = []
    records: dict[str, dict] = {label: {"label": label, "status": "not started", "args": a} for label, a in jobs}
    for label, job_args in jobs:
        progress = checkpoint_progress(out / label / "checkpoint.pt")
        if progress is not None and progress[0] >= progress[1]:
            records[label]["status"] = "done earlier"
            continue
        pending.append((label, job_args + (["--resume"] if progress is not None else [])))
    return pending, records


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    common = []
    if "--" in argv:
        cut = argv.index("--")
        argv, common = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--budget-s", type=float, required=True)
    parser.add_argument("--min-left-s", type=float, default=60.0, help="start no job with less budget left")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--threads", type=int, default=2, help="OMP/torch threads of each job's main process")
    args = parser.parse_args(argv)
    variables = dict(v.split("=", 1) for v in args.var)
    jobs = read_jobs(args.jobs, variables)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    pending, records = plan(jobs, args.out)
    running: dict[str, tuple[subprocess.Popen, float, list[str]]] = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1",
               TQDM_MININTERVAL="30")  # progress lines every 30 s: the logs travel back
    while pending or running:
        elapsed = time.monotonic() - start
        for label, (proc, t0, _) in list(running.items()):
            if proc.poll() is not None:
                records[label].update(status="done" if proc.returncode == 0 else f"failed (exit {proc.returncode})",
                                      wall_s=round(time.monotonic() - t0, 1))
                del running[label]
                print(f"[{elapsed:6.0f} s] {label}: {records[label]['status']} in {records[label]['wall_s']} s", flush=True)
        if elapsed >= args.budget_s:
            for label, (proc, t0, _) in running.items():
                proc.send_signal(signal.SIGINT)
            for label, (proc, t0, _) in running.items():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                records[label].update(status="cut at budget", wall_s=round(time.monotonic() - t0, 1))
                print(f"[{elapsed:6.0f} s] {label}: cut at the budget", flush=True)
            running.clear()
            break
        while pending and len(running) < args.slots and args.budget_s - elapsed >= args.min_left_s:
            label, job_args = pending.pop(0)
            (args.out / label).mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "spanlib", "train", "--out", str(args.out / label / "checkpoint.pt"),
                   *job_args, *common]
            log = open(args.out / label / "log.txt", "a")
            running[label] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                              time.monotonic(), cmd)
            records[label].update(status="running", command=shlex.join(cmd[1:]))
            print(f"[{elapsed:6.0f} s] start {label}", flush=True)
        time.sleep(2)
    summary = {"budget_s": args.budget_s, "slots": args.slots, "elapsed_s": round(time.monotonic() - start, 1),
               "variables": variables, "common_args": common,
               "jobs": [summarise(label, args.out, records[label]) for label, _ in jobs]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    for job in summary["jobs"]:
        last = job.get("val_history") or [[None, None]]
        nme = f"{100 * last[-1][1]:.2f} %" if last[-1][1] is not None else "-"
        print(f"{job['label']:24s} {job['status']:18s} it {job.get('iteration', '-')!s:>6}/{job.get('total', '-')!s:<6} "
              f"val NME_io {nme:>8s}  {job.get('images_per_s') or 0:7.1f} img/s  {job.get('wall_s', '-')} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
