using System.Security.Cryptography;
using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace OutboxComms.Core.Webhooks;

/// <summary>
/// One-time signature nonces (Mailgun's token) (migration 0015), for providers whose signature does not cover the
/// body (<see cref="IDeliveryWebhook.SignatureNonce"/>): a nonce is accepted with the body it first
/// came with, and refused with any other — at any company for Mailgun (migration 0046's unique
/// index on the token): companies may share a signing key (one Mailgun account, or the primary
/// account's key of subaccounts), so a token seen at one must not carry another body to another.
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

    // Mailgun's: the token's first use at any company decides its body (ux_webhook_nonces_mailgun).
    // The arbiter is that index; a use at the same company conflicts on it too, before the key.
    private const string UseAcrossCompaniesSql = """
        INSERT INTO webhook_nonces AS n (company_id, provider, nonce, body_sha256, seen_at) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (provider, nonce) WHERE provider = 'mailgun' DO UPDATE SET seen_at = n.seen_at WHERE n.body_sha256 = excluded.body_sha256
        RETURNING true
        """;

    /// <summary>How long a nonce is remembered (the worker's retention deletes older ones): longer than a signature stays fresh (Mailgun's retries), either way.</summary>
    public static TimeSpan Retention => MailgunWebhook.RetryWindow + WebhookSignatures.Tolerance * 2 + TimeSpan.FromMinutes(5);

    /// <summary>
    /// True when <paramref name="nonce"/> is new for this company and provider (for Mailgun: for
    /// any company), or was first seen with this same body.
    /// </summary>
    public async Task<bool> TryUseAsync(Guid companyId, string provider, string nonce, string body, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(provider == "mailgun" ? UseAcrossCompaniesSql : UseSql);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = companyId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = provider });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = nonce });
        command.Parameters.Add(new NpgsqlParameter<byte[]> { TypedValue = SHA256.HashData(Encoding.UTF8.GetBytes(body)), NpgsqlDbType = NpgsqlDbType.Bytea });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = now.ToUniversalTime() });
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }
}
