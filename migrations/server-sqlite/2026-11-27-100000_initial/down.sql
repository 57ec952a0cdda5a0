DROP TABLE applied_mutations;
DROP TABLE memberships;
DROP TABLE entities;
DROP TABLE auth_tokens;
DROP TABLE accounts;
DROP TABLE server_meta;
