"""Directory domain: organizations, units, directories, tokens, users, groups, memberships."""
