"""The Spark session helper: what it says when Spark cannot run, and Spark's errors in one
line."""

from __future__ import annotations

from recengine.spark import session


class _Java:
    """A stand-in for a py4j Java exception: its text and its cause."""

    def __init__(self, text: str, cause: _Java | None = None) -> None:
        self.text, self.cause = text, cause

    def toString(self) -> str:  # Java's name
        return self.text

    def getCause(self) -> _Java | None:  # Java's name
        return self.cause


def _raised(java: _Java) -> Exception:
    error = RuntimeError("An error occurred while calling o123.fit")
    error.java_exception = java  # type: ignore[attr-defined]
    return error


def test_failure_is_the_root_cause_in_one_line():
    wrapped = _Java("org.apache.spark.SparkException: Job aborted\n\tat x.y(z)",
                    _Java("java.lang.StackOverflowError\n\tat a.b(c)"))
    assert session.failure(_raised(wrapped)) == "java.lang.StackOverflowError"


def test_failure_of_a_python_worker_names_its_exception():
    text = ("org.apache.spark.api.python.PythonException: Traceback (most recent call last):\n"
            '  File "batch.py", line 23, in <module>\n    import pyarrow as pa\n'
            "ModuleNotFoundError: No module named 'pyarrow'\n\n\tat org.apache.spark.X(Y)")
    assert session.failure(_raised(_Java(text))) == (
        "a Python worker failed: ModuleNotFoundError: No module named 'pyarrow'")


def test_without_java_it_says_what_to_install(monkeypatch):
    monkeypatch.setattr(session.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert session.unavailable() == session.NO_JAVA
    assert "apt-get install openjdk-17-jre-headless" in session.NO_JAVA
