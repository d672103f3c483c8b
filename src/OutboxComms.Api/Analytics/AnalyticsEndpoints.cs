using Microsoft.AspNetCore.Http.HttpResults;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;

namespace OutboxComms.Api.Analytics;

/// <summary>A company's messaging over a window: volumes, delivery and read rates, cost, and how fast messages go out.</summary>
public static class AnalyticsEndpoints
{
    public const string DeliveryRateDefinition =
        "(DELIVERED + READ) / (SENT + DELIVERED + READ + BOUNCED + FAILED after the provider accepted the message, i.e. with a sentAt). " +
        "Messages never handed to a provider (PENDING, SUPPRESSED, CANCELLED, FAILED before sending) are left out. Null when nothing was sent.";

    public const string ReadRateDefinition =
        "READ / (DELIVERED + READ): of the messages known to be delivered, the share known to be read. Null when nothing was delivered.";

    public sealed record CostTotal(Channel Channel, string Currency, decimal Amount, int Messages);

    /// <summary>Seconds from a message's creation to the moment; null when no message reached it.</summary>
    public sealed record Timing(int Messages, double? P50Seconds, double? P95Seconds);

    public sealed record AnalyticsResponse(
        DateTimeOffset From, DateTimeOffset To, int Total,
        IReadOnlyDictionary<string, int> ByStatus, IReadOnlyDictionary<string, int> ByChannel, IReadOnlyDictionary<string, int> ByType,
        double? DeliveryRate, double? ReadRate, IReadOnlyList<CostTotal> Costs, Timing ToSent, Timing ToDelivered,
        IReadOnlyDictionary<string, string> Definitions);

    // Both statements scan the company's rows in the window once each, and go in one round trip.
    // Counts are grouped finely here and summed up per dimension in C# (a few dozen groups at most).
    // A cost is the channel's it was sent on: a PREFERRED row keeps its costs when a replay (or a
    // retry of a split) puts it back to PREFERRED, so its last send's channel names them.
    private const string CountsSql = """
        SELECT status, channel, type, cost_currency, count(*)::int, sum(cost),
               count(*) FILTER (WHERE status = 'FAILED' AND sent_at IS NOT NULL)::int, cost_channel
          FROM (SELECT m.*, CASE WHEN m.channel = 'PREFERRED' AND m.cost IS NOT NULL
                                 THEN coalesce((SELECT a.channel FROM communication_attempts a
                                                 WHERE a.message_id = m.id AND a.company_id = m.company_id AND a.outcome = 'SENT'
                                                 ORDER BY a.attempt_no DESC, a.id DESC LIMIT 1), m.channel)
                                 ELSE m.channel END AS cost_channel
                  FROM communication_logs m
                 WHERE m.company_id = $1 AND m.created_at >= $2 AND m.created_at < $3) m
         GROUP BY status, channel, type, cost_currency, cost_channel
        """;

    private const string TimingsSql = """
        SELECT count(sent_at)::int,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) FILTER (WHERE sent_at IS NOT NULL),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) FILTER (WHERE sent_at IS NOT NULL),
               count(delivered_at)::int,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) FILTER (WHERE delivered_at IS NOT NULL),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) FILTER (WHERE delivered_at IS NOT NULL)
          FROM communication_logs
         WHERE company_id = $1 AND created_at >= $2 AND created_at < $3
        """;

    public static IEndpointRouteBuilder MapAnalytics(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/v1/analytics").WithTags("Analytics")
            .RequireAuthorization(AuthExtensions.CompanyOrAdminPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .RequireTenant();
        group.MapGet("/", Get);
        return endpoints;
    }

    private static readonly TimeSpan MaxWindow = TimeSpan.FromDays(367);

    /// <summary>Messages created in [from, to); the default window is the last 30 days.</summary>
    internal static async Task<Results<Ok<AnalyticsResponse>, ValidationProblem>> Get(
        string? from, string? to, Tenant tenant, NpgsqlDataSource dataSource, TimeProvider time, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var zone = await ValidationParsing.DateZoneAsync(dataSource, tenant.CompanyId, cancellationToken, from, to);
        var until = validation.RangeEndOrNull(to, "to", zone) ?? time.GetUtcNow();
        var since = validation.RangeStartOrNull(from, "from", zone) ?? (until > DateTimeOffset.MinValue.AddDays(30) ? until.AddDays(-30) : DateTimeOffset.MinValue);
        validation.When(since >= until, "from", "from must be before to.")
            // Each report reads every message of its window (percentiles sort them): a year at most,
            // so that one request cannot make PostgreSQL read a company's whole history.
            .When(until - since > MaxWindow, "from", "The window is at most a year (a financial year: from=2025-04-01&to=2026-03-31); ask for longer periods a year at a time.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        await using var batch = dataSource.CreateBatch();
        foreach (var sql in new[] { CountsSql, TimingsSql })
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(sql)
            {
                Parameters =
                {
                    new NpgsqlParameter<Guid> { TypedValue = tenant.CompanyId },
                    new NpgsqlParameter<DateTimeOffset> { TypedValue = since.ToUniversalTime() },
                    new NpgsqlParameter<DateTimeOffset> { TypedValue = until.ToUniversalTime() },
                },
            });
        }

        var byStatus = Zeros<DeliveryStatus>();
        var byChannel = Zeros<Channel>();
        var byType = Zeros<MessageType>();
        var costs = new Dictionary<(Channel, string), (decimal Amount, int Messages)>();
        var failedAfterSend = 0;
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var count = reader.GetInt32(4);
            byStatus[reader.GetString(0)] += count;
            byChannel[reader.GetString(1)] += count;
            byType[reader.GetString(2)] += count;
            failedAfterSend += reader.GetInt32(6);
            if (!reader.IsDBNull(3) && !reader.IsDBNull(5))
            {
                var key = (WireName<Channel>.Parse(reader.GetString(7)), reader.GetString(3));
                var (amount, messages) = costs.GetValueOrDefault(key);
                costs[key] = (amount + reader.GetDecimal(5), messages + count);
            }
        }
        await reader.NextResultAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var toSent = new Timing(reader.GetInt32(0), Seconds(reader, 1), Seconds(reader, 2));
        var toDelivered = new Timing(reader.GetInt32(3), Seconds(reader, 4), Seconds(reader, 5));

        int Of(DeliveryStatus status) => byStatus[WireName<DeliveryStatus>.Of(status)];
        var delivered = Of(DeliveryStatus.Delivered) + Of(DeliveryStatus.Read);
        var sent = Of(DeliveryStatus.Sent) + delivered + Of(DeliveryStatus.Bounced) + failedAfterSend;

        return TypedResults.Ok(new AnalyticsResponse(
            since, until, byStatus.Values.Sum(), byStatus, byChannel, byType,
            Rate(delivered, sent), Rate(Of(DeliveryStatus.Read), delivered),
            [.. costs.OrderBy(c => c.Key.Item1).ThenBy(c => c.Key.Item2, StringComparer.Ordinal)
                .Select(c => new CostTotal(c.Key.Item1, c.Key.Item2, c.Value.Amount, c.Value.Messages))],
            toSent, toDelivered,
            new Dictionary<string, string>
            {
                ["window"] = "Messages created at or after from and before to.",
                ["deliveryRate"] = DeliveryRateDefinition,
                ["readRate"] = ReadRateDefinition,
                ["costs"] = "Sum of the cost recorded per message (the provider's price, else the company's rate card), by channel and currency.",
                ["toSent"] = "Seconds from creation to SENT (provider accepted), over messages with a sentAt.",
                ["toDelivered"] = "Seconds from creation to DELIVERED, over messages with a deliveredAt.",
            }));
    }

    private static Dictionary<string, int> Zeros<T>() where T : struct, Enum =>
        WireName<T>.All.ToDictionary(name => name, _ => 0, StringComparer.Ordinal);

    private static double? Rate(int part, int whole) => whole == 0 ? null : Math.Round((double)part / whole, 4);

    private static double? Seconds(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : Math.Round(reader.GetDouble(ordinal), 3);
}
