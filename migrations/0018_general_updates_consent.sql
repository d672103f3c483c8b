-- General updates get consent records of their own, and can be stopped on one channel only.
--
-- Until now an unsubscribe from general updates (the one-click link, a spam complaint, the email
-- provider's own unsubscribe link) was recorded as an EMAIL opt-out, which reads as "no more email"
-- in the customer's consent history, and a practice re-subscribing the customer through the API
-- left no record at all, so a late complaint about an old email could undo that re-subscription
-- unseen. A record now says what it is about: `scope` CHANNEL (the channel's opt-in, every message
-- on it) or GENERAL_UPDATES (general updates only; `channel` NULL for every channel, or the one
-- channel they were stopped or resumed on).
-- Columns with constant defaults rewrite nothing, and the checks are added NOT VALID so that no
-- table is read in full under its lock (existing rows hold the defaults; new and changed rows are
-- checked). A migration waits at most 10 s for a lock, as 0009-0013 do.
SET LOCAL lock_timeout = '10s';
ALTER TABLE consent_records
    ADD COLUMN scope text NOT NULL DEFAULT 'CHANNEL',
    ADD CONSTRAINT consent_records_scope_check CHECK (scope IN ('CHANNEL', 'GENERAL_UPDATES')) NOT VALID,
    ALTER COLUMN channel DROP NOT NULL,
    ADD CONSTRAINT consent_records_channel_scope CHECK (channel IS NOT NULL OR scope = 'GENERAL_UPDATES') NOT VALID;

-- The general-updates opt-outs recorded so far: the sources OutboxComms itself wrote, by the
-- recipient (one-click) or an email provider's webhook (an API caller records as "api-key:…").
UPDATE consent_records SET scope = 'GENERAL_UPDATES', channel = NULL
 WHERE channel = 'EMAIL' AND NOT opted_in
   AND ((source = 'one-click unsubscribe from general updates' AND recorded_by = 'recipient')
        OR (source IN ('spam complaint: no more general updates',
                       'unsubscribed through the email provider''s link: no more general updates')
            AND recorded_by IN ('SENDGRID', 'MAILGUN', 'RESEND', 'SES')));

-- WhatsApp lets a user stop marketing messages from a business without blocking it (Cloud API
-- error 131050, the user_preferences webhook): general updates stop on that channel alone, while
-- `general_updates_opt_out` still stops them everywhere.
ALTER TABLE communication_preferences
    ADD COLUMN general_updates_opt_out_channels text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT communication_preferences_general_updates_opt_out_channels_check
        CHECK (general_updates_opt_out_channels <@ ARRAY['EMAIL', 'WHATSAPP', 'SMS']) NOT VALID;
