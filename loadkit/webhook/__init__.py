"""Flagger webhooks: `loadkit serve` gates canary analysis on scored load runs.

Never imports locust: every run is a Locust child process (loadkit.load.runner).
"""

from loadkit.webhook.app import create_app
from loadkit.webhook.models import FlaggerPayload, HookKind, RunRecord, RunStatus
from loadkit.webhook.policy import Policy
from loadkit.webhook.runs import RunManager
from loadkit.webhook.settings import ServeSettings
from loadkit.webhook.store import Store

__all__ = ["FlaggerPayload", "HookKind", "Policy", "RunManager", "RunRecord", "RunStatus", "ServeSettings", "Store",
           "create_app"]
