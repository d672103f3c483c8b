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
    // The first use inserts; a later one with the same body "updates" (to the same value) and is
    // accepted, one with another body updates nothing and returns no row. DO UPDATE's condition is
    // checked against the latest committed version: a use racing the first one waits for it and
    // then sees its body (a plain SELECT in the same statement would not, its snapshot being older).
    private const string UseSql = """
        INSERT INTO webhook_nonces AS n (company_id, provider, nonce, body_sha256, seen_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (company_id, provider, nonce) DO UPDATE SET seen_at = n.seen_at WHERE n.body_sha256 = excluded.body_sha256
        RETURNING true
        """;

    /// <summary>How long a nonce is remembered (the worker's retention deletes older ones): longer than a signature stays fresh (Mailgun's retries), either way.</summary>
    public static TimeSpan Retention => MailgunWebhook.RetryWindow + WebhookSignatures.Tolerance * 2 + TimeSpan.FromMinutes(5);

    /// <summary>True when <paramref name="nonce"/> is new for this company and provider, or was first seen with this same body.</summary>
    public async Task<bool> TryUseAsync(Guid companyId, string provider, string nonce, string body, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(UseSql);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = provider });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = nonce });
        command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = SHA256.HashData(Encoding.UTF8.GetBytes(body)), NpgsqlDbType = NpgsqlDbType.Bytea });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }
}
