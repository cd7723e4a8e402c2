"""Faults on the machine, not in the router: packet loss and partitions (nftables on `lo`, by port),
CPU limits (a cgroup v1 CPU quota, or competing busy processes pinned next to the pods) and memory
limits (a cgroup v1 memory limit) on one version's pods, and dependency faults at their proxies.

Every object is named after its fault, its expiry and the supervisor that made it
(`loadkit_<id>_e<unix expiry>_p<pid>` for an nft table, `loadkit-<id>-e<expiry>-p<pid>` for a
cgroup), so that `reap` (run by every sandbox at start and by `loadkit chaos cleanup`) removes
what a supervisor killed with `kill -9` left, once it expired or its supervisor is gone. While the
supervisor runs, its fault table's expiry timers remove them (`HostFaults.undo`).

`net_unavailable()`, `cgroup_unavailable(controller)` say why a mechanism cannot work here
(not root, no `nft`, no cgroup v1 controller): the fault is then refused with that reason.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loadkit.sandbox._deps import DependencyProxy, die_with_parent
from loadkit.sandbox._faults import Dependency, FaultKind, RouterFault
from loadkit.sandbox._pods import ReplicaSet
from loadkit.sandbox._spec import Version

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
_NAME = re.compile(r"loadkit[_-](?P<id>[0-9a-f]+)[_-]e(?P<expires>\d+)[_-]p(?P<pid>\d+)")
_NFT_TIMEOUT_S = 10


class Unavailable(Exception):
    """This machine cannot make the fault; the message says why and what to do."""


def net_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "packet loss and partitions need root (an nftables table on lo): run the sandbox as root"
    if shutil.which("nft") is None:
        return "packet loss and partitions need nftables: install it (apt-get install nftables)"
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False,
                         timeout=_NFT_TIMEOUT_S)
    if out.returncode != 0:
        return f"nft cannot list tables here: {out.stderr.strip()[:200]}"
    return None


def cgroup_unavailable(controller: str) -> str | None:
    probe = {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes"}[controller]
    if not (CGROUP_ROOT / controller / probe).is_file():
        return f"no cgroup v1 {controller} controller at {CGROUP_ROOT / controller}"
    if os.geteuid() != 0:
        return f"a {controller} limit needs root (a cgroup under {CGROUP_ROOT / controller})"
    return None


def object_name(fault: RouterFault, sep: str) -> str:
    return sep.join(("loadkit", fault.id, f"e{int(fault.expires_at.timestamp())}", f"p{os.getpid()}"))


# -- nftables -----------------------------------------------------------------------------------------

def nft_add(table: str, ports: list[int], loss_pct: float | None, comment: str) -> None:
    """Drop `loss_pct` % (all, for None: a partition) of the TCP packets to and from `ports` on lo."""
    chance = f"numgen random mod 100 < {max(1, round(loss_pct))} " if loss_pct is not None else ""
    port_set = "{ " + ", ".join(str(p) for p in sorted(set(ports))) + " }"
    text = re.sub(r"[^A-Za-z0-9 =:._-]", "", comment)[:120]
    script = (f"table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
              f"    oifname \"lo\" tcp dport {port_set} {chance}drop comment \"{text}\"\n"
              f"    oifname \"lo\" tcp sport {port_set} {chance}drop comment \"{text}\"\n  }}\n}}\n")
    out = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, check=False,
                         timeout=_NFT_TIMEOUT_S)
    if out.returncode != 0:
        raise Unavailable(f"nft refused the table: {out.stderr.strip()[:300]}")


def nft_tables() -> list[str]:
    if shutil.which("nft") is None or os.geteuid() != 0:
        return []
    out = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True, check=False,
                         timeout=_NFT_TIMEOUT_S)
    return [line.split()[-1] for line in out.stdout.splitlines() if line.split()[-1:] and
            line.split()[-1].startswith("loadkit_")]


def nft_delete(table: str) -> None:
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False,
                   timeout=_NFT_TIMEOUT_S)


# -- cgroups ------------------------------------------------------------------------------------------

def cgroup_of(pid: int, controller: str) -> str:
    """The pid's cgroup path in a v1 hierarchy, e.g. "/" or "/user.slice"."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    return "/"


def cgroup_add(controller: str, name: str, settings: dict[str, str], pids: list[int]) -> tuple[Path, dict[int, str]]:
    """Make a cgroup with `settings`, move `pids` in; returns it and where each pid was."""
    path = CGROUP_ROOT / controller / name
    path.mkdir()
    try:
        for key, value in settings.items():
            (path / key).write_text(value)
        was = {pid: cgroup_of(pid, controller) for pid in pids}
        for pid in pids:
            (path / "cgroup.procs").write_text(str(pid))
    except OSError:
        cgroup_remove(path, {})
        raise
    return path, was


def cgroup_remove(path: Path, was: dict[int, str]) -> None:
    """Move every process back where it was (else to the parent), then remove the cgroup."""
    root = path.parent
    with contextlib.suppress(FileNotFoundError):
        for raw in (path / "cgroup.procs").read_text().split():
            pid = int(raw)
            target = root / was.get(pid, "/").lstrip("/")
            for dest in (target, root):
                try:
                    (dest / "cgroup.procs").write_text(str(pid))
                    break
                except OSError:  # gone meanwhile, or that cgroup is gone: the parent then
                    continue
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # a process is still on its way out
            time.sleep(0.05)
    path.rmdir()


def cgroup_dirs() -> list[Path]:
    return [p for controller in ("cpu", "memory") if (CGROUP_ROOT / controller).is_dir()
            for p in (CGROUP_ROOT / controller).glob("loadkit-*") if p.is_dir()]


# -- busy competitors ---------------------------------------------------------------------------------

_NICE_WEIGHTS = (1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15)
_AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


def nice_for_share(cpu_pct: float) -> int:
    """The nice value whose CFS weight gets about `cpu_pct` % of a CPU next to one nice-0 entity
    (the kernel's sched_prio_to_weight table)."""
    share = max(0.01, min(1.0, cpu_pct / 100))
    return min(range(len(_NICE_WEIGHTS)), key=lambda n: abs(_NICE_WEIGHTS[n] / (_NICE_WEIGHTS[n] + 1024) - share))


def autogroups_enabled() -> bool:
    try:
        return _AUTOGROUP.read_text().strip() == "1"
    except OSError:
        return False


def autogroup_nice(pid: int) -> int:
    """The nice value of the pid's autogroup (its session's scheduling group), from /proc/<pid>/autogroup."""
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def busy_competitors(pids: list[int], workers: int, ttl_s: float, cpu_pct: float) -> tuple[
        list[subprocess.Popen[bytes]], dict[int, set[int]], dict[int, int]]:
    """Pin the pods to one CPU and start `workers` busy processes on it; they end by themselves
    after `ttl_s` (stress-ng's --timeout, or the loop's own clock) and die with the supervisor.

    Every pod runs in its own session, and with autogroups (the default on most kernels) the CPU
    is shared between sessions, not processes: the busy processes would only ever take half of
    it. So, as root, the pods' autogroups get the nice value whose weight is `cpu_pct` % next to
    the competitors' (`nice_for_share`), as a container's CPU share would; returns what to restore."""
    cpu = min(os.sched_getaffinity(0))
    affinity = {pid: os.sched_getaffinity(pid) for pid in pids}
    niced: dict[int, int] = {}
    for pid in pids:
        os.sched_setaffinity(pid, {cpu})
    if autogroups_enabled() and os.geteuid() == 0:
        for pid in pids:
            with contextlib.suppress(OSError, ValueError):
                before = autogroup_nice(pid)
                Path(f"/proc/{pid}/autogroup").write_text(str(nice_for_share(cpu_pct)))
                niced[pid] = before
    if shutil.which("stress-ng"):
        argv = ["stress-ng", "--cpu", str(workers), "--cpu-load", "100", "--taskset", str(cpu),
                "--timeout", f"{math.ceil(ttl_s)}s", "--quiet"]
        procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)]
    else:
        loop = (f"import os,time\nos.sched_setaffinity(0,{{{cpu}}})\nend=time.time()+{ttl_s}\n"
                "while time.time()<end: pass")
        procs = [subprocess.Popen([sys.executable, "-c", loop], stdin=subprocess.DEVNULL, start_new_session=True,
                                  preexec_fn=die_with_parent) for _ in range(workers)]
    return procs, affinity, niced


def stop_competitors(procs: list[subprocess.Popen[bytes]], affinity: dict[int, set[int]],
                     niced: dict[int, int] | None = None) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    for pid, cpus in affinity.items():
        with contextlib.suppress(ProcessLookupError, OSError):
            os.sched_setaffinity(pid, cpus)
    for pid, nice in (niced or {}).items():
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))


# -- leftovers ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Leftover:
    what: str  # "nft table inet loadkit_..." or a cgroup path
    expires: float
    supervisor_pid: int

    def orphaned(self, now: float) -> bool:
        return self.expires <= now or not _alive(self.supervisor_pid)


def leftovers() -> list[Leftover]:
    found = []
    for table in nft_tables():
        if match := _NAME.fullmatch(table):
            found.append(Leftover(f"nft table inet {table}", float(match["expires"]), int(match["pid"])))
    for path in cgroup_dirs():
        if match := _NAME.fullmatch(path.name):
            found.append(Leftover(str(path), float(match["expires"]), int(match["pid"])))
    return found


def reap(everything: bool = False) -> list[str]:
    """Remove what a dead (or, with `everything`, any) sandbox supervisor left: expired objects and
    those whose supervisor is gone. Returns what was removed."""
    now, removed = time.time(), []
    for left in leftovers():
        if not (everything or left.orphaned(now)):
            continue
        if left.what.startswith("nft table inet "):
            nft_delete(left.what.rsplit(" ", 1)[-1])
        else:
            cgroup_remove(Path(left.what), {})
        removed.append(left.what)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the supervisor's side ----------------------------------------------------------------------------

class HostFaults:
    """Applies and undoes the non-router faults of the fault table. `apply` raises Unavailable."""

    def __init__(self, replica_sets: dict[Version, ReplicaSet],
                 proxies: dict[tuple[Version, Dependency], DependencyProxy], dependencies_note: str) -> None:
        self._replica_sets = replica_sets
        self._proxies = proxies
        self._note = dependencies_note
        self._undo: dict[str, Callable[[], None]] = {}

    def apply(self, fault: RouterFault) -> None:
        kind = fault.kind
        if kind in (FaultKind.LOSS, FaultKind.PARTITION):
            self._net(fault)
        elif kind is FaultKind.CPU:
            self._cpu(fault)
        elif kind is FaultKind.MEMORY:
            self._memory(fault)
        else:
            self._dependency(fault)

    def undo(self, fault: RouterFault) -> None:
        undo = self._undo.pop(fault.id, None)
        if undo is not None:
            undo()

    def undo_all(self) -> None:
        for fault_id in list(self._undo):
            self._undo.pop(fault_id)()

    def _pids(self, fault: RouterFault) -> list[int]:
        pids = [pod.pid for pod in self._replica_sets[fault.version].pods if pod.alive and pod.pid]
        if not pids:
            raise Unavailable(f"no live {fault.version.value} pod to put the fault on")
        return [int(pid) for pid in pids]

    def _net(self, fault: RouterFault) -> None:
        if reason := net_unavailable():
            raise Unavailable(reason)
        if fault.dependency is not None:
            proxy = self._proxy(fault)
            ports, where = [int(proxy.port or 0)], f"the {fault.version.value}'s {proxy.name} port"
        else:
            ports = [int(p.port) for p in self._replica_sets[fault.version].pods if p.alive and p.port]
            where = f"the {fault.version.value} pods' ports"
        table = object_name(fault, "_")
        loss = fault.percentage if fault.kind is FaultKind.LOSS else None
        owner = fault.owner.run if fault.owner and fault.owner.run else "-"
        nft_add(table, ports, loss, f"loadkit run={owner} fault={fault.id}")
        what = f"{loss:g}% loss" if loss is not None else "drop all"
        fault.detail = f"nft table inet {table}: {what} on {where} {', '.join(map(str, ports))}"
        self._undo[fault.id] = lambda: nft_delete(table)

    def _cpu(self, fault: RouterFault) -> None:
        pct = float(fault.cpu_pct or 100)
        mechanism = fault.mechanism or "auto"
        reason = cgroup_unavailable("cpu")
        if mechanism == "cgroup" and reason:
            raise Unavailable(reason)
        pids = self._pids(fault)
        if mechanism == "cgroup" or (mechanism == "auto" and not reason):
            quota = max(1000, round(CPU_PERIOD_US * pct / 100))
            path, was = cgroup_add("cpu", object_name(fault, "-"), {
                "cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}, pids)
            fault.mechanism = "cgroup"
            fault.detail = f"cgroup {path}: {quota} us of CPU per {CPU_PERIOD_US} us for pids {pids}"
            self._undo[fault.id] = lambda: cgroup_remove(path, was)
            return
        workers = max(1, min(9, round(100 / pct) - 1))
        ttl = (fault.expires_at - fault.created_at).total_seconds()
        procs, affinity, niced = busy_competitors(pids, workers, ttl, pct)
        fault.mechanism = "busy"
        fault.detail = (f"{workers} busy process(es) pinned with pids {pids} to one CPU "
                        f"({'stress-ng' if shutil.which('stress-ng') else 'python'})"
                        + (f", the pods' autogroups at nice {nice_for_share(pct)}" if niced else ""))
        self._undo[fault.id] = lambda: stop_competitors(procs, affinity, niced)

    def _memory(self, fault: RouterFault) -> None:
        if reason := cgroup_unavailable("memory"):
            raise Unavailable(reason)
        limit = int(fault.memory_mb or 0) * 1024 * 1024
        path, was = cgroup_add("memory", object_name(fault, "-"), {"memory.limit_in_bytes": str(limit)},
                               self._pids(fault))
        fault.detail = f"cgroup {path}: memory.limit_in_bytes {limit}"
        self._undo[fault.id] = lambda: cgroup_remove(path, was)

    def _dependency(self, fault: RouterFault) -> None:
        proxy = self._proxy(fault)
        if fault.kind is FaultKind.DEPENDENCY_SLOW:
            proxy.slow[fault.id] = int(fault.delay_ms or 0)
        elif fault.kind is FaultKind.DEPENDENCY_FAILING:
            proxy.set_failing(fault.id)
        else:
            proxy.unreachable.add(fault.id)
        fault.detail = f"at the {fault.version.value}'s {proxy.name} proxy (port {proxy.port})"
        self._undo[fault.id] = lambda: proxy.clear(fault.id)

    def _proxy(self, fault: RouterFault) -> DependencyProxy:
        assert fault.dependency is not None  # FaultRequest requires it for these kinds
        proxy = self._proxies.get((fault.version, fault.dependency))
        if proxy is None:
            raise Unavailable(f"the sandbox has no {fault.dependency.value}: {self._note}")
        return proxy
