using OutboxComms.Tests.Infrastructure;
using OutboxComms.Worker;

namespace OutboxComms.Tests.Ops;

/// <summary>Settings a worker refuses at start, naming them, rather than misbehaving later.</summary>
public sealed class WorkerSettingsTests
{
    [Theory]
    [InlineData("Api:IdempotencyKeyRetentionDays", "0", "IdempotencyKeyRetentionDays")]       // would delete keys still in use
    [InlineData("Dispatch:MaxRetryDelay", "00:00:10", "MaxRetryDelay")]                     // below the first retry's delay
    [InlineData("Dispatch:BreakerSamplingDuration", "00:00:00.100", "BreakerSamplingDuration")] // the breaker throws on its first send
    [InlineData("Dispatch:BreakerBreakDuration", "2.00:00:00", "BreakerBreakDuration")]
    [InlineData("Dispatch:RenderTimeout", "00:00:00", "RenderTimeout")]
    [InlineData("Dispatch:LeaseDuration", "00:00:50", "LeaseDuration")]                      // 30 s sends + 10 s grace leave a batch 10 s to start them
    [InlineData("Dispatch:MaxConcurrentSends", "400", "MaxConcurrentSends")]                  // × 4 batches: more than the provider client lets in flight and queue
    [InlineData("Dispatch:MaxClockSkew", "00:00:15", "MaxClockSkew")]                        // two workers 30 s apart: the whole 30 s shutdown grace
    public async Task A_setting_out_of_range_stops_the_worker_at_start_naming_it(string key, string value, string named)
    {
        // Refused before anything connects (nothing listens at this address): when the host is built
        // or, at the latest, when it starts.
        var refused = await Record.ExceptionAsync(async () =>
        {
            using var host = WorkerCommands.BuildHost([
                "--ConnectionStrings:Outbox=Host=127.0.0.1;Port=1;Username=outbox;Database=outbox",
                $"--OUTBOXCOMMS_ENCRYPTION_KEY={TestKeys.Encryption}",
                $"--{key}={value}"]);
            await host.StartAsync(TestContext.Current.CancellationToken);
        });

        Assert.IsType<Microsoft.Extensions.Options.OptionsValidationException>(refused);
        Assert.Contains(named, refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, null, null, 30)]            // the defaults: a stop lets a send run its whole timeout
    [InlineData("00:03:00", "00:01:00", null, 60)] // a longer send timeout with a lease to match
    [InlineData("00:01:00", null, null, 10)]       // a short lease keeps the old 10 s, so it stays valid
    [InlineData("00:02:00", "00:01:30", null, 10)]
    [InlineData(null, null, "00:00:05", 5)]        // set, it is what was set
    public void The_shutdown_grace_follows_the_send_timeout_where_the_lease_leaves_room(string? lease, string? send, string? grace, int expectedSeconds)
    {
        var options = new OutboxComms.Worker.Dispatch.DispatchOptions();
        options.LeaseDuration = lease is null ? options.LeaseDuration : TimeSpan.Parse(lease, System.Globalization.CultureInfo.InvariantCulture);
        options.SendTimeout = send is null ? options.SendTimeout : TimeSpan.Parse(send, System.Globalization.CultureInfo.InvariantCulture);
        if (grace is not null)
        {
            options.ShutdownGrace = TimeSpan.Parse(grace, System.Globalization.CultureInfo.InvariantCulture);
        }

        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), options.ShutdownGrace);
        Assert.Empty(options.Validate(new System.ComponentModel.DataAnnotations.ValidationContext(options)));
    }
}
