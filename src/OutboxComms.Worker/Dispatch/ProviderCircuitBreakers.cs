using System.Collections.Concurrent;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Providers;
using Polly;
using Polly.CircuitBreaker;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// One Polly pipeline (circuit breaker around a timeout) per company and provider, so one
/// practice's failing SMTP server or expired token never slows another practice's messages.
/// </summary>
internal sealed class ProviderCircuitBreakers(IOptions<DispatchOptions> options, TimeProvider time)
{
    private readonly ConcurrentDictionary<(Guid CompanyId, string Provider), ResiliencePipeline<SendResult>> pipelines = new();

    public ValueTask<SendResult> ExecuteAsync(Guid companyId, string provider, Func<CancellationToken, Task<SendResult>> send, CancellationToken cancellationToken) =>
        pipelines.GetOrAdd((companyId, provider), _ => Build())
            .ExecuteAsync(static async (send, token) => await send(token), send, cancellationToken);

    private ResiliencePipeline<SendResult> Build()
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
                // (bad number, rejected template) says it is working fine.
                ShouldHandle = new PredicateBuilder<SendResult>()
                    .HandleResult(r => r.Outcome == SendOutcome.Transient)
                    .Handle<Exception>(ex => ex is not OperationCanceledException),
            })
            .AddTimeout(settings.SendTimeout)
            .Build();
    }
}
