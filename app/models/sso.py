"""SSO: login sessions and the tokens Roster issued (issue 8); lifecycle revokes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow


class LoginSession(Base):
    """What Roster issued to the portal after a login; revocable."""

    __tablename__ = "login_sessions"
    __table_args__ = (
        Index("ix_login_sessions_user_id", "user_id"),
        # The SSO purge deletes sessions that ended (revoked or expired) 30 days ago
        # (app/sso/maintenance.py): one index per column of its OR (migration 0021).
        Index("ix_login_sessions_revoked_at", "revoked_at"),
        Index("ix_login_sessions_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The SSO connection used to sign in (None for sessions made by other means).
    connection_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # When the IdP authenticated the employee (SAML AuthnInstant, OIDC auth_time): earlier
    # than created_at when the IdP reused its own session. None: as created_at.
    authenticated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(100))
    # The customer IdP's ID token of an OIDC login, sealed (Fernet, app/sso/sealed.py): the
    # id_token_hint of the logout at the IdP (migration 0027; it was in the browser's
    # cookie). Cleared when the login ends.
    upstream_id_token: Mapped[str | None] = mapped_column(Text)

    @property
    def authenticated(self) -> datetime:
        """When the user authenticated (OIDC ``auth_time``): the IdP's instant, or the
        login's own time for logins recorded before migration 0018."""
        return self.authenticated_at or self.created_at


class IssuedToken(Base):
    """An access or refresh token Roster issued, stored only as its SHA-256."""

    __tablename__ = "issued_tokens"
    __table_args__ = (
        Index("ix_issued_tokens_user_id", "user_id"),
        Index("ix_issued_tokens_session_id", "session_id"),
        Index("ix_issued_tokens_family_id", "family_id"),
        # The SSO purge deletes tokens a day after they expired (migration 0021).
        Index("ix_issued_tokens_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # The user the token speaks for (None for client-credentials tokens of an IdP).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="CASCADE")
    )
    # For OAuth client-credentials tokens of an IdP (issue 5): the directory it acts for.
    directory_id: Mapped[str | None] = mapped_column(
        ForeignKey("directories.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(200))
    token_type: Mapped[str] = mapped_column(String(20))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The grant the token descends from: the SHA-256 of its authorization code, inherited
    # by every refresh. A reused code or a replayed refresh token revokes the whole family
    # (RFC 6749 §4.1.2, RFC 9700 §4.14.2). None for tokens issued before migration 0017.
    family_id: Mapped[str | None] = mapped_column(String(64))
    # Set when a refresh token was exchanged for a new one: presenting it again is a replay.
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SsoConnection(Base):
    """One SAML or OIDC connection of an organization, with its login policy (issue 8)."""

    __tablename__ = "sso_connections"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    protocol: Mapped[str] = mapped_column(String(10))  # saml | oidc
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # scim: the user must already be active in the directory; jit: create/update it.
    login_policy: Mapped[str] = mapped_column(String(10), default="scim")
    # How the asserted identity finds the user: email | nameid | user_name | external_id.
    match_by: Mapped[str] = mapped_column(String(20), default="email")
    # The directory JIT users are written to (and SCIM-authoritative users are read from).
    directory_id: Mapped[str | None] = mapped_column(
        ForeignKey("directories.id", ondelete="SET NULL")
    )
    allow_idp_initiated: Mapped[bool] = mapped_column(Boolean, default=False)
    sign_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    # SAML IdP, as imported from its metadata (several signing certs for rollover).
    idp_entity_id: Mapped[str | None] = mapped_column(String(1000))
    idp_sso_url: Mapped[str | None] = mapped_column(String(1000))
    idp_slo_url: Mapped[str | None] = mapped_column(String(1000))
    idp_certs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    metadata_url: Mapped[str | None] = mapped_column(String(1000))
    metadata_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A worker's claim on a due refresh, until then (app/sso/connection_metadata.py refresh_due).
    metadata_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Assertion attribute (or OIDC claim) names: {"email": ..., "groups": ..., ...}.
    attribute_map: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # OIDC relying party: the secret is encrypted with a key derived from app.secret_key.
    oidc_discovery_url: Mapped[str | None] = mapped_column(String(1000))
    oidc_client_id: Mapped[str | None] = mapped_column(String(500))
    oidc_client_secret_enc: Mapped[str | None] = mapped_column(Text)
    oidc_scopes: Mapped[str] = mapped_column(String(500), default="openid email profile")
    oidc_algorithms: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConnectionDomain(Base):
    """An email domain routed to a connection once an operator verified it."""

    __tablename__ = "sso_connection_domains"
    __table_args__ = (
        UniqueConstraint("connection_id", "domain"),
        Index("ix_sso_connection_domains_domain", "domain"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE")
    )
    domain: Mapped[str] = mapped_column(String(253))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SamlRequest(Base):
    """An AuthnRequest this server issued; a Response may answer it once (SAML Core §3.2.2)."""

    __tablename__ = "saml_requests"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE"), index=True
    )
    relay_state: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Indexed (migration 0023): the SSO purge deletes the expired ones.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SeenAssertion(Base):
    """Replay cache: an assertion id accepted once, kept until it could no longer be valid."""

    __tablename__ = "saml_seen_assertions"

    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE"), primary_key=True
    )
    assertion_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class LoginTrace(Base):
    """A failed login: reason, redacted assertion or claims, shown by its correlation id."""

    __tablename__ = "sso_login_traces"
    __table_args__ = (Index("ix_sso_login_traces_org_created", "organization_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE")
    )
    protocol: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(50))
    detail: Mapped[str] = mapped_column(String(2000), default="")
    subject: Mapped[str | None] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(100))
    # Indexed (migration 0030): a trace is kept ``sso.trace_retention_days`` after this, as
    # the setting says now, not as it said when the trace was written; the purge deletes by it.
    # (Its expiry fixed at write, ``expires_at``, went unused in 0030 and was dropped in 0031.)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class AuthorizationCode(Base):
    """An OAuth 2.0 authorization code (RFC 6749 §4.1.2), stored hashed, usable once.

    A redeemed code keeps its row, marked ``used_at``, until it expires: a second use is
    then recognised and revokes the tokens issued from the first (RFC 6749 §4.1.2)."""

    __tablename__ = "oauth_authorization_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Indexed (migration 0021): the SSO purge's delete of ended sessions cascades here.
    session_id: Mapped[str] = mapped_column(ForeignKey("login_sessions.id", ondelete="CASCADE"),
                                            index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000), default="")
    nonce: Mapped[str | None] = mapped_column(String(500))
    code_challenge: Mapped[str | None] = mapped_column(String(200))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[datetime] = mapped_column(UTCDateTime())
    # Indexed (migration 0023): the SSO purge deletes the expired ones.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # The provider's nonce-reuse check (app/sso/provider.py, exists_nonce) reads the codes
    # by client and nonce (migration 0037).
    __table_args__ = (Index("ix_oauth_authorization_codes_client_id_nonce",
                            "client_id", "nonce"),)


class BackchannelLogout(Base):
    """One OIDC Back-Channel Logout to send for a revoked session (OIDC BCL 1.0 §2.5)."""

    __tablename__ = "oidc_backchannel_logouts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The outbox event that asked for it: each event is turned into deliveries once.
    outbox_event_id: Mapped[str] = mapped_column(String(36))
    session_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(36))
    client_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # created_at (migration 0023): the SSO purge deletes the sent and failed ones by age.
    __table_args__ = (UniqueConstraint("outbox_event_id", "client_id"),
                      Index("ix_oidc_backchannel_logouts_status", "status"),
                      Index("ix_oidc_backchannel_logouts_created_at", "created_at"))


class OidcLoginRequest(Base):
    """One OIDC login attempt of the relying party: state, nonce and PKCE verifier, used once."""

    __tablename__ = "oidc_login_requests"

    # SHA-256 of the state sent to the IdP (the state itself is never stored).
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE"), index=True
    )
    nonce: Mapped[str] = mapped_column(String(100))
    # Sealed (Fernet, app/sso/sealed.py; migration 0027), cleared when the attempt is used:
    # a replayed callback finds no verifier.
    code_verifier: Mapped[str | None] = mapped_column(String(255))
    redirect_to: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
