using OutboxComms.Core.Policies;
using OutboxComms.Core.Preferences;

namespace OutboxComms.Tests.Policies;

public sealed class ReminderFrequencyPolicyTests
{
    private static readonly TimeZoneInfo Kolkata = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata");
    private static readonly TimeZoneInfo NewYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");

    // Wednesday 25 November 2026, 10:00 IST.
    private static readonly DateTimeOffset Wednesday = new(2026, 11, 25, 4, 30, 0, TimeSpan.Zero);

    [Fact]
    public void The_first_reminder_is_always_allowed()
    {
        Assert.Null(ReminderFrequencyPolicy.NextAllowed(null, ReminderFrequency.Daily, null, Kolkata, Wednesday));
    }

    [Theory]
    [InlineData(ReminderFrequency.Daily, "2026-11-25T18:30:00Z")]    // next local midnight (00:00 IST on the 26th)
    [InlineData(ReminderFrequency.Weekly, "2026-11-29T18:30:00Z")]   // Monday 30 November 00:00 IST
    [InlineData(ReminderFrequency.Monthly, "2026-11-30T18:30:00Z")]  // 1 December 00:00 IST
    public void A_second_reminder_in_the_same_period_waits_for_the_next_period(ReminderFrequency frequency, string expected)
    {
        var lastSent = Wednesday.AddHours(-1);

        var next = ReminderFrequencyPolicy.NextAllowed(lastSent, frequency, null, Kolkata, Wednesday);

        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), next);
    }

    [Fact]
    public void A_reminder_in_a_later_period_is_allowed()
    {
        var lastSent = Wednesday.AddDays(-8);

        Assert.Null(ReminderFrequencyPolicy.NextAllowed(lastSent, ReminderFrequency.Weekly, null, Kolkata, Wednesday));
    }

    [Fact]
    public void A_custom_cron_defines_the_periods_in_the_customers_zone()
    {
        // Mondays and Thursdays at 10:00 local.
        const string cron = "0 10 * * MON,THU";
        var lastSent = Wednesday.AddMinutes(-5);

        var next = ReminderFrequencyPolicy.NextAllowed(lastSent, ReminderFrequency.Custom, cron, Kolkata, Wednesday);

        Assert.Equal(new DateTimeOffset(2026, 11, 26, 4, 30, 0, TimeSpan.Zero), next); // Thursday 10:00 IST
        Assert.Null(ReminderFrequencyPolicy.NextAllowed(lastSent, ReminderFrequency.Custom, cron, Kolkata, next!.Value));
    }

    [Fact]
    public void Daily_periods_follow_local_midnight_across_a_DST_change()
    {
        // Sent at 20:00 EDT on 31 October; the next day starts at midnight EDT, still before the change.
        var lastSent = new DateTimeOffset(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
        var next = ReminderFrequencyPolicy.NextAllowed(lastSent, ReminderFrequency.Daily, null, NewYork, lastSent.AddHours(1));
        Assert.Equal(new DateTimeOffset(2026, 11, 1, 4, 0, 0, TimeSpan.Zero), next);

        // The day after that begins at midnight EST: 25 hours later.
        var following = ReminderFrequencyPolicy.NextAllowed(next, ReminderFrequency.Daily, null, NewYork, next!.Value.AddHours(1));
        Assert.Equal(next.Value.AddHours(25), following);
    }

    [Fact]
    public void An_invalid_custom_cron_is_a_format_error()
    {
        Assert.ThrowsAny<FormatException>(() => ReminderFrequencyPolicy.NextAllowed(Wednesday, ReminderFrequency.Custom, "every monday", Kolkata, Wednesday));
    }
}
