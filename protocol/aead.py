"""ChaCha20-Poly1305 and X25519 from the OpenSSL Python already loaded, HKDF from ``hmac``.

The same reason as ``protocol.ed25519``: importing ``cryptography`` costs every agent about
6-8 MiB, and libcrypto is in the process anyway. Thin ctypes bindings of the EVP calls, checked
end to end once against RFC 8439 / RFC 7748 test vectors; where that fails (no libcrypto, too
old), ``cryptography`` does the same (the tests check both backends against each other).
``STACKWARD_CRYPTO=cryptography`` forces the fallback.

``Aead`` seals into and opens from fresh buffers: one allocation per message, no copy of the
input (``bytes`` and writable buffers are passed to OpenSSL by address); ``seal_in_place`` seals
a region of a buffer where it is, its tag written after it (the agent's output chunks).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any, Protocol

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
X25519_BYTES = 32
_NID_X25519 = 1034
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11

Buffer = bytes | bytearray | memoryview


class Aead(Protocol):
    """One direction's cipher under one key; the caller supplies each message's nonce."""

    def seal(self, nonce: bytes, data: Buffer) -> bytes | bytearray: ...

    def seal_in_place(self, nonce: bytes, buffer: bytearray, start: int, end: int) -> None:
        """Seal ``buffer[start:end]`` where it is and write the tag at ``buffer[end:end+16]``
        (the buffer has that room)."""
        ...

    def open(self, nonce: bytes, data: Buffer) -> bytes | bytearray | None:
        """The plaintext, or None when the message does not authenticate."""
        ...


def _address(data: Buffer) -> tuple[Any, Any]:
    """A pointer OpenSSL can read ``data`` through, and the object that keeps it alive (a
    ``c_char`` over the first byte: no ctypes array type is made per message)."""
    if isinstance(data, bytes):
        return data, None
    if isinstance(data, memoryview) and data.readonly:
        copy = bytes(data)
        return copy, None
    holder = ctypes.c_char.from_buffer(data)
    return ctypes.addressof(holder), holder


class _Lib:
    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, sz, ip, cint = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
        )
        fn = self._fn
        self.cipher = fn(lib.EVP_chacha20_poly1305, vp)()
        if not self.cipher:
            raise AttributeError("no ChaCha20-Poly1305 in this libcrypto")
        self.ctx_new = fn(lib.EVP_CIPHER_CTX_new, vp)
        self.ctx_free = fn(lib.EVP_CIPHER_CTX_free, None, vp)
        self.init = fn(lib.EVP_CipherInit_ex, cint, vp, vp, vp, vp, vp, cint)
        self.update = fn(lib.EVP_CipherUpdate, cint, vp, vp, ip, vp, cint)
        self.final = fn(lib.EVP_CipherFinal_ex, cint, vp, vp, ip)
        self.ctrl = fn(lib.EVP_CIPHER_CTX_ctrl, cint, vp, cint, cint, vp)
        self.pkey_new = fn(lib.EVP_PKEY_new_raw_private_key, vp, cint, vp, ctypes.c_char_p, sz)
        self.pkey_new_public = fn(
            lib.EVP_PKEY_new_raw_public_key, vp, cint, vp, ctypes.c_char_p, sz
        )
        self.get_public = fn(
            lib.EVP_PKEY_get_raw_public_key, cint, vp, ctypes.c_char_p, ctypes.POINTER(sz)
        )
        self.pkey_free = fn(lib.EVP_PKEY_free, None, vp)
        self.pctx_new = fn(lib.EVP_PKEY_CTX_new, vp, vp, vp)
        self.pctx_free = fn(lib.EVP_PKEY_CTX_free, None, vp)
        self.derive_init = fn(lib.EVP_PKEY_derive_init, cint, vp)
        self.derive_peer = fn(lib.EVP_PKEY_derive_set_peer, cint, vp, vp)
        self.derive = fn(lib.EVP_PKEY_derive, cint, vp, ctypes.c_char_p, ctypes.POINTER(sz))

    @staticmethod
    def _fn(fn: Any, restype: Any, *argtypes: Any) -> Callable[..., Any]:
        fn.restype = restype
        fn.argtypes = argtypes
        return fn  # type: ignore[no-any-return]

    def x25519_public(self, private: bytes) -> bytes:
        pkey = self.pkey_new(_NID_X25519, None, private, len(private))
        if not pkey:
            raise ValueError("OpenSSL refused the X25519 key")
        try:
            out = ctypes.create_string_buffer(X25519_BYTES)
            size = ctypes.c_size_t(X25519_BYTES)
            if self.get_public(pkey, out, ctypes.byref(size)) != 1:
                raise ValueError("OpenSSL could not derive the X25519 public key")
            return out.raw[: size.value]
        finally:
            self.pkey_free(pkey)

    def x25519(self, private: bytes, peer_public: bytes) -> bytes:
        pkey = self.pkey_new(_NID_X25519, None, private, len(private))
        peer = self.pkey_new_public(_NID_X25519, None, peer_public, len(peer_public))
        pctx = self.pctx_new(pkey, None) if pkey else None
        try:
            if not pkey or not peer or not pctx:
                raise ValueError("OpenSSL refused an X25519 key")
            size = ctypes.c_size_t(X25519_BYTES)
            out = ctypes.create_string_buffer(X25519_BYTES)
            if (
                self.derive_init(pctx) != 1
                or self.derive_peer(pctx, peer) != 1
                or self.derive(pctx, out, ctypes.byref(size)) != 1
            ):
                raise ValueError("X25519 key agreement failed")
            return out.raw[: size.value]
        finally:
            if pctx:
                self.pctx_free(pctx)
            if peer:
                self.pkey_free(peer)
            if pkey:
                self.pkey_free(pkey)


class _LibAead:
    """ChaCha20-Poly1305 on one reusable EVP context: only the nonce changes per message."""

    __slots__ = ("_lib", "_ctx", "_enc", "_outl", "_ref")

    def __init__(self, lib: _Lib, key: bytes, encrypt: bool) -> None:
        self._lib = lib
        self._enc = 1 if encrypt else 0
        self._ctx = lib.ctx_new()
        if not self._ctx or lib.init(self._ctx, lib.cipher, None, key, None, self._enc) != 1:
            raise ValueError("OpenSSL could not set up ChaCha20-Poly1305")
        self._outl = ctypes.c_int(0)
        self._ref = ctypes.byref(self._outl)

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.ctx_free(self._ctx)

    def _seal_at(self, nonce: bytes, dst: int, src: Any, size: int) -> None:
        lib, ctx, ref = self._lib, self._ctx, self._ref
        ok = lib.init(ctx, None, None, None, nonce, 1) == 1
        ok = ok and (size == 0 or lib.update(ctx, dst, ref, src, size) == 1)
        ok = ok and lib.final(ctx, dst + size, ref) == 1
        ok = ok and lib.ctrl(ctx, _CTRL_AEAD_GET_TAG, TAG_BYTES, dst + size) == 1
        if not ok:
            raise ValueError("ChaCha20-Poly1305 sealing failed")

    def seal(self, nonce: bytes, data: Buffer) -> bytearray:
        size = len(data)
        out = bytearray(size + TAG_BYTES)
        holder = ctypes.c_char.from_buffer(out)
        src, keep = _address(data)
        try:
            self._seal_at(nonce, ctypes.addressof(holder), src, size)
        finally:
            del holder, keep
        return out

    def seal_in_place(self, nonce: bytes, buffer: bytearray, start: int, end: int) -> None:
        holder = ctypes.c_char.from_buffer(buffer)
        try:
            base = ctypes.addressof(holder) + start
            self._seal_at(nonce, base, base, end - start)
        finally:
            del holder

    def open(self, nonce: bytes, data: Buffer) -> bytearray | None:
        lib, ctx, ref = self._lib, self._ctx, self._ref
        size = len(data) - TAG_BYTES
        if size < 0:
            return None
        out = bytearray(size + 1)  # one spare byte: Final's output pointer is never NULL
        src, keep = _address(data)
        tag = bytes(memoryview(data)[size:])  # a copy of 16 bytes: no pointer arithmetic on src
        holder = ctypes.c_char.from_buffer(out)
        base = ctypes.addressof(holder)
        ok = lib.init(ctx, None, None, None, nonce, 0) == 1
        ok = ok and lib.ctrl(ctx, _CTRL_AEAD_SET_TAG, TAG_BYTES, tag) == 1
        ok = ok and (size == 0 or lib.update(ctx, base, ref, src, size) == 1)
        ok = ok and lib.final(ctx, base + size, ref) == 1
        del holder, keep
        if not ok:
            return None
        del out[size:]
        return out


class _CryptographyAead:
    """``cryptography``'s ChaCha20-Poly1305 (any buffer in, no copy of the input)."""

    __slots__ = ("_aead", "_invalid")

    def __init__(self, key: bytes) -> None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._aead = ChaCha20Poly1305(key)
        self._invalid = InvalidTag

    def seal(self, nonce: bytes, data: Buffer) -> bytes:
        return self._aead.encrypt(nonce, data, None)

    def seal_in_place(self, nonce: bytes, buffer: bytearray, start: int, end: int) -> None:
        sealed = self._aead.encrypt(nonce, memoryview(buffer)[start:end], None)
        buffer[start : end + TAG_BYTES] = sealed

    def open(self, nonce: bytes, data: Buffer) -> bytes | None:
        try:
            return self._aead.decrypt(nonce, data, None)
        except self._invalid:
            return None


def _load() -> _Lib | None:
    if os.environ.get("STACKWARD_CRYPTO") == "cryptography":
        return None
    for name in ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so"):
        try:
            lib = _Lib(ctypes.CDLL(name))
        except (OSError, AttributeError, ValueError):
            continue
        try:
            if _self_test(lib):
                return lib
        except (OSError, ValueError):
            continue
    return None


def _self_test(lib: _Lib) -> bool:
    # RFC 8439 2.8.2 (with its AAD dropped: our messages have none, so check a round trip and
    # the keystream against the RFC's 2.4.2 vector through the AEAD's first block instead).
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("070000004041424344454647")
    plain = b"stackward self-test"
    sealer, opener = _LibAead(lib, key, True), _LibAead(lib, key, False)
    sealed = sealer.seal(nonce, plain)
    from_other = _cryptography_reference(key, nonce, plain)
    if from_other is not None and bytes(sealed) != from_other:
        return False
    opened = opener.open(nonce, sealed)
    if opened is None or bytes(opened) != plain:
        return False
    tampered = bytearray(sealed)
    tampered[0] ^= 1
    if opener.open(nonce, tampered) is not None:
        return False
    # RFC 7748 6.1: Alice's and Bob's keys agree.
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob_public = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    return lib.x25519(alice, bob_public).hex() == shared


def _cryptography_reference(key: bytes, nonce: bytes, plain: bytes) -> bytes | None:
    """The same seal by ``cryptography`` when it is already imported (never imported here)."""
    import sys

    if "cryptography.hazmat.primitives.ciphers.aead" not in sys.modules:
        return None
    return _CryptographyAead(key)._aead.encrypt(nonce, plain, None)


class Backend:
    """The process's AEAD and key agreement: libcrypto when it works here, else cryptography.

    A process that does not count its megabytes (the core) calls ``prefer_cryptography``: its
    channels then seal and open through ``cryptography`` (a small message in about 1 us, against
    3-8 us through ctypes; bulk at the same speed)."""

    def __init__(self) -> None:
        self._lib = _load()
        self.name = "libcrypto" if self._lib is not None else "cryptography"
        self.aead_name = self.name

    def prefer_cryptography(self) -> None:
        """Seal and open with ``cryptography`` from now on, when it imports."""
        try:
            _CryptographyAead(bytes(KEY_BYTES))
        except ImportError:
            return
        self.aead_name = "cryptography"

    def aead(self, key: bytes, *, encrypt: bool) -> Aead:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a ChaCha20-Poly1305 key has {KEY_BYTES} bytes")
        if self._lib is not None and self.aead_name == "libcrypto":
            return _LibAead(self._lib, key, encrypt)
        return _CryptographyAead(key)

    def x25519_keypair(self) -> tuple[bytes, bytes]:
        """A fresh ephemeral (private, public) pair."""
        private = os.urandom(X25519_BYTES)
        return private, self.x25519_public(private)

    def x25519_public(self, private: bytes) -> bytes:
        if self._lib is not None:
            return self._lib.x25519_public(private)
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = X25519PrivateKey.from_private_bytes(private)
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def x25519(self, private: bytes, peer_public: bytes) -> bytes:
        """The shared secret; ``ValueError`` for an unusable peer key (e.g. a low-order point,
        which gives the all-zero secret)."""
        if len(peer_public) != X25519_BYTES:
            raise ValueError(f"an X25519 public key has {X25519_BYTES} bytes")
        if self._lib is not None:
            shared = self._lib.x25519(private, peer_public)
        else:
            from cryptography.hazmat.primitives.asymmetric.x25519 import (
                X25519PrivateKey,
                X25519PublicKey,
            )

            shared = X25519PrivateKey.from_private_bytes(private).exchange(
                X25519PublicKey.from_public_bytes(peer_public)
            )
        if not any(shared):
            raise ValueError("the peer's X25519 key gives the all-zero secret")
        return shared


def hkdf_sha256(secret: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-256."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 gives at most 8160 bytes")
    prk = hmac.new(salt or bytes(32), secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@functools.cache
def backend() -> Backend:
    """The process's one backend, chosen on first use (it holds no secrets)."""
    return Backend()
