DELETE FROM leases WHERE name = 'event-stream';
DROP TABLE event_stream;
