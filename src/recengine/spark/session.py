"""The process's Spark session, started on first use, and Spark's failures in one line.

One session per process (Spark allows one context): :func:`spark_session` returns the active
one when it runs on the master asked for (a test's fixture, an application's own), and starts
one otherwise. Local masters (``local[2]``) bind to loopback, keep few shuffle partitions and
no web UI; every session reads and writes times in UTC, as the local code does.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recengine._extras import require
from recengine.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_MASTER", "POSTGRES_JAR", "failure", "spark_errors", "spark_session",
           "unavailable"]

#: The last line of a Python traceback: the exception raised.
_PYTHON_ERROR = re.compile(r"[\w.]+(Error|Exception|Exit|Interrupt)\b")

#: Two cores of this machine: enough for tests and MovieLens, and leaves the rest alone.
DEFAULT_MASTER = "local[2]"

#: Every session: times in UTC (events are UTC), Arrow between Python and the JVM.
_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
}
#: Local masters only: one machine needs few shuffle partitions (Spark's 200 cost more to
#: schedule than MovieLens takes to aggregate), and nothing leaves loopback.
_LOCAL_SETTINGS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
}


#: PostgreSQL's JDBC driver as Debian installs it (package ``libpostgresql-jdbc-java``): every
#: new session loads it when it is there, so the event store can be read over JDBC
#: (:mod:`recengine.spark.store`); the class is loaded only when used. Maven Central is not
#: needed (nor reachable everywhere).
POSTGRES_JAR = Path("/usr/share/java/postgresql.jar")


def _with_jars(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` with :data:`POSTGRES_JAR` added to ``spark.jars`` when it is installed."""
    if not POSTGRES_JAR.exists():
        return conf
    jars = [j for j in conf.get("spark.jars", "").split(",") if j.strip()]
    return conf | {"spark.jars": ",".join([*jars, str(POSTGRES_JAR)])}


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    return shutil.which("java") is not None or bool(home and (Path(home) / "bin" / "java")
                                                    .exists())


#: Why no Spark session can start without Java.
NO_JAVA = ("Spark needs Java 17 or later, and no 'java' is on the PATH (nor in JAVA_HOME): "
           "install a JRE, e.g. apt-get install openjdk-17-jre-headless")


def unavailable() -> str | None:
    """Why Spark cannot start in this process (pyspark or Java missing), or None if it can."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed: pip install 'recengine[spark]'"
    return None if _java_found() else NO_JAVA


def spark_session(master: str = DEFAULT_MASTER, *, feature: str = "Spark",
                  conf: dict[str, str] | None = None) -> SparkSession:
    """The active Spark session if it runs on ``master``, else a new one there.

    ``feature`` names what needs Spark, for the message when the ``spark`` extra is missing;
    ``conf`` adds Spark settings to a new session. A session already running on another master
    is :class:`EngineError`: a process holds one Spark context, and silently training on
    another cluster than the one asked for would be worse than stopping.
    """
    sql = require("pyspark.sql", extra="spark", feature=feature)
    active = sql.SparkSession.getActiveSession()
    if active is not None:
        running = active.sparkContext.master
        if running != master:
            raise EngineError(f"a Spark session on {running} is already running in this "
                              f"process; stop it before asking for {master}")
        return active
    if not _java_found():
        raise EngineError(NO_JAVA)
    local = master.startswith("local")
    if local:  # Spark otherwise warns that the host name resolves to loopback
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = sql.SparkSession.builder.master(master).appName("recengine")
    if local:  # Python workers (batch jobs) run this interpreter, with its packages
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = _with_jars(_SETTINGS | (_LOCAL_SETTINGS if local else {}) | (conf or {}))
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except spark_errors() as exc:
        raise EngineError(f"Spark could not start on {master}: {failure(exc)}") from None
    # Every failure reaches the caller as one line (EngineError, DataError): Spark's own log
    # of it is a stack trace per failed task. setLogLevel("WARN") shows it again.
    session.sparkContext.setLogLevel("FATAL")
    return session


def spark_errors() -> tuple[type[Exception], ...]:
    """What a failing Spark call raises: py4j's Java errors and pyspark's own (they share no
    base class). Catch these, never ``Exception``: a bug of ours must stay a traceback."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return (Py4JError, PySparkException)


def failure(exc: BaseException) -> str:
    """What a Spark call reported, in one line: the Java exception's root cause without its
    stack (Spark wraps a task's failure in several layers), or pyspark's error message."""
    java: Any = getattr(exc, "java_exception", None)
    if java is not None:
        while java.getCause() is not None and java.getCause() != java:
            java = java.getCause()
        text = str(java.toString())
    else:
        text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any("Traceback (most recent call last)" in line for line in lines):
        raised = [line for line in lines if _PYTHON_ERROR.match(line) and "Traceback" not in line]
        if raised:  # a Python worker's own exception, not the Java wrapper's
            return f"a Python worker failed: {raised[-1]}"
    return lines[0] if lines else type(exc).__name__
