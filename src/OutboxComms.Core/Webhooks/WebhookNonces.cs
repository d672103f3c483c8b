using System.Security.Cryptography;
using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// One-time signature nonces (Mailgun's token) (migration 0015), for providers whose signature does not cover the
/// body (<see cref="IDeliveryWebhook.SignatureNonce"/>): a nonce is accepted with the body it first
/// came with, and refused with any other.
/// </summary>
public sealed class WebhookNonces(NpgsqlDataSource dataSource)
{
    // The insert wins, or the nonce is already there: accepted only if with the same body. On a
    // conflict with an insert still in flight, ON CONFLICT waits for it and the SELECT then sees it.
    private const string UseSql = """
        WITH used AS (
            INSERT INTO webhook_nonces (company_id, provider, nonce, body_sha256, seen_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (company_id, provider, nonce) DO NOTHING
            RETURNING 1)
        SELECT EXISTS (SELECT 1 FROM used)
            OR EXISTS (SELECT 1 FROM webhook_nonces WHERE company_id = $1 AND provider = $2 AND nonce = $3 AND body_sha256 = $4)
        """;

    /// <summary>How long a nonce is remembered (the worker's retention deletes older ones): longer than a signature stays fresh, either way.</summary>
    public static TimeSpan Retention => WebhookSignatures.Tolerance * 2 + TimeSpan.FromMinutes(5);

    /// <summary>True when <paramref name="nonce"/> is new for this company and provider, or was first seen with this same body.</summary>
    public async Task<bool> TryUseAsync(Guid companyId, string provider, string nonce, string body, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(UseSql);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = provider });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = nonce });
        command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = SHA256.HashData(Encoding.UTF8.GetBytes(body)), NpgsqlDbType = NpgsqlDbType.Bytea });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
