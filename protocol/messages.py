"""Every message that crosses the agent channel, as frozen msgspec Structs in tagged unions.

Two phases share one websocket:

1. The handshake (``handshake.py`` holds its logic). The dialer (client) and the listener
   (server) each have their own message union, so each side has one decoder for what it may
   receive: ``ClientHandshakeMessage`` and ``ServerHandshakeMessage``.
2. The channel. Frames are typed by direction, not by who dialed: ``CoreFrame`` travels from
   the core to a periphery, ``PeripheryFrame`` from a periphery to the core.

Rules for changing this module: a new field gets a default (old peers omit it, old decoders
ignore it); a new command or frame type gets a new tag; ``PROTOCOL_VERSION`` moves only for a
change an old peer cannot survive. Dispatch is by ``match`` on the decoded type, never by a name
taken from the wire.
"""

from __future__ import annotations

import enum

import msgspec

PROTOCOL_VERSION = 2
"""Carried in both hellos; peers with different versions do not authenticate. 2: ephemeral
X25519 keys in the hellos, every message after the handshake sealed (``protocol.sealing``)."""


class Role(enum.Enum):
    CORE = "core"
    PERIPHERY = "periphery"


class Stream(enum.IntEnum):
    STDOUT = 1
    STDERR = 2


class ErrorCode(enum.Enum):
    """Typed failure reasons, stable on the wire."""

    BAD_FRAME = "bad_frame"  # a frame could not be decoded, or is of an unknown type
    UNEXPECTED_FRAME = "unexpected_frame"  # decodable but not valid here (e.g. Cancel of nothing)
    BUSY = "busy"  # too many requests in flight
    DUPLICATE_ID = "duplicate_id"  # a request id already in flight
    FORBIDDEN_PATH = "forbidden_path"  # a path would leave the agent's root directory
    BAD_REQUEST = "bad_request"  # a command's arguments are unusable
    SPAWN_FAILED = "spawn_failed"  # the program could not be started
    TIMEOUT = "timeout"  # the command ran past its timeout and was killed
    CANCELLED = "cancelled"  # the request was cancelled and its processes killed
    FAILED = "failed"  # the operation ran and failed (the message says how)
    STALE_FENCE = "stale_fence"  # a newer deploy of this stack holds the lock; this one is late
    INTERNAL = "internal"  # a bug on the answering side


# ---------------------------------------------------------------------------------- handshake


class _Handshake(msgspec.Struct, frozen=True, tag_field="t"):
    pass


class ClientHello(_Handshake, frozen=True, tag="client_hello"):
    """First message, from the dialer."""

    version: int
    role: Role
    nonce: bytes
    public_key: bytes  # SSH wire encoding of the Ed25519 public key
    name: str = ""  # the periphery's server name, when a periphery dials the core
    software: str = ""  # informational, e.g. "stackward 0.1.0"
    ephemeral: bytes = b""  # X25519 public key for this connection only (version 2)


class ServerHello(_Handshake, frozen=True, tag="server_hello"):
    """The listener's answer to ``ClientHello``."""

    version: int
    role: Role
    nonce: bytes
    public_key: bytes
    software: str = ""
    ephemeral: bytes = b""  # X25519 public key for this connection only (version 2)


class ClientProof(_Handshake, frozen=True, tag="client_proof"):
    """The dialer's signature over the transcript; it proves itself first."""

    signature: bytes


class ServerProof(_Handshake, frozen=True, tag="server_proof"):
    """The listener's signature over the transcript, sent only after the client's verified."""

    signature: bytes


ClientHandshakeMessage = ClientHello | ClientProof
ServerHandshakeMessage = ServerHello | ServerProof


# ----------------------------------------------------------------------------------- commands


class _Command(msgspec.Struct, frozen=True, tag_field="cmd"):
    pass


class Health(_Command, frozen=True, tag="health"):
    """Report the agent's version, host name and whether a Docker engine answers."""


class Echo(_Command, frozen=True, tag="echo"):
    """Answer ``data`` back in the result (``EchoReply``): the cheapest round trip, answered
    without starting a task, for liveness and latency checks."""

    data: bytes = b""


class Run(_Command, frozen=True, tag="run"):
    """Run ``argv`` (never through a shell) in ``cwd`` under the agent's root directory."""

    argv: list[str]
    cwd: str = ""  # relative to root_directory, or absolute inside it; "" is the root itself
    env: dict[str, str] = {}  # added to the agent's environment; values may be secrets
    timeout: float = 600.0  # seconds; the process group is killed past it


class DeployMode(enum.Enum):
    SWARM = "swarm"
    COMPOSE = "compose"


class Fence(msgspec.Struct, frozen=True):
    """The core's lock on one stack: the periphery refuses a token lower than one it has seen
    for the same key, so a deploy from before a core restart cannot interleave with a newer one."""

    key: str
    token: int


class StackSource(enum.Enum):
    """Where a stack's compose files come from (Komodo's ``write_stack``)."""

    GIT = "git"  # a repository, checked out at ROOT/target (a fixed path)
    FILES_ON_HOST = "files_on_host"  # on the host: ROOT/target joined with run_directory
    FILE_CONTENTS = "file_contents"  # the resource's file_contents, written into ROOT/target


class GitCredentials(msgspec.Struct, frozen=True):
    """A git account's token (Komodo's ``git_account``, from the core's config), handed to git
    by a credential helper: never in argv, a URL, a log line or output."""

    username: str
    token: str

    def __repr__(self) -> str:
        return f"GitCredentials(username={self.username!r}, token=<hidden>)"


class RegistryLogin(msgspec.Struct, frozen=True):
    """``docker login`` before a deploy (Komodo's ``registry_provider`` and
    ``registry_account``); the token reaches docker on stdin only."""

    domain: str
    username: str
    token: str

    def __repr__(self) -> str:
        return f"RegistryLogin(domain={self.domain!r}, username={self.username!r}, token=<hidden>)"


class Checkout(_Command, frozen=True, tag="checkout"):
    """Write the stack, as Komodo's ``write_stack`` does, before anything runs: check
    ``repo_url`` out at ``commit`` into ``ROOT/target`` (a fixed path, through a cached mirror),
    or write ``file_contents``, or use the files on the host; then write ``env_file`` to
    ``env_file_path`` in the run directory, check that ``required_files`` exist, and log in to
    ``registry``."""

    repo_url: str
    commit: str
    target: str  # one directory name under the agent's root, usually the stack's name
    fence: Fence | None = None
    credentials: GitCredentials | None = None
    source: StackSource = StackSource.GIT
    run_directory: str = ""
    file_paths: list[str] = []  # the compose files (file_contents goes into the first)
    file_contents: str = ""
    env_file_path: str = ""  # "" : no env file (an older core)
    env_file: str = ""  # the text Komodo writes; "" : the environment is empty
    required_files: list[str] = []  # must exist once written (Komodo's validate_files)
    registry: RegistryLogin | None = None


class RepoSync(_Command, frozen=True, tag="repo_sync"):
    """Komodo's Repo: keep a working clone of ``url`` at ``path`` (absolute, as the resource
    file gives it, or relative to the agent's root) and move it to ``commit``."""

    url: str
    commit: str
    path: str
    fence: Fence | None = None
    credentials: GitCredentials | None = None


class PreDeploy(_Command, frozen=True, tag="pre_deploy"):
    """A stack's ``pre_deploy`` (or ``post_deploy``, by ``stage``) command, as Komodo runs it:
    in the run directory joined with ``path`` (an absolute path as given), each non-comment
    line joined by ``&&`` (or the text as it is, with ``shell_mode``), under the shell."""

    target: str
    command: str
    path: str = ""
    env: dict[str, str] = {}
    timeout: float = 300.0
    fence: Fence | None = None
    run_directory: str = ""
    shell_mode: bool = False
    source: StackSource = StackSource.GIT
    stage: str = "pre_deploy"  # or "post_deploy"


class ComposeUp(_Command, frozen=True, tag="compose_up"):
    """As Komodo's ``ComposeUp``: ``docker compose -p project -f FILE… --env-file ENV… pull``
    when ``auto_pull``, ``down`` first when ``destroy_before_deploy``, then ``up -d`` with
    ``extra_args``, in the run directory."""

    project: str
    target: str
    run_directory: str = ""
    files: list[str] = []
    env: dict[str, str] = {}  # added to the process environment
    auto_pull: bool = True
    fence: Fence | None = None
    env_files: list[str] = []  # additional_env_files, each passed with --env-file, in order
    source: StackSource = StackSource.GIT
    env_file_path: str = ""  # the written env file (CheckoutReport.env_file), passed last
    extra_args: list[str] = []
    destroy_before_deploy: bool = False
    networks: list[str] = []  # overlay networks to make when a file declares them external


class SwarmDeploy(_Command, frozen=True, tag="swarm_deploy"):
    """As Komodo's ``DeploySwarmStack``: the env files sourced in order (``set -a``), then
    ``docker stack deploy -c FILE… [--with-registry-auth] EXTRA_ARGS -- stack`` in the run
    directory (``docker stack rm`` first when ``destroy_before_deploy``)."""

    stack: str
    target: str
    run_directory: str = ""
    files: list[str] = []
    env: dict[str, str] = {}  # added to the process environment
    fence: Fence | None = None
    env_files: list[str] = []  # additional_env_files, sourced in order
    source: StackSource = StackSource.GIT
    env_file_path: str = ""  # the written env file (CheckoutReport.env_file), sourced last
    extra_args: list[str] = []
    destroy_before_deploy: bool = False
    registry_auth: bool = False  # logged in for this stack: --with-registry-auth
    networks: list[str] = []  # overlay networks to make when a file declares them external


class ComposeDown(_Command, frozen=True, tag="compose_down"):
    project: str
    fence: Fence | None = None


class SwarmRemove(_Command, frozen=True, tag="swarm_remove"):
    stack: str
    fence: Fence | None = None


class WaitHealthy(_Command, frozen=True, tag="wait_healthy"):
    """The health gate: wait until the stack or project is healthy, or fail with the reason."""

    mode: DeployMode
    name: str
    ignore_services: list[str] = []
    timeout: float = 300.0
    fence: Fence | None = None


class StackState(_Command, frozen=True, tag="stack_state"):
    """What runs now: a verdict per service of the stack or project (no waiting)."""

    mode: DeployMode
    name: str
    ignore_services: list[str] = []


class WatchDocker(_Command, frozen=True, tag="watch_docker"):
    """Follow the engine's events until cancelled: ``DockerEvents`` frames carry them (and the
    engine's state: lost, resumed) under this request's id. The stream is picked up again
    after the engine restarts."""

    types: list[str] = msgspec.field(default_factory=lambda: ["container", "service", "node"])


class HealthReport(msgspec.Struct, frozen=True, tag_field="t", tag="health"):
    version: str
    protocol: int
    hostname: str
    docker: bool
    docker_version: str = ""
    docker_error: str = ""
    # The highest fencing token the agent has seen (any stack): a core whose database was lost
    # or restored continues above it instead of being refused as stale.
    fence: int = 0


class EchoReply(msgspec.Struct, frozen=True, tag_field="t", tag="echo"):
    data: bytes


class CheckoutReport(msgspec.Struct, frozen=True, tag_field="t", tag="checkout"):
    commit: str  # the full commit id ("" for a stack not from git)
    path: str  # the stack's directory on the agent
    env_file: str = ""  # the env_file_path to pass to compose ("" : none written or found)
    run_directory: str = ""  # where the deploy runs


class HealthVerdict(msgspec.Struct, frozen=True):
    service: str
    healthy: bool
    detail: str = ""
    state: str = ""  # "ready", "waiting" or "failed"


class HealthGateReport(msgspec.Struct, frozen=True, tag_field="t", tag="health_gate"):
    services: list[HealthVerdict] = []
    exists: bool = True  # False: nothing of the stack runs


class ErrorInfo(msgspec.Struct, frozen=True):
    code: ErrorCode
    message: str


# ------------------------------------------------------------------------------------- frames


class _Frame(msgspec.Struct, frozen=True, tag_field="t"):
    pass


class Heartbeat(_Frame, frozen=True, tag="hb"):
    """Sent by each side every heartbeat interval, and answered at once (``reply=True``), so
    each side hears from a live peer at its own interval whatever the peer's setting. Any
    frame proves the peer alive."""

    seq: int = 0
    reply: bool = False


class Error(_Frame, frozen=True, tag="err"):
    """A typed error about the channel itself (a bad frame), or about a request."""

    code: ErrorCode
    message: str
    request_id: int | None = None


class Request(_Frame, frozen=True, tag="req"):
    id: int
    command: Command


class Cancel(_Frame, frozen=True, tag="cancel"):
    id: int


class Output(_Frame, frozen=True, tag="out"):
    """A chunk of a request's output. ``seq`` counts from 0 per request, without gaps."""

    id: int
    seq: int
    stream: Stream
    data: bytes


class Result(_Frame, frozen=True, tag="res"):
    """The end of a request: an exit code, or a typed error, and maybe a structured value."""

    id: int
    exit_code: int | None = None
    error: ErrorInfo | None = None
    value: ResultValue | None = None


class DockerEvent(msgspec.Struct, frozen=True):
    """One engine event, reduced to what the core uses (no labels beyond the stack's own)."""

    time_nano: int
    type: str  # container | service | node
    action: str  # start, die, oom, health_status, update, remove, ...
    actor: str  # the object's id
    name: str = ""
    project: str = ""  # com.docker.compose.project or com.docker.stack.namespace
    service: str = ""  # com.docker.compose.service or com.docker.swarm.service.name
    detail: dict[str, str] = {}  # exitCode, health, replicas.old/new, state.old/new, ...


class DockerEvents(_Frame, frozen=True, tag="docker"):
    """Engine events for a ``WatchDocker`` request ``id``; ``engine`` is set when the event
    stream was lost ("lost", with ``message``) or picked up again ("resumed")."""

    id: int
    events: list[DockerEvent] = []
    engine: str = ""
    message: str = ""


CoreFrame = Request | Cancel | Heartbeat | Error
"""Frames the core sends and the periphery decodes."""


class OutputView(_Frame, frozen=True, tag="out"):
    """``Output`` as the core decodes it: ``data`` is a zero-copy view into the received
    message (output is the bulk of all traffic; one copy less per chunk)."""

    id: int
    seq: int
    stream: Stream
    data: memoryview


PeripheryFrame = Output | Result | Heartbeat | Error | DockerEvents
"""Frames the periphery sends."""

PeripheryFrameView = OutputView | Result | Heartbeat | Error | DockerEvents
"""The same frames as the core decodes them."""


# --- bootstrap / secrets (issue 6)
#
# The bootstrap asks the manager's periphery to make the swarm and its secrets. A secret's value
# travels in ``SecretCreate.data`` on the authenticated channel only: the periphery hands it to
# ``docker secret create NAME -`` on stdin and never logs or echoes it (``__repr__`` hides it).
# ``Command`` and ``ResultValue`` are defined after this block, so that they can name its types.


class SwarmInit(_Command, frozen=True, tag="swarm_init"):
    """``docker swarm init`` when this engine is in no swarm; nothing when it is a manager
    already; refused when it is a worker (or the swarm is in an unclear state)."""

    advertise_addr: str = ""  # "" lets Docker pick


class SwarmReport(msgspec.Struct, frozen=True, tag_field="t", tag="swarm"):
    state: str  # the engine's LocalNodeState after the command: "active", "inactive", ...
    changed: bool = False  # True: this command initialised the swarm
    node_id: str = ""
    manager: bool = False


class SecretList(_Command, frozen=True, tag="secret_list"):
    """The swarm secrets carrying ``label`` (any value), and the services that use each."""

    label: str = "stackward.secret"


class SecretInfo(msgspec.Struct, frozen=True):
    name: str
    id: str = ""
    labels: dict[str, str] = {}
    index: int = 0  # the swarm's version index at creation: higher is newer
    services: list[str] = []  # services whose spec refers to it
    stacks: list[str] = []  # the stack namespaces of those services


class SecretListReport(msgspec.Struct, frozen=True, tag_field="t", tag="secret_list"):
    secrets: list[SecretInfo] = []


class SecretCreate(_Command, frozen=True, tag="secret_create"):
    """``docker secret create [--label K=V]... NAME -`` with ``data`` on stdin; nothing when a
    secret of that name exists already (swarm secrets are immutable: a new value gets a new
    name)."""

    name: str
    data: bytes
    labels: dict[str, str] = {}

    def __repr__(self) -> str:  # the value never reaches a log line
        return f"SecretCreate(name={self.name!r}, data=<{len(self.data)} bytes>)"


class SecretRemove(_Command, frozen=True, tag="secret_remove"):
    """``docker secret rm NAME``; nothing when it does not exist; fails while a service uses it."""

    name: str


class SecretReport(msgspec.Struct, frozen=True, tag_field="t", tag="secret"):
    name: str
    changed: bool = False  # True: created (SecretCreate) or removed (SecretRemove)


# --- stack control (issue 14: procedures' StartStack, StopStack, RestartStack, PullStack...)


class StackControl(_Command, frozen=True, tag="stack_control"):
    """Komodo's ``StartStack``, ``StopStack``, ``RestartStack``, ``PauseStack``,
    ``UnpauseStack``, ``PullStack`` and ``DestroyStack`` on a Compose project (core
    ``stack/execute.rs``; periphery ``ComposeExecution`` and ``ComposePull``):
    ``COMPOSE -p PROJECT ACTION [--timeout N] [--remove-orphans] [SERVICE...]``. ``pull`` (and
    every action with Compose v1, which finds a project only through its files) runs with the
    stack's files in its run directory, as the last deploy wrote them (``target``)."""

    project: str
    action: str  # start | stop | restart | pause | unpause | pull | down
    services: list[str] = []
    stop_time: int | None = None  # --timeout N (stop, down)
    remove_orphans: bool = False  # down --remove-orphans
    target: str = ""  # the stack's directory under the agent's root
    run_directory: str = ""
    files: list[str] = []
    env_files: list[str] = []
    env_file_path: str = ""  # the env file the deploy wrote, relative to the run directory
    source: StackSource = StackSource.GIT
    fence: Fence | None = None


# --- the agent's own key, rotated (issue 14: Komodo's RotateAllServerKeys)


class RotateKey(_Command, frozen=True, tag="rotate_key"):
    """Rotate the agent's key pair in two steps, so the core is never left without a key it
    accepts: ``prepare`` makes a new pair and keeps it beside the current key (the current one
    stays in use) and answers its public key; ``commit`` (the core has pinned the new key)
    makes the prepared pair the agent's key, on disk and for every new handshake, and answers a
    signature by it over ``nonce`` (``key_proof_data``)."""

    step: str  # "prepare" | "commit"
    public_key: bytes = b""  # commit: the prepared key (SSH wire encoding)
    nonce: bytes = b""  # commit: what the new key signs


class KeyReport(msgspec.Struct, frozen=True, tag_field="t", tag="key"):
    public_key: bytes  # SSH wire encoding
    signature: bytes = b""  # commit: over key_proof_data(public_key, nonce)


def key_proof_data(public_key: bytes, nonce: bytes) -> bytes:
    """What a committed key signs: a domain, the key, and the core's nonce."""
    return b"stackward key rotation v1\0" + public_key + b"\0" + nonce


Command = (
    Health
    | Echo
    | Run
    | Checkout
    | RepoSync
    | PreDeploy
    | ComposeUp
    | SwarmDeploy
    | ComposeDown
    | SwarmRemove
    | WaitHealthy
    | StackState
    | WatchDocker
    | SwarmInit
    | SecretList
    | SecretCreate
    | SecretRemove
    | StackControl
    | RotateKey
)

ResultValue = (
    HealthReport
    | EchoReply
    | CheckoutReport
    | HealthGateReport
    | SwarmReport
    | SecretListReport
    | SecretReport
    | KeyReport
)
