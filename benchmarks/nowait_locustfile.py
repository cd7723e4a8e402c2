"""The benchmark's load: one tiny GET in a loop with no wait, the best case for a generator."""

from locust import FastHttpUser, constant, task


class NoWait(FastHttpUser):
    wait_time = constant(0)

    @task
    def index(self) -> None:
        self.client.get("/")
