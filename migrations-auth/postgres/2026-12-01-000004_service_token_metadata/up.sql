-- A JSON object (up to 4 KiB) an administrator attaches to a service token;
-- introspection hands it to the service that checks the token.
ALTER TABLE service_tokens ADD COLUMN metadata TEXT;
