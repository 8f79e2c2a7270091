-- Searches by item (what ResultsDB and people look up) and by task, newest first.
CREATE INDEX jobs_item_idx ON jobs (item, created_at);
CREATE INDEX jobs_taskname_idx ON jobs (taskname, created_at);
