using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Providers;
using Polly;
using Polly.CircuitBreaker;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// One Polly pipeline (circuit breaker around a timeout) per company and provider, so one
/// practice's failing SMTP server or expired token never slows another practice's messages.
/// It also tells operators when a company's provider goes down and comes back: a circuit that
/// opens or closes, and an outage (sends that found the provider unavailable, which use up no
/// retries and so may never open the circuit) logged when it starts, every
/// <see cref="OutageLogInterval"/> while it lasts, and when a send goes through again. An outage
/// that no send has seen for twice <see cref="DispatchOptions.OutageMaxDelay"/> (no message was
/// waiting for the provider any more) is over: the next one is a new outage.
/// </summary>
internal sealed class ProviderCircuitBreakers(IOptions<DispatchOptions> options, TimeProvider time, OutboxMetrics metrics, ILogger<ProviderCircuitBreakers> logger)
{
    /// <summary>How often an outage that goes on is logged again.</summary>
    public static readonly TimeSpan OutageLogInterval = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<(Guid CompanyId, string Provider), Line> lines = new();

    public async ValueTask<SendResult> ExecuteAsync(Guid companyId, string provider, Func<CancellationToken, Task<SendResult>> send, CancellationToken cancellationToken)
    {
        var line = lines.GetOrAdd((companyId, provider), static (key, self) => new Line(self.Build(key)), this);
        var result = await line.Pipeline.ExecuteAsync(static async (send, token) => await send(token), send, cancellationToken);
        if (result.ProviderUnavailable)
        {
            Unavailable(line, companyId, provider, result.Error);
        }
        else if (line.Outage is not null && result.Outcome == SendOutcome.Sent)
        {
            // Only a message the provider took says it is back: a refusal may have been decided
            // here without asking it (a caption too long), and a timeout says nothing.
            Answered(line, companyId, provider);
        }
        return result;
    }

    private void Unavailable(Line line, Guid companyId, string provider, string? error)
    {
        lock (line)
        {
            var now = time.GetUtcNow();
            if (line.Outage is not { } outage || IsOver(outage, now))
            {
                line.Outage = new Outage(now);
                DispatchLog.ProviderUnavailable(logger, provider, companyId, LogRedaction.Contacts(error));
                return;
            }
            outage.Sends++;
            outage.LastSeen = now;
            if (now - outage.LoggedAt >= OutageLogInterval)
            {
                outage.LoggedAt = now;
                DispatchLog.ProviderStillUnavailable(logger, provider, companyId, outage.Since, outage.Sends, LogRedaction.Contacts(error));
            }
        }
    }

    private void Answered(Line line, Guid companyId, string provider)
    {
        lock (line)
        {
            if (line.Outage is { } outage)
            {
                line.Outage = null;
                // Not when it was over before this send: "available again after 14 hours" would be wrong.
                var now = time.GetUtcNow();
                if (!IsOver(outage, now))
                {
                    DispatchLog.ProviderAvailableAgain(logger, provider, companyId, now - outage.Since, outage.Sends);
                }
            }
        }
    }

    /// <summary>No send has met the outage for twice OutageMaxDelay: no message was waiting for the provider any more.</summary>
    private bool IsOver(Outage outage, DateTimeOffset now) => now - outage.LastSeen > 2 * options.Value.OutageMaxDelay;

    private ResiliencePipeline<SendResult> Build((Guid CompanyId, string Provider) key)
    {
        var settings = options.Value;
        return new ResiliencePipelineBuilder<SendResult> { TimeProvider = time }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<SendResult>
            {
                FailureRatio = settings.BreakerFailureRatio,
                MinimumThroughput = settings.BreakerMinimumThroughput,
                SamplingDuration = settings.BreakerSamplingDuration,
                BreakDuration = settings.BreakerBreakDuration,
                // Transient outcomes and exceptions say the provider is unwell; a permanent answer
                // (bad number, rejected template) says it is working fine, and so does a transient
                // one about the message itself (a greylisted mailbox, an attachment's dead link).
                ShouldHandle = new PredicateBuilder<SendResult>()
                    .HandleResult(r => r.Outcome == SendOutcome.Transient && !r.AboutThisMessage)
                    .Handle<Exception>(ex => ex is not OperationCanceledException),
                OnOpened = args =>
                {
                    DispatchLog.CircuitOpened(logger, key.Provider, key.CompanyId, args.BreakDuration,
                        LogRedaction.Contacts(args.Outcome.Result?.Error ?? args.Outcome.Exception?.Message));
                    // Counted through the break and the longest wait of the company's deferred rows,
                    // whose next send is the probe (IsOver's rule for an outage).
                    metrics.CircuitOpened(key.CompanyId, key.Provider, time.GetUtcNow() + args.BreakDuration + 2 * settings.OutageMaxDelay);
                    return ValueTask.CompletedTask;
                },
                OnClosed = args =>
                {
                    DispatchLog.CircuitClosed(logger, key.Provider, key.CompanyId);
                    metrics.CircuitClosed(key.CompanyId, key.Provider);
                    return ValueTask.CompletedTask;
                },
            })
            .AddTimeout(settings.SendTimeout)
            .Build();
    }

    /// <summary>A company's provider: its pipeline, and the outage going on, if any.</summary>
    private sealed class Line(ResiliencePipeline<SendResult> pipeline)
    {
        public ResiliencePipeline<SendResult> Pipeline { get; } = pipeline;

        /// <summary>Read without the lock on every send, changed only under it.</summary>
        public volatile Outage? Outage;
    }

    /// <summary>Since when sends find the provider unavailable, how many did, when the last one did, and when that was last logged.</summary>
    private sealed class Outage(DateTimeOffset since)
    {
        public DateTimeOffset Since { get; } = since;

        public DateTimeOffset LastSeen { get; set; } = since;

        public DateTimeOffset LoggedAt { get; set; } = since;

        public long Sends { get; set; } = 1;
    }
}
