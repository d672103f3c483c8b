using OutboxComms.Core.Policies;

namespace OutboxComms.Tests.Policies;

public sealed class RetryScheduleTests
{
    [Fact]
    public void Without_jitter_each_delay_is_the_golden_ratio_times_the_last()
    {
        var delays = Enumerable.Range(1, 5)
            .Select(n => RetrySchedule.Delay(n, TimeSpan.FromSeconds(10), 0, TimeSpan.FromDays(1)))
            .ToList();

        Assert.Equal(TimeSpan.FromSeconds(16.18), delays[0]);
        for (var i = 1; i < delays.Count; i++)
        {
            Assert.Equal(1.618, delays[i] / delays[i - 1], 6);
        }
    }

    [Fact]
    public void Jitter_spreads_delays_within_its_bounds()
    {
        var random = new Random(42);
        var delays = Enumerable.Range(0, 500).Select(_ => RetrySchedule.Delay(2, TimeSpan.FromSeconds(10), 0.1, TimeSpan.FromDays(1), random: random).TotalSeconds).ToList();

        var exact = 10 * 1.618 * 1.618;
        Assert.All(delays, d => Assert.InRange(d, exact * 0.9, exact * 1.1));
        Assert.True(delays.Distinct().Count() > 400, "jitter should spread the delays");
    }

    [Fact]
    public void Delays_at_the_cap_keep_their_jitter_so_waiting_messages_do_not_return_together()
    {
        var random = new Random(7);
        var delays = Enumerable.Range(0, 200).Select(_ => RetrySchedule.Delay(30, TimeSpan.FromSeconds(10), 0.1, TimeSpan.FromMinutes(5), random: random).TotalSeconds).ToList();

        Assert.All(delays, d => Assert.InRange(d, 270, 330));
        Assert.True(delays.Distinct().Count() > 150, "capped delays should still be spread");
    }

    [Fact]
    public void Delays_are_capped_and_never_shorter_than_retry_after()
    {
        Assert.Equal(TimeSpan.FromMinutes(5), RetrySchedule.Delay(30, TimeSpan.FromSeconds(10), 0, TimeSpan.FromMinutes(5)));
        Assert.Equal(TimeSpan.FromMinutes(2), RetrySchedule.Delay(1, TimeSpan.FromSeconds(10), 0, TimeSpan.FromHours(1), TimeSpan.FromMinutes(2)));
        // An hour's throttling beyond a 30-minute cap is still honoured…
        Assert.Equal(TimeSpan.FromHours(1), RetrySchedule.Delay(1, TimeSpan.FromSeconds(10), 0, TimeSpan.FromMinutes(30), TimeSpan.FromHours(1)));
        // …a bogus Retry-After of years only up to a day, or up to a longer cap.
        Assert.Equal(TimeSpan.FromDays(1), RetrySchedule.Delay(1, TimeSpan.FromSeconds(10), 0, TimeSpan.FromMinutes(30), TimeSpan.FromDays(3650)));
        Assert.Equal(TimeSpan.FromDays(7), RetrySchedule.Delay(1, TimeSpan.FromSeconds(10), 0, TimeSpan.FromDays(7), TimeSpan.MaxValue));
    }
}
