"""Signed policies: ``drivegate keygen/sign/verify`` as a user runs them, and the library checks."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from safety.errors import SignatureError
from safety.policy.signing import (
    generate_key,
    load_private_key,
    load_public_keys,
    sign_policy,
    signature_path,
    verify_policy,
)


def drivegate(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "safety.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A copy of the shipped policies and their suites, as a policy author has them."""
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    return tmp_path


def test_keygen_sign_verify_round_trip(release: Path) -> None:
    made = drivegate("keygen", "release.key", cwd=release)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((release / "release.key").stat().st_mode) == 0o600
    (kid,) = load_public_keys([release / "release.key.pub"])
    assert made.stdout == (f"private key release.key (keep it off the car), public key release.key.pub, key id {kid}\n")
    again = drivegate("keygen", "release.key", cwd=release)
    assert again.returncode == 2 and "exists; not overwriting a key" in again.stderr

    signed = drivegate(
        "sign", "policies/default.yaml", "--key", "release.key", "--tests", "policies/tests/default.yaml",
        "--coverage", "100", cwd=release,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    sig = json.loads((release / "policies/default.yaml.sig").read_text())
    assert (sig["v"], sig["alg"], sig["key_id"], sig["policy"]) == (1, "ed25519", kid, "default.yaml")
    assert list(sig["files"]) == ["default.yaml", "tests/default.yaml"]

    ok = drivegate("verify", "policies/default.yaml", "--trusted-key", "release.key.pub", cwd=release)
    assert (ok.returncode, ok.stdout) == (
        0,
        f"policies/default.yaml: signed by key {kid}; files: default.yaml, tests/default.yaml\n",
    )


def test_tampering_is_caught_and_named(release: Path) -> None:
    key = load_private_key(generate_key(release / "k")[0])
    trusted = load_public_keys([release / "k.pub"])
    policy = release / "policies" / "default.yaml"
    suite = release / "policies" / "tests" / "default.yaml"
    sign_policy(policy, key, [suite])
    verified = verify_policy(policy, trusted)
    assert verified.text == policy.read_text() and verified.test_paths() == [suite]

    original = policy.read_bytes()
    policy.write_bytes(original.replace(b"single_ms: 2000", b"single_ms: 9000"))
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, trusted)
    assert (
        str(caught.value)
        == f"{policy}: signature-mismatch: default.yaml has changed since it was signed (sha256 differs)"
    )
    policy.write_bytes(original)

    sig_file = signature_path(policy)
    body = json.loads(sig_file.read_text())
    forged = dict(body, files={**body["files"], "default.yaml": "0" * 64})
    sig_file.write_text(json.dumps(forged))
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, trusted)
    assert caught.value.code == "signature-invalid"

    other = load_public_keys([generate_key(release / "other")[1]])
    sig_file.write_text(json.dumps(body))
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, other)
    assert caught.value.code == "signature-untrusted"
    assert caught.value.message == (
        f"signed with key {body['key_id']}, which is not trusted here (trusted: {next(iter(other))})"
    )

    climbing = dict(body, files={**body["files"], "../../etc/passwd": "0" * 64})
    sig_file.write_text(json.dumps(climbing))
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, trusted)
    assert caught.value.code == "signature-malformed"

    bad_b64 = dict(body, signature="not base64!")
    sig_file.write_text(json.dumps(bad_b64))
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, trusted)
    assert caught.value.code == "signature-invalid"

    sig_file.write_text("{not json")
    with pytest.raises(SignatureError) as caught:
        verify_policy(policy, trusted)
    assert caught.value.code == "signature-malformed"

    sig_file.unlink()
    result = drivegate("verify", policy, "--trusted-key", release / "k.pub", cwd=release)
    assert (result.returncode, result.stdout) == (
        1,
        f"{sig_file}: signature-missing: {policy} is not signed (no default.yaml.sig); sign it with drivegate sign\n",
    )


def test_a_signature_is_for_one_policy_only(release: Path) -> None:
    key = load_private_key(generate_key(release / "k")[0])
    trusted = load_public_keys([release / "k.pub"])
    default = release / "policies" / "default.yaml"
    bands = release / "policies" / "speed-bands.yaml"
    sign_policy(default, key)
    shutil.copy(signature_path(default), signature_path(bands))
    with pytest.raises(SignatureError) as caught:
        verify_policy(bands, trusted)
    assert caught.value.message == "the signature is for 'default.yaml', not 'speed-bands.yaml'"


def test_sign_is_a_release_gate(release: Path) -> None:
    assert drivegate("keygen", "k", cwd=release).returncode == 0
    suite = release / "policies" / "tests" / "default.yaml"
    text = suite.read_text()
    # Flip one expectation: the suite now fails, so nothing is signed.
    flipped = text.replace("expect: {outcome: allow, rules: [parked-allow]}", "expect: {outcome: deny}", 1)
    assert flipped != text
    suite.write_text(flipped)
    result = drivegate("sign", "policies/default.yaml", "--key", "k", "--tests", suite, cwd=release)
    assert result.returncode == 1
    assert "failed: expected deny, got allow (parked-allow)" in result.stderr
    assert result.stderr.endswith("drivegate sign: policies/default.yaml not signed: 1 problem(s)\n")
    assert not signature_path(release / "policies" / "default.yaml").exists()

    outside = release / "elsewhere.yaml"
    outside.write_text(text)
    result = drivegate("sign", "policies/default.yaml", "--key", "k", "--tests", outside, cwd=release)
    assert (
        result.returncode == 2
        and "bad-path: a signed test suite must be in or under the policy's folder" in result.stderr
    )

    unreadable = drivegate("sign", "policies/default.yaml", "--key", "no-such-key", cwd=release)
    assert unreadable.returncode == 2 and "unreadable: cannot read the private key" in unreadable.stderr


def test_keys_must_be_ed25519(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).public_key()
    path = tmp_path / "ec.pub"
    path.write_bytes(pem.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SignatureError) as caught:
        load_public_keys([path])
    assert str(caught.value) == f"{path}: bad-key: not an Ed25519 public key (DriveGate signs with Ed25519 only)"
    path.write_text("garbage")
    with pytest.raises(SignatureError) as caught:
        load_public_keys([path])
    assert caught.value.code == "bad-key"


def test_engine_runs_only_signed_policies_when_given_trusted_keys(release: Path) -> None:
    from conftest import DEMO_VEHICLE

    from safety import Engine
    from safety.errors import PolicyCheckError

    key = load_private_key(generate_key(release / "k")[0])
    trusted = load_public_keys([release / "k.pub"])
    policy = release / "policies" / "default.yaml"
    suite = release / "policies" / "tests" / "default.yaml"
    with pytest.raises(SignatureError) as caught:
        Engine.load(DEMO_VEHICLE, policy, trusted_keys=trusted)
    assert caught.value.code == "signature-missing"

    sign_policy(policy, key, [suite])
    engine = Engine.load(DEMO_VEHICLE, policy, trusted_keys=trusted)
    assert engine.policy.signed_by == next(iter(trusted))
    assert Engine.load(DEMO_VEHICLE, policy).policy.signed_by is None  # not checked, not claimed
    signed_hash = engine.policy.hash

    # A change not signed again is refused; the old policy stays in force.
    original = policy.read_text()
    policy.write_text(original.replace("name: default", "name: default-v2", 1))
    with pytest.raises(SignatureError):
        engine.reload(policy, trusted_keys=trusted)
    assert engine.policy.hash == signed_hash

    # Signed, but its signed suite now fails (video allowed while moving): the suite runs on reload.
    unsafe = original.replace("content: video}\n    outcome: deny", "content: video}\n    outcome: allow", 1)
    policy.write_text(unsafe)
    sign_policy(policy, key, [suite])
    with pytest.raises(PolicyCheckError) as failed:
        engine.reload(policy, trusted_keys=trusted)
    assert any("video is locked out while moving" in p for p in failed.value.problems)
    assert engine.policy.hash == signed_hash

    policy.write_text(original.replace("name: default", "name: default-v2", 1))
    sign_policy(policy, key, [suite])
    assert engine.reload(policy, trusted_keys=trusted) == "active"
    assert engine.policy.name == "default-v2" and engine.policy.signed_by == next(iter(trusted))
