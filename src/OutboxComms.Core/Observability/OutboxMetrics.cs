using System.Diagnostics.Metrics;

namespace OutboxComms.Core.Observability;

/// <summary>
/// The service's metrics (System.Diagnostics.Metrics, meter "OutboxComms"): exported on
/// <c>/metrics</c> in Prometheus format by the API and, when <c>Metrics:Port</c> is set, by each
/// worker; also visible live with <c>dotnet-counters monitor --counters OutboxComms</c>.
/// </summary>
public sealed class OutboxMetrics : IDisposable
{
    public const string MeterName = "OutboxComms";

    /// <summary>
    /// Whether a .NET meter's series go to /metrics. Not .NET's networking meters (System.Net.Http,
    /// System.Net.NameResolution, System.Net.Sockets): they label series by the host dialled, and
    /// those hosts are tenants' (an SMTP host, a provider base URL, every attachment link a
    /// producer sends) — unbounded series kept for a day, and other tenants' hosts shown to whoever
    /// reads the metrics. Ours, the runtime's and ASP.NET Core's are bounded.
    /// </summary>
    public static bool IsExported(string meterName) =>
        !(meterName ?? throw new ArgumentNullException(nameof(meterName))).StartsWith("System.Net.", StringComparison.Ordinal);
    private readonly Meter meter;
    private readonly Counter<long> outcomes;
    private readonly Histogram<double> sendDuration;
    private readonly Histogram<int> batchSize;
    private readonly Counter<long> schedulerPasses;
    private readonly Counter<long> schedulerSteps;
    private readonly Counter<long> scheduleOccurrences;
    private readonly Counter<long> providerUnavailable;
    // Observed, not an up/down counter: an exporter that drops a series left unchanged for a day
    // (prometheus-net) would otherwise lose a long outage's +1 and read −1 once it closed. Each
    // company's circuit by provider, with the end of its current break.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(Guid CompanyId, string Provider), DateTimeOffset> openCircuits = new();
    // Every provider that ever had an open circuit here, so that it reads 0 once none is: a series
    // no longer reported would keep its last value (1) in the exporter for a day.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> circuitProviders = new(StringComparer.Ordinal);
    private readonly TimeProvider time;
    // Null until the first sample: the queue gauges then report nothing rather than an empty queue
    // (the database unreachable at start read as "nothing waiting", which no alert on the backlog
    // would catch).
    private QueueSnapshot? queue;
    private long queueSampledUnixMilliseconds;
    private long lastDispatchUnixMilliseconds;
    // long.MinValue until the worker's clock check first succeeds (and for good when it is off).
    private long clockSkewMicroseconds = long.MinValue;

    public OutboxMetrics(IMeterFactory meters, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(meters);
        this.time = time ?? TimeProvider.System;
        meter = meters.Create(MeterName);
        outcomes = meter.CreateCounter<long>("outbox.messages.processed", "{message}", "Messages the worker finished a step for, by resulting status and channel");
        sendDuration = meter.CreateHistogram<double>("outbox.provider.duration", "ms", "Provider call latency, by provider and outcome");
        batchSize = meter.CreateHistogram<int>("outbox.claim.batch_size", "{message}", "Rows claimed per batch");
        meter.CreateObservableGauge("outbox.queue.due", () => QueueValue(q => q.Due), "{message}", "PENDING messages due now (the backlog)");
        meter.CreateObservableGauge("outbox.queue.deferred", () => QueueValue(q => q.Deferred), "{message}", "PENDING messages waiting for a later time (quiet hours, frequency, retry backoff)");
        meter.CreateObservableGauge("outbox.queue.in_flight", () => QueueValue(q => q.InFlight), "{message}", "Messages claimed by a worker and not yet recorded");
        meter.CreateObservableGauge("outbox.queue.oldest_due_age", () => QueueValue(q => q.OldestDueAgeSeconds), "s", "How long the oldest due message has waited");
        meter.CreateObservableGauge("outbox.queue.sampled_at", QueueSampledAt, "s",
            "When the queue gauges were last sampled (Unix time): they keep the last sample while sampling fails, so alert when this falls behind the clock");
        meter.CreateObservableGauge("outbox.worker.last_dispatch", LastDispatch, "s",
            "When this worker's dispatch loop last completed a claim (Unix time); alert when it falls behind the clock");
        meter.CreateObservableGauge("outbox.worker.clock_skew", ClockSkew, "s",
            "This worker's clock minus PostgreSQL's at its last good measurement (positive: ahead); beyond Dispatch:MaxClockSkew the worker claims nothing unless most live workers' clocks agree with its own (all of them beyond it: the database's clock is off)");
        schedulerPasses = meter.CreateCounter<long>("outbox.scheduler.passes", "{pass}", "Scheduler passes over due reminder steps and schedules, by outcome (ok, failed)");
        schedulerSteps = meter.CreateCounter<long>("outbox.scheduler.steps", "{step}", "Due reminder steps the scheduler decided, by result (queued, skipped, cancelled)");
        providerUnavailable = meter.CreateCounter<long>("outbox.provider.unavailable", "{attempt}",
            "Sends that found the provider down or throttling the account and were put off without using up a retry, by provider: alert on a steady rate");
        meter.CreateObservableGauge("outbox.provider.open_circuits", OpenCircuits, "{circuit}",
            "Companies whose provider circuit is in its break now (opened, or opened again by a failed probe; their sends are deferred), by provider: alert when above 0 for long");
        scheduleOccurrences = meter.CreateCounter<long>("outbox.scheduler.occurrences", "{occurrence}", "Company schedule occurrences the scheduler handled");
    }

    public void Processed(string status, string channel) =>
        outcomes.Add(1, new KeyValuePair<string, object?>("status", status), new KeyValuePair<string, object?>("channel", channel));

    public void ProviderCall(string provider, string outcome, double milliseconds) =>
        sendDuration.Record(milliseconds, new KeyValuePair<string, object?>("provider", provider), new KeyValuePair<string, object?>("outcome", outcome));

    public void Claimed(int rows) => batchSize.Record(rows);

    public void ProviderUnavailable(string provider) => providerUnavailable.Add(1, new KeyValuePair<string, object?>("provider", provider));

    /// <summary>
    /// A company's circuit for <paramref name="provider"/> opened, or opened again by a failed
    /// probe; it counts until it closes or until <paramref name="countedUntil"/> (its break, and the
    /// longest its waiting messages wait before the next probe): a circuit no send has probed since
    /// (the company's messages went elsewhere, or expired, or another worker took them) is not
    /// reported open for ever.
    /// </summary>
    public void CircuitOpened(Guid companyId, string provider, DateTimeOffset countedUntil)
    {
        circuitProviders.TryAdd(provider, true);
        openCircuits[(companyId, provider)] = countedUntil;
    }

    /// <summary>A circuit <see cref="CircuitOpened"/> reported closed again.</summary>
    public void CircuitClosed(Guid companyId, string provider) => openCircuits.TryRemove((companyId, provider), out _);

    private IEnumerable<Measurement<int>> OpenCircuits()
    {
        var now = time.GetUtcNow();
        return [.. circuitProviders.Keys.Select(provider => new Measurement<int>(
            openCircuits.Count(c => c.Key.Provider == provider && c.Value > now), new KeyValuePair<string, object?>("provider", provider)))];
    }

    public void Queue(QueueSnapshot snapshot, DateTimeOffset sampledAt)
    {
        queue = snapshot;
        Interlocked.Exchange(ref queueSampledUnixMilliseconds, sampledAt.ToUnixTimeMilliseconds());
    }

    private IEnumerable<Measurement<T>> QueueValue<T>(Func<QueueSnapshot, T> value) where T : struct =>
        queue is { } sampled ? [new Measurement<T>(value(sampled))] : [];

    private IEnumerable<Measurement<double>> QueueSampledAt() =>
        Interlocked.Read(ref queueSampledUnixMilliseconds) is > 0 and var at ? [new Measurement<double>(at / 1000.0)] : [];

    /// <summary>The dispatch loop completed a claim (whether or not it found rows).</summary>
    public void Dispatched(DateTimeOffset at) => Interlocked.Exchange(ref lastDispatchUnixMilliseconds, at.ToUnixTimeMilliseconds());

    /// <summary>The worker measured its clock against PostgreSQL's: <paramref name="skew"/> is its own minus the database's.</summary>
    public void ClockMeasured(TimeSpan skew) => Interlocked.Exchange(ref clockSkewMicroseconds, skew.Ticks / TimeSpan.TicksPerMicrosecond);

    public void SchedulerPass(int queued, int skipped, int cancelled, int occurrences)
    {
        schedulerPasses.Add(1, new KeyValuePair<string, object?>("outcome", "ok"));
        Add(schedulerSteps, queued, "result", "queued");
        Add(schedulerSteps, skipped, "result", "skipped");
        Add(schedulerSteps, cancelled, "result", "cancelled");
        if (occurrences > 0)
        {
            scheduleOccurrences.Add(occurrences);
        }
    }

    public void SchedulerPassFailed() => schedulerPasses.Add(1, new KeyValuePair<string, object?>("outcome", "failed"));

    private static void Add(Counter<long> counter, int value, string tag, string tagValue)
    {
        if (value > 0)
        {
            counter.Add(value, new KeyValuePair<string, object?>(tag, tagValue));
        }
    }

    // Nothing before the first claim (and never in the API, which does not dispatch).
    private IEnumerable<Measurement<double>> LastDispatch() =>
        Interlocked.Read(ref lastDispatchUnixMilliseconds) is > 0 and var ms ? [new Measurement<double>(ms / 1000.0)] : [];

    // Nothing before the first good measurement, nor when the check is off (and never in the API).
    private IEnumerable<Measurement<double>> ClockSkew() =>
        Interlocked.Read(ref clockSkewMicroseconds) is not long.MinValue and var us ? [new Measurement<double>(us / 1_000_000.0)] : [];

    public void Dispose() => meter.Dispose();
}

public sealed record QueueSnapshot(long Due, long Deferred, long InFlight, double OldestDueAgeSeconds);
