"""Ed25519 signatures from the OpenSSL that Python's own ``ssl`` module already loaded.

Why not ``cryptography`` here: importing it adds about 8 MiB to every agent's memory for two
functions; OpenSSL's libcrypto is in the process anyway (through ``_ssl`` / ``_hashlib``) and
does Ed25519 in constant time. This is a thin ctypes binding of four EVP calls. Where
libcrypto cannot be found or lacks Ed25519, ``cryptography`` is used instead (same results;
the tests check both against each other).

Private keys are the 32-byte RFC 8032 seed; public keys and signatures are raw bytes.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable
from typing import Any

SEED_BYTES = 32
PUBLIC_BYTES = 32
SIGNATURE_BYTES = 64
_NID_ED25519 = 1087


class _LibCrypto:
    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, sz, cp = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p
        self.new_private = self._fn(lib.EVP_PKEY_new_raw_private_key, vp, ctypes.c_int, vp, cp, sz)
        self.new_public = self._fn(lib.EVP_PKEY_new_raw_public_key, vp, ctypes.c_int, vp, cp, sz)
        self.get_public = self._fn(
            lib.EVP_PKEY_get_raw_public_key, ctypes.c_int, vp, cp, ctypes.POINTER(sz)
        )
        self.pkey_free = self._fn(lib.EVP_PKEY_free, None, vp)
        self.ctx_new = self._fn(lib.EVP_MD_CTX_new, vp)
        self.ctx_free = self._fn(lib.EVP_MD_CTX_free, None, vp)
        self.sign_init = self._fn(lib.EVP_DigestSignInit, ctypes.c_int, vp, vp, vp, vp, vp)
        self.sign = self._fn(lib.EVP_DigestSign, ctypes.c_int, vp, cp, ctypes.POINTER(sz), cp, sz)
        self.verify_init = self._fn(lib.EVP_DigestVerifyInit, ctypes.c_int, vp, vp, vp, vp, vp)
        self.verify = self._fn(lib.EVP_DigestVerify, ctypes.c_int, vp, cp, sz, cp, sz)

    @staticmethod
    def _fn(fn: Any, restype: Any, *argtypes: Any) -> Callable[..., Any]:
        fn.restype = restype
        fn.argtypes = argtypes
        return fn  # type: ignore[no-any-return]

    def _pkey(self, private: bool, raw: bytes) -> int:
        make = self.new_private if private else self.new_public
        pkey: int | None = make(_NID_ED25519, None, raw, len(raw))
        if not pkey:
            raise ValueError("OpenSSL refused the Ed25519 key")
        return pkey

    def public_from_seed(self, seed: bytes) -> bytes:
        pkey = self._pkey(True, seed)
        try:
            out = ctypes.create_string_buffer(PUBLIC_BYTES)
            size = ctypes.c_size_t(PUBLIC_BYTES)
            if self.get_public(pkey, out, ctypes.byref(size)) != 1:
                raise ValueError("OpenSSL could not derive the public key")
            return out.raw[: size.value]
        finally:
            self.pkey_free(pkey)

    def sign_with(self, seed: bytes, data: bytes) -> bytes:
        pkey = self._pkey(True, seed)
        ctx = self.ctx_new()
        try:
            if self.sign_init(ctx, None, None, None, pkey) != 1:
                raise ValueError("OpenSSL could not start signing")
            out = ctypes.create_string_buffer(SIGNATURE_BYTES)
            size = ctypes.c_size_t(SIGNATURE_BYTES)
            if self.sign(ctx, out, ctypes.byref(size), data, len(data)) != 1:
                raise ValueError("OpenSSL could not sign")
            return out.raw[: size.value]
        finally:
            self.ctx_free(ctx)
            self.pkey_free(pkey)

    def verify_with(self, public: bytes, signature: bytes, data: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES:
            return False
        pkey = self._pkey(False, public)
        ctx = self.ctx_new()
        try:
            if self.verify_init(ctx, None, None, None, pkey) != 1:
                return False
            return bool(self.verify(ctx, signature, len(signature), data, len(data)) == 1)
        finally:
            self.ctx_free(ctx)
            self.pkey_free(pkey)


def _load_libcrypto() -> _LibCrypto | None:
    if os.environ.get("STACKWARD_ED25519") == "cryptography":
        return None
    for name in ("libcrypto.so.3", "libcrypto.so"):
        try:
            lib = _LibCrypto(ctypes.CDLL(name))
            # Check the binding end to end once, with RFC 8032's first test vector.
            seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            if lib.public_from_seed(seed).hex().startswith("d75a980182b10ab7"):
                return lib
        except (OSError, AttributeError, ValueError):
            continue
    return None


class Backend:
    """Sign and verify with libcrypto when it works here, else with ``cryptography``."""

    def __init__(self) -> None:
        self._lib = _load_libcrypto()
        self.name = "libcrypto" if self._lib is not None else "cryptography"

    def public_from_seed(self, seed: bytes) -> bytes:
        if self._lib is not None:
            return self._lib.public_from_seed(seed)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = Ed25519PrivateKey.from_private_bytes(seed)
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, seed: bytes, data: bytes) -> bytes:
        if self._lib is not None:
            return self._lib.sign_with(seed, data)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(seed).sign(data)

    def verify(self, public: bytes, signature: bytes, data: bytes) -> bool:
        if self._lib is not None:
            return self._lib.verify_with(public, signature, data)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
        except InvalidSignature:
            return False
        return True


@functools.cache
def backend() -> Backend:
    """The process's one backend, chosen on first use (it holds no secrets)."""
    return Backend()
