"""The Java settings of every Spark JVM the suite starts, and their class-data archive.

Every test JVM runs the C1 JIT compiler only and the serial collector (on two cores C2's
compiler threads took a third of a short run's CPU from the Python workers and the other
test process), and no web UI. A Spark JVM also spends about five CPU seconds of its start
reading and verifying Spark's classes; a class-data-sharing archive (Java's AppCDS) of the
classes a run loads maps them instead. ``python -m tests.jvm`` (``make test`` runs it)
dumps one for this Java and this pyspark, once, from a run of the bundled sample; the
suite uses it where it exists: drivers, executors, the standalone daemons and the Connect
server alike (measured on 2 cores: a local run of the sample 17.1 -> 11.6 CPU seconds,
15.3 -> 10.2 s; an audio run 22.2 -> 18.2 CPU seconds).

An archive serves only JVMs whose class path begins as the dump's did, and Java refuses
one where a directory on that path is not empty: Spark puts ``SPARK_CONF_DIR`` first, so
the suite points it at an empty directory and passes its defaults as Java options
(``SPARK_SUBMIT_OPTS``, which spark-submit adds to the driver's command line and whose
``-Dspark.*`` properties Spark reads as defaults: whatever a run sets itself wins). A JVM
of another installation (the packaging tests' venvs) finds that the archive does not
match and starts as it would without one, silently.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alm_spark.testing.processes import spark_child_env

REPO = Path(__file__).resolve().parent.parent
#: The archives and the empty configuration directory (``make clean`` removes them).
CACHE = REPO / ".cache" / "jvm"
#: C1 only, the serial collector.
JAVA_OPTIONS = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1"
#: Java says nothing of the archive: a JVM that cannot use it would say so on the console
#: the tests read, and then start without it.
QUIET_CDS = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off -Xlog:class+path=off"

#: A run of the bundled sample on a local master, whose JVM dumps the classes it loaded as
#: it exits: when its standard input ends, as when the Python process that started it
#: ends, but waited for here.
_DUMP_RUN = """
import sys
from pyspark import SparkContext
from alm_spark import cli
code = cli.main(["run", "-q", f"output.path={sys.argv[1]}", "spark.master=local[2]"])
if code or SparkContext._gateway is None:
    sys.exit(code or "no JVM was started")
jvm = SparkContext._gateway.proc
jvm.stdin.close()
sys.exit(jvm.wait(timeout=600))
"""


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else (shutil.which("java") or "java")


def archive_path() -> Path | None:
    """This Java's and this pyspark's archive (which may not exist yet); None without Java."""
    import pyspark

    try:
        version = subprocess.run(
            [_java(), "-version"], capture_output=True, text=True, check=True, timeout=60
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    jars = Path(pyspark.__file__).resolve().parent / "jars"
    # Java checks each jar's size and time: a reinstalled pyspark needs a new archive.
    stats = ((p.name, p.stat()) for p in jars.glob("*.jar"))
    listing = sorted(f"{name}:{stat.st_size}:{stat.st_mtime_ns}" for name, stat in stats)
    # What the archive must match: the Java build, the class path (the empty
    # configuration directory first, then Spark's jars) and the jars themselves.
    identity = [version, str(CACHE / "conf"), str(jars), *listing]
    key = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    return CACHE / f"spark-{pyspark.__version__}-{key}.jsa"


def empty_conf_dir() -> Path:
    """The suite's ``SPARK_CONF_DIR``: empty, so that an archive can serve the class path."""
    conf = CACHE / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    return conf


def java_options(archive: Path | None) -> str:
    """Options of a test JVM: ours, and the archive where it exists."""
    if archive is None or not archive.is_file():
        return JAVA_OPTIONS
    return f"{JAVA_OPTIONS} -XX:SharedArchiveFile={archive} {QUIET_CDS}"


def submit_options(archive: Path | None) -> str:
    """``SPARK_SUBMIT_OPTS``: the driver's options, the executors' and the UI's defaults."""
    options = java_options(archive)
    return f'{options} -Dspark.executor.extraJavaOptions="{options}" -Dspark.ui.enabled=false'


#: The variables through which the suite's JVMs get these settings.
SUITE_VARIABLES = ("SPARK_CONF_DIR", "SPARK_SUBMIT_OPTS", "SPARK_DAEMON_JAVA_OPTS")


def suite_environment() -> dict[str, str]:
    """The variables that give every JVM the suite starts these settings."""
    archive = archive_path()
    return {
        "SPARK_CONF_DIR": str(empty_conf_dir()),
        "SPARK_SUBMIT_OPTS": submit_options(archive),
        "SPARK_DAEMON_JAVA_OPTS": java_options(archive),
    }


def make_archive() -> tuple[Path | None, str]:
    """Dump this installation's archive unless it exists: its path (None if it could not
    be made) and what happened, in a line."""
    archive = archive_path()
    if archive is None:
        return None, "no Java"
    if archive.is_file():
        return archive, "made before"
    making = archive.with_name(f"{archive.name}.making-{os.getpid()}")
    # Java's notes left on: why an archive could not be written is among them.
    dump = f"{submit_options(None)} -XX:ArchiveClassesAtExit={making}"
    env = spark_child_env(SPARK_CONF_DIR=str(empty_conf_dir()), SPARK_SUBMIT_OPTS=dump)
    with tempfile.TemporaryDirectory() as work:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _DUMP_RUN, f"{work}/out"], env=env,
                capture_output=True, text=True, check=False, timeout=900,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            making.unlink(missing_ok=True)
            return None, "the dump run took over 15 minutes"
    if proc.returncode != 0 or not making.is_file():
        making.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no archive written"])[-1]
        return None, f"the dump run failed ({last})"
    making.replace(archive)  # whole, or not there: a cut-short archive crashes a JVM
    for stale in CACHE.glob("spark-*.jsa"):  # ~170 MB each, for a Java or jars now gone
        if stale != archive:
            stale.unlink(missing_ok=True)
    return archive, "made"


def main() -> int:
    """Make the archive; say in one line what happened. Never fails: the suite runs
    without an archive, only slower."""
    archive, what = make_archive()
    if archive is None:
        print(f"tests.jvm: no class-data archive: {what}; the suite's JVMs start without one")
    else:
        print(f"tests.jvm: class-data archive {archive.relative_to(REPO)} ({what})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
