"""SCIM 2.0 protocol adapter (RFC 7643 / RFC 7644) under /scim/v2."""
