"""/api/v1: the operator, customer-admin, auditor and portal API."""
