"""A real single-node SLURM cluster for tests: slurmctld + slurmd on localhost, configured in a private folder.

Nothing of the machine's own SLURM configuration is touched: the daemons and every client command read
`SLURM_CONF` (our slurm.conf in a temp folder), listen on their own ports, and keep their state, spool, logs
and pid files in that folder. The packages (slurmctld, slurmd, slurm-client, munge) are installed with
apt-get when missing, and only when running as root; munged is started (as the munge user) only when no
munge daemon answers. Every command has a hard timeout.

    cluster = SlurmCluster(Path("/tmp/x")); cluster.start(); ...; cluster.stop()
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel", "munged", "munge", "unmunge"]
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_SOCKET_DIR = Path("/run/munge")
MUNGE_PIDFILE = MUNGE_SOCKET_DIR / "munged.pid"
MEMORY_LEFT_MB = 3000  # memory kept back from the node for the test driver, Snakemake and the OS
CTLD_PORT, SLURMD_PORT = 16817, 16818  # not the default 6817/6818, so a system SLURM is never hit


class SlurmUnavailable(Exception):
    """SLURM cannot be set up here (not root, no apt-get, install failed): the reason for a skip."""


def sh(cmd: list[str], timeout: float = 30, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def missing_commands() -> list[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin"
    return [c for c in COMMANDS if shutil.which(c, path=path) is None]


def ensure_installed(timeout: float = 900) -> None:
    """Install the SLURM and munge packages if a command is missing; SlurmUnavailable if that is not possible."""
    missing = missing_commands()
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM commands missing ({', '.join(missing)}) and not root, so cannot apt-get install "
                               f"{' '.join(PACKAGES)}")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"SLURM commands missing ({', '.join(missing)}) and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = sh(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=timeout, env=env,
                  check=False)
        if done.returncode != 0:  # a stale package index: refresh it once
            sh(["apt-get", "update"], timeout=timeout, env=env, check=False)
            done = sh(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=timeout, env=env,
                      check=False)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} timed out after {timeout:.0f} s") from None
    if done.returncode != 0:
        raise SlurmUnavailable(f"apt-get install {' '.join(PACKAGES)} failed ({done.returncode}): "
                               f"{(done.stdout + done.stderr).strip()[-1500:]}")
    still = missing_commands()
    if still:
        raise SlurmUnavailable(f"after apt-get install, still missing: {', '.join(still)}")


def munge_works() -> bool:
    """A munge daemon answers: a credential round-trips through munge and unmunge."""
    try:
        cred = sh(["munge", "-n"], timeout=10, check=False)
        if cred.returncode != 0:
            return False
        return subprocess.run(["unmunge"], check=False, input=cred.stdout, capture_output=True, text=True,
                              timeout=10).returncode == 0
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return False


def ensure_munge(timeout: float = 20) -> int | None:
    """A working munge daemon; returns the pid of the one we started, None if one was already running."""
    if munge_works():
        return None
    if not MUNGE_KEY.exists():
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        if shutil.which("mungekey", path="/usr/sbin:/usr/bin:/sbin") or shutil.which("mungekey"):
            sh(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], timeout=30)
        else:
            MUNGE_KEY.write_bytes(os.urandom(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o400)
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    MUNGE_SOCKET_DIR.chmod(0o755)
    munged = shutil.which("munged", path="/usr/sbin:/sbin:/usr/bin") or "munged"
    # munged daemonizes and writes its pid file; the parent returns at once
    sh(["runuser", "-u", "munge", "--", munged, "--force"], timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if munge_works():
            return int(MUNGE_PIDFILE.read_text().strip()) if MUNGE_PIDFILE.exists() else None
        time.sleep(0.2)
    raise RuntimeError(f"munged did not answer within {timeout} s")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def node_hardware() -> dict[str, int]:
    """The machine's real CPU topology and memory, as `slurmd -C` reports them."""
    out = sh(["slurmd", "-C"], timeout=30).stdout
    fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    return {k: int(fields[k]) for k in keys if k in fields}


class SlurmCluster:
    """One slurmctld + one slurmd ("localhost", real CPUs, most of the memory, one fake gpu) in `root`."""

    def __init__(self, root: Path, partitions: tuple[str, ...] = ("cpu", "gpu"), min_job_age: int = 300):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.partitions = partitions  # the first is the default partition
        self.min_job_age = min_job_age
        self.munged_pid: int | None = None
        self.hardware: dict[str, int] = {}

    # -- environment ---------------------------------------------------------------------------------------
    @property
    def bin(self) -> Path:
        """Put first on PATH: an `srun` that sets SLURM_CONF again (see write_srun_wrapper)."""
        return self.root / "bin"

    def env(self, base: dict | None = None) -> dict[str, str]:
        """An environment whose SLURM commands (and Snakemake's, and the jobs') talk to this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(self.bin)]
        env["PATH"] = os.pathsep.join([str(self.bin), *path, "/usr/sbin", "/sbin"])
        return env

    def write_srun_wrapper(self) -> None:
        """snakemake-executor-plugin-slurm-jobstep runs each job as `srun ... snakemake` with every SLURM_* variable
        but the job's identity removed, SLURM_CONF included, so that srun finds no config (it is not in
        /etc/slurm, which these tests never touch) and the job fails. This srun puts SLURM_CONF back."""
        srun = shutil.which("srun", path="/usr/bin:/bin:/usr/local/bin") or "/usr/bin/srun"
        self.bin.mkdir(parents=True, exist_ok=True)
        wrapper = self.bin / "srun"
        wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {srun} "$@"\n', encoding="utf-8")
        wrapper.chmod(0o755)

    def run(self, cmd: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        return sh(cmd, timeout=timeout, env=self.env(), check=check)

    # -- configuration -------------------------------------------------------------------------------------
    def write_config(self) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        hw = self.hardware = node_hardware()
        memory = max(1024, hw["RealMemory"] - MEMORY_LEFT_MB)
        topology = " ".join(f"{k}={hw[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                      "ThreadsPerCore") if k in hw)
        r = self.root
        lines = [
            "ClusterName=counseltune-test",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={CTLD_PORT}",
            f"SlurmdPort={SLURMD_PORT}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            f"MinJobAge={self.min_job_age}",  # squeue must still see finished jobs at the plugin's next check
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "ReturnToService=2",
            "GresTypes=gpu",
            "MailProg=/bin/true",
            "KillWait=10",
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=120",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName=localhost NodeAddr=127.0.0.1 {topology} RealMemory={memory} Gres=gpu:1 State=UNKNOWN",
        ]
        for i, name in enumerate(self.partitions):
            default = "YES" if i == 0 else "NO"
            lines.append(f"PartitionName={name} Nodes=localhost Default={default} MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # without File= the gpu has no device and the node goes INVAL; /dev/null is a harmless stand-in
        (self.root / "gres.conf").write_text("AutoDetect=off\nNodeName=localhost Name=gpu File=/dev/null\n",
                                            encoding="utf-8")

    # -- daemons -------------------------------------------------------------------------------------------
    def pid(self, daemon: str) -> int | None:
        path = self.root / f"{daemon}.pid"
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, timeout: float = 90) -> float:
        """Bring the cluster up; returns the seconds it took. Leftover daemons of an earlier run are stopped first."""
        started = time.monotonic()
        self.stop()
        for port in (CTLD_PORT, SLURMD_PORT):
            if not port_free(port):
                raise RuntimeError(f"port {port} is taken: another test SLURM may be running")
        self.munged_pid = ensure_munge()
        self.write_config()
        self.write_srun_wrapper()
        slurmctld = shutil.which("slurmctld", path="/usr/sbin:/sbin:/usr/bin") or "slurmctld"
        slurmd = shutil.which("slurmd", path="/usr/sbin:/sbin:/usr/bin") or "slurmd"
        try:
            self.run([slurmctld, "-c"], timeout=30)  # daemonizes; -c: a clean state
            self.run([slurmd, "-N", "localhost"], timeout=30)
            self.wait_idle(deadline=started + timeout)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def node_state(self) -> str:
        done = self.run(["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"], timeout=10, check=False)
        return done.stdout.strip().split("\n")[0] if done.returncode == 0 else ""

    def wait_idle(self, deadline: float) -> None:
        """Poll sinfo until the node is idle; fail early when a daemon died (its pid file names a dead process)."""
        state, since = "", time.monotonic()
        while time.monotonic() < deadline:
            try:
                state = self.node_state()
            except subprocess.TimeoutExpired:
                state = "(sinfo timed out)"
            if state == "idle":
                return
            if time.monotonic() - since > 5 and not (self.pid("slurmctld") and self.pid("slurmd")):
                state += " (a daemon exited)"
                break
            time.sleep(0.5)
        raise RuntimeError(f"node localhost is '{state}', not idle:\n{self.logs()}")

    def logs(self, lines: int = 30) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def stop(self, timeout: float = 20) -> None:
        """Stop slurmd and slurmctld by the pids they wrote (and munged, if we started it)."""
        pids = [p for p in (self.pid("slurmd"), self.pid("slurmctld")) if p]
        if self.munged_pid and _alive(self.munged_pid):
            pids.append(self.munged_pid)
        for pid in pids:
            _terminate(pid, timeout)
        self.munged_pid = None

    # -- jobs ----------------------------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge keeps finished ones), as `scontrol show job` fields."""
        out = self.run(["scontrol", "-o", "show", "job"], timeout=15, check=False).stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            fields = {}
            for item in line.split():
                if "=" in item:
                    key, value = item.split("=", 1)
                    fields.setdefault(key, value)
            jobs.append(fields)
        return jobs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _terminate(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
