-- OutboxComms schema, version 1.
--
-- Plain SQL on purpose: business applications in any language enqueue messages by inserting into
-- communication_logs inside their own transaction, so this file *is* the contract. Every column
-- a producer does not name has a default. Applied by `OutboxComms.Worker migrate`, which records
-- the version in schema_migrations under an advisory lock (safe to run from many processes).
--
-- Conventions: snake_case, timestamptz for every instant (UTC), enums stored as upper-case text
-- guarded by CHECK constraints, secrets only ever in `*_encrypted` bytea columns (AES-256-GCM
-- envelopes written by the application: version, key id, nonce, tag, ciphertext).

CREATE TABLE companies (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text        NOT NULL,
    time_zone         text        NOT NULL DEFAULT 'Asia/Kolkata',
    default_language  text        NOT NULL DEFAULT 'en',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per company: which providers it uses and their (encrypted) credentials.
CREATE TABLE company_settings (
    company_id                        uuid        PRIMARY KEY REFERENCES companies (id) ON DELETE CASCADE,

    email_provider                    text        CHECK (email_provider IN ('SMTP', 'SENDGRID', 'RESEND', 'MAILGUN', 'AWS_SES')),
    email_enabled                     boolean     NOT NULL DEFAULT false,
    smtp_host                         text,
    smtp_port                         integer     CHECK (smtp_port BETWEEN 1 AND 65535),
    smtp_security                     text        NOT NULL DEFAULT 'STARTTLS' CHECK (smtp_security IN ('STARTTLS', 'SSL_ON_CONNECT', 'NONE', 'AUTO')),
    smtp_username                     text,
    smtp_password_encrypted           bytea,
    email_api_key_encrypted           bytea,      -- SendGrid / Resend / Mailgun key, SES secret access key
    email_api_user                    text,       -- Mailgun domain, SES access key id
    email_region                      text,       -- SES region, Mailgun EU/US
    email_base_url                    text,       -- regional endpoint or test server
    email_webhook_secret_encrypted    bytea,
    from_email                        text,
    from_name                         text,
    reply_to_email                    text,

    whatsapp_provider                 text        CHECK (whatsapp_provider IN ('WHATSAPP_BUSINESS_API', 'TWILIO', 'MESSAGEBIRD', 'GUPSHUP')),
    whatsapp_enabled                  boolean     NOT NULL DEFAULT false,
    whatsapp_api_key_encrypted        bytea,      -- Cloud API bearer token, Twilio auth token, MessageBird/Gupshup key
    whatsapp_phone_id                 text,       -- Cloud API phone-number id, MessageBird channel id, Gupshup app name
    whatsapp_account_sid              text,       -- Twilio account SID
    whatsapp_from_number              text,
    whatsapp_base_url                 text,
    whatsapp_webhook_secret_encrypted bytea,      -- Meta app secret / MessageBird signing key
    whatsapp_verify_token_encrypted   bytea,      -- Meta webhook verification token

    sms_provider                      text        CHECK (sms_provider IN ('TWILIO', 'MESSAGEBIRD', 'GUPSHUP')),
    sms_enabled                       boolean     NOT NULL DEFAULT false,
    sms_api_key_encrypted             bytea,
    sms_account_sid                   text,
    sms_from_number                   text,       -- number or DLT-registered sender id
    sms_base_url                      text,
    sms_dlt_entity_id                 text,       -- India DLT principal entity id
    sms_dlt_template_id               text,       -- default DLT content template id

    default_email_template_key        text,
    default_whatsapp_template_key     text,
    default_sms_template_key          text,

    -- Rate card, used when the provider does not report a price.
    email_cost                        numeric(12, 6),
    whatsapp_cost                     numeric(12, 6),
    sms_cost                          numeric(12, 6),
    cost_currency                     text        NOT NULL DEFAULT 'INR',

    updated_at                        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id                  uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id          uuid        NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    external_id         text,       -- the business application's own id for this client
    name                text        NOT NULL,
    email               text,
    phone               text,
    whatsapp_number     text,
    preferred_language  text        NOT NULL DEFAULT 'en',
    time_zone           text        NOT NULL DEFAULT 'Asia/Kolkata',  -- IANA
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz
);
CREATE INDEX ix_customers_company ON customers (company_id, id);
CREATE UNIQUE INDEX ux_customers_company_external_id ON customers (company_id, external_id) WHERE external_id IS NOT NULL;

-- Defaults: email on (an existing client expects invoices by email), WhatsApp and SMS off until the
-- client opts in (WhatsApp Business policy and India's DPDP Act require explicit consent).
CREATE TABLE communication_preferences (
    id                           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id                  uuid        NOT NULL UNIQUE REFERENCES customers (id) ON DELETE CASCADE,
    email_opt_in                 boolean     NOT NULL DEFAULT true,
    whatsapp_opt_in              boolean     NOT NULL DEFAULT false,
    sms_opt_in                   boolean     NOT NULL DEFAULT false,
    invoice_delivery_channel     text        NOT NULL DEFAULT 'EMAIL' CHECK (invoice_delivery_channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'BOTH')),
    compliance_reminder_channel  text        NOT NULL DEFAULT 'EMAIL' CHECK (compliance_reminder_channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'BOTH')),
    payment_reminder_channel     text        NOT NULL DEFAULT 'EMAIL' CHECK (payment_reminder_channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'BOTH')),
    general_updates_channel      text        NOT NULL DEFAULT 'EMAIL' CHECK (general_updates_channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'BOTH')),
    reminder_frequency           text        NOT NULL DEFAULT 'WEEKLY' CHECK (reminder_frequency IN ('DAILY', 'WEEKLY', 'MONTHLY', 'CUSTOM')),
    reminder_cron                text,       -- Cronos expression, required when reminder_frequency = 'CUSTOM'
    quiet_hours_start            time,       -- local time in the customer's time zone; may be after end (crosses midnight)
    quiet_hours_end              time,
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    CHECK (reminder_frequency <> 'CUSTOM' OR reminder_cron IS NOT NULL),
    CHECK ((quiet_hours_start IS NULL) = (quiet_hours_end IS NULL))
);

-- Every opt-in / opt-out, so a practice can show when and how a client consented.
CREATE TABLE consent_records (
    id           bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    company_id   uuid        NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    customer_id  uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    channel      text        NOT NULL CHECK (channel IN ('EMAIL', 'WHATSAPP', 'SMS')),
    opted_in     boolean     NOT NULL,
    source       text        NOT NULL,   -- api, webhook (e.g. Twilio STOP), import, ...
    recorded_by  text        NOT NULL,   -- api key name, provider, ops user
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_consent_records_customer ON consent_records (customer_id, recorded_at);

CREATE TABLE message_templates (
    id                          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id                  uuid        NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    key                         text        NOT NULL,
    channel                     text        NOT NULL CHECK (channel IN ('EMAIL', 'WHATSAPP', 'SMS')),
    language                    text        NOT NULL DEFAULT 'en',
    subject                     text,
    body                        text        NOT NULL,
    html_body                   text,
    provider_template_name      text,       -- WhatsApp: the provider-approved template name
    provider_template_language  text,
    parameter_mapping           jsonb       NOT NULL DEFAULT '[]',  -- WhatsApp: ordered Scriban expressions for {{1}}, {{2}}, ...
    version                     integer     NOT NULL DEFAULT 1,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, key, channel, language)
);

CREATE TABLE api_keys (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    company_id    uuid        NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name          text        NOT NULL,
    key_prefix    text        NOT NULL,          -- first characters, shown to identify a key
    key_hash      bytea       NOT NULL UNIQUE,   -- SHA-256 of the whole key; the key itself is never stored
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX ix_api_keys_company ON api_keys (company_id);

-- The outbox. One row per message per channel. Kept narrow (attachments and attempts live in side
-- tables) and with few indexes, because every status change rewrites every index entry.
--
-- Minimal producer insert:
--   INSERT INTO communication_logs (company_id, customer_id, type, channel, subject, content)
--   VALUES ($1, $2, 'INVOICE', 'EMAIL', 'Invoice INV-1042', 'Dear client, ...');
-- or with a template:
--   INSERT INTO communication_logs (company_id, customer_external_id, type, channel, template_key, template_data)
--   VALUES ($1, 'CLIENT-77', 'COMPLIANCE_REMINDER', 'PREFERRED', 'mgt7-reminder', '{"form":"MGT-7"}');
CREATE TABLE communication_logs (
    id                    bigint        GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    company_id            uuid          NOT NULL REFERENCES companies (id),
    -- No foreign key on the customer on purpose: a bad customer reference must not abort the
    -- producer's business transaction; the worker marks such a row FAILED with the reason.
    customer_id           uuid,
    customer_external_id  text,
    type                  text          NOT NULL CHECK (type IN ('INVOICE', 'COMPLIANCE_REMINDER', 'PAYMENT_REMINDER', 'GENERAL_UPDATE')),
    channel               text          NOT NULL CHECK (channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'VOICE', 'BOTH', 'PREFERRED')),
    requested_channel     text          CHECK (requested_channel IN ('EMAIL', 'WHATSAPP', 'SMS', 'VOICE', 'BOTH', 'PREFERRED')),
    subject               text,
    content               text,
    template_key          text,
    template_data         jsonb         NOT NULL DEFAULT '{}',
    template_used         text,         -- key@version/channel/language actually rendered
    status                text          NOT NULL DEFAULT 'PENDING'
                                        CHECK (status IN ('PENDING', 'SENT', 'DELIVERED', 'READ', 'FAILED', 'BOUNCED', 'SUPPRESSED', 'CANCELLED')),
    status_reason         text,         -- why it was deferred, suppressed or cancelled, in words
    error_message         text,
    retry_count           integer       NOT NULL DEFAULT 0,
    max_retries           integer       NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    metadata              jsonb         NOT NULL DEFAULT '{}',
    idempotency_key       text,
    created_at            timestamptz   NOT NULL DEFAULT now(),
    updated_at            timestamptz   NOT NULL DEFAULT now(),
    next_attempt_at       timestamptz   NOT NULL DEFAULT now(),  -- not before; also moved to the lease end while claimed
    expires_at            timestamptz,
    locked_until          timestamptz,
    locked_by             text,
    sent_at               timestamptz,
    delivered_at          timestamptz,
    read_at               timestamptz,
    response_at           timestamptz,
    failed_at             timestamptz,
    provider_name         text,
    provider_message_id   text,
    cost                  numeric(12, 6),
    cost_currency         text,
    CHECK (content IS NOT NULL OR template_key IS NOT NULL),
    CHECK (customer_id IS NOT NULL OR customer_external_id IS NOT NULL)
) WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- The claim scans this range and nothing else; its key order is the claim's ORDER BY.
CREATE INDEX ix_communication_logs_due ON communication_logs (next_attempt_at, id) WHERE status = 'PENDING';
-- Listing and analytics per company (keyset pagination on id).
CREATE INDEX ix_communication_logs_company ON communication_logs (company_id, id);
CREATE UNIQUE INDEX ux_communication_logs_idempotency ON communication_logs (company_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Delivery webhooks find the message by the provider's id.
CREATE INDEX ix_communication_logs_provider_message ON communication_logs (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- Wake workers at once. Statement-level, so a bulk insert of 10,000 rows sends one notification.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_pending', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER communication_logs_notify AFTER INSERT ON communication_logs
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE communication_attachments (
    id            bigint  GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id    bigint  NOT NULL REFERENCES communication_logs (id) ON DELETE CASCADE,
    file_name     text    NOT NULL,
    content_type  text    NOT NULL DEFAULT 'application/octet-stream',
    content       bytea,
    url           text,
    size_bytes    bigint,
    CHECK (content IS NOT NULL OR url IS NOT NULL)
);
CREATE INDEX ix_communication_attachments_message ON communication_attachments (message_id);

-- One row per provider attempt, for ops ("why did this fail, and how slow was the provider?").
CREATE TABLE communication_attempts (
    id                   bigint      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id           bigint      NOT NULL,
    company_id           uuid        NOT NULL,
    attempt_no           integer     NOT NULL,
    attempted_at         timestamptz NOT NULL DEFAULT now(),
    channel              text        NOT NULL,
    provider_name        text,
    outcome              text        NOT NULL CHECK (outcome IN ('SENT', 'TRANSIENT_FAILURE', 'PERMANENT_FAILURE')),
    error_message        text,
    provider_latency_ms  integer
);
CREATE INDEX ix_communication_attempts_message ON communication_attempts (message_id, attempt_no);
