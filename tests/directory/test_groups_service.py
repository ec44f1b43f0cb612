"""Group and membership services on the real database (no HTTP)."""

from __future__ import annotations

import pytest

from app.directory.groups import (
    GroupInput,
    create_group,
    delete_group,
    get_group,
    update_group,
)
from app.directory.memberships import (
    add_members,
    remove_all_members,
    remove_members,
    replace_members,
)
from app.directory.users import UserInput, create_user, get_user, replace_user
from app.errors import Conflict, InvalidInput, NotFound
from app.models import Directory
from tests.conftest import OPERATOR, rows


def _users(db, tenant, n):
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        return [create_user(session, directory, UserInput({"user_name": f"u{i}@x"}),
                            OPERATOR).id for i in range(n)]


def _group(db, tenant, members=()):
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        return create_group(session, directory, GroupInput("G", member_ids=list(members)),
                            OPERATOR).id


def _members(db, group_id):
    return {r[0] for r in rows(db, "SELECT user_id FROM memberships WHERE group_id = :g",
                               g=group_id)}


def test_adding_existing_members_is_a_no_op_without_events(db, tenant):
    """add_members returns only the new ids and audits nothing when nothing changed."""
    users = _users(db, tenant, 2)
    gid = _group(db, tenant, users[:1])
    with db.transaction() as session:
        group = get_group(session, tenant.directory.id, gid)
        assert add_members(session, group, users, OPERATOR) == [users[1]]
        assert add_members(session, group, users, OPERATOR) == []
    assert _members(db, gid) == set(users)
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'membership:add'")[0][0] == 2


def test_remove_and_replace_touch_only_the_difference(db, tenant):
    """remove_members ignores non-members; replace_members adds and removes the diff."""
    users = _users(db, tenant, 4)
    gid = _group(db, tenant, users[:2])
    with db.transaction() as session:
        group = get_group(session, tenant.directory.id, gid)
        assert remove_members(session, group, [users[0], users[3]], OPERATOR) == [users[0]]
        added, removed = replace_members(session, group, users[2:], OPERATOR)
        assert (sorted(added), removed) == (sorted(users[2:]), [users[1]])
    assert _members(db, gid) == set(users[2:])
    with db.transaction() as session:
        group = get_group(session, tenant.directory.id, gid)
        assert sorted(remove_all_members(session, group, OPERATOR)) == sorted(users[2:])
    assert _members(db, gid) == set()


def test_members_must_be_live_users_of_the_directory(db, tenant, other_tenant):
    """Unknown, foreign and deleted users are InvalidInput."""
    foreign = _users(db, other_tenant, 1)
    gid = _group(db, tenant)
    with pytest.raises(InvalidInput), db.transaction() as session:
        add_members(session, get_group(session, tenant.directory.id, gid), foreign, OPERATOR)
    assert _members(db, gid) == set()


def test_rename_conflict_and_delete(db, tenant):
    """A taken displayName is a Conflict; delete removes the group and its memberships."""
    users = _users(db, tenant, 1)
    gid = _group(db, tenant, users)
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        create_group(session, directory, GroupInput("Other"), OPERATOR)
    with pytest.raises(Conflict), db.transaction() as session:
        update_group(session, get_group(session, tenant.directory.id, gid),
                     GroupInput("OTHER"), OPERATOR)
    with db.transaction() as session:
        delete_group(session, get_group(session, tenant.directory.id, gid), OPERATOR)
    with pytest.raises(NotFound), db.transaction() as session:
        get_group(session, tenant.directory.id, gid)
    assert rows(db, "SELECT count(*) FROM memberships")[0][0] == 0


def test_replace_user_without_changes_keeps_the_version(db, tenant):
    """Replacing a user with identical state writes no audit event and no new version."""
    [uid] = _users(db, tenant, 1)
    with db.transaction() as session:
        user = get_user(session, tenant.directory.id, uid)
        replace_user(session, user, UserInput({"user_name": "u0@x"}), OPERATOR)
        assert user.version == 1
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:update'")[0][0] == 0
