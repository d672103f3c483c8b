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

    /// <summary>This worker: process "self" of Dispatch:WorkerId "w-self" on host "h-self".</summary>
    private static readonly WorkerClocks.Self Self = new("w-self#1", "h-self");

    /// <summary>A running worker's last row; each on a host of its own unless the case says otherwise.</summary>
    private static WorkerClock Running(string id, double skewSeconds, bool claims = false, double roundTripMilliseconds = 2, string? host = "") =>
        new(id == "self" ? Self.Name : id, host == "" ? (id == "self" ? Self.Host : "h-" + id) : host, DateTimeOffset.UtcNow, TimeSpan.FromSeconds(skewSeconds), TimeSpan.FromMilliseconds(roundTripMilliseconds), Live: true,
            ClaimsLeft: claims ? TimeSpan.FromMinutes(2) : null);

    private static ClockDecision Decide(ClockSample sample, DatabaseStepView step, params WorkerClock[] rows) => ClockDecision.Judge(sample, Self, rows, Limit, step);

    private static ClockVerdict Judge(ClockSample sample, params WorkerClock[] rows) => Decide(sample, DatabaseStepView.None, rows).Verdict;

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
        var decision = Decide(Sample(-4), DatabaseStepView.None, Running("a", 6.5, claims: true), Running("b", 4));
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

    [Fact]
    public void A_host_casts_one_vote_whatever_the_number_of_its_workers_and_this_workers_own_host_none_beside_it()
    {
        // Two replicas on one host agree with this worker: one vote, not two (two of four hosts: a tie holds).
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 600, host: "h-x"), Running("b", 600, host: "h-x"), Running("c", 0), Running("d", 0)));
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), Running("a", 600), Running("b", 600), Running("c", 0), Running("d", 0)));
        // A replica on this worker's own host, or its own earlier process there, is its own clock again.
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("a", 600, host: Self.Host)));
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("w-self#0", 600, host: Self.Host)));
    }

    [Fact]
    public void A_worker_of_a_build_that_names_no_host_votes_as_a_host_of_its_own_unless_it_has_this_workers_id()
    {
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), Running("old#1", 600, host: null), Running("b", 0)));
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Judge(Sample(600), Running("old#1", 600, host: null), Running("old#2", 600, host: null), Running("b", 0), Running("c", 0)));
        // The same Dispatch:WorkerId with no host may be this worker's previous process: no vote.
        Assert.Equal(ClockVerdict.Skewed, Judge(Sample(600), Running("w-self#0", 600, host: null)));
    }

    private static readonly TimeSpan TenMinutes = TimeSpan.FromMinutes(10);

    private static DatabaseStepView Seen(TimeSpan step) => new(step, MarkedBefore: false);

    [Fact]
    public void A_worker_that_sees_the_database_clock_step_carries_its_own_rows_across_and_marks_the_step()
    {
        // The database's clock and this worker's (on its host) stepped ten minutes forward together:
        // its skew did not move, but leases it took before are on a clock ten minutes behind its own now.
        var decision = Decide(Sample(0), Seen(TenMinutes), Running("self", 0, claims: true));
        Assert.Equal(ClockVerdict.ApartFromClaims, decision.Verdict);
        Assert.Equal(TenMinutes, decision.MarkStep);
        Assert.True(decision.StepMarksSeen);
        // Without a step its earlier clock is its clock.
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(0), Running("self", 0, claims: true)));
    }

    [Fact]
    public void After_a_step_a_row_not_carried_across_it_holds_a_worker_it_may_be_far_from_on_either_side()
    {
        // Another worker claimed before the step and has not measured since: its 0 may be on the old
        // footing (ten minutes from this worker's clock) or the new.
        Assert.Equal(ClockVerdict.ApartFromClaims, Decide(Sample(0), Seen(TenMinutes), Running("a", 0, claims: true)).Verdict);
        Assert.Equal(ClockVerdict.ApartFromClaims, Decide(Sample(0), Seen(TenMinutes), Running("a", 600, claims: true)).Verdict);
        // Once it has measured again and marked the step too, its rows count as they are.
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), Seen(TenMinutes), Running("a", 0, claims: true) with { DatabaseStep = TenMinutes }).Verdict);
        // A step small enough that both footings are within twice the limit holds nobody.
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), Seen(TimeSpan.FromSeconds(3)), Running("a", 2, claims: true)).Verdict);
    }

    [Fact]
    public void After_a_forward_step_claims_written_before_it_count_for_that_much_longer()
    {
        // Its claims_until came ten minutes early by the database's new clock: a minute past, it may be live for nine more.
        var early = Running("a", 600, claims: true) with { ClaimsLeft = TimeSpan.FromMinutes(-1) };
        Assert.Equal(ClockVerdict.ApartFromClaims, Decide(Sample(0), Seen(TenMinutes), early).Verdict);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), Seen(-TenMinutes), early).Verdict);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(0), early));
    }

    [Fact]
    public void While_a_step_is_recent_a_worker_that_has_not_marked_it_holds_until_a_measurement_after_the_mark_shows_no_step()
    {
        var marked = Running("a", 0) with { DatabaseStep = TenMinutes };
        var first = Decide(Sample(0), DatabaseStepView.None, marked);
        Assert.Equal(ClockVerdict.DatabaseStepUnsure, first.Verdict);
        Assert.Null(first.MarkStep);
        Assert.True(first.StepMarksSeen);
        var second = Decide(Sample(0), new DatabaseStepView(null, MarkedBefore: true), marked);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, second.Verdict);
        Assert.Equal(TenMinutes, second.MarkStep);
        // Rows of workers that have not marked it do not vote meanwhile (their skew may be on either footing).
        Assert.Equal(ClockVerdict.Skewed, Decide(Sample(600), new DatabaseStepView(null, MarkedBefore: true), marked with { Skew = TimeSpan.Zero }, Running("b", 600)).Verdict);
        Assert.Equal(ClockVerdict.AgreesWithWorkers, Decide(Sample(600), new DatabaseStepView(null, MarkedBefore: true), marked with { Skew = TimeSpan.Zero }, Running("b", 600) with { DatabaseStep = TenMinutes }, Running("c", 600) with { DatabaseStep = TenMinutes }).Verdict);
    }

    [Fact]
    public void Two_different_recent_steps_hold_every_worker()
    {
        Assert.Equal(ClockVerdict.DatabaseStepUnsure, Decide(Sample(0), Seen(TenMinutes), Running("a", 0) with { DatabaseStep = TimeSpan.FromMinutes(-5) }).Verdict);
        // One step as two workers measured it (each off by up to half the round trips either side).
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), Seen(TenMinutes), Running("a", 0) with { DatabaseStep = TenMinutes + TimeSpan.FromSeconds(1.5) }).Verdict);
    }

    [Fact]
    public void A_row_carried_across_a_step_is_held_to_twice_the_limit_less_the_error_it_carries_beyond_a_measurements()
    {
        // Carried across a step measured with 1 s round trips either side: its round trip says 2.5 s, 0.75 s more error than a measurement's.
        Assert.Equal(ClockVerdict.ApartFromClaims, Judge(Sample(0), Running("a", 9.5, claims: true, roundTripMilliseconds: 2_500)));
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Judge(Sample(0), Running("a", 9.5, claims: true, roundTripMilliseconds: 1_000)));
        // As this worker's own rows are when it sees the step.
        var carried = Decide(Sample(0), new DatabaseStepView(TimeSpan.FromSeconds(-9.5), false, TimeSpan.FromSeconds(1.5)), Running("self", 0, claims: true, roundTripMilliseconds: 1_000));
        Assert.Equal(ClockVerdict.ApartFromClaims, carried.Verdict);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), new DatabaseStepView(TimeSpan.FromSeconds(-9.5), false), Running("self", 0, claims: true, roundTripMilliseconds: 1_000)).Verdict);
    }

    /// <summary>A change of ten minutes of this worker's difference over an interval in which its own wall clock moved as much unlike its monotonic one, its measurement over at <paramref name="after"/>.</summary>
    private static DatabaseStepView OwnClockMoved(DateTimeOffset after, TimeSpan? by = null) =>
        new(null, MarkedBefore: false) { Unattributed = new OwnClockEvent(by ?? TenMinutes, after, TimeSpan.FromMilliseconds(4)) };

    [Fact]
    public void A_change_of_the_difference_while_this_workers_own_clock_moved_is_not_taken_for_a_step_until_another_hosts_rows_tell()
    {
        var after = DateTimeOffset.UtcNow;
        var once = Running("a", 0, claims: true) with { MeasuredAt = after.AddSeconds(1) };
        var twice = once with { MeasuredAt = after.AddSeconds(6) };
        // The other host's worker has measured once since: its sample may predate the measurement. Holds, recording nothing.
        var unsure = Decide(Sample(0), OwnClockMoved(after), once);
        Assert.Equal(ClockVerdict.OwnClockUnsure, unsure.Verdict);
        Assert.False(unsure.Recorded);
        Assert.Null(unsure.MarkStep);
        // Twice, and it marked nothing: the database's clock did not step (a suspended host). As usual, nothing marked or carried.
        var suspended = Decide(Sample(0), OwnClockMoved(after), once, twice);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, suspended.Verdict);
        Assert.Null(suspended.MarkStep);
        Assert.Null(suspended.CarryAcross);
        // It marked a step of that size: the database's clock stepped with this worker's. Its rows are
        // carried across and it marks, and its earlier claims, ten minutes from its clock, hold it.
        var stepped = Decide(Sample(0), OwnClockMoved(after), Running("a", -600) with { DatabaseStep = TenMinutes + TimeSpan.FromSeconds(0.5) }, Running("self", 0, claims: true));
        Assert.Equal(ClockVerdict.ApartFromClaims, stepped.Verdict);
        Assert.Equal(TenMinutes, stepped.MarkStep);
        Assert.Equal(TenMinutes, stepped.CarryAcross!.Value.Step);
        // A replica on its own host is no witness (it moved with this worker).
        Assert.Equal(ClockVerdict.OwnClockUnsure, Decide(Sample(0), OwnClockMoved(after), once with { Host = Self.Host }, twice with { Host = Self.Host }, Running("self", 0, claims: true)).Verdict);
    }

    [Fact]
    public void With_no_other_host_to_tell_a_worker_whose_own_clock_moved_holds_while_claims_far_on_either_reading_may_be_live()
    {
        var after = DateTimeOffset.UtcNow;
        Assert.Equal(ClockVerdict.OwnClockUnsure, Decide(Sample(0), OwnClockMoved(after), Running("self", 0, claims: true)).Verdict);
        // Had the database's clock stepped ten minutes forward with it, claims_until came that much early.
        Assert.Equal(ClockVerdict.OwnClockUnsure, Decide(Sample(0), OwnClockMoved(after), Running("self", 0, claims: true) with { ClaimsLeft = TimeSpan.FromMinutes(-9) }).Verdict);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), OwnClockMoved(after), Running("self", 0, claims: true) with { ClaimsLeft = TimeSpan.FromMinutes(-11) }).Verdict);
        // A movement within twice the limit leaves no claim far on either reading.
        Assert.Equal(ClockVerdict.AgreesWithDatabase, Decide(Sample(0), OwnClockMoved(after, TimeSpan.FromSeconds(3)), Running("self", 0, claims: true)).Verdict);
    }

    private static readonly TimeSpan FiveMinutes = TimeSpan.FromMinutes(5);

    /// <summary>This worker has measured without a break for as long as marks count, and seen these steps itself.</summary>
    private static DatabaseStepView SeenLately(params TimeSpan[] steps) => DatabaseStepView.None with { SeenLately = steps };

    [Fact]
    public void A_worker_that_saw_every_recent_step_itself_claims_while_the_database_clock_keeps_stepping_and_holds_for_rows_not_carried_across_all_of_them()
    {
        // The database's clock stepped ten minutes forward, then five back; another worker marked both.
        var both = new[] { Running("a", 0) with { DatabaseStep = TenMinutes }, Running("a", 0) with { DatabaseStep = -FiveMinutes } };
        // A worker that has not seen both itself (it started since, or it has not measured that long) holds, as before.
        Assert.Equal(ClockVerdict.DatabaseStepUnsure, Decide(Sample(0), DatabaseStepView.None, both).Verdict);
        Assert.Equal(ClockVerdict.DatabaseStepUnsure, Decide(Sample(0), SeenLately(TenMinutes), both).Verdict);
        var decision = Decide(Sample(0), SeenLately(TenMinutes, -FiveMinutes), both);
        Assert.Equal(ClockVerdict.AgreesWithDatabase, decision.Verdict);
        Assert.Equal(2, decision.RepeatedSteps!.Count);
        // A worker that marked only the first: its rows may be on either side of the second (five minutes off), or both.
        Assert.Equal(ClockVerdict.ApartFromClaims, Decide(Sample(0), SeenLately(TenMinutes, -FiveMinutes), [.. both, Running("b", 0, claims: true) with { DatabaseStep = TenMinutes }]).Verdict);
        Assert.Equal(ClockVerdict.ApartFromClaims, Decide(Sample(0), SeenLately(TenMinutes, -FiveMinutes), [.. both, Running("c", 0, claims: true)]).Verdict);
        // ...and does not vote: two of three agree only with it.
        Assert.Equal(ClockVerdict.Skewed, Decide(Sample(600), SeenLately(TenMinutes, -FiveMinutes), [.. both, Running("b", 600) with { DatabaseStep = TenMinutes }]).Verdict);
        // A step it has not seen (after its measurement) holds it.
        Assert.Equal(ClockVerdict.DatabaseStepUnsure, Decide(Sample(0), SeenLately(TenMinutes, -FiveMinutes), [.. both, Running("d", 0) with { DatabaseStep = TimeSpan.FromMinutes(2) }]).Verdict);
    }
}
