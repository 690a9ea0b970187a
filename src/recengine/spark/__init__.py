"""Apache Spark as a library (the ``spark`` extra): a session, preparation of event files, and
batch jobs, in small modules that share their definitions with the local code.

Nothing here is imported by ``import recengine`` or by the server; pyspark is imported on first
use, through :func:`recengine._extras.require`, so without the extra a Spark feature stops with
one line naming it.
"""
