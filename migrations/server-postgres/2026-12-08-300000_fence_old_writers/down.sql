DROP TRIGGER refuse_old_writers ON server_meta;
DROP FUNCTION trackflow_refuse_old_writers();
