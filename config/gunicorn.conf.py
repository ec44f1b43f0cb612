"""Gunicorn settings for `roster serve` and the Docker image. Values from ROSTER settings
are passed on the command line by `roster serve`; these are the process-level defaults."""

import os
import tempfile

# Prometheus: workers write samples to a shared directory so /metrics sums all of them.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="roster-metrics-")

worker_class = "gthread"
threads = 4
timeout = int(os.environ.get("ROSTER_SERVER__TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 5
accesslog = None  # Roster writes its own structured access log line per request
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
