"""Spark servers for tests, started from the installed pyspark on 127.0.0.1.

A standalone cluster (a master and 1-core workers) and a Spark Connect server. Each
binds free loopback ports, keeps its logs under the directory it is given, and is
stopped by the PIDs it started (and their executor children), never by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alm_spark.run.launch import PARENT_SESSION_VARIABLES

LOOPBACK = "127.0.0.1"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


def spark_home() -> Path:
    """The installed pyspark's folder, which is a Spark distribution (bin/, jars/, sbin/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def pyspark_version() -> tuple[int, int]:
    import pyspark

    major, minor = pyspark.__version__.split(".")[:2]
    return int(major), int(minor)


def free_port() -> int:
    """A TCP port free on the loopback address right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a Spark JVM or spark-submit: loopback only, no parent session."""
    env = dict(os.environ)
    for name in (*PARENT_SESSION_VARIABLES, "SPARK_REMOTE"):
        env.pop(name, None)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP=LOOPBACK,
        SPARK_LOCAL_HOSTNAME="localhost",
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
    )
    env.update(extra or {})
    return env


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of a process's direct children."""
    proc = subprocess.run(
        ["ps", "-ww", "--ppid", str(pid), "-o", "pid=,args="],  # -ww: never cut lines
        capture_output=True,
        text=True,
        check=False,
    )
    out = []
    for line in proc.stdout.splitlines():
        pid_text, _, args = line.strip().partition(" ")
        out.append((int(pid_text), args))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM a process we started, then SIGKILL it if it lingers."""
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our direct child: poll for it
            done = 0 if _alive(pid) else pid
        if done == pid or not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class StandaloneCluster:
    """A running standalone master and its workers."""

    root: Path
    master_port: int
    master_ui_port: int
    master: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_ui_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The master URL for spark-submit's ``--master``."""
        return f"spark://{LOOPBACK}:{self.master_port}"

    def state(self) -> Any:
        """The master's state (``workers``, ``activeapps``, ``completedapps``)."""
        return _get_json(f"http://{LOOPBACK}:{self.master_ui_port}/json/")

    def executors(self) -> list[tuple[int, int]]:
        """(worker index, pid) of every executor JVM running on the workers."""
        return [
            (index, pid)
            for index, worker in enumerate(self.workers)
            for pid, args in children(worker.pid)
            if EXECUTOR_CLASS in args
        ]

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no application is running, so the next one gets both workers."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.state()["activeapps"] and not self.executors():
                return
            time.sleep(0.5)
        raise TimeoutError(f"the cluster did not become idle; logs under {self.root}")

    def stop(self) -> None:
        """Stop the workers (and any executor they left), then the master, by PID."""
        leftovers = [pid for _, pid in self.executors()]
        for worker in self.workers:
            stop_pid(worker.pid)
        for pid in leftovers:
            stop_pid(pid)
        stop_pid(self.master.pid)


def _spark_class(args: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start a Spark daemon class in the foreground; spark-class execs java, so the
    PID is the JVM's."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            env=dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def start_cluster(
    root: Path,
    workers: int = 2,
    worker_env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> StandaloneCluster:
    """Start a master and ``workers`` 1-core workers; return once all are registered.

    Args:
        root: Where logs (``logs/``) and the workers' work directories go.
        workers: How many workers.
        worker_env: Extra environment for the workers (and so their executors).
        timeout: Seconds to wait for the cluster to come up.
    """
    env = server_env()
    master_port, master_ui = free_port(), free_port()
    master = _spark_class(
        ["org.apache.spark.deploy.master.Master", "--host", LOOPBACK,
         "--port", str(master_port), "--webui-port", str(master_ui)],
        root / "logs" / "master.log",
        env,
    )  # fmt: skip
    cluster = StandaloneCluster(root, master_port, master_ui, master)
    try:
        for index in range(workers):
            ui_port = free_port()
            work_dir = root / f"worker-{index}"
            work_dir.mkdir(parents=True, exist_ok=True)
            worker = _spark_class(
                ["org.apache.spark.deploy.worker.Worker", cluster.url, "--cores", "1",
                 "--memory", "2g", "--host", LOOPBACK, "--webui-port", str(ui_port),
                 "--work-dir", str(work_dir)],
                root / "logs" / f"worker-{index}.log",
                {**env, **(worker_env or {})},
            )  # fmt: skip
            cluster.workers.append(worker)
            cluster.worker_ui_ports.append(ui_port)
        deadline = time.time() + timeout
        while True:
            for proc in (master, *cluster.workers):
                if proc.poll() is not None:
                    raise RuntimeError(f"a Spark daemon exited early; logs under {root}/logs")
            try:
                alive = [w for w in cluster.state()["workers"] if w["state"] == "ALIVE"]
            except (OSError, ValueError):  # not up, or its UI serves HTML until /json/ is on
                alive = []
            if len(alive) == workers:
                return cluster
            if time.time() > deadline:
                raise TimeoutError(f"the cluster did not come up; logs under {root}/logs")
            time.sleep(0.5)
    except BaseException:
        cluster.stop()
        raise


@dataclass
class ConnectServer:
    """A Spark Connect server started with ``sbin/start-connect-server.sh``."""

    root: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        """The ``sc://`` address clients connect to."""
        return f"sc://{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        """Stop the server by the PID its start script recorded."""
        stop_pid(self.pid, timeout=30.0)


def start_connect_server(root: Path, timeout: float = 180.0) -> ConnectServer:
    """Start a Spark Connect server on a free loopback port (pyspark 4.x ships it).

    The start script daemonizes and writes the server's PID to a file under
    ``SPARK_PID_DIR``, which is a folder of ``root``; logs go to ``root/logs``.
    """
    port = free_port()
    pid_dir, log_dir = root / "pid", root / "logs"
    pid_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = server_env({"SPARK_PID_DIR": str(pid_dir), "SPARK_LOG_DIR": str(log_dir),
                      "SPARK_IDENT_STRING": "alm-test"})  # fmt: skip
    subprocess.run(
        [str(spark_home() / "sbin" / "start-connect-server.sh"),
         "--master", "local[2]",
         "--conf", f"spark.connect.grpc.binding.port={port}",
         "--conf", f"spark.connect.grpc.binding.address={LOOPBACK}",
         "--conf", "spark.ui.enabled=false",
         "--conf", "spark.sql.shuffle.partitions=2",
         "--driver-java-options", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    pid_files = list(pid_dir.glob("*.pid"))
    if len(pid_files) != 1:
        raise RuntimeError(f"no pid file from start-connect-server.sh in {pid_dir}")
    server = ConnectServer(root, port, int(pid_files[0].read_text().strip()))
    deadline = time.time() + timeout
    while True:
        if not _alive(server.pid):
            raise RuntimeError(f"the Connect server exited; logs under {log_dir}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return server
        if time.time() > deadline:
            server.stop()
            raise TimeoutError(f"the Connect server did not listen on {port}; logs in {log_dir}")
        time.sleep(0.5)
