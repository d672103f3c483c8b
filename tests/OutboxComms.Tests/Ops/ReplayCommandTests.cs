using Microsoft.Extensions.Logging.Abstractions;
using OutboxComms.Core.Messages;
using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker.Ops;

namespace OutboxComms.Tests.Ops;

public sealed class ReplayCommandTests(DatabaseFixture db) : IClassFixture<DatabaseFixture>
{
    [Fact]
    public async Task The_replay_verb_counts_by_default_and_replays_only_with_execute()
    {
        var company = await TestData.CreateCompanyAsync(db.DataSource);
        var customer = await TestData.CreateCustomerAsync(db.DataSource, company);
        await using (var seed = db.DataSource.CreateCommand("""
            INSERT INTO communication_logs (company_id, customer_id, type, channel, content, status, error_message, retry_count, next_attempt_at)
            VALUES ($1, $2, 'INVOICE', 'SMS', 'x', 'FAILED', 'Twilio 30003: message undelivered', 3, now() - interval '1 day'),
                   ($1, $2, 'INVOICE', 'SMS', 'x', 'FAILED', 'Twilio 21211: invalid To', 0, now() - interval '1 day'),
                   ($1, $2, 'INVOICE', 'EMAIL', 'x', 'SENT', NULL, 0, now() - interval '1 day')
            """))
        {
            seed.Parameters.AddWithValue(company);
            seed.Parameters.AddWithValue(customer);
            await seed.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }
        var replay = new MessageReplay(db.DataSource, TimeProvider.System, NullLogger<MessageReplay>.Instance);
        string[] filter = ["--company", company.ToString(), "--status", "FAILED", "--error", "twilio 30003"];

        using var dry = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync(filter, replay, dry, TestContext.Current.CancellationToken));
        Assert.StartsWith("1 messages would be replayed", dry.ToString(), StringComparison.Ordinal);
        Assert.Equal(0, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'PENDING'", company));

        // An option written with "=" is that option, not a configuration override to drop: this one names another company.
        using var elsewhere = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync([$"--company={Guid.NewGuid()}", "--status=FAILED", "--execute"], replay, elsewhere, TestContext.Current.CancellationToken));
        Assert.StartsWith("Replayed 0 messages (company ", elsewhere.ToString(), StringComparison.Ordinal);

        using var run = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync([.. filter, "--execute"], replay, run, TestContext.Current.CancellationToken));
        Assert.StartsWith("Replayed 1 messages", run.ToString(), StringComparison.Ordinal);
        Assert.Equal("PENDING:0:", await TestData.ScalarAsync<string>(db.DataSource,
            "SELECT status || ':' || retry_count || ':' || coalesce(error_message, '') FROM communication_logs WHERE company_id = $1 AND channel = 'SMS' AND status_reason LIKE 'replayed by ops cli%'", company));

        // A plain --to date includes that day: the message created yesterday is within "--to <yesterday>".
        var yesterday = DateTimeOffset.UtcNow.AddDays(-1).ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET created_at = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 minute' WHERE company_id = $1 AND error_message LIKE 'Twilio 21211%' RETURNING 1", company);
        using var dayCount = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync(["--company", company.ToString(), "--status", "FAILED", "--to", yesterday], replay, dayCount, TestContext.Current.CancellationToken));
        Assert.StartsWith("1 messages would be replayed", dayCount.ToString(), StringComparison.Ordinal);

        using var bad = new StringWriter();
        using var badErrors = new StringWriter();
        Assert.Equal(2, await ReplayCommand.RunAsync(["--status", "SENT"], replay, bad, TestContext.Current.CancellationToken, badErrors));
        Assert.Contains("--status is FAILED, BOUNCED or SUPPRESSED", badErrors.ToString(), StringComparison.Ordinal);
        Assert.Empty(bad.ToString());   // usage errors go to stderr

        // A mistyped option with "=" is refused, not dropped as a setting (which would widen the replay), and so is an empty --error.
        foreach (var widening in new string[][] { ["--status", "FAILED", "--chanel=SMS", "--execute"], ["--error", "", "--execute"], ["--error", "  ", "--execute"] })
        {
            using var refused = new StringWriter();
            using var refusedErrors = new StringWriter();
            Assert.Equal(2, await ReplayCommand.RunAsync(widening, replay, refused, TestContext.Current.CancellationToken, refusedErrors));
            Assert.Contains(widening[2] == "--chanel=SMS" ? "unknown option --chanel=SMS (a setting override names its section" : "--error needs the text to match",
                refusedErrors.ToString(), StringComparison.Ordinal);
        }
        // An option in capitals looks like an environment-style setting (--OUTBOXCOMMS_…=): refused, not
        // dropped, which would replay every company's failed messages.
        foreach (var capitals in new[] { $"--COMPANY={company}", $"/COMPANY={company}", "--ID=5" })
        {
            using var refusedErrors = new StringWriter();
            Assert.Equal(2, await ReplayCommand.RunAsync(["--status", "FAILED", capitals, "--execute"], replay, TextWriter.Null, TestContext.Current.CancellationToken, refusedErrors));
            Assert.Contains("unknown option", refusedErrors.ToString(), StringComparison.Ordinal);
        }
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'FAILED'", company));

        // An id without its company is found under its company (each company's key probed in turn).
        var remaining = await TestData.ScalarAsync<long>(db.DataSource, "SELECT id FROM communication_logs WHERE company_id = $1 AND status = 'FAILED'", company);
        using var byId = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync(["--id", remaining.ToString(System.Globalization.CultureInfo.InvariantCulture), "--execute"], replay, byId, TestContext.Current.CancellationToken));
        Assert.StartsWith("Replayed 1 messages", byId.ToString(), StringComparison.Ordinal);
        Assert.Equal("PENDING", await TestData.ScalarAsync<string>(db.DataSource, "SELECT status FROM communication_logs WHERE company_id = $1 AND id = $2", company, remaining));
        await TestData.ScalarAsync<int>(db.DataSource, "UPDATE communication_logs SET status = 'FAILED' WHERE company_id = $1 AND id = $2 RETURNING 1", company, remaining);

        // --execute with no filter at all would replay every failed message of every company, ever: it needs --all.
        using var unfiltered = new StringWriter();
        using var unfilteredErrors = new StringWriter();
        Assert.Equal(2, await ReplayCommand.RunAsync(["--execute"], replay, unfiltered, TestContext.Current.CancellationToken, unfilteredErrors));
        Assert.Contains("narrow it (--company, --from, --status, …) or say --all", unfilteredErrors.ToString(), StringComparison.Ordinal);
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM communication_logs WHERE company_id = $1 AND status = 'FAILED'", company));
        using var all = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync(["--execute", "--all", "--actor", "meera (ops)", "--Logging:LogLevel:Default=Warning"], replay, all, TestContext.Current.CancellationToken));
        Assert.StartsWith("Replayed 1 messages (all companies)", all.ToString(), StringComparison.Ordinal);
        Assert.Equal(1, await TestData.ScalarAsync<long>(db.DataSource, "SELECT count(*) FROM message_replays WHERE company_id = $1 AND replayed_by = 'ops cli (meera (ops))'", company));

        // "--execute" as the text --error looks for is a dry run, not an order to replay.
        using var errorText = new StringWriter();
        Assert.Equal(0, await ReplayCommand.RunAsync(["--company", company.ToString(), "--error", "--execute"], replay, errorText, TestContext.Current.CancellationToken));
        Assert.StartsWith("0 messages would be replayed", errorText.ToString(), StringComparison.Ordinal);
    }
}
