DROP INDEX webhook_events_created_idx;
ALTER TABLE webhook_events ADD COLUMN status TEXT NOT NULL DEFAULT 'delivered';
ALTER TABLE webhook_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_events ADD COLUMN next_attempt_at TIMESTAMPTZ;
ALTER TABLE webhook_events ADD COLUMN locked_until TIMESTAMPTZ;
ALTER TABLE webhook_events ADD COLUMN last_error TEXT;
ALTER TABLE webhook_events ADD COLUMN delivered_at TIMESTAMPTZ;
UPDATE webhook_events SET
    status = (SELECT CASE j.status WHEN 'done' THEN 'delivered' ELSE j.status END
              FROM jobs j WHERE j.kind = 'webhook' AND j.id = webhook_events.id),
    attempts = (SELECT j.attempts FROM jobs j WHERE j.kind = 'webhook' AND j.id = webhook_events.id),
    next_attempt_at = (SELECT j.next_attempt_at FROM jobs j WHERE j.kind = 'webhook' AND j.id = webhook_events.id),
    delivered_at = (SELECT j.finished_at FROM jobs j WHERE j.kind = 'webhook' AND j.id = webhook_events.id);
UPDATE webhook_events SET status = 'delivered' WHERE status IS NULL;
UPDATE webhook_events SET next_attempt_at = created_at WHERE next_attempt_at IS NULL;
CREATE INDEX webhook_events_status_next_idx ON webhook_events (status, next_attempt_at);

CREATE TABLE mail_queue (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL,
    to_addr         TEXT NOT NULL,
    payload_sealed  TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX mail_queue_status_next_idx ON mail_queue (status, next_attempt_at);
INSERT INTO mail_queue (id, kind, to_addr, payload_sealed, status, attempts, next_attempt_at,
                        locked_until, last_error, created_at, sent_at)
SELECT id, split_part(subject, ':', 1), substr(subject, strpos(subject, ':') + 1), data,
       CASE status WHEN 'done' THEN 'sent' ELSE status END,
       attempts, next_attempt_at, locked_until, last_error, created_at, finished_at
FROM jobs WHERE kind = 'mail';
DROP TABLE jobs;
