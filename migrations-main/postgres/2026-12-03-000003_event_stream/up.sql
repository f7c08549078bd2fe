-- SYNC_TRANSPORT=stream|both: where the follower of the auth service's
-- event feed is (its cursor, stored after the page it names was applied,
-- so a restart resumes there and nothing is skipped), and how it goes,
-- for /health/sync on any replica. One row. One replica follows at a
-- time, under the lease 'event-stream'.
--   polled_at      the last answer from the feed
--   last_event_at  when the newest applied event was written
--   behind         the last page was full: more were waiting
CREATE TABLE event_stream (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    cursor        TEXT,
    polled_at     TIMESTAMPTZ,
    last_event_at TIMESTAMPTZ,
    behind        BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO event_stream (id, cursor, polled_at, last_event_at, behind) VALUES (1, NULL, NULL, NULL, FALSE);
INSERT INTO leases (name, holder, expires_at) VALUES ('event-stream', '', '1970-01-01T00:00:00Z');
