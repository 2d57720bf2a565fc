"""Synapse with workers for the end-to-end tests: Postgres and Redis from Debian, Synapse's
main process and generic workers sharing them, as Synapse's worker documentation sets them up.

Everything runs on 127.0.0.1 on free ports. Postgres refuses to run as root, so when the
tests run as root it runs as Debian's `postgres` user, from a data directory of its own.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import Process, Synapse, free_port, synapse_log_config, wait_until

#: The database and role Synapse uses.
DATABASE = "synapse"
#: The cluster's encoding and locale (Synapse refuses a database not in the C locale), without
#: syncing its files: it is thrown away after the tests.
INITDB_OPTIONS = ("-E", "UTF8", "--locale=C", "--no-sync")
#: Loopback only, no fsync (thrown away after the tests), connections for three processes' pools.
POSTGRES_OPTIONS = ("-h", "127.0.0.1", "-F", "-c", "max_connections=200")
#: Debian's packages, for the messages of a missing server.
POSTGRES_HOWTO = "install it with `apt-get install postgresql` (tests/run-all does so when it runs as root)"
REDIS_HOWTO = "install it with `apt-get install redis-server` (tests/run-all does so when it runs as root)"


def postgres_binaries() -> Path:
    """The bin directory of Debian's newest Postgres (or of the `initdb` on PATH); fails
    saying how to get it."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    on_path = shutil.which("initdb")
    path = found[-1] if found else on_path
    if path is None or not os.access(Path(path).with_name("postgres"), os.X_OK):
        raise RuntimeError(f"Postgres (initdb, postgres) not found: {POSTGRES_HOWTO}")
    return Path(path).parent


@dataclass
class Postgres:
    """A throw-away Postgres cluster on loopback with an empty `synapse` database (C locale,
    as Synapse requires), owned by the role `synapse` (no password: trust on loopback)."""

    process: Process
    port: int
    data_dir: Path

    @classmethod
    def start(cls, workdir: Path) -> Postgres:
        """initdb, start, create the database."""
        binaries = postgres_binaries()
        user = "postgres" if os.geteuid() == 0 else None
        data_dir = cls._data_dir(user)
        initdb = Process(
            "initdb",
            [str(binaries / "initdb"), "-D", str(data_dir), "-U", DATABASE, "-A", "trust", *INITDB_OPTIONS],
            workdir / "initdb.log",
            user=user,
        ).start()
        assert initdb.popen is not None
        if initdb.popen.wait(120) != 0:
            raise RuntimeError(f"initdb failed\n{initdb.tail()}")
        initdb.stop()
        port = free_port()
        process = Process(
            "postgres",
            [str(binaries / "postgres"), "-D", str(data_dir), "-k", str(data_dir), *POSTGRES_OPTIONS, "-p", str(port)],
            workdir / "postgres.log",
            user=user,
        ).start()
        postgres = cls(process, port, data_dir)
        wait_until(lambda: postgres._create_database() or not process.running(), 60, "Postgres start-up", process.tail)
        if not process.running():
            raise RuntimeError(f"postgres exited at start-up\n{process.tail()}")
        return postgres

    @staticmethod
    def _data_dir(user: str | None) -> Path:
        """A fresh directory the server's user owns (pytest's own temporary directories are
        private to root, where `postgres` cannot enter)."""
        data_dir = Path(tempfile.mkdtemp(prefix="glia-e2e-postgres-"))
        if user is not None:
            try:
                account = pwd.getpwnam(user)
            except KeyError:
                raise RuntimeError(f"no `{user}` user to run Postgres as (not as root): {POSTGRES_HOWTO}") from None
            os.chown(data_dir, account.pw_uid, account.pw_gid)
        return data_dir

    def _create_database(self) -> bool:
        """Creates the database once the server accepts connections; whether it did."""
        import psycopg2

        try:
            connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=DATABASE, dbname="postgres")
        except psycopg2.OperationalError:
            return False
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            connection.close()
        return True

    def synapse_database(self) -> dict[str, Any]:
        """Synapse's `database:` section for it."""
        args = {"user": DATABASE, "database": DATABASE, "host": "127.0.0.1", "port": self.port}
        return {"name": "psycopg2", "args": {**args, "cp_min": 1, "cp_max": 5}}

    def stop(self) -> None:
        """Fast shutdown (SIGINT: no waiting for clients), then removes the data."""
        self.process.signal(signal.SIGINT)
        self.process.stop(30)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class Redis:
    """A redis-server on loopback without persistence."""

    process: Process
    port: int

    @classmethod
    def start(cls, workdir: Path) -> Redis:
        """Starts it and waits until it answers PING."""
        binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise RuntimeError(f"redis-server not found on PATH: {REDIS_HOWTO}")
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = Process("redis-server", [*argv, "--dir", str(workdir)], workdir / "redis.log").start()
        redis = cls(process, port)
        wait_until(lambda: redis._pong() or not process.running(), 30, "redis-server start-up", process.tail)
        if not process.running():
            raise RuntimeError(f"redis-server exited at start-up\n{process.tail()}")
        return redis

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Worker:
    """A running `synapse.app.generic_worker`, with a client and a replication listener."""

    name: str
    process: Process
    port: int
    replication_port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Its log so far."""
        return self.log_path.read_text(errors="replace")

    def restart(self) -> None:
        """(Re)starts it and waits until its client listener answers `/health`."""
        self.process.start()
        self.wait()

    def wait(self) -> None:
        """Waits until its client listener answers `/health`; fails if it exited."""
        log = Process(self.name, [], self.log_path)
        self.process.wait_healthy(f"{self.url}/health", 90, lambda: self.process.tail() + "\n" + log.tail())

    def stop(self) -> None:
        self.process.stop()


def listener(port: int, resource: str) -> dict[str, Any]:
    """An HTTP listener on 127.0.0.1 serving one kind of resource (`client`, `replication`)."""
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": False,
        "x_forwarded": False,
        "resources": [{"names": [resource], "compress": False}],
    }


@dataclass
class Deployment:
    """Synapse's main process and generic workers on one Postgres and one Redis. The workers
    named in `event_persisters` persist every event (`stream_writers.events`, rooms shared
    out between them); each process serves the client API on its own port."""

    postgres: Postgres
    redis: Redis
    main: Synapse
    workers: list[Worker]

    @property
    def processes(self) -> list[Synapse | Worker]:
        """Every Synapse process, the main one first."""
        return [self.main, *self.workers]

    @classmethod
    def start(
        cls,
        workdir: Path,
        modules: list[dict[str, Any]],
        workers: tuple[str, ...],
        event_persisters: tuple[str, ...],
        env: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Starts Postgres, Redis, the main process, then the workers (together)."""
        started: list[Any] = []
        try:
            postgres = Postgres.start(mkdir(workdir / "postgres"))
            started.append(postgres)
            redis = Redis.start(mkdir(workdir / "redis"))
            started.append(redis)
            ports = {name: (free_port(), free_port()) for name in ("main", *workers)}
            shared = {
                "database": postgres.synapse_database(),
                "redis": {"enabled": True, "host": "127.0.0.1", "port": redis.port},
                "instance_map": {name: {"host": "127.0.0.1", "port": ports[name][1]} for name in ports},
                "stream_writers": {"events": list(event_persisters)},
            }
            main_port, main_replication = ports["main"]
            listeners = [listener(main_port, "client"), listener(main_replication, "replication")]
            overrides = {**shared, "listeners": listeners}
            main = Synapse.start(workdir / "main", modules, port=main_port, overrides=overrides, env=env)
            started.append(main)
            running = [cls._worker(workdir, main, name, ports[name], env) for name in workers]
            for worker in running:
                worker.process.start()
                started.append(worker)
            for worker in running:
                worker.wait()
        except BaseException:
            for thing in reversed(started):
                thing.stop()
            raise
        return cls(postgres, redis, main, running)

    @staticmethod
    def _worker(
        workdir: Path, main: Synapse, name: str, ports: tuple[int, int], env: Mapping[str, str] | None
    ) -> Worker:
        """A worker's config files, and the worker (not started)."""
        directory = mkdir(workdir / name)
        log_path = directory / "worker.log"
        (directory / "log.yaml").write_text(yaml.safe_dump(synapse_log_config(log_path)))
        config = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            "worker_listeners": [listener(ports[0], "client"), listener(ports[1], "replication")],
            "worker_log_config": str(directory / "log.yaml"),
        }
        (directory / "worker.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        shared_config = main.process.cwd / "homeserver.yaml" if main.process.cwd else None
        argv = [sys.executable, "-m", "synapse.app.generic_worker", "--config-path", str(shared_config)]
        argv += ["--config-path", str(directory / "worker.yaml")]
        process = Process(name, argv, directory / "worker.out", env=env, cwd=directory)
        return Worker(name, process, ports[0], ports[1], log_path)

    def stop(self) -> None:
        """Stops every process, the workers first."""
        for thing in [*reversed(self.workers), self.main, self.redis, self.postgres]:
            thing.stop()


def mkdir(path: Path) -> Path:
    """`path`, created with its parents when missing."""
    path.mkdir(parents=True, exist_ok=True)
    return path
