"""``RotateAllServerKeys``: every agent gets a new key pair, and no agent is ever locked out.

Komodo's (``bin/core/src/api/execute/maintenance.rs``, ``RotateAllServerKeys``; periphery
``RotatePrivateKey``): for each server with ``auto_rotate_keys`` (default true) that is
reachable, the periphery makes a new key and the core records it as the server's public key
(its state, not the resource file); the others are skipped, saying why. Here, per server, in
order, with an overlap:

1. ``RotateKey(prepare)`` over the live channel: the agent makes a pair and keeps it beside
   its key; the key in use does not change;
2. the core records the new key next to the one in use (SQLite, ``server_keys``) and accepts
   both for new connections (the live channel stays);
3. ``RotateKey(commit)``: the agent installs the new key and signs the core's nonce with it;
   the core checks the signature;
4. for a server the core dials, a fresh handshake that accepts only the new key proves it
   works;
5. the core keeps only the new key (recorded; the old one is dropped).

A failure after step 2 leaves both keys accepted, whatever the agent did (a killed agent comes
back with one or the other); ``confirm`` drops the old one when the agent later proves the new
one on a connection. The rotated key applies while the resource still pins the key it was
rotated from: a key written into the resources since wins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import anyio
import anyio.to_thread

from core.automation.records import ProcedureRecords
from core.events.bus import EventBus
from core.events.model import KeyRotated, Kind
from core.exceptions import CoreError, PeripheryUnavailable, StoreError
from core.pool import PeripheryPool
from core.store import Store
from protocol.exceptions import BadKey, ChannelError
from protocol.keys import PublicKey, parse_public_key
from protocol.messages import KeyReport, RotateKey, key_proof_data
from protocol.transport import CoreChannel

log = logging.getLogger(__name__)

Say = Callable[[str], Awaitable[None]]
CHANNEL_WAIT = 5.0
STEP_TIMEOUT = 30.0


class RotationFailed(CoreError):
    """One or more servers' keys were not rotated (the message names them and why)."""


class KeyRotation:
    def __init__(
        self,
        store: Store,
        records: ProcedureRecords,
        pool: PeripheryPool,
        events: EventBus,
    ) -> None:
        self.store = store
        self.records = records
        self.pool = pool
        self.events = events
        self._lock = anyio.Lock()

    async def rotate_all(self, say: Say) -> None:
        if self._lock.locked():
            raise RotationFailed("Key rotation already in progress...")
        async with self._lock:
            stored = await anyio.to_thread.run_sync(self.store.resources)
            failures: list[str] = []
            for (kind, name), res in sorted(stored.items()):
                if kind != "server":
                    continue
                cfg = res.config.get("config", {})
                if cfg.get("auto_rotate_keys") is False:
                    await say(f"Skipping {name}: Key Rotation Disabled")
                    continue
                if name not in self.pool.connected():
                    await say(f"Skipping {name}: Server Not Ok (not connected)")
                    continue
                try:
                    await self.rotate(name, say)
                except (RotationFailed, CoreError) as exc:
                    failures.append(f"{name}: {exc}")
                    await say(f"ERROR: Failed to rotate {name} keys: {exc}")
            if failures:
                raise RotationFailed("; ".join(failures))

    def _publish(
        self, server: str, old: PublicKey, new: PublicKey | None, state: str, message: str = ""
    ) -> None:
        self.events.publish(
            Kind.KEY_ROTATED,
            f"server:{server}",
            KeyRotated(
                server=server,
                old=old.fingerprint(),
                new=new.fingerprint() if new is not None else "",
                state=state,
                message=message,
            ),
        )

    async def rotate(self, server: str, say: Say) -> None:
        try:
            channel = await self.pool.channel(server, CHANNEL_WAIT)
        except PeripheryUnavailable as exc:
            raise RotationFailed(str(exc)) from exc
        old = channel.peer.public_key
        endpoint = self.pool.endpoint(server)
        if endpoint is None:
            raise RotationFailed("the server is no longer known")
        pinned = await self._pinned(server, endpoint.public_key)
        new = PublicKey.from_wire((await self._step(channel, RotateKey(step="prepare"))).public_key)
        # 2: both accepted, durably, before the agent may switch
        base = pinned.openssh_line() if pinned is not None else old.openssh_line()
        self.pool.rekey(server, old, (new,))
        await self._record(server, base, old.openssh_line(), new.openssh_line())
        self._publish(server, old, new, "pending")
        nonce = os.urandom(32)
        try:
            report = await self._step(
                channel, RotateKey(step="commit", public_key=new.wire, nonce=nonce)
            )
        except RotationFailed as exc:
            self._publish(server, old, new, "failed", str(exc))
            raise RotationFailed(f"{exc} (both keys stay accepted)") from exc
        if not new.verify(report.signature, key_proof_data(new.wire, nonce)):
            self._publish(server, old, new, "failed", "the proof does not verify")
            raise RotationFailed("the agent's proof by its new key does not verify")
        if endpoint.address:
            try:
                await self.pool.probe(server, new)
            except PeripheryUnavailable as exc:
                self._publish(server, old, new, "failed", str(exc))
                raise RotationFailed(
                    f"a new connection with the new key failed: {exc} (both keys stay accepted)"
                ) from exc
        self.pool.rekey(server, new, (), retired=old)
        await self._record(server, base, new.openssh_line(), "")
        self._publish(server, old, new, "confirmed")
        await say(f"Rotated keys for {server}: {old.fingerprint()} -> {new.fingerprint()}")

    async def confirm(self, server: str, channel: CoreChannel) -> None:
        """A connection proved a key: when it is the one a rotation left pending, that rotation
        is done (the old key is dropped)."""
        try:
            rows = await anyio.to_thread.run_sync(self.records.keys)
        except StoreError as exc:
            log.warning("server %s: rotated keys unreadable: %s", server, exc)
            return
        row = rows.get(server)
        if row is None or not row.next:
            return
        try:
            pending = parse_public_key(row.next)
            active = parse_public_key(row.active)
        except BadKey:
            return
        if channel.peer.public_key != pending:
            return
        async with self._lock:
            self.pool.rekey(server, pending, (), retired=active)
            await self._record(server, row.base, row.next, "")
        self._publish(server, active, pending, "confirmed", "the agent connected with its new key")
        log.info("server %s: its new key %s confirmed", server, pending.fingerprint())

    async def _pinned(self, server: str, current: PublicKey) -> PublicKey | None:
        """The key the server's resource pins (what the rotation is based on): the base of an
        earlier rotation, else the key accepted now (the resource's)."""
        rows = await anyio.to_thread.run_sync(self.records.keys)
        row = rows.get(server)
        if row is None:
            return current
        try:
            return parse_public_key(row.base)
        except BadKey:
            return None

    async def _record(self, server: str, base: str, active: str, nxt: str) -> None:
        try:
            await anyio.to_thread.run_sync(self.records.set_key, server, base, active, nxt)
        except StoreError as exc:
            raise RotationFailed(f"the core's state: {exc}") from exc

    async def _step(self, channel: CoreChannel, command: RotateKey) -> KeyReport:
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                result, _ = await channel.request(command)
        except TimeoutError as exc:
            raise RotationFailed(
                f"RotateKey {command.step}: no answer in {STEP_TIMEOUT:g}s"
            ) from exc
        except ChannelError as exc:
            raise RotationFailed(f"RotateKey {command.step}: {exc}") from exc
        if result.error is not None:
            raise RotationFailed(f"RotateKey {command.step}: {result.error.message}")
        if not isinstance(result.value, KeyReport):
            raise RotationFailed(f"RotateKey {command.step}: the agent answered no key")
        return result.value
