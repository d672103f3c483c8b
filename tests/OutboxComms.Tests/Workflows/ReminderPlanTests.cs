using OutboxComms.Core.Messages;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Tests.Workflows;

public sealed class ReminderPlanTests
{
    private static readonly TimeZoneInfo Kolkata = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata");
    private static readonly TimeZoneInfo NewYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");

    [Fact]
    public void A_step_fires_at_its_local_send_time_in_the_customers_zone()
    {
        var tenAm = new TimeOnly(10, 0);

        Assert.Equal(At("2026-11-12T04:30:00Z"), ReminderPlan.StepTime(new DateOnly(2026, 11, 19), -7, tenAm, Kolkata));
        Assert.Equal(At("2026-11-12T15:00:00Z"), ReminderPlan.StepTime(new DateOnly(2026, 11, 19), -7, tenAm, NewYork));
    }

    [Fact]
    public void Steps_keep_their_local_time_across_a_DST_change()
    {
        // New York springs forward on 8 March 2026 at 02:00 and falls back on 1 November 2026 at 02:00.
        var due = new DateOnly(2026, 3, 10);

        Assert.Equal(At("2026-03-07T15:00:00Z"), ReminderPlan.StepTime(due, -3, new TimeOnly(10, 0), NewYork));   // EST, UTC−5
        Assert.Equal(At("2026-03-11T14:00:00Z"), ReminderPlan.StepTime(due, 1, new TimeOnly(10, 0), NewYork));    // EDT, UTC−4
        // 02:30 does not exist on 8 March: the first valid moment after the gap, 03:00 EDT.
        Assert.Equal(At("2026-03-08T07:00:00Z"), ReminderPlan.StepTime(due, -2, new TimeOnly(2, 30), NewYork));
        // 01:30 happens twice on 1 November: the first time (EDT).
        Assert.Equal(At("2026-11-01T05:30:00Z"), ReminderPlan.StepTime(new DateOnly(2026, 11, 2), -1, new TimeOnly(1, 30), NewYork));
    }

    [Fact]
    public void The_due_date_ends_at_local_midnight_and_grace_counts_local_days()
    {
        var draft = new ReminderDraft(Guid.NewGuid(), Guid.NewGuid(), MessageType.PaymentReminder, "Invoice INV-1042", new DateOnly(2026, 3, 6), 3, null,
            [new StepDraft(-1, new TimeOnly(10, 0), "payment-reminder", Channel.Preferred)]);

        var reminder = ReminderPlan.Create(draft, "America/New_York", NewYork, NewYork, At("2026-01-01T00:00:00Z"));

        Assert.Equal(At("2026-03-07T05:00:00Z"), reminder.DueAt);          // midnight EST after 6 March
        Assert.Equal(At("2026-03-10T04:00:00Z"), reminder.GraceEndsAt);    // midnight EDT after 9 March
    }

    [Fact]
    public void The_deadline_is_the_practices_midnight_while_the_steps_keep_the_clients_clock()
    {
        // An Indian practice's client in New York: MGT-7 due 19 November is late from midnight IST.
        var draft = new ReminderDraft(Guid.NewGuid(), Guid.NewGuid(), MessageType.ComplianceReminder, "MGT-7 for FY 2025-26", new DateOnly(2026, 11, 19), 2, null,
            [new StepDraft(-1, new TimeOnly(10, 0), "compliance-reminder", Channel.Preferred)]);

        var reminder = ReminderPlan.Create(draft, "America/New_York", NewYork, Kolkata, At("2026-11-01T00:00:00Z"));

        Assert.Equal(At("2026-11-18T15:00:00Z"), Assert.Single(reminder.Steps).FireAt);   // 10:00 EST on 18 November
        Assert.Equal(At("2026-11-19T18:30:00Z"), reminder.DueAt);                        // midnight IST after 19 November, 13:30 EST
        Assert.Equal(At("2026-11-21T18:30:00Z"), reminder.GraceEndsAt);
        Assert.Equal("America/New_York", reminder.TimeZone);
    }

    [Fact]
    public void Steps_are_ordered_by_time_and_those_already_past_at_creation_are_skipped_with_the_reason()
    {
        var draft = new ReminderDraft(Guid.NewGuid(), Guid.NewGuid(), MessageType.ComplianceReminder, "MGT-7 for FY 2025-26", new DateOnly(2026, 11, 19), 0, null,
        [
            new StepDraft(1, new TimeOnly(10, 0), "overdue", Channel.Preferred),
            new StepDraft(-30, new TimeOnly(10, 0), "reminder", Channel.Preferred),
            new StepDraft(-7, new TimeOnly(10, 0), "reminder", Channel.Email),
        ]);

        var reminder = ReminderPlan.Create(draft, "Asia/Kolkata", Kolkata, Kolkata, At("2026-11-01T00:00:00Z"));

        Assert.Equal([-30, -7, 1], reminder.Steps.Select(s => s.OffsetDays));
        Assert.Equal([1, 2, 3], reminder.Steps.Select(s => s.Position));
        Assert.Equal([StepState.Skipped, StepState.Scheduled, StepState.Scheduled], reminder.Steps.Select(s => s.State));
        Assert.Equal("its time (2026-10-20 04:30:00Z) had passed when the reminder was created", reminder.Steps[0].StateReason);
    }

    [Fact]
    public void A_step_on_the_due_date_that_would_come_after_the_deadline_for_a_client_far_west_goes_the_day_before_unless_another_step_already_does()
    {
        // MGT-7 due 19 November is late from 18:30Z, 08:30 in Honolulu: its 10:00 on the 19th is too late.
        var honolulu = TimeZoneInfo.FindSystemTimeZoneById("Pacific/Honolulu");
        StepDraft Step(int offset) => new(offset, new TimeOnly(10, 0), "reminder", Channel.Preferred);
        ReminderDraft Draft(params StepDraft[] steps) => new(Guid.NewGuid(), Guid.NewGuid(), MessageType.ComplianceReminder, "MGT-7 for FY 2025-26", new DateOnly(2026, 11, 19), 0, null, steps);

        var alone = ReminderPlan.Create(Draft(Step(-7), Step(0), Step(1)), "Pacific/Honolulu", honolulu, Kolkata, At("2026-11-01T00:00:00Z"));

        Assert.Equal([At("2026-11-12T20:00:00Z"), At("2026-11-18T20:00:00Z"), At("2026-11-20T20:00:00Z")], alone.Steps.Select(s => s.FireAt));
        Assert.Equal([StepState.Scheduled, StepState.Scheduled, StepState.Scheduled], alone.Steps.Select(s => s.State));
        Assert.Equal("moved to 2026-11-18 10:00 in the customer's zone (Pacific/Honolulu): on 2026-11-19 it would have come after the due date ends in the company's zone (2026-11-19 18:30:00Z)",
            alone.Steps[1].StateReason);
        Assert.Null(alone.Steps[0].StateReason);
        Assert.Null(alone.Steps[2].StateReason);   // an overdue notice is meant for after the deadline

        var withDayBefore = ReminderPlan.Create(Draft(Step(-1), Step(0)), "Pacific/Honolulu", honolulu, Kolkata, At("2026-11-01T00:00:00Z"));

        Assert.Equal([(-1, StepState.Scheduled), (0, StepState.Skipped)], withDayBefore.Steps.Select(s => (s.OffsetDays, s.State)));
        Assert.EndsWith(", where the step of offsetDays -1 already reminds the client", withDayBefore.Steps[1].StateReason, StringComparison.Ordinal);

        // Created at 11:00 in Honolulu the day before (21:00Z): the day before's 10:00 has passed, the deadline has not.
        var late = At("2026-11-18T21:00:00Z");
        var lastChance = ReminderPlan.Create(Draft(Step(-7), Step(0)), "Pacific/Honolulu", honolulu, Kolkata, late);
        Assert.Equal([(-7, StepState.Skipped, At("2026-11-12T20:00:00Z")), (0, StepState.Scheduled, late)], lastChance.Steps.Select(s => (s.OffsetDays, s.State, s.FireAt)));
        Assert.StartsWith("moved to when the reminder was created: on 2026-11-19 it would have come after", lastChance.Steps[1].StateReason, StringComparison.Ordinal);
        // Two steps on the due date (09:00 and 10:00), both moved to now: one of them goes, not none.
        var twoMoved = ReminderPlan.Create(Draft(new StepDraft(0, new TimeOnly(9, 0), "reminder", Channel.Preferred), Step(0)), "Pacific/Honolulu", honolulu, Kolkata, late);
        Assert.Equal([StepState.Skipped, StepState.Scheduled], twoMoved.Steps.Select(s => s.State));
        Assert.Equal([late, late], twoMoved.Steps.Select(s => s.FireAt));
        Assert.EndsWith("where the step of offsetDays 0 already reminds the client", twoMoved.Steps[0].StateReason, StringComparison.Ordinal);
        // After the deadline, nothing is moved to now: it is skipped as passed.
        var tooLate = ReminderPlan.Create(Draft(Step(0), Step(1)), "Pacific/Honolulu", honolulu, Kolkata, At("2026-11-19T19:00:00Z"));
        Assert.Equal([StepState.Skipped, StepState.Scheduled], tooLate.Steps.Select(s => s.State));

        // Far east, the overdue notice: the day after at 04:00 and 05:00 in Sydney (17:00Z, 18:00Z) come
        // before the deadline (18:30Z on the 19th): the filing is not overdue yet; both go at the
        // deadline, which is one notice, not two.
        var sydney = TimeZoneInfo.FindSystemTimeZoneById("Australia/Sydney");
        var east = ReminderPlan.Create(Draft(new StepDraft(1, new TimeOnly(4, 0), "overdue", Channel.Preferred), new StepDraft(1, new TimeOnly(5, 0), "overdue", Channel.Preferred)),
            "Australia/Sydney", sydney, Kolkata, At("2026-11-01T00:00:00Z"));
        Assert.Equal([(StepState.Skipped, At("2026-11-19T18:30:00Z")), (StepState.Scheduled, At("2026-11-19T18:30:00Z"))], east.Steps.Select(s => (s.State, s.FireAt)));
        Assert.StartsWith("moved to when the due date ends in the company's zone (2026-11-19 18:30:00Z): at 2026-11-20 05:00", east.Steps[1].StateReason, StringComparison.Ordinal);
        // At 10:00 in Sydney (23:00Z) the day after, it is overdue: nothing moves.
        var eastLater = ReminderPlan.Create(Draft(Step(1)), "Australia/Sydney", sydney, Kolkata, At("2026-11-01T00:00:00Z"));
        Assert.Equal((At("2026-11-19T23:00:00Z"), (string?)null), (eastLater.Steps[0].FireAt, eastLater.Steps[0].StateReason));

        // Where the due date's 10:00 comes before the deadline (New York: 15:00Z), nothing moves.
        var newYork = ReminderPlan.Create(Draft(Step(-1), Step(0)), "America/New_York", NewYork, Kolkata, At("2026-11-01T00:00:00Z"));
        Assert.Equal([At("2026-11-18T15:00:00Z"), At("2026-11-19T15:00:00Z")], newYork.Steps.Select(s => s.FireAt));
        Assert.All(newYork.Steps, s => Assert.Null(s.StateReason));
    }

    private static DateTimeOffset At(string utc) => DateTimeOffset.Parse(utc, System.Globalization.CultureInfo.InvariantCulture);
}
