-- Mailgun signs only its timestamp and token, not the event, so a token is accepted with the body
-- it first came with only (0015). 0015 keyed tokens by company: practices that share a signing key
-- (one Mailgun account for several, or subaccounts verified with the primary account's key, which
-- Mailgun sends as "parent-signature") could have a signature seen at one practice's endpoint carry
-- a forged event to another's for the nine hours a signature stays fresh. Mailgun makes a new
-- random 50-character token for every request, so a token at two companies is a replay: from now
-- on a Mailgun token is single-use across all companies (its first body at any company decides).
--
-- Rows live 9 h 15 min (the worker's hourly retention deletes older ones), so the table holds only
-- that window's tokens. Any token already stored for two companies keeps its earliest row (the
-- genuine one, ties by company id); the others are deleted, so the unique index can be built, and
-- a later use at those companies is checked against the first body.
--
-- Writes to webhook_nonces (each Mailgun webhook's token, inserted by the API) wait while this runs:
-- SHARE ROW EXCLUSIVE is taken first, so no duplicate can be inserted between the clean-up and the
-- index build. Measured (2026-12-09, PostgreSQL 15, this host under load): 1,000,000 Mailgun tokens
-- of 50 characters (nine hours at about 30 events a second) with 1,000 stored twice: the clean-up
-- 1.2 s, the index 2.1 s; the table is read twice, nothing else is locked.
SET LOCAL lock_timeout = '10s';
LOCK TABLE webhook_nonces IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM webhook_nonces later
 USING webhook_nonces first
 WHERE later.provider = 'mailgun' AND first.provider = 'mailgun' AND first.nonce = later.nonce
   AND (first.seen_at, first.company_id) < (later.seen_at, later.company_id);
CREATE UNIQUE INDEX ux_webhook_nonces_mailgun ON webhook_nonces (provider, nonce) WHERE provider = 'mailgun';
