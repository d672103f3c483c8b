using OutboxComms.Core.Policies;

namespace OutboxComms.Tests.Policies;

public sealed class QuietHoursTests
{
    private static readonly TimeZoneInfo Kolkata = TimeZoneInfo.FindSystemTimeZoneById("Asia/Kolkata");
    private static readonly TimeZoneInfo NewYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");
    private static readonly QuietHours Overnight = new(new TimeOnly(22, 0), new TimeOnly(9, 0));

    [Theory]
    [InlineData("2026-11-24T16:29:00Z", null)]                      // 21:59 IST: before the window
    [InlineData("2026-11-24T16:30:00Z", "2026-11-25T03:30:00Z")]    // 22:00 IST: until 09:00 IST tomorrow
    [InlineData("2026-11-24T20:00:00Z", "2026-11-25T03:30:00Z")]    // 01:30 IST, after midnight: until 09:00 IST the same day
    [InlineData("2026-11-25T03:29:00Z", "2026-11-25T03:30:00Z")]    // 08:59 IST
    [InlineData("2026-11-25T03:30:00Z", null)]                      // 09:00 IST: the window has ended
    public void A_window_that_crosses_midnight_defers_to_its_end_in_the_customers_zone(string now, string? expected)
    {
        var until = Overnight.DeferUntil(DateTimeOffset.Parse(now, System.Globalization.CultureInfo.InvariantCulture), Kolkata);

        Assert.Equal(expected is null ? null : DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), until);
    }

    [Fact]
    public void A_daytime_window_defers_only_inside_it()
    {
        var lunch = new QuietHours(new TimeOnly(13, 0), new TimeOnly(14, 0));

        Assert.Null(lunch.DeferUntil(new DateTimeOffset(2026, 11, 24, 7, 29, 0, TimeSpan.Zero), Kolkata));   // 12:59 IST
        Assert.Equal(new DateTimeOffset(2026, 11, 24, 8, 30, 0, TimeSpan.Zero), lunch.DeferUntil(new DateTimeOffset(2026, 11, 24, 7, 30, 0, TimeSpan.Zero), Kolkata));
    }

    [Fact]
    public void When_clocks_fall_back_overnight_the_window_still_ends_at_local_nine()
    {
        // 2026-10-31 23:00 EDT; DST ends at 02:00 on 1 November, so 09:00 that morning is EST (UTC-5):
        // eleven hours of elapsed time, not ten.
        var now = new DateTimeOffset(2026, 11, 1, 3, 0, 0, TimeSpan.Zero);

        var until = Overnight.DeferUntil(now, NewYork);

        Assert.Equal(new DateTimeOffset(2026, 11, 1, 14, 0, 0, TimeSpan.Zero), until);
        Assert.Equal(TimeSpan.FromHours(11), until - now);
    }

    [Fact]
    public void A_window_ending_inside_the_spring_forward_gap_ends_when_the_gap_does()
    {
        // 8 March 2026 in New York: 02:00 EST jumps to 03:00 EDT, so 02:30 never happens.
        var early = new QuietHours(new TimeOnly(1, 0), new TimeOnly(2, 30));
        var now = new DateTimeOffset(2026, 3, 8, 6, 30, 0, TimeSpan.Zero); // 01:30 EST

        var until = early.DeferUntil(now, NewYork);

        Assert.Equal(new DateTimeOffset(2026, 3, 8, 7, 0, 0, TimeSpan.Zero), until); // 03:00 EDT
    }

    [Fact]
    public void A_window_ending_in_the_repeated_hour_ends_at_its_first_occurrence()
    {
        var night = new QuietHours(new TimeOnly(23, 0), new TimeOnly(1, 30));
        var now = new DateTimeOffset(2026, 11, 1, 4, 0, 0, TimeSpan.Zero); // 00:00 EDT on the night clocks fall back

        Assert.Equal(new DateTimeOffset(2026, 11, 1, 5, 30, 0, TimeSpan.Zero), night.DeferUntil(now, NewYork)); // 01:30 EDT, not EST
    }

    [Theory]
    [InlineData("2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z")]   // 01:00 EST, the repeated hour: until 01:30 EST
    [InlineData("2026-11-01T06:10:00Z", "2026-11-01T06:30:00Z")]   // 01:10 EST
    [InlineData("2026-11-01T05:30:00Z", null)]                     // 01:30 EDT: the window's end, the first time
    [InlineData("2026-11-01T06:30:00Z", null)]                     // 01:30 EST: the end, the second time
    public void In_the_repeated_hour_the_window_ends_when_the_clock_shows_its_end_again(string now, string? expected)
    {
        var night = new QuietHours(new TimeOnly(23, 0), new TimeOnly(1, 30));

        var until = night.DeferUntil(DateTimeOffset.Parse(now, System.Globalization.CultureInfo.InvariantCulture), NewYork);

        Assert.Equal(expected is null ? null : DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), until);
    }

    [Theory]
    [InlineData("Asia/Kolkata", true)]
    [InlineData("Asia", false)]        // a directory of the zone database: on Linux the lookup throws a SecurityException
    [InlineData("Etc", false)]
    [InlineData("Mars/Olympus_Mons", false)]
    [InlineData(" ", false)]
    public void A_zone_id_is_found_or_refused_without_throwing(string id, bool found)
    {
        Assert.Equal(found, LocalTimes.TryFindZone(id, out _));
    }

    [Fact]
    public void Equal_start_and_end_means_no_quiet_hours()
    {
        var none = new QuietHours(new TimeOnly(9, 0), new TimeOnly(9, 0));

        Assert.Null(none.DeferUntil(new DateTimeOffset(2026, 11, 24, 3, 30, 0, TimeSpan.Zero), Kolkata));
    }
}
