-- A calendar reminder that was resolved (the filing made, or planned on a wrong AGM date) may be
-- created again for the same customer, filing and year: only one ACTIVE reminder per filing and
-- year is unique now. The API re-creates a resolved one only when the request names the filing.
DROP INDEX ux_reminders_calendar;
CREATE UNIQUE INDEX ux_reminders_calendar ON reminders (customer_id, calendar_key, financial_year)
    WHERE calendar_key IS NOT NULL AND status = 'ACTIVE';
