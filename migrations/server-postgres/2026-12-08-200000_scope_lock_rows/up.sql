-- Every lock domain that exists gets its row, so a pull that share-locks its domains never
-- meets one whose row a push is still inserting (a new project's first push makes its row
-- while holding `people`, which such a pull takes first).
INSERT INTO scope_locks (scope, issued) VALUES ('people', 0) ON CONFLICT DO NOTHING;
INSERT INTO scope_locks (scope, issued)
SELECT DISTINCT scope, 0 FROM entities WHERE scope LIKE 'project:%'
ON CONFLICT DO NOTHING;
