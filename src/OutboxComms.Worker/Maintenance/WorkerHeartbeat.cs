using System.Globalization;
using OutboxComms.Core.Observability;

namespace OutboxComms.Worker.Maintenance;

/// <summary>
/// The dispatch loop's liveness, for whoever watches the worker: after each completed claim (rows
/// found or not) the loop beats. That sets the <c>outbox.worker.last_dispatch</c> gauge and, at most
/// every few seconds, rewrites <c>Health:HeartbeatFile</c> when one is configured, so a container
/// healthcheck can test the file's age without an HTTP port (<c>ops/healthcheck.sh worker</c>).
/// Both stay fresh while the loop claims, even with nothing to send, and go stale when it cannot
/// reach PostgreSQL, is stuck, or holds its claims because this host's clock disagrees with
/// PostgreSQL's and the other workers' (ClockSkewGuard).
/// </summary>
internal sealed partial class WorkerHeartbeat(IConfiguration configuration, OutboxMetrics metrics, TimeProvider time, ILogger<WorkerHeartbeat> logger)
{
    private static readonly TimeSpan WriteEvery = TimeSpan.FromSeconds(5);
    private readonly string? path = configuration["Health:HeartbeatFile"] is { Length: > 0 } file ? file : null;
    private long lastWriteTicks;

    public void Beat()
    {
        var now = time.GetUtcNow();
        metrics.Dispatched(now);
        var last = Interlocked.Read(ref lastWriteTicks);
        if (path is null || now.UtcTicks - last < WriteEvery.Ticks || Interlocked.CompareExchange(ref lastWriteTicks, now.UtcTicks, last) != last)
        {
            return;
        }
        try
        {
            File.WriteAllText(path, now.ToString("O", CultureInfo.InvariantCulture));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogWriteFailed(logger, ex, path);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot write the heartbeat file {Path}")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception, string path);
}
