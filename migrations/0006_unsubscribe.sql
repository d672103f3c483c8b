-- One-click unsubscribe (RFC 8058) applies to general updates only: a client who no longer wants
-- newsletters must still receive invoices and statutory reminders.
ALTER TABLE communication_preferences ADD COLUMN general_updates_opt_out boolean NOT NULL DEFAULT false;
