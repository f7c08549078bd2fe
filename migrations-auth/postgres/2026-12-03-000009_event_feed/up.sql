-- The event feed (GET /internal/v1/events): every outbox event gets a
-- feed position, seq, stamped after its transaction committed by one
-- sequencer at a time (auth-service/src/feed.rs). Positions are given in
-- stamping order, max + 1, so the positions a reader can see are always
-- 1..head with no hole: an event whose transaction commits late is
-- stamped late, above every position handed out before. NULL until
-- stamped (at most a moment after commit).
ALTER TABLE webhook_events ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX webhook_events_seq_key ON webhook_events (seq);
CREATE INDEX webhook_events_unstamped_idx ON webhook_events (created_at, id) WHERE seq IS NULL;
-- One row.
--   pruned_through    the highest position pruned: a cursor below it has
--                     missed events for good (410 cursor_expired)
--   nats_cursor       the position published to NATS JetStream up to
--                     (AUTH_EVENTS_NATS_URL; NULL until first configured);
--                     pruning waits for it while a publisher is alive
--   nats_holder,      the replica publishing, and until when (one at a
--   nats_lease_until  time, so events go out in feed order)
CREATE TABLE event_feed (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through   BIGINT NOT NULL,
    nats_cursor      BIGINT,
    nats_holder      TEXT,
    nats_lease_until TIMESTAMPTZ
);
INSERT INTO event_feed (id, pruned_through) VALUES (1, 0);
