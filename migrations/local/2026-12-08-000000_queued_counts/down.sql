DELETE FROM local_settings WHERE key = 'recount_queued';
