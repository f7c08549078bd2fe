-- Cloudflare's id of the request (the cf-ray header), beside our own
-- request id, so one request can be followed from the edge to the audit row.
ALTER TABLE authentication_events ADD COLUMN cf_ray TEXT;
-- Token metadata is JSON: jsonb, so operators can query it
-- (SELECT name FROM service_tokens WHERE metadata->>'team' = 'billing').
ALTER TABLE service_tokens ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb;
-- Active tokens only (most rows of a long-lived deployment are revoked
-- ones): what revoking every active token and listing them read.
CREATE INDEX service_tokens_active_idx ON service_tokens (created_at, id) WHERE revoked_at IS NULL;
