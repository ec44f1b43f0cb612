"""SimpleSAMLphp (Debian package) as a real SAML IdP on 127.0.0.1, configured per test run.

The fixture writes config, authsources, hosted-IdP metadata and keys into a temp dir and
serves /usr/share/simplesamlphp/www with `php -S`. SP metadata is rewritten per test
(SimpleSAMLphp reads its flat-file metadata on every request).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.sso.keys import TestKey, make_key

WWW = Path("/usr/share/simplesamlphp/www")
USERS = {
    "alice": {"password": "alice-pass", "mail": "alice@acme.com", "givenName": "Alice",
              "sn": "Archer", "groups": ["Buyers", "Approvers"]},
    "bob": {"password": "bob-pass", "mail": "bob@acme.com", "givenName": "Bob",
            "sn": "Baker", "groups": ["Buyers"]},
}


def _php(value: object) -> str:
    """A Python literal as PHP source (strings, bools, lists, dicts)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_php(v) for v in value) + "]"
    if isinstance(value, dict):
        return "[" + ", ".join(f"{_php(k)} => {_php(v)}" for k, v in value.items()) + "]"
    raise TypeError(type(value))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SimpleSamlIdp:
    """A running SimpleSAMLphp IdP."""

    base: str
    root: Path
    key: TestKey

    @property
    def entity_id(self) -> str:
        """The hosted IdP's entity id (its metadata URL)."""
        return f"{self.base}/saml2/idp/metadata.php"

    @property
    def sso_url(self) -> str:
        """HTTP-Redirect SingleSignOnService."""
        return f"{self.base}/saml2/idp/SSOService.php"

    def metadata_xml(self) -> str:
        """The IdP's own metadata document, as an admin would download it."""
        resp = requests.get(f"{self.entity_id}?output=xml", timeout=10)
        resp.raise_for_status()
        return resp.text

    def register_sp(self, entity_id: str, acs: str, *, sp_cert_pem: str | None = None,
                    encrypt: bool = False, validate_requests: bool = False,
                    slo: str | None = None, encrypt_name_id: bool = False) -> None:
        """Trust one SP (SAML Metadata as SimpleSAMLphp's flat file); ``encrypt``: the
        assertion, ``encrypt_name_id``: the NameID (an EncryptedID), to ``sp_cert_pem``."""
        sp: dict[str, object] = {
            "AssertionConsumerService": acs,
            "NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            "simplesaml.nameidattribute": "mail",
            "saml20.sign.assertion": True, "saml20.sign.response": True,
            "assertion.encryption": encrypt, "validate.authnrequest": validate_requests,
            "nameid.encryption": encrypt_name_id,
            "attributes.NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic",
            "sign.logout": True, "redirect.sign": True, "validate.logout": True,
        }
        if slo:
            sp["SingleLogoutService"] = slo
        if sp_cert_pem:
            lines = sp_cert_pem.strip().splitlines()
            sp["certData"] = "".join(line for line in lines if "CERTIFICATE" not in line)
        self._write_sp(entity_id, sp)

    @staticmethod
    def parse_sp_metadata(xml: str) -> dict[str, Any]:
        """An SP's metadata document as SimpleSAMLphp's own parser reads it (its admin
        "metadata converter"): endpoints, keys with their use, ``expire`` (validUntil)."""
        php = ("require '/usr/share/simplesamlphp/lib/_autoload.php';"
               "foreach (\\SimpleSAML\\Metadata\\SAMLParser::parseDescriptorsString("
               "stream_get_contents(STDIN)) as $e) { echo json_encode($e->getMetadata20SP()); }")
        out = subprocess.run(["php", "-r", php], input=xml, capture_output=True, text=True,
                             check=True, timeout=30).stdout
        return {k: v for k, v in json.loads(out).items() if k != "entityDescriptor"}

    def import_sp_metadata(self, xml: str, *, encrypt: bool = False) -> str:
        """Trust an SP from its metadata document, as ``parse_sp_metadata`` reads it. The
        attribute release is set as in ``register_sp``. Returns the entity id."""
        sp = self.parse_sp_metadata(xml)
        sp.update({"NameIDFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                   "simplesaml.nameidattribute": "mail", "saml20.sign.response": True,
                   "assertion.encryption": encrypt,
                   "attributes.NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"})
        self._write_sp(sp["entityid"], sp)
        return str(sp["entityid"])

    def _write_sp(self, entity_id: str, sp: dict[str, object]) -> None:
        # Whole or not at all: a request in flight never reads a half-written file.
        target = self.root / "metadata" / "saml20-sp-remote.php"
        staged = target.with_suffix(".tmp")
        staged.write_text(f"<?php\n$metadata[{_php(entity_id)}] = {_php(sp)};\n")
        os.replace(staged, target)


def _write_config(root: Path, base: str, key: TestKey) -> None:
    for sub in ("config", "metadata", "cert", "log", "data", "tmp", "sessions"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(key.key_file, root / "cert" / "idp.key")
    shutil.copy(key.cert_file, root / "cert" / "idp.crt")
    config = {
        "baseurlpath": f"{base}/", "certdir": f"{root}/cert/", "loggingdir": f"{root}/log/",
        "datadir": f"{root}/data/", "tempdir": f"{root}/tmp", "metadatadir": f"{root}/metadata/",
        "technicalcontact_name": "Roster tests", "technicalcontact_email": "tests@example.org",
        "timezone": "UTC", "secretsalt": "roster-test-salt-0123456789",
        "auth.adminpassword": "roster-test-admin", "admin.protectindexpage": False,
        "admin.protectmetadata": False, "enable.saml20-idp": True, "showerrors": True,
        "errorreporting": False, "logging.handler": "file", "logging.logfile": "ssp.log",
        "session.cookie.secure": False, "session.phpsession.savepath": f"{root}/sessions",
        "store.type": "phpsession", "metadata.sources": [{"type": "flatfile"}],
        "module.enable": {"exampleauth": True, "core": True, "saml": True, "admin": True},
        "language.available": ["en"], "language.default": "en",
    }
    (root / "config" / "config.php").write_text(f"<?php\n$config = {_php(config)};\n")
    users = {f"{name}:{u['password']}": {
        "uid": [name], "mail": [u["mail"]], "givenName": [u["givenName"]], "sn": [u["sn"]],
        "groups": u["groups"]} for name, u in USERS.items()}
    sources = {"admin": ["core:AdminPassword"],
               "example-userpass": {0: "exampleauth:UserPass", **users}}
    (root / "config" / "authsources.php").write_text(f"<?php\n$config = {_php(sources)};\n")
    hosted = {"host": "__DEFAULT__", "privatekey": "idp.key", "certificate": "idp.crt",
              "auth": "example-userpass",
              "signature.algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"}
    (root / "metadata" / "saml20-idp-hosted.php").write_text(
        f"<?php\n$metadata['__DYNAMIC:1__'] = {_php(hosted)};\n")
    (root / "metadata" / "saml20-sp-remote.php").write_text("<?php\n")


def _wait_ready(idp: SimpleSamlIdp, process: subprocess.Popen[bytes]) -> None:
    """Ready when the IdP serves its own metadata (error pages answer 200 too)."""
    deadline = time.monotonic() + 20
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"php -S exited with {process.returncode}")
        try:
            resp = requests.get(f"{idp.entity_id}?output=xml", timeout=2)
            last = resp.text[:300]
            if resp.status_code == 200 and "IDPSSODescriptor" in resp.text:
                return
        except requests.RequestException as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"SimpleSAMLphp did not become ready: {last}")


@contextmanager
def running_idp(root: Path) -> Iterator[SimpleSamlIdp]:
    """Start SimpleSAMLphp under `php -S`, yield it, always stop it."""
    if not shutil.which("php") or not WWW.exists():
        raise RuntimeError("SimpleSAMLphp is missing: run script/bootstrap --test as root "
                           "(Debian packages simplesamlphp php-cli php-xml)")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    key = make_key(root, "ssp-idp")
    _write_config(root, base, key)
    env = {**os.environ, "SIMPLESAMLPHP_CONFIG_DIR": str(root / "config")}
    log = (root / "php.log").open("wb")
    # No opcache: `php -S` (SAPI cli-server) caches compiled files under opcache.enable, not
    # enable_cli, and re-reads a file's timestamp only every revalidate_freq (2) seconds, so
    # SP metadata rewritten within 2 s of the last request was served stale ("Metadata not
    # found" for the new connection: the flaky SLO tests of sessions 19-20).
    process = subprocess.Popen(["php", "-d", "opcache.enable=0", "-S", f"127.0.0.1:{port}",
                                "-t", str(WWW)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        idp = SimpleSamlIdp(base=base, root=root, key=key)
        _wait_ready(idp, process)
        yield idp
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
