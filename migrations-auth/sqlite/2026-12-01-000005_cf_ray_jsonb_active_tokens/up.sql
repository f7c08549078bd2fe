-- Cloudflare's id of the request (the cf-ray header), beside our own
-- request id, so one request can be followed from the edge to the audit row.
ALTER TABLE authentication_events ADD COLUMN cf_ray TEXT;
-- Token metadata stays JSON text here (jsonb on PostgreSQL).
-- Active tokens only: what revoking every active token and listing them read.
CREATE INDEX service_tokens_active_idx ON service_tokens (created_at, id) WHERE revoked_at IS NULL;
