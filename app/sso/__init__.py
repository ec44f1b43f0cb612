"""SSO: SAML SP and OIDC RP toward customers, the OIDC provider toward the portal."""
