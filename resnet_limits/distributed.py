"""Beyond one process (layer 2): worker processes on one node, JAX's distributed runtime over
several hosts, and jobs for a Slurm cluster.

Three ways to spread a sweep, all on one run folder and its claims (``sweeps/claims.py``):

* **Worker processes** (``sweep --workers N``, :func:`run_workers`): N processes on this node run
  the same sweep on the same folder, each on its own accelerator (``CUDA_VISIBLE_DEVICES`` per
  worker; on the CPU just separate processes). They share the depths through the claims; this
  process only starts them, shows what each one trains (``worker i: ...``), reaps them at once
  (so that the claim of a worker that died is taken over by the others within a second or two,
  not after the 5 minutes a silent host is given), and says in one line when one fails.
* **JAX's distributed runtime** (``sweep --distributed``, :func:`initialize`): one process per
  GPU on every node (Slurm, Open MPI, or ``--coordinator/--num-processes/--process-id``), one
  global mesh over all their devices. Every process trains every depth together (the conv
  trainer's ``data`` mesh: each minibatch split over all devices; the fully-connected trainer:
  the seeds, and learning rates, split over all devices); only process 0 touches the run folder
  (:class:`Group`, used by ``sweeps.driver.run_depths``); every process takes part in the orbax
  checkpoints of the conv trainer. Each process runs under a supervisor (:func:`supervise`):
  when another process of the run dies, JAX's distributed service ends this one within the
  heartbeat timeout, and the supervisor turns JAX's fatal log into one line.
* **Slurm** (``resnet-limits submit``, :func:`submit`, through submitit): a job array whose tasks
  run the same sweep on a shared folder (depth-parallel), or one multi-node job of one task per
  GPU with ``--distributed`` (data-parallel).

Nothing here imports JAX at module level: the worker parent and the supervisor never start a
backend (on a GPU node they would take memory the workers need).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple, Optional, Sequence

from resnet_limits.errors import UsageError

__all__ = [
    "CHILD_ENV",
    "CLUSTER_EXTRA",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_JOIN_S",
    "EXIT_FAILED",
    "NATIVE_LINE",
    "WORKER_ENV",
    "Group",
    "WorkersReport",
    "active_group",
    "default_workers",
    "free_port",
    "initialize",
    "local_gpus",
    "run_workers",
    "submit",
    "supervise",
    "worker_envs",
]

#: Set in a worker process started by :func:`run_workers` (its index): it never starts workers.
WORKER_ENV = "RESNET_LIMITS_WORKER"
#: Set in the process :func:`supervise` runs: it joins the distributed run itself.
CHILD_ENV = "RESNET_LIMITS_DISTRIBUTED_CHILD"
#: Exit code of a run some of whose processes failed (workers, or a distributed run that lost one).
EXIT_FAILED = 3
#: JAX's defaults: seconds without a heartbeat before a process counts as dead, and seconds
#: all processes are given to join.
DEFAULT_HEARTBEAT_S = 100
DEFAULT_JOIN_S = 300
#: How to install submitit.
CLUSTER_EXTRA = 'pip install "resnet-limits[cluster]"'


def _say_default(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (for a coordinator on this machine)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ local accelerators --

def local_gpus(env: Optional[Mapping[str, str]] = None) -> list[str]:
    """The ids of this node's NVIDIA GPUs, without starting JAX: ``CUDA_VISIBLE_DEVICES`` when
    set (``""`` or ``-1``: none), else the GPUs ``nvidia-smi -L`` lists, else none."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        ids = [s.strip() for s in env["CUDA_VISIBLE_DEVICES"].split(",") if s.strip()]
        return [] if not ids or ids[0].startswith("-1") or ids[0] == "NoDevFiles" else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [m[1] for m in re.finditer(r"^GPU (\d+):", out, re.M)]


def default_workers(conv: bool, data_parallel: int = 1, gpus: Optional[Sequence[str]] = None) -> int:
    """``--workers`` not given: one per local GPU (``data_parallel`` GPUs each) for the conv
    sweep, else 1 (the CPU; the fully-connected sweeps shard their seeds over the devices)."""
    gpus = local_gpus() if gpus is None else gpus
    return max(1, len(gpus) // max(1, data_parallel)) if conv and gpus else 1


def worker_envs(n: int, *, data_parallel: int = 1, gpus: Optional[Sequence[str]] = None,
                env: Optional[Mapping[str, str]] = None) -> list[dict[str, str]]:
    """The environment of each of ``n`` workers: :data:`WORKER_ENV` = its index and, on a GPU
    node, ``CUDA_VISIBLE_DEVICES`` = its own ``data_parallel`` GPUs. One-line
    :class:`UsageError` if the node has too few GPUs."""
    gpus = local_gpus(env) if gpus is None else list(gpus)
    base = dict(os.environ if env is None else env)
    if gpus and n * data_parallel > len(gpus):
        raise UsageError(f"{n} workers of {data_parallel} GPU{'s' if data_parallel > 1 else ''} each need "
                         f"{n * data_parallel} GPUs; this node has {len(gpus)} ({','.join(gpus)})")
    out = []
    for i in range(n):
        e = dict(base, **{WORKER_ENV: str(i)})
        if gpus:
            e["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[i * data_parallel:(i + 1) * data_parallel])
        out.append(e)
    return out


def _die_with_parent() -> None:
    """In a child, before exec: end it (SIGTERM) if the process that started it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _popen(command: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env),
                            text=True, bufsize=1, errors="replace",
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)


def _pump(stream, sink: "queue.Queue", tag) -> threading.Thread:
    def run():
        for line in stream:
            sink.put((tag, line.rstrip("\n")))
        sink.put((tag, None))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _how(code: int) -> str:
    """How a child ended, in words."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"failed (exit code {code})"


def _stop(procs: Sequence[subprocess.Popen], grace: float = 30.0) -> None:
    """SIGTERM every live child, wait up to ``grace`` seconds, then SIGKILL the rest."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()


# ------------------------------------------------------------------ worker processes ----

class WorkersReport(NamedTuple):
    """What :func:`run_workers` saw: each worker's ``pid`` and exit ``codes`` (negative: killed by
    that signal), the depths each one trained (``trained``: worker -> depths, from the ``pid``
    recorded in each depth's JSON), the folder's ``finished`` depths, and ``exit_code``: 0 when
    every worker succeeded, 2 when all failed on bad input, else :data:`EXIT_FAILED`."""

    pids: list[int]
    codes: list[int]
    trained: dict[int, list[int]]
    finished: list[int]
    exit_code: int


class _Watch:
    """The parent's view of the run folder: who holds which depth, who finished which."""

    def __init__(self, out: Path, pids: Sequence[int], say: Callable[[str], None]):
        self.depths = Path(out) / "depths"
        self.worker = {pid: i for i, pid in enumerate(pids)}
        self.say = say
        self.holding: dict[int, int] = {}  # worker -> depth
        self.done: dict[int, int] = {}  # depth -> worker that saved it
        self._seen: set[str] = set()

    def held_by(self, pid: int) -> Optional[int]:
        """The depth whose claim file names ``pid`` (a dead worker's claim stays until taken over)."""
        for path in sorted(self.depths.glob("L*.claim")) if self.depths.is_dir() else ():
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if int(json.loads(path.read_text())["pid"]) == pid:
                    return int(path.name[1:6])
        return None

    def scan(self) -> None:
        from resnet_limits.sweeps.claims import live_claims

        if not self.depths.is_dir():
            return
        for L, who in live_claims(self.depths).items():
            i = self.worker.get(int(who.rsplit(":", 1)[1]))
            if i is not None and self.holding.get(i) != L and L not in self.done:
                self.holding[i] = L
                self.say(f"worker {i}: training L={L}")
        for path in sorted(self.depths.glob("L*.json")):
            if path.name in self._seen:
                continue
            try:
                meta = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced (a damaged depth trained again)
            self._seen.add(path.name)
            i = self.worker.get(int(meta.get("pid", -1) or -1))
            if i is None:
                continue  # finished before, or by another process
            L = int(meta.get("depth", path.stem[1:]))
            self.done[L] = i
            if self.holding.get(i) == L:
                del self.holding[i]
            secs = meta.get("seconds")
            took = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
            self.say(f"worker {i}: finished L={L}{took} ({len(self.done)} trained by the workers so far)")


def run_workers(command: Sequence[str], n: int, out, *, envs: Optional[Sequence[Mapping[str, str]]] = None,
                say: Callable[[str], None] = _say_default, poll: float = 0.25) -> WorkersReport:
    """Run ``n`` copies of ``command`` (a ``resnet-limits sweep`` of one folder ``out``, each with
    its environment from ``envs``, default :func:`worker_envs`) and wait for all of them.

    Every line a worker writes to stderr is said as ``worker i: <line>`` (an error line that
    several workers write, once); its stdout (its own summary) is not repeated: the caller
    summarises from the returned report. While they run, the folder is watched:
    ``worker i: training L=..`` when a worker claims a depth, ``worker i: finished L=.. in ..``
    when its files are written. A worker that ends badly is reaped at once (its claim is then
    free for the others: a claim of this host whose pid is gone is abandoned) and named in one
    line: how it ended and which depth it held. Ctrl-C or SIGTERM stop every worker (SIGTERM:
    they release their claims and keep their finished depths) before the interrupt goes on.
    """
    envs = list(envs) if envs is not None else worker_envs(n)
    lines: queue.Queue = queue.Queue()
    procs: list[subprocess.Popen] = []
    try:
        for i in range(n):
            procs.append(_popen(command, envs[i]))
            _pump(procs[i].stderr, lines, (i, "err"))
            _pump(procs[i].stdout, lines, (i, "out"))
        watch = _Watch(Path(out), [p.pid for p in procs], say)
        codes: list[Optional[int]] = [None] * n
        said_errors: set[str] = set()
        open_streams = 2 * n
        next_scan = 0.0
        while open_streams or any(c is None for c in codes):
            try:
                (i, kind), line = lines.get(timeout=poll)
                if line is None:
                    open_streams -= 1
                elif kind == "err" and line.strip():
                    text = line.removeprefix("resnet-limits: ")
                    if text not in said_errors:
                        say(f"worker {i}: {text}")
                    if "error:" in text:
                        said_errors.add(text)
            except queue.Empty:
                pass
            for i, p in enumerate(procs):
                if codes[i] is None and p.poll() is not None:  # reaped: its pid is gone from now on
                    codes[i] = p.returncode
                    watch.scan()
                    if p.returncode != 0:
                        _worker_failed(i, p, watch, codes, say)
            if time.monotonic() >= next_scan:
                watch.scan()
                next_scan = time.monotonic() + 2 * poll
        watch.scan()
    except BaseException:
        _stop(procs)
        raise
    from resnet_limits.sweeps.folder import finished_depths

    final = [int(c) for c in codes]
    trained: dict[int, list[int]] = {i: [] for i in range(n)}
    for L, i in sorted(watch.done.items()):
        trained[i].append(L)
    if all(c == 0 for c in final):
        code = 0
    elif all(c == 2 for c in final):
        code = 2
    else:
        code = EXIT_FAILED
    return WorkersReport([p.pid for p in procs], final, trained, finished_depths(Path(out)), code)


def _worker_failed(i: int, p: subprocess.Popen, watch: _Watch, codes, say) -> None:
    held = watch.holding.pop(i, None)
    held = watch.held_by(p.pid) or held
    alive = [j for j, c in enumerate(codes) if c is None]
    if held is None:
        say(f"worker {i} (pid {p.pid}) {_how(p.returncode)}, holding no depth")
    elif alive:
        say(f"worker {i} (pid {p.pid}) {_how(p.returncode)} while training L={held}; the other workers "
            f"take it over")
    else:
        say(f"worker {i} (pid {p.pid}) {_how(p.returncode)} while training L={held}; no worker is left to "
            f"take it over: rerun the same command")


# ------------------------------------------------------------------ JAX distributed -----

_GROUP: Optional["Group"] = None
_DONE, _ABORT = -1, -2


def active_group() -> Optional["Group"]:
    """The :class:`Group` of this process's multi-process JAX run (:func:`initialize`), or None."""
    return _GROUP


@dataclasses.dataclass
class Group:
    """The processes of one multi-process JAX run training a sweep together.

    Process 0, the ``leader``, runs ``sweeps.driver.run_depths`` as a single process would (claims,
    checks, files) inside :meth:`lead`, which tells the others each depth before it trains it;
    the others run :meth:`follow`: they train the depths they are told, in step, and never
    touch the folder. The messages are one integer broadcast from process 0 to all
    (``multihost_utils.broadcast_one_to_all``): a depth, "done" or "process 0 failed".
    """

    index: int
    count: int
    log: Callable[[str], None] = _say_default

    @property
    def leader(self) -> bool:
        return self.index == 0

    def _send(self, value: int) -> None:
        if self.count > 1:
            import numpy as np
            from jax.experimental import multihost_utils

            multihost_utils.broadcast_one_to_all(np.int32(value))

    def _receive(self) -> int:
        import numpy as np
        from jax.experimental import multihost_utils

        return int(multihost_utils.broadcast_one_to_all(np.int32(0)))

    @contextlib.contextmanager
    def lead(self, train_one: Callable) -> Iterator[Callable]:
        """Process 0: ``train_one`` that first names its depth to the others; "done" when the
        block ends, "failed" when it raises between depths (raising inside a depth, the others
        are inside the same collective: they end when this process's runtime goes)."""
        inside = [False]

        def announced(L: int):
            self._send(int(L))
            self.log(f"depth {L}: training on {self.count} processes")
            inside[0] = True
            result = train_one(L)
            inside[0] = False
            return result

        try:
            yield announced
        except BaseException:
            if not inside[0]:
                with contextlib.suppress(Exception):
                    self._send(_ABORT)
            raise
        self._send(_DONE)

    def follow(self, train_one: Callable, setup: Optional[Callable] = None) -> list[int]:
        """Processes 1..n-1: train each depth process 0 names (``setup()`` once, before the first)
        until it says done; returns those depths. One-line :class:`UsageError` when it failed."""
        done: list[int] = []
        while True:
            L = self._receive()
            if L == _DONE:
                return done
            if L == _ABORT:
                raise UsageError("process 0 of the distributed run stopped (its error is in its log); "
                                 "this process stops too")
            if not done and setup is not None:
                setup()
            train_one(L)
            done.append(L)


def _cpu_collectives() -> None:
    """Cross-process collectives on the CPU: gloo (``jax_cpu_collectives_implementation``, or
    ``jax_cpu_enable_gloo_collectives`` in older JAX), unless already chosen."""
    import jax

    try:
        if jax.config.jax_cpu_collectives_implementation in (None, "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:
        with contextlib.suppress(AttributeError):
            jax.config.update("jax_cpu_enable_gloo_collectives", True)


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *, heartbeat_timeout: int = DEFAULT_HEARTBEAT_S,
               join_timeout: int = DEFAULT_JOIN_S, log: Callable[[str], None] = _say_default) -> Group:
    """Join the multi-process JAX run (``jax.distributed.initialize``) before any JAX computation.

    Without arguments JAX finds them under Slurm and Open MPI; ``process_id`` not given is also
    read from ``SUBMITIT_LOCAL_GLOBALID`` (``resnet-limits submit --local``). On the CPU the
    processes' collectives are gloo's. A process silent for ``heartbeat_timeout`` seconds counts
    as dead and the others end (their supervisor says so in one line); all must join within
    ``join_timeout`` seconds. JAX's preemption service is left off: it would take SIGTERM
    (Slurm's ``scancel``) from this process's own handler, which stops the sweep cleanly.
    One-line :class:`UsageError` when there is nothing to join or the others do not come.
    Returns the :class:`Group` (also :func:`active_group`).
    """
    global _GROUP
    import jax

    if process_id is None and coordinator is not None and "SUBMITIT_LOCAL_GLOBALID" in os.environ:
        process_id = int(os.environ["SUBMITIT_LOCAL_GLOBALID"])
    _cpu_collectives()
    with contextlib.suppress(AttributeError):  # its SIGTERM handler would swallow scancel's and Ctrl-C's stop
        jax.config.update("jax_enable_preemption_service", False)
    wanted = dict(initialization_timeout=int(join_timeout), heartbeat_timeout_seconds=int(heartbeat_timeout),
                  shutdown_timeout_seconds=int(heartbeat_timeout))
    known = inspect.signature(jax.distributed.initialize).parameters
    kwargs = {k: v for k, v in wanted.items() if k in known}
    where = coordinator or "the coordinator the cluster names"
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, **kwargs)
    except ValueError as e:
        if coordinator is None:
            raise UsageError("--distributed found no cluster to join (Slurm or Open MPI); give --coordinator "
                             "HOST:PORT --num-processes N --process-id I") from None
        raise UsageError(f"cannot join the distributed run at {where}: {e}") from None
    except Exception as e:  # noqa: BLE001 (jaxlib's errors: the others did not come, the port is taken)
        first = (str(e).splitlines() or [""])[0][:200]
        raise UsageError(f"cannot join the distributed run at {where} within {join_timeout} s "
                         f"({type(e).__name__}: {first})") from None
    _GROUP = Group(jax.process_index(), jax.process_count(), log)
    return _GROUP


# the supervisor ------------------------------------------------------------------------

#: A line of a native log: absl's (``E1206 04:38:40.734 25920 file.cc:12] ...``), gloo's
#: (``[Gloo] ...``, or ``[external/gloo/.../debug_logger.cc:25] ERROR failed to connect ...`` while
#: a peer is gone) or a native stack trace's.
NATIVE_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|\[Gloo\]|\[[\w./+-]+\.(?:cc|cpp|h):\d+\]|\*\*\* |\s+@\s+0x)")
_FATAL = "Terminating process because the JAX distributed service detected fatal errors"


def _native_status(log: Sequence[str]) -> str:
    """The reason JAX's distributed client gave for ending the process, shortened."""
    text = "\n".join(log)
    m = re.search(r"absl::Status: ([^\n]*)", text)
    reason = m[1] if m else ""
    if "heartbeat" in text.lower() and "unhealthy" in text.lower():
        reason = "a process stopped sending heartbeats"
    elif "Socket closed" in text or "Failed to send RPC to coordination service" in text:
        reason = "the coordinator (process 0) cannot be reached"
    return reason[:200].strip() or "see its log"


def supervise(command: Sequence[str], *, say: Callable[[str], None] = _say_default,
              env: Optional[Mapping[str, str]] = None, label: str = "this process") -> int:
    """Run ``command`` (this same ``resnet-limits sweep --distributed``, with :data:`CHILD_ENV`
    set) and return its exit code, turning JAX's fatal end into one line.

    The child's stdout passes through; of its stderr, its own one-line messages pass through and
    the native logs of JAX, XLA and gloo are kept. If the child is ended by JAX's distributed
    service (another process died or the coordinator went away: after at most the heartbeat
    timeout) or by a signal, one line says so and names the file holding the kept log; the exit
    code is then :data:`EXIT_FAILED`. Ctrl-C or SIGTERM are passed on to the child.
    """
    env = dict(os.environ if env is None else env, **{CHILD_ENV: "1"})
    lines: queue.Queue = queue.Queue()
    kept: collections.deque = collections.deque(maxlen=2000)
    proc = _popen(command, env)
    try:
        _pump(proc.stderr, lines, "err")
        _pump(proc.stdout, lines, "out")
        open_streams, native, held = 2, False, []
        while open_streams:
            kind, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            kept.append(line)
            if NATIVE_LINE.match(line):
                native = True
                continue
            if kind == "out":
                print(line, flush=True)
            elif line.startswith("resnet-limits: internal error"):
                held.append(line)  # a collective broken by a dead process: said below if it was that
            elif line.startswith("resnet-limits:"):
                native = False
                print(line, file=sys.stderr, flush=True)
            elif not native and line.strip():
                print(line, file=sys.stderr, flush=True)
        code = proc.wait()
    except BaseException:
        _stop([proc])
        raise
    if code >= 0:
        for line in held:
            print(line, file=sys.stderr, flush=True)
        return code
    fd, name = tempfile.mkstemp(prefix="resnet-limits-distributed-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(kept) + "\n")
    if any(_FATAL in line for line in kept):
        say(f"error: {label} was stopped by JAX's distributed service: {_native_status(kept)} (another process "
            f"of the run died or cannot be reached); finished depths are kept, rerun the same job to go on "
            f"(JAX's log in {name})")
    else:
        say(f"error: {label} {_how(code)}; finished depths are kept, rerun the same job to go on (its log in {name})")
    return EXIT_FAILED


# ------------------------------------------------------------------ Slurm (submitit) ----

def _submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(f"submit needs submitit: {CLUSTER_EXTRA}") from None
    return submitit


class Submitted(NamedTuple):
    """What :func:`submit` sent: the job ids, the logs' folder, the tasks' commands and jobs."""

    job_ids: list[str]
    logs: Path
    command: list[str]
    jobs: list


def submit(command: Sequence[str], *, array: Optional[int] = None, nodes: Optional[int] = None,
           gpus_per_node: int = 1, partition: Optional[str] = None, time_min: int = 1440,
           account: Optional[str] = None, slurm: Sequence[str] = (), logs, local: bool = False,
           name: str = "resnet-limits") -> Submitted:
    """Send a sweep to Slurm through submitit (``local``: submitit's LocalExecutor, processes of
    this machine, as a dry run of the same jobs).

    ``command``: the task's command line (``python -m resnet_limits.cli sweep ...``).
    ``array=N``: a job array of N tasks, each with ``gpus_per_node`` GPUs, running ``command``
    on the shared folder (depth-parallel; in a task, one worker per GPU). ``nodes=K``: one job
    of K nodes x ``gpus_per_node`` tasks, one per GPU, each running ``command --distributed``
    (JAX finds the processes through Slurm's variables; ``local``: a coordinator on this machine).
    ``slurm``: extra ``KEY=VALUE`` parameters of sbatch. One-line :class:`UsageError` without
    submitit, or for bad values.
    """
    submitit = _submitit()
    if (array is None) == (nodes is None):
        raise UsageError("submit needs one of --array N (depth-parallel tasks) or --nodes K (one data-parallel job)")
    if local and nodes is not None and nodes > 1:
        raise UsageError("--local runs on this machine: --nodes must be 1")
    extra = {}
    for kv in slurm:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise UsageError(f"--slurm takes KEY=VALUE (an sbatch parameter), got {kv!r}")
        extra[key.strip().lstrip("-").replace("-", "_")] = value
    if not local and shutil.which("sbatch") is None:
        raise UsageError("submit found no Slurm here (no sbatch): run it on the cluster's login node, or add --local "
                         "to run the same tasks on this machine")
    logs = Path(logs)
    executor = submitit.AutoExecutor(folder=str(logs / "%j"), cluster="local" if local else "slurm")
    params = dict(name=name, timeout_min=int(time_min))
    slurm_params = dict(slurm_partition=partition, slurm_account=account,
                        slurm_additional_parameters=extra or None)
    command = list(command)
    if array is not None:
        params.update(tasks_per_node=1, nodes=1, gpus_per_node=gpus_per_node if not local else 0)
        slurm_params["slurm_array_parallelism"] = array
        tasks = [submitit.helpers.CommandFunction(command, verbose=False) for _ in range(array)]
    else:
        command += ["--distributed"]
        if local:
            command += ["--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", str(gpus_per_node)]
        params.update(tasks_per_node=gpus_per_node, nodes=nodes, gpus_per_node=gpus_per_node if not local else 0)
        tasks = [submitit.helpers.CommandFunction(command, verbose=False)]
    if not local:
        params.update({k: v for k, v in slurm_params.items() if v is not None})
    executor.update_parameters(**params)
    jobs = executor.submit_array(tasks)
    return Submitted([str(j.job_id) for j in jobs], logs, command, jobs)
