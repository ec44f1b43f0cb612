"""sso tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_login_sessions_organization_id_organizations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_login_sessions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_index(op.f("ix_login_sessions_organization_id"), "login_sessions",
                    ["organization_id"])
    op.create_table(
        "issued_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("directory_id", sa.String(length=36), nullable=True),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("token_type", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("issued_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_issued_tokens_organization_id_organizations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_issued_tokens_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["login_sessions.id"],
                                name=op.f("fk_issued_tokens_session_id_login_sessions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name=op.f("fk_issued_tokens_directory_id_directories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issued_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_issued_tokens_token_hash")),
    )
    op.create_index("ix_issued_tokens_user_id", "issued_tokens", ["user_id"])
    op.create_index("ix_issued_tokens_session_id", "issued_tokens", ["session_id"])
    op.create_index(op.f("ix_issued_tokens_directory_id"), "issued_tokens", ["directory_id"])
    # Connections, domains, AuthnRequests, replay cache and login traces (issue 8).
    op.create_table('sso_connections',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('protocol', sa.String(length=10), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('login_policy', sa.String(length=10), nullable=False),
    sa.Column('match_by', sa.String(length=20), nullable=False),
    sa.Column('directory_id', sa.String(length=36), nullable=True),
    sa.Column('allow_idp_initiated', sa.Boolean(), nullable=False),
    sa.Column('sign_requests', sa.Boolean(), nullable=False),
    sa.Column('idp_entity_id', sa.String(length=1000), nullable=True),
    sa.Column('idp_sso_url', sa.String(length=1000), nullable=True),
    sa.Column('idp_slo_url', sa.String(length=1000), nullable=True),
    sa.Column('idp_certs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('metadata_url', sa.String(length=1000), nullable=True),
    sa.Column('metadata_refreshed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attribute_map', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('oidc_discovery_url', sa.String(length=1000), nullable=True),
    sa.Column('oidc_client_id', sa.String(length=500), nullable=True),
    sa.Column('oidc_client_secret_enc', sa.Text(), nullable=True),
    sa.Column('oidc_scopes', sa.String(length=500), nullable=False),
    sa.Column('oidc_algorithms', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['directory_id'], ['directories.id'], name=op.f('fk_sso_connections_directory_id_directories'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_sso_connections_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_connections')),
    sa.UniqueConstraint('organization_id', 'name', name=op.f('uq_sso_connections_organization_id_name'))
    )
    op.create_index(op.f('ix_sso_connections_organization_id'), 'sso_connections', ['organization_id'], unique=False)
    op.create_table('saml_requests',
    sa.Column('id', sa.String(length=100), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('relay_state', sa.String(length=2000), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['sso_connections.id'], name=op.f('fk_saml_requests_connection_id_sso_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saml_requests'))
    )
    op.create_index(op.f('ix_saml_requests_connection_id'), 'saml_requests', ['connection_id'], unique=False)
    op.create_table('saml_seen_assertions',
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('assertion_id', sa.String(length=200), nullable=False),
    sa.Column('seen_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['sso_connections.id'], name=op.f('fk_saml_seen_assertions_connection_id_sso_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('connection_id', 'assertion_id', name=op.f('pk_saml_seen_assertions'))
    )
    op.create_index(op.f('ix_saml_seen_assertions_expires_at'), 'saml_seen_assertions', ['expires_at'], unique=False)
    op.create_table('sso_connection_domains',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('verified_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['sso_connections.id'], name=op.f('fk_sso_connection_domains_connection_id_sso_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_connection_domains')),
    sa.UniqueConstraint('connection_id', 'domain', name=op.f('uq_sso_connection_domains_connection_id_domain'))
    )
    op.create_index('ix_sso_connection_domains_domain', 'sso_connection_domains', ['domain'], unique=False)
    op.create_table('sso_login_traces',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=True),
    sa.Column('connection_id', sa.String(length=36), nullable=True),
    sa.Column('protocol', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.String(length=50), nullable=False),
    sa.Column('detail', sa.String(length=2000), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=True),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('request_id', sa.String(length=100), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['sso_connections.id'], name=op.f('fk_sso_login_traces_connection_id_sso_connections'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_sso_login_traces_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sso_login_traces'))
    )
    op.create_index(op.f('ix_sso_login_traces_expires_at'), 'sso_login_traces', ['expires_at'], unique=False)
    op.create_index('ix_sso_login_traces_org_created', 'sso_login_traces', ['organization_id', 'created_at'], unique=False)
    # OIDC provider: authorization codes and back-channel logout deliveries.
    op.create_table('oidc_backchannel_logouts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('outbox_event_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_backchannel_logouts')),
    sa.UniqueConstraint('outbox_event_id', 'client_id', name=op.f('uq_oidc_backchannel_logouts_outbox_event_id_client_id'))
    )
    op.create_index('ix_oidc_backchannel_logouts_status', 'oidc_backchannel_logouts', ['status'], unique=False)
    op.create_table('oauth_authorization_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=200), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('redirect_uri', sa.String(length=2000), nullable=False),
    sa.Column('scope', sa.String(length=1000), nullable=False),
    sa.Column('nonce', sa.String(length=500), nullable=True),
    sa.Column('code_challenge', sa.String(length=200), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=10), nullable=True),
    sa.Column('auth_time', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['login_sessions.id'], name=op.f('fk_oauth_authorization_codes_session_id_login_sessions'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_oauth_authorization_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code_hash', name=op.f('pk_oauth_authorization_codes'))
    )
    op.create_index(op.f('ix_oauth_authorization_codes_user_id'), 'oauth_authorization_codes', ['user_id'], unique=False)
    # OIDC relying party: login attempts (state hash, nonce, PKCE verifier).
    op.create_table('oidc_login_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('connection_id', sa.String(length=36), nullable=False),
    sa.Column('nonce', sa.String(length=100), nullable=False),
    sa.Column('code_verifier', sa.String(length=128), nullable=True),
    sa.Column('redirect_to', sa.String(length=2000), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['sso_connections.id'], name=op.f('fk_oidc_login_requests_connection_id_sso_connections'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_login_requests'))
    )
    op.create_index(op.f('ix_oidc_login_requests_connection_id'), 'oidc_login_requests', ['connection_id'], unique=False)
    op.create_index(op.f('ix_oidc_login_requests_expires_at'), 'oidc_login_requests', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_table("oidc_login_requests")
    for table in ("oidc_backchannel_logouts", "oauth_authorization_codes", "sso_login_traces", "sso_connection_domains", "saml_seen_assertions",
                  "saml_requests", "sso_connections"):
        op.drop_table(table)
    op.drop_table("issued_tokens")
    op.drop_table("login_sessions")
