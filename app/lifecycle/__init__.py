"""Lifecycle: activate, deprovision, delete and reactivate users.

Every trigger (SCIM active=false, SCIM DELETE, loss of every grant, a disabled directory,
an operator) goes through one of these functions, inside the caller's transaction.
"""

from app.lifecycle.policy import LifecyclePolicy
from app.lifecycle.restore import held_grants_before, operator_hold
from app.lifecycle.users import (
    Trigger,
    delete_user,
    deprovision_directory_users,
    deprovision_user,
    find_restorable,
    reactivate_user,
    record_failed_deprovisioning,
    restorable_on_create,
)

__all__ = ["LifecyclePolicy", "Trigger", "delete_user", "deprovision_directory_users",
           "deprovision_user", "find_restorable", "held_grants_before", "operator_hold",
           "reactivate_user", "record_failed_deprovisioning", "restorable_on_create"]
