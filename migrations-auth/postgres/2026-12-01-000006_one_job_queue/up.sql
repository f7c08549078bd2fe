-- One leased job queue for everything sent in the background (webhook
-- deliveries, mail), in place of two tables with the same queue columns.
-- A job is written in the transaction of the change it reports, claimed
-- with a lease (locked_until), retried with backoff and, when its budget
-- is spent, marked failed.
--   kind     what runs it: 'webhook' (the job's id is its event's id, so
--            the event, its delivery and the webhook-id header share one
--            id) or 'mail'.
--   subject  what it is about, in clear, for lookups and logs: the event
--            type, or '<mail kind>:<address>' (the mail spacing reads it).
--   data     what the job needs that is stored nowhere else: a mail's
--            sealed message, erased once it is sent or given up on.
CREATE TABLE jobs (
    kind            TEXT NOT NULL,
    id              UUID NOT NULL,
    subject         TEXT NOT NULL,
    data            TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    PRIMARY KEY (kind, id)
);
CREATE INDEX jobs_due_idx ON jobs (kind, status, next_attempt_at);
CREATE INDEX jobs_subject_idx ON jobs (kind, subject, created_at);

INSERT INTO jobs (kind, id, subject, data, status, attempts, next_attempt_at,
                  locked_until, last_error, created_at, finished_at)
SELECT 'webhook', id, event_type, NULL,
       CASE status WHEN 'delivered' THEN 'done' ELSE status END,
       attempts, next_attempt_at, locked_until, last_error, created_at, delivered_at
FROM webhook_events;

INSERT INTO jobs (kind, id, subject, data, status, attempts, next_attempt_at,
                  locked_until, last_error, created_at, finished_at)
SELECT 'mail', id, kind || ':' || to_addr, payload_sealed,
       CASE status WHEN 'sent' THEN 'done' ELSE status END,
       attempts, next_attempt_at, locked_until, last_error, created_at, sent_at
FROM mail_queue;

DROP TABLE mail_queue;

-- The outbox keeps what happened (the event log the webhooks, and later
-- other transports, are fed from); how its delivery goes is the job's.
DROP INDEX webhook_events_status_next_idx;
ALTER TABLE webhook_events DROP COLUMN status;
ALTER TABLE webhook_events DROP COLUMN attempts;
ALTER TABLE webhook_events DROP COLUMN next_attempt_at;
ALTER TABLE webhook_events DROP COLUMN locked_until;
ALTER TABLE webhook_events DROP COLUMN last_error;
ALTER TABLE webhook_events DROP COLUMN delivered_at;
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);
