"""Signed policies: an Ed25519 signature over a policy file and its test suites.

Open Policy Agent signs its bundles so that a device only runs policies its owner released;
DriveGate does the same for the file a head unit will enforce.  ``drivegate sign`` writes a
detached signature beside the policy (``POLICY.sig``, JSON)::

    {"v": 1, "alg": "ed25519", "key_id": "3f1c...",          # first 16 hex of sha256(public key)
     "policy": "default.yaml",
     "files": {"default.yaml": "<sha256>", "tests/default.yaml": "<sha256>"},
     "signature": "<base64>"}

The signature covers the canonical JSON (sorted keys, no spaces) of every field but
``signature``.  File names are relative to the policy's folder, so a signed policy can be
copied as a folder.  :func:`verify_policy` checks the signature against trusted public keys
and each file's hash, and returns the policy's bytes exactly as verified: the caller parses
those bytes, never the file again (a file swapped between check and use is never loaded).

Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo public), so ``openssl`` can make and
read them too.  The cryptography is the ``cryptography`` library's; nothing here is hand-rolled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safety.errors import Location, SignatureError

SIGNATURE_VERSION = 1
SUFFIX = ".sig"


@dataclass(frozen=True)
class VerifiedPolicy:
    """A policy whose signature checked out: its bytes as verified, and who signed them."""

    path: Path
    text: str
    key_id: str
    files: Mapping[str, str]  # relative name -> sha256, as signed

    def test_paths(self) -> list[Path]:
        """The test suites signed with the policy."""
        policy_name = self.path.name
        return [self.path.parent / name for name in self.files if name != policy_name]


def signature_path(policy: str | Path) -> Path:
    """Where the signature of ``policy`` lives: beside it, with ``.sig`` appended."""
    path = Path(policy)
    return path.with_name(path.name + SUFFIX)


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair: ``private_path`` (mode 0600) and ``private_path.pub``."""
    private = Ed25519PrivateKey.generate()
    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name + ".pub")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start: a private key is never readable by others, not even briefly.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file."""
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:  # TypeError: an encrypted key (no passphrase support)
        raise SignatureError(f"not a PEM private key: {exc}", Location(file=str(path)), code="bad-key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(
            "not an Ed25519 private key (DriveGate signs with Ed25519 only)", Location(file=str(path)), code="bad-key"
        )
    return key


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted Ed25519 public keys (PEM files), by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(_read(path, "public key"))
        except ValueError as exc:
            raise SignatureError(f"not a PEM public key: {exc}", Location(file=str(path)), code="bad-key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(
                "not an Ed25519 public key (DriveGate signs with Ed25519 only)",
                Location(file=str(path)),
                code="bad-key",
            )
        keys[key_id(key)] = key
    return keys


def sign_policy(policy: str | Path, private: Ed25519PrivateKey, tests: Sequence[str | Path] = ()) -> Path:
    """Sign ``policy`` (and its ``tests``, which must sit in or under its folder); return the .sig path."""
    policy = Path(policy)
    base = policy.resolve().parent
    files: dict[str, str] = {policy.name: _sha256(policy)}
    for test in tests:
        resolved = Path(test).resolve()
        if not resolved.is_relative_to(base):
            raise SignatureError(
                f"a signed test suite must be in or under the policy's folder {base}",
                Location(file=str(test)),
                code="bad-path",
            )
        files[resolved.relative_to(base).as_posix()] = _sha256(Path(test))
    body: dict[str, Any] = {
        "v": SIGNATURE_VERSION,
        "alg": "ed25519",
        "key_id": key_id(private.public_key()),
        "policy": policy.name,
        "files": files,
    }
    body["signature"] = base64.b64encode(private.sign(_canonical(body))).decode("ascii")
    out = signature_path(policy)
    out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return out


def verify_policy(policy: str | Path, trusted: Mapping[str, Ed25519PublicKey]) -> VerifiedPolicy:
    """Check ``policy``'s signature against ``trusted`` keys; return its bytes as verified.

    Raises :class:`SignatureError` (codes ``signature-missing``, ``signature-malformed``,
    ``signature-untrusted``, ``signature-invalid``, ``signature-mismatch``) naming the file.
    """
    policy = Path(policy)
    sig_path = signature_path(policy)
    where = Location(file=str(sig_path))
    try:
        raw = sig_path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SignatureError(
            f"{policy} is not signed (no {sig_path.name}); sign it with drivegate sign", where, code="signature-missing"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SignatureError(f"cannot read the signature: {exc}", where, code="signature-malformed") from exc
    body = _parse_signature(raw, where)
    if body["policy"] != policy.name:
        raise SignatureError(
            f"the signature is for '{body['policy']}', not '{policy.name}'", where, code="signature-mismatch"
        )
    public = trusted.get(body["key_id"])
    if public is None:
        known = ", ".join(sorted(trusted)) or "none"
        raise SignatureError(
            f"signed with key {body['key_id']}, which is not trusted here (trusted: {known})",
            where,
            code="signature-untrusted",
        )
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    try:
        public.verify(base64.b64decode(body["signature"], validate=True), _canonical(unsigned))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(
            "the signature does not match its content (altered after signing?)", where, code="signature-invalid"
        ) from exc
    policy_bytes = b""
    for name, expected in body["files"].items():
        path = policy.parent / name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SignatureError(f"signed file {name} cannot be read: {exc}", where, code="signature-mismatch") from exc
        if hashlib.sha256(data).hexdigest() != expected:
            raise SignatureError(
                f"{name} has changed since it was signed (sha256 differs)",
                Location(file=str(path)),
                code="signature-mismatch",
            )
        if name == policy.name:
            policy_bytes = data
    try:
        text = policy_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SignatureError(
            f"the policy is not UTF-8: {exc}", Location(file=str(policy)), code="signature-mismatch"
        ) from exc
    return VerifiedPolicy(policy, text, body["key_id"], dict(body["files"]))


def _parse_signature(raw: str, where: Location) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise SignatureError(f"not JSON: {exc}", where, code="signature-malformed") from exc
    expected = {"v": int, "alg": str, "key_id": str, "policy": str, "files": dict, "signature": str}
    if not isinstance(body, dict):
        raise SignatureError("expected a JSON object", where, code="signature-malformed")
    for name, kind in expected.items():
        if not isinstance(body.get(name), kind):
            raise SignatureError(
                f"field '{name}' must be a {kind.__name__}, got {body.get(name)!r}", where, code="signature-malformed"
            )
    if body["v"] != SIGNATURE_VERSION or body["alg"] != "ed25519":
        raise SignatureError(
            f"unsupported signature (v {body['v']!r}, alg {body['alg']!r}); expected v 1, ed25519",
            where,
            code="signature-malformed",
        )
    if body["policy"] not in body["files"] or not all(
        isinstance(k, str) and isinstance(v, str) and _is_plain_relative(k) for k, v in body["files"].items()
    ):
        raise SignatureError(
            "field 'files' must map relative file names (the policy among them) to sha256 digests",
            where,
            code="signature-malformed",
        )
    return body


def _is_plain_relative(name: str) -> bool:
    """A name inside the policy's folder: no absolute paths, no '..' climbing out."""
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _sha256(path: Path) -> str:
    return hashlib.sha256(_read(path, "file")).hexdigest()


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SignatureError(f"cannot read the {what}: {exc}", Location(file=str(path)), code="unreadable") from exc
