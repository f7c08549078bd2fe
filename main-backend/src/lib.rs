//! Main backend: mirror of the auth service users plus business data (built in the sync-loop issue).
