"""Rotating `webhooks.secret` without an outage: with `webhooks.previous_secret` set each
delivery carries a `v1` per secret, and the README's receiver recipe, run as written against
real deliveries of `roster worker`, accepts them with either secret."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import pytest

from app.events.delivery import WebhookConfig
from app.events.signature import sign, verify
from app.events.worker import run_once
from app.settings import SettingsError, load_settings
from tests.events.receiver import SECRET, running_receiver
from tests.events.test_portal_receiver import portal_receiver
from tests.events.test_webhooks import _leavers
from tests.lifecycle.support import make_leaver, roster

NEW = "whsec-new-0123456789abcdef0123"
OLD = "whsec-old-fedcba9876543210fedc"
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_recipe() -> str:
    """The Python block that follows "A receiver checks each POST" in the README."""
    text = README.read_text()
    start = text.index("A receiver checks each POST")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def readme_accepts(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Run the README's recipe as written, with the names it uses."""
    scope: dict[str, Any] = {"headers": headers, "body": body, "secret": secret}
    exec(readme_recipe(), scope)
    return bool(scope["ok"])


def one_value_receiver(secret: str, header: str, body: bytes) -> bool:
    """A receiver built from the README before rotation: a dict of the header's parts."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    mac = hmac.new(secret.encode(), fields["t"].encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"])


def _deliver(database_url: str, **environ: str) -> list[dict[str, Any]]:
    with portal_receiver() as (url, seen):
        result = roster(database_url, "worker", "--until-idle", ROSTER_WEBHOOKS__URLS=url,
                        **environ)
    assert seen
    return [{**s, "log": result.output} for s in seen]


def test_during_a_rotation_the_readme_recipe_accepts_the_old_and_the_new_secret(
        db, tenant, database_url):
    """With one `webhooks.secret`, receivers reject every delivery from the moment it
    changes until they switch. `webhooks.previous_secret` adds the old secret's signature:
    the documented recipe accepts each real delivery with either secret, and no other."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    seen = _deliver(database_url, ROSTER_WEBHOOKS__SECRET=NEW,
                    ROSTER_WEBHOOKS__PREVIOUS_SECRET=OLD)
    assert "signing with webhooks.secret and webhooks.previous_secret" in seen[0]["log"]
    assert NEW not in seen[0]["log"]
    assert OLD not in seen[0]["log"]
    for request in seen:
        headers, body = request["headers"], request["body"]
        header = headers["Roster-Signature"]
        assert header.count("v1=") == 2
        assert header.startswith("t=")
        assert readme_accepts(NEW, headers, body)
        assert readme_accepts(OLD, headers, body)
        assert not readme_accepts("a-third-secret", headers, body)
        assert not readme_accepts(NEW, headers, body + b" ")
        # The current secret's signature is the last: a receiver that keeps one value
        # (the README's recipe before) still verifies the current secret.
        assert one_value_receiver(NEW, header, body)


def test_without_a_previous_secret_one_signature_as_before(db, tenant, database_url):
    """No rotation: one `v1`, and the documented recipe accepts only the current secret."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    seen = _deliver(database_url, ROSTER_WEBHOOKS__SECRET=NEW)
    assert "previous_secret" not in seen[0]["log"]
    for request in seen:
        headers, body = request["headers"], request["body"]
        assert headers["Roster-Signature"].count("v1=") == 1
        assert readme_accepts(NEW, headers, body)
        assert not readme_accepts(OLD, headers, body)
        assert one_value_receiver(NEW, headers["Roster-Signature"], body)


def test_the_worker_round_signs_with_both_secrets(db, tenant):
    """run_once against a real receiver holding only the previous secret: every delivery
    verifies (app.events.signature.verify, any v1), and none does without the rotation."""
    _leavers(db, tenant, 1)
    with running_receiver() as receiver:  # holds tests.events.receiver.SECRET
        config = WebhookConfig(urls=(receiver.url,), secret=NEW, previous_secret=SECRET)
        while run_once(db, config, "test-worker"):
            pass
    assert receiver.requests
    assert receiver.bad_signatures == 0


def test_verify_accepts_any_signature_and_any_secret_held():
    body, now = b'{"id":"e1"}', int(time.time())
    header = sign(NEW, now, body, previous=OLD)
    assert verify(NEW, header, body)
    assert verify(OLD, header, body)
    assert verify(["x", OLD], header, body)
    assert not verify("x", header, body)
    assert sign(NEW, now, body, previous=NEW) == sign(NEW, now, body)  # no repeat


def test_previous_secret_is_a_secret(tmp_path):
    """Like webhooks.secret: from the environment or a file only, never from a config file,
    and its value is not shown in a configuration error."""
    key = tmp_path / "old"
    key.write_text(OLD + "\n")
    settings = load_settings(environ={"ROSTER_WEBHOOKS__PREVIOUS_SECRET_FILE": str(key)})
    assert settings["webhooks"]["previous_secret"] == OLD
    config = tmp_path / "roster.toml"
    config.write_text(f'[webhooks]\nprevious_secret = "{OLD}"\n')
    with pytest.raises(SettingsError, match=r"webhooks\.previous_secret is a secret"):
        load_settings(environ={"ROSTER_CONFIG": str(config)})
    assert repr(WebhookConfig(urls=(), secret=NEW, previous_secret=OLD)).count(OLD) == 0
