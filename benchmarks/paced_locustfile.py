"""The open-model benchmark's load: one GET, paced at BENCH_PACE per second per user (default 10):
Locust's closed model. Under `loadkit run --rate` the same file runs open-model: each task is one
iteration, and wait_time is not used.
"""

import os

from locust import FastHttpUser, constant_throughput, task


class Paced(FastHttpUser):
    wait_time = constant_throughput(float(os.environ.get("BENCH_PACE", "10")))

    @task
    def index(self) -> None:
        self.client.get("/")
