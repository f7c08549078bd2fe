ALTER TABLE service_tokens DROP COLUMN metadata;
