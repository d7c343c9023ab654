"""examples/slurm/pretrain_grow.sbatch on a real one-node Slurm cluster (munged, slurmctld and slurmd
started here as root from tests/slurm/slurm.conf, stopped afterwards): the time-limit warning makes
the job save, requeue itself and resume, with the losses of an uninterrupted run."""

import os
import shutil
import string
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port, job_env, kill_job, launch, losses, read_metrics

pytestmark = pytest.mark.multiprocess

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "scancel", "squeue", "sinfo")
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"  # (where Debian puts the daemons)
ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING")
# examples/pretrain_grow.sh's CPU smoke settings, long enough (40 iterations, growth 1 -> 4 layers at
# 32, to TP2) for a stop to land in the middle; a checkpoint every 5 iterations, as a real run has
SMOKE = {"MODEL": "llama3", "DEVICE": "cpu", "GPUS_PER_NODE": "2", "PRESET": "tiny", "TARGET_LAYERS": "4",
         "GROW_TP": "2", "TRAIN_ITERS": "40", "MICRO_BATCH_SIZE": "2", "GLOBAL_BATCH_SIZE": "4",
         "SEQ_LENGTH": "64", "SAVE_INTERVAL": "5", "EVAL_INTERVAL": "1000", "EVAL_ITERS": "1",
         "PYTHON": sys.executable}


def wait_for(what: str, ready, timeout: float, log=None):
    """Poll ``ready()`` until it returns something true; fail naming ``what`` (and the tail of ``log``)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = ready()
        if got:
            return got
        time.sleep(0.25)
    tail = open(log).read()[-3000:] if log and os.path.exists(log) else ""
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{tail}")


def outside_slurm(base, **extra) -> dict:
    """``base`` without the variables of a Slurm job this test may itself run in, updated by ``extra``."""
    return {k: v for k, v in base.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))} | extra


class Cluster:
    def __init__(self, root):
        self.dir = str(root)
        self.env = {"SLURM_CONF": os.path.join(self.dir, "slurm.conf"), "PATH": PATH}
        self.daemons = []

    def cmd(self, *args, check=True) -> str:
        res = subprocess.run(args, env=outside_slurm(os.environ, **self.env), capture_output=True, text=True,
                             timeout=30)
        if check and res.returncode != 0:
            pytest.fail(f"{' '.join(args)}: exit {res.returncode}\n{res.stdout}{res.stderr}")
        return res.stdout

    def job(self, job_id: str) -> dict:
        out = self.cmd("scontrol", "show", "job", "-o", job_id)
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def start(self, name: str, *args):
        with open(os.path.join(self.dir, f"{name}.out"), "w") as log:
            self.daemons.append(launch([name, *args], log, self.env))

    def stop(self):
        try:  # no job left behind (a failed test's), then the daemons
            for job_id in self.cmd("squeue", "-h", "-o", "%i", check=False).split():
                self.cmd("scancel", job_id, check=False)
            deadline = time.time() + 30
            while self.cmd("squeue", "-h", check=False).strip() and time.time() < deadline:
                time.sleep(0.5)
        except subprocess.TimeoutExpired:
            pass
        for proc in reversed(self.daemons):  # slurmd, slurmctld, munged
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            kill_job(proc.tag)  # (whatever is left of it: a slurmstepd)
            proc.wait()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [b for b in DAEMONS + CLIENTS if not shutil.which(b, path=PATH)]
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}): apt-get install slurm-wlm munge "
                    f"(.ci/run does, as root)")
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm cluster runs its daemons as root")
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    d = cluster.dir
    os.chmod(d, 0o700)
    for sub in ("state", "spool"):
        os.mkdir(os.path.join(d, sub))
    open(os.path.join(d, "plugstack.conf"), "w").close()
    key = os.path.join(d, "munge.key")
    with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
        f.write(os.urandom(1024))
    node = "localhost"  # (resolves everywhere: it is MASTER_ADDR too)
    with open(os.path.join(ROOT, "tests", "slurm", "slurm.conf")) as f:
        conf = string.Template(f.read()).substitute(dir=d, node=node, ctld_port=free_port(),
                                                    slurmd_port=free_port(), cpus=2)
    with open(cluster.env["SLURM_CONF"], "w") as f:
        f.write(conf)
    try:
        cluster.start("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={d}/munge.socket",
                      f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munged.seed")
        wait_for("munged", lambda: os.path.exists(f"{d}/munge.socket"), 20, f"{d}/munged.out")
        cluster.start("slurmctld", "-D")
        wait_for("slurmctld", lambda: "UP" in cluster.cmd("scontrol", "ping", check=False), 30, f"{d}/slurmctld.log")
        cluster.start("slurmd", "-D", "-N", node)
        wait_for("slurmd", lambda: cluster.cmd("sinfo", "-h", "-o", "%T", check=False).strip() == "idle", 30,
                 f"{d}/slurmd.log")
        yield cluster
    finally:
        cluster.stop()


def test_sbatch_saves_requeues_and_resumes(slurm, tmp_path):
    """The --signal warning (SIGUSR1 to the batch script, sent here with scancel as Slurm would before
    the time limit) after a periodic checkpoint: every rank saves the iteration it is at, the script
    requeues the job, the second run (SLURM_RESTART_COUNT=1) loads that checkpoint, grows the model and
    finishes; the losses are those of the same run launched directly, uninterrupted, meanwhile."""
    ref_dir, run_dir, out = tmp_path / "ref", tmp_path / "run", tmp_path / "slurm.out"
    with open(tmp_path / "ref.log", "w") as log:
        ref = launch(["bash", "examples/pretrain_grow.sh", "--no-progress"], log,
                     {**SMOKE, "RUN_DIR": str(ref_dir), "MASTER_PORT": free_port()})
    env, tag = job_env({**SMOKE, "RUN_DIR": str(run_dir), "MASTER_PORT": free_port()})
    try:
        sub = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", f"--output={out}",
                              "examples/slurm/pretrain_grow.sbatch", "--no-progress"],
                             cwd=ROOT, env=outside_slurm(env, **slurm.env), capture_output=True, text=True, timeout=30)
        assert sub.returncode == 0, sub.stderr
        job_id = sub.stdout.strip().split(";")[0]

        def trained():  # iterations logged so far (complete lines only: the file is being written)
            m = run_dir / "metrics.jsonl"
            return sum('"lm_loss"' in line for line in open(m) if line.endswith("\n")) if m.exists() else 0

        def ended():
            job = slurm.job(job_id)
            return job if job["JobState"] not in ACTIVE else None

        wait_for("the job's 8th iteration", lambda: trained() >= 8 or ended(), 120, out)
        assert not ended(), open(out).read()[-4000:]
        slurm.cmd("scancel", "--signal=USR1", "--batch", job_id)
        state = wait_for("the job to end", ended, 180, out)
        ref.wait(timeout=180)
    finally:
        kill_job(tag)
        kill_job(ref.tag)
        ref.wait()
    log = open(out).read()
    assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", (state, log[-4000:])
    assert state["Restarts"] == "1", state
    assert ref.returncode == 0, open(tmp_path / "ref.log").read()[-4000:]
    assert "SLURM_RESTART_COUNT=0" in log and "SLURM_RESTART_COUNT=1" in log, log[-4000:]
    stops = [line for line in log.splitlines() if line.startswith("stopped: iteration ")]
    assert len(stops) == 1, log[-4000:]
    stop, stopped_at = stops[0], int(stops[0].split()[2].rstrip(":"))
    assert "SIGHUP received; checkpoint saved" in stop and 8 <= stopped_at < 40, stop
    assert f"iters {stopped_at}->40" in log and "training finished" in log, log[-4000:]
    recs = read_metrics(run_dir / "metrics.jsonl")
    assert [r["iter"] for r in recs if "lm_loss" in r] == list(range(1, 41))  # nothing trained twice
    assert [r["iter"] for r in recs if r.get("event") == "grow"] == [32]
    assert losses(run_dir / "metrics.jsonl") == losses(ref_dir / "metrics.jsonl")
