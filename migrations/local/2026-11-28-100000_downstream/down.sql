DROP TABLE sync_statistics;
DROP TABLE sync_deferred;
ALTER TABLE playlists DROP COLUMN pulled_version;
ALTER TABLE audio_comments DROP COLUMN pulled_version;
ALTER TABLE audio_tracks DROP COLUMN pulled_version;
ALTER TABLE project_collaborators DROP COLUMN pulled_version;
ALTER TABLE projects DROP COLUMN pulled_version;
ALTER TABLE user_profiles DROP COLUMN pulled_version;
