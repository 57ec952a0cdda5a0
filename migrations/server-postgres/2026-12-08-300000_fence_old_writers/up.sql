-- Versions come from the sequence now. An instance of an older trackflow server still running
-- against this database (a rolling upgrade) would hand out versions from server_meta's counter,
-- out of order with the sequence's, and a pull could skip a change. Its pushes are refused
-- instead, saying why (clients retry them on an upgraded instance); its pulls still work, and
-- cursors it does not know get a reset, never a skip. The new code never sets last_version on
-- PostgreSQL.
CREATE FUNCTION trackflow_refuse_old_writers() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'this database is served by a newer trackflow server: upgrade this instance';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_old_writers BEFORE UPDATE OF last_version ON server_meta
    FOR EACH ROW EXECUTE FUNCTION trackflow_refuse_old_writers();
