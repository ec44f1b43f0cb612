"""Lifecycle: activate, deprovision, delete and reactivate users.

Every trigger (SCIM active=false, SCIM DELETE, loss of every grant, a disabled directory,
an operator) goes through one of these functions, inside the caller's transaction.
"""

from app.lifecycle.users import Trigger, delete_user, deprovision_user, reactivate_user

__all__ = ["Trigger", "delete_user", "deprovision_user", "reactivate_user"]
