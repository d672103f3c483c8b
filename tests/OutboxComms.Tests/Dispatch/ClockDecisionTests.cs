using OutboxComms.Worker.Dispatch;

namespace OutboxComms.Tests.Dispatch;

/// <summary>
/// The clock rule on its own (ClockDecision.Judge), case by case: which clocks claim, given this
/// worker's measurement against PostgreSQL's and the other workers' rows. The 5 s limit of the
/// production defaults; round trips of 2 ms unless a case says otherwise.
/// </summary>
public sealed class ClockDecisionTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(5);

    private static ClockSample Sample(double skewSeconds, double roundTripMilliseconds = 2) =>
        new(TimeSpan.FromSeconds(skewSeconds), TimeSpan.FromMilliseconds(roundTripMilliseconds), DateTimeOffset.UtcNow, 0);

    private static WorkerClock Running(string id, double skewSeconds, bool claims = false, double roundTripMilliseconds = 2) =>
        new(id, DateTimeOffset.UtcNow, TimeSpan.FromSeconds(skewSeconds), TimeSpan.FromMilliseconds(roundTripMilliseconds), Live: true, ClaimsLive: claims);

    private static ClockVerdict Judge(ClockSample sample, params WorkerClock[] rows) => ClockDecision.Judge(sample, "self", rows, Limit).Verdict;

    [Fact]
    public void A_worker_within_the_limit_of_the_database_claims_alone_and_beside_agreeing_workers()
    {
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(4.9)));
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(-3), Running("a", 2, claims: true), Running("b", 6.9, claims: true)));
    }

    [Fact]
    public void A_worker_alone_far_from_the_database_holds()
    {
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600)));
        // Its own earlier rows are not another worker.
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("self", 600)));
    }

    [Fact]
    public void Workers_far_from_the_database_claim_when_a_strict_majority_of_the_live_ones_agree_with_each_other()
    {
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), Running("a", 604)));
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), Running("a", 601), Running("b", 0)));          // two of three
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 601), Running("b", 0), Running("c", 0)));   // two of four: a tie holds
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 0)));                                      // one of two
    }

    [Fact]
    public void Only_a_workers_last_measurement_votes_and_only_while_it_is_running()
    {
        var earlier = Running("a", 0) with { MeasuredAt = DateTimeOffset.UtcNow.AddSeconds(-30) };
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), earlier with { Skew = TimeSpan.FromSeconds(600) }, Running("a", 0)));
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), earlier, Running("a", 600)));
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 600) with { Live = false }));
    }

    [Fact]
    public void Workers_agree_within_the_limit_given_half_of_each_round_trip()
    {
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 605.2)));
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600, roundTripMilliseconds: 200), Running("a", 605.2, roundTripMilliseconds: 200)));
    }

    [Fact]
    public void A_slow_measurement_far_from_the_database_does_not_claim_by_the_workers_clocks()
    {
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600, roundTripMilliseconds: 1_500), Running("a", 600)));
    }

    [Fact]
    public void No_worker_claims_more_than_twice_the_limit_from_a_clock_whose_leases_may_be_live_whatever_agrees_with_it()
    {
        // Within the database's limit, but another worker claimed 10.5 s away: leases it took end
        // 10.5 s early by this clock.
        var decision = ClockDecision.Judge(Sample(-4), "self", [Running("a", 6.5, claims: true), Running("b", 4)], Limit);
        Assert.Equal(ClockVerdict.ApartFromClaims, decision.Verdict);
        Assert.Equal("a", decision.Apart!.WorkerId);
        // Ten seconds apart as measured, no tolerance given: claims.
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(-4, roundTripMilliseconds: 400), Running("a", 6, claims: true, roundTripMilliseconds: 400)));
        // The majority far from the database, against a minority within its limit that claims.
        Assert.Equal(ClockVerdict.ApartFromClaims, Judge(Sample(600), Running("a", 600), Running("b", 0, claims: true)));
        // The minority, against the majority that claims.
        Assert.Equal(ClockVerdict.ApartFromClaims, Judge(Sample(0), Running("a", 600, claims: true), Running("b", 600, claims: true)));
        // Leases taken on this worker's own clock before it was moved, with no row running.
        Assert.Equal(ClockVerdict.ApartFromClaims, Judge(Sample(600), Running("a", 600), Running("self", 0, claims: true) with { Live = false }));
        // Leases of a worker that stopped running still count until they have ended.
        Assert.Equal(ClockVerdict.ApartFromClaims, Judge(Sample(0), Running("a", 600, claims: true) with { Live = false }));
    }
}
