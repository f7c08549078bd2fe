DROP TABLE event_feed;
DROP INDEX webhook_events_unstamped_idx;
DROP INDEX webhook_events_seq_key;
ALTER TABLE webhook_events DROP COLUMN seq;
