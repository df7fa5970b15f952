"""A real Apache Kafka cluster (KRaft mode, no ZooKeeper) run from jars fetched from Maven Central.

No Docker and no Kafka tarball are needed: `deploy/local/kafka/pom.xml` names the broker jars,
Maven copies them once into `.cache/kafka/<hash of pom>/jars`, and each node is a plain
`java -cp <jars> kafka.Kafka server.properties` process that we start and stop by its own id.

Every node is a combined broker+controller; the controller quorum is all nodes (static
`controller.quorum.voters`, so every node is formatted the same way and no directory ids have
to be exchanged). Three nodes give a quorum that survives one node being stopped.

    python -m postsale_local.kafka run --data-dir .data/kafka [--nodes 1] [--port 9092]
    python -m postsale_local.kafka classpath      # only fetch the jars (make prefetches with it)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from .processes import (CACHE_DIR, REPO_ROOT, ComponentUnavailable, docker_available, free_port,
                        start_process, stop_process, tail, wait_for_port)

POM = REPO_ROOT / "deploy" / "local" / "kafka" / "pom.xml"
# Pinned so the same pom always runs the same plugin code (Maven's default version is old).
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Two cores and possibly three nodes: keep each JVM small. C1-only JIT (TieredStopAtLevel=1)
# starts three nodes in ~10 s instead of ~15 s; the lower peak throughput does not matter here.
JVM_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true"]
LAYOUT_FILE = "cluster.json"


def external_bootstrap_servers() -> str | None:
    """The Kafka that the environment names (KAFKA_BOOTSTRAP_SERVERS), if any: callers use it instead of starting one."""
    value = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    return value or None


def kafka_classpath() -> str:
    """The broker's classpath, fetching the jars with Maven on first use only.

    The jars land in `.cache/kafka/<hash of pom>/jars`; a `.complete` marker written last tells a
    later run (or `make` offline) that the set is whole, so Maven is not run again.
    """
    if shutil.which("java") is None:
        raise ComponentUnavailable("Kafka needs Java 17+ on PATH (`java` was not found); "
                                   "install a JDK, or set KAFKA_BOOTSTRAP_SERVERS to use a running Kafka")
    pom = POM.read_bytes()
    home = CACHE_DIR / "kafka" / hashlib.sha256(pom).hexdigest()[:16]
    jars, marker = home / "jars", home / ".complete"
    if not marker.exists():
        home.mkdir(parents=True, exist_ok=True)
        # A lock, so two test processes starting at once do not both run Maven into the same folder.
        with open(home / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not marker.exists():
                _fetch_jars(jars)
                marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    found = sorted(jars.glob("*.jar"))
    if not found:
        raise ComponentUnavailable(f"no Kafka jars in {jars}; delete {home} and try again")
    return os.pathsep.join(str(jar) for jar in found)


def _fetch_jars(jars: Path) -> None:
    if shutil.which("mvn") is None:
        raise ComponentUnavailable("fetching the Kafka jars needs Maven (`mvn` was not found on PATH); "
                                   "install Maven 3.8+, or set KAFKA_BOOTSTRAP_SERVERS to use a running Kafka")
    staging = jars.with_name("jars.partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(jars, ignore_errors=True)
    result = subprocess.run(
        ["mvn", "-B", "-q", "-f", str(POM), f"{DEPENDENCY_PLUGIN}:copy-dependencies",
         f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise ComponentUnavailable(f"Maven could not fetch the Kafka jars (exit {result.returncode}):\n"
                                   + (result.stdout + result.stderr)[-4000:])
    staging.rename(jars)  # only a whole set gets the final name


def _new_cluster_id() -> str:
    # Kafka's Uuid in its base64url form; Kafka itself never hands out ids starting with '-'
    # (they read as a command-line option).
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


def _distinct_free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


class KafkaCluster:
    """`nodes` local Kafka processes on 127.0.0.1, their data and logs under `data_dir`.

    The first start formats the storage with a fresh cluster id and records the cluster id and
    ports in `data_dir/cluster.json`; later starts on the same `data_dir` keep the data and the
    ports (an explicit `port` wins: node i then listens on `port + i`).
    """

    def __init__(self, data_dir: Path, nodes: int = 1, port: int | None = None) -> None:
        if nodes < 1:
            raise ValueError("nodes must be at least 1")
        self.data_dir = Path(data_dir).resolve()
        self.nodes = nodes
        self.port = port
        self.cluster_id = ""
        self.broker_ports: list[int] = []
        self.controller_ports: list[int] = []
        self._classpath = ""
        self._procs: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    # -- public ---------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        if not self.broker_ports:
            raise RuntimeError("the cluster has not been started")
        return ",".join(f"127.0.0.1:{p}" for p in self.broker_ports)

    def start(self, timeout: float = 120) -> None:
        """Start every node and return once each broker answers with all brokers registered."""
        deadline = time.monotonic() + timeout
        self._classpath = kafka_classpath()
        self._load_or_create_layout()
        self._format_storage()
        atexit.register(self.stop)  # a test run that dies must not leave JVMs behind
        try:
            # All at once: with 3 nodes no controller can win an election until a majority is up.
            for i in range(self.nodes):
                self._launch(i)
            for i in range(self.nodes):
                self._wait_ready(i, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every node we started (SIGTERM, so each shuts down cleanly; SIGKILL if it hangs)."""
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        # In parallel: a broker stopped alone while the others are still up moves its leaders away
        # quickly, but one left behind without a controller majority would wait out its timeout.
        with ThreadPoolExecutor(max(1, len(procs))) as pool:
            list(pool.map(lambda p: stop_process(p, timeout=30), procs))
        atexit.unregister(self.stop)

    def stop_node(self, i: int) -> None:
        """Stop node i (0-based) only, for fault tests; the others go on."""
        with self._lock:
            proc = self._procs.pop(i, None)
        if proc is not None:
            stop_process(proc, timeout=30)

    def kill_node(self, i: int) -> None:
        """SIGKILL node i, as a crash would (no clean shutdown, no leadership handed over); its
        data stays for `start_node`. For fault tests."""
        with self._lock:
            proc = self._procs.pop(i, None)
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)

    def start_node(self, i: int, timeout: float = 120) -> None:
        """Start node i again (after stop_node) and wait until it is back in the cluster."""
        self._launch(i)
        self._wait_ready(i, time.monotonic() + timeout)

    def running_nodes(self) -> list[int]:
        return sorted(i for i, p in self._procs.items() if p.poll() is None)

    def node_log(self, i: int) -> Path:
        return self._node_dir(i) / "logs" / "server.log"

    def __enter__(self) -> "KafkaCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- layout and storage ---------------------------------------------------------------------

    def _node_dir(self, i: int) -> Path:
        return self.data_dir / f"node-{i}"

    def _load_or_create_layout(self) -> None:
        layout_path = self.data_dir / LAYOUT_FILE
        layout = json.loads(layout_path.read_text()) if layout_path.exists() else {}
        if layout and layout.get("nodes") != self.nodes:
            raise ComponentUnavailable(f"{self.data_dir} holds a {layout.get('nodes')}-node cluster, not "
                                       f"{self.nodes} nodes; use another --data-dir or delete it")
        self.cluster_id = layout.get("cluster_id") or self._formatted_cluster_id() or _new_cluster_id()
        controller = layout.get("controller_ports") or []
        broker = layout.get("broker_ports") or []
        if self.port is not None:
            broker = [self.port + i for i in range(self.nodes)]
        if not broker:
            broker = _distinct_free_ports(self.nodes, set(controller))
        if not controller:
            controller = _distinct_free_ports(self.nodes, set(broker))
        self.broker_ports, self.controller_ports = broker, controller
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout_path.write_text(json.dumps({"cluster_id": self.cluster_id, "nodes": self.nodes,
                                           "broker_ports": broker, "controller_ports": controller}, indent=2))
        for i in range(self.nodes):
            self._write_config(i)

    def _formatted_cluster_id(self) -> str | None:
        # cluster.json lost but nodes already formatted: their meta.properties must win, or the
        # brokers refuse to start on a cluster id mismatch.
        for meta in sorted(self.data_dir.glob("node-*/data/meta.properties")):
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        return None

    def _write_config(self, i: int) -> None:
        node = self._node_dir(i)
        (node / "logs").mkdir(parents=True, exist_ok=True)
        # Internal topics sized to the cluster: one node can only hold one replica; with three,
        # acks=all still succeeds while one node is down (replication 3, min ISR 2).
        rf, isr = (1, 1) if self.nodes < 3 else (3, 2)
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        props = {
            "process.roles": "broker,controller",
            "node.id": i,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[i]},CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.broker_ports[i]}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node / "data",
            "auto.create.topics.enable": "true",
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": 3,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "transaction.state.log.num.partitions": 3,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "share.coordinator.state.topic.num.partitions": 3,
            # Consumers in tests join at once instead of waiting 3 s for more members.
            "group.initial.rebalance.delay.ms": 0,
            # A restarted node is refused (DUPLICATE_BROKER_REGISTRATION) until its old session
            # expires, even after a clean stop: 4.5 s instead of 9 s halves start_node.
            "broker.session.timeout.ms": 4500,
            "broker.heartbeat.interval.ms": 1000,
            # Two cores: the defaults (3 network, 8 I/O threads per node) only add contention.
            "num.network.threads": 2,
            "num.io.threads": 4,
        }
        (node / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        # log4j2 to a size-capped file under data_dir instead of the console.
        (node / "log4j2.properties").write_text(f"""\
status = warn
# Kafka logs its own shutdown after SIGTERM; log4j2's shutdown hook would race it (lines are flushed as written).
shutdownHook = disable
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {node / 'logs' / 'server.log'}
appender.file.filePattern = {node / 'logs' / 'server.log.%i'}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
""")

    def _format_storage(self) -> None:
        """Format the nodes that have no meta.properties yet; formatted ones keep their data."""
        pending = [i for i in range(self.nodes) if not (self._node_dir(i) / "data" / "meta.properties").exists()]
        procs = {i: subprocess.Popen(
            ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={self._node_dir(i) / 'log4j2.properties'}",
             "-cp", self._classpath, "kafka.tools.StorageTool", "format",
             "--config", str(self._node_dir(i) / "server.properties"),
             "--cluster-id", self.cluster_id, "--ignore-formatted"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in pending}
        for i, proc in procs.items():
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise ComponentUnavailable(f"formatting Kafka storage of node {i} failed:\n{out[-4000:]}")

    # -- processes ------------------------------------------------------------------------------

    def _launch(self, i: int) -> None:
        with self._lock:
            if i in self._procs and self._procs[i].poll() is None:
                return
            node = self._node_dir(i)
            self._procs[i] = start_process(
                ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={node / 'log4j2.properties'}",
                 f"-Dkafka.logs.dir={node / 'logs'}", "-cp", self._classpath,
                 "kafka.Kafka", node / "server.properties"],
                log=node / "logs" / "stdout.log",  # only what escapes log4j2 (JVM errors)
            )

    def _wait_ready(self, i: int, deadline: float) -> None:
        """Wait until node i's broker describes a cluster with every running broker and a controller.

        An open port is not enough: a broker accepts connections before it has caught up with
        the metadata log and been unfenced by the controller, and clients then get errors.
        """
        proc, port = self._procs[i], self.broker_ports[i]
        wait_for_port(port, proc, timeout=max(1.0, deadline - time.monotonic()), log=self.node_log(i))
        last = "no answer yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ComponentUnavailable(f"Kafka node {i} exited with {proc.returncode}; "
                                           f"see {self.node_log(i)}:\n{tail(self.node_log(i))}")
            try:
                brokers, controller = cluster_state(port)
                want = set(self.running_nodes())
                if controller >= 0 and want <= brokers:
                    return
                last = f"brokers {sorted(brokers)} (want {sorted(want)}), controller {controller}"
            except (OSError, KafkaError) as error:
                last = repr(error)
            time.sleep(0.2)
        raise ComponentUnavailable(f"Kafka node {i} on port {port} was not ready in time ({last}); "
                                   f"see {self.node_log(i)}:\n{tail(self.node_log(i))}")


def cluster_state(port: int, host: str = "127.0.0.1") -> tuple[set[int], int]:
    """The ids of the registered brokers and of the active controller, asked of the broker at `port`."""

    async def describe() -> dict:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"{host}:{port}", request_timeout_ms=2000)
        await admin.start()
        try:
            return await admin.describe_cluster()
        finally:
            await admin.close()

    cluster = asyncio.run(describe())  # callers are synchronous (fixtures, `make run`, worker threads)
    return {broker["node_id"] for broker in cluster["brokers"]}, cluster["controller_id"]


class ContainerKafka:
    """One Kafka broker (KRaft) in a Docker container via testcontainers, for machines with Docker."""

    def __init__(self, image: str = "confluentinc/cp-kafka:7.6.0") -> None:
        try:
            from testcontainers.community.kafka import KafkaContainer  # testcontainers >= 4.14
        except ImportError:
            from testcontainers.kafka import KafkaContainer
        # The Confluent image defaults the transaction log to 3 replicas, which one broker cannot hold.
        self._container = (KafkaContainer(image).with_kraft()
                           .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                           .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"))
        self._bootstrap: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self._bootstrap is None:
            raise RuntimeError("the container has not been started")
        return self._bootstrap

    def start(self, timeout: float = 120) -> None:
        self._container.start(timeout=int(timeout))  # waits for "Kafka Server started" in its log
        self._bootstrap = self._container.get_bootstrap_server()

    def stop(self) -> None:
        if self._bootstrap is not None:
            self._container.stop()
            self._bootstrap = None

    def __enter__(self) -> "ContainerKafka":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def local_kafka(data_dir: Path, nodes: int = 1, port: int | None = None) -> KafkaCluster | ContainerKafka:
    """An unstarted Kafka for tests: a container where Docker answers (one node only), else local JVMs.

    Callers check external_bootstrap_servers() first and start nothing when it is set.
    """
    if nodes == 1 and port is None and docker_available():
        return ContainerKafka()
    return KafkaCluster(data_dir, nodes=nodes, port=port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m postsale_local.kafka", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start a local cluster and keep it up until SIGINT/SIGTERM")
    run.add_argument("--data-dir", type=Path, default=REPO_ROOT / ".data" / "kafka")
    run.add_argument("--nodes", type=int, default=1)
    run.add_argument("--port", type=int, default=None, help="broker port of node 0 (node i gets port+i)")
    sub.add_parser("classpath", help="fetch the Kafka jars (if not cached) and print the classpath")
    args = parser.parse_args(argv)
    try:
        if args.command == "classpath":
            print(kafka_classpath())
            return 0
        cluster = KafkaCluster(args.data_dir, nodes=args.nodes, port=args.port)
        stopping = threading.Event()
        # SIGTERM behaves like Ctrl-C: leave the wait below and stop the nodes cleanly.
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        cluster.start()
        try:
            print(cluster.bootstrap_servers, flush=True)
            print(f"Kafka {args.nodes} node(s) up, logs under {cluster.data_dir}; Ctrl-C stops it",
                  file=sys.stderr, flush=True)
            while not stopping.wait(1.0):
                if len(cluster.running_nodes()) < cluster.nodes:
                    print("a Kafka node exited; see its logs/server.log", file=sys.stderr)
                    return 1
        finally:
            cluster.stop()
        return 0
    except ComponentUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
