using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using OutboxComms.Core.Data;
using OutboxComms.Core.Security;
using OutboxComms.Core.Webhooks;

namespace OutboxComms.Api.Webhooks;

/// <summary>
/// <c>/webhooks/{provider}/{companyId}</c>: delivery events from providers. Authenticated by each
/// provider's signature (not by API key). A forged or unsigned request gets 401 and changes
/// nothing; an event for a message we do not know gets 200 (so the provider does not retry it
/// forever) and is kept for audit.
/// </summary>
public static partial class WebhookEndpoints
{
    private const long MaxBodyBytes = 1024 * 1024;

    public static RouteGroupBuilder MapWebhooks(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/webhooks").WithTags("Webhooks");
        group.MapGet("/whatsapp/{companyId:guid}", VerifyWhatsApp);
        group.MapPost("/{provider}/{companyId:guid}", Receive);
        group.MapGet("/{provider}/{companyId:guid}", Receive); // MessageBird SMS reports; refused for the others
        return group;
    }

    public sealed record WebhookReceipt(int Received, int Applied, int Stale, int Duplicates, int UnknownMessages);

    internal static async Task<Results<Ok<WebhookReceipt>, ProblemHttpResult>> Receive(
        string provider, Guid companyId, HttpContext context, IEnumerable<IDeliveryWebhook> webhooks, OutboxDbContext db,
        SecretProtector secrets, DeliveryEventRecorder recorder, WebhookNonces nonces, TimeProvider time, IOptions<WebhookOptions> options, ILogger<WebhookReceipt> logger)
    {
        var webhook = webhooks.FirstOrDefault(w => w.Route == provider && w.ReportsByGet == HttpMethods.IsGet(context.Request.Method));
        var settings = webhook is null ? null : await db.CompanySettings.AsNoTracking().FirstOrDefaultAsync(s => s.CompanyId == companyId, context.RequestAborted);
        if (webhook is null || settings is null)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Unknown webhook",
                detail: $"No webhook '{provider}' for company {companyId}.");
        }

        // Read no further than the limit: a chunked body announces no length.
        if (context.Request.ContentLength > MaxBodyBytes || await ReadAsync(context, options.Value) is not { } request)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status413PayloadTooLarge, title: "Webhook body too large", detail: $"At most {MaxBodyBytes} bytes.");
        }
        string? refused;
        try
        {
            refused = await webhook.VerifyAsync(request, settings, secrets, context.RequestAborted);
        }
        catch (SecretKeyNotConfiguredException ex)
        {
            // This instance lacks the key (a rotation under way): the provider retries a 503 later,
            // perhaps at an instance that has it.
            LogRefused(logger, provider, companyId, ex.Message);
            return TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Webhook secret not readable here yet",
                detail: "This instance cannot read the company's webhook secret yet; retry later.");
        }
        catch (System.Security.Cryptography.CryptographicException ex)
        {
            // Altered, or copied from another company's row: nothing can be verified with it.
            refused = $"the company's webhook secret cannot be read ({ex.Message})";
        }
        if (refused is not null)
        {
            LogRefused(logger, provider, companyId, refused);
            return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Signature verification failed",
                detail: "The request is not signed with this company's webhook secret.");
        }

        try
        {
            await webhook.ConfirmAsync(request, context.RequestAborted);
        }
        catch (Exception ex) when (ex is HttpRequestException or InvalidOperationException or TaskCanceledException or System.Text.Json.JsonException)
        {
            LogRefused(logger, provider, companyId, $"subscription not confirmed: {ex.Message}");
            return TypedResults.Problem(statusCode: StatusCodes.Status502BadGateway, title: "Subscription not confirmed", detail: ex.Message);
        }

        IReadOnlyList<DeliveryEvent> events;
        try
        {
            if (webhook.SignatureNonce(request) is { } nonce
                && !await nonces.TryUseAsync(companyId, provider, nonce, request.Body, time.GetUtcNow(), context.RequestAborted))
            {
                LogRefused(logger, provider, companyId, "signature nonce already used with another body (replayed signature)");
                return TypedResults.Problem(statusCode: StatusCodes.Status401Unauthorized, title: "Signature verification failed",
                    detail: "This signature was already used for another request.");
            }
            events = webhook.Parse(request, settings);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException or FormatException or OverflowException)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Unreadable webhook body", detail: ex.Message);
        }

        var outcomes = new List<WebhookOutcome>(events.Count);
        foreach (var delivery in events)
        {
            var outcome = await recorder.RecordAsync(companyId, provider, delivery, time.GetUtcNow(), context.RequestAborted);
            if (outcome == WebhookOutcome.UnknownMessage && delivery.MarketingChoice is null)   // that one names a person: no number in the log
            {
                LogUnknownMessage(logger, provider, companyId, delivery.ProviderMessageId);
            }
            outcomes.Add(outcome);
        }
        return TypedResults.Ok(new WebhookReceipt(
            events.Count,
            outcomes.Count(o => o == WebhookOutcome.Applied),
            outcomes.Count(o => o == WebhookOutcome.Stale),
            outcomes.Count(o => o == WebhookOutcome.Duplicate),
            outcomes.Count(o => o == WebhookOutcome.UnknownMessage)));
    }

    /// <summary>Meta's subscription handshake: echo hub.challenge when hub.verify_token is the company's.</summary>
    internal static async Task<Results<ContentHttpResult, ProblemHttpResult>> VerifyWhatsApp(Guid companyId, HttpRequest request, OutboxDbContext db, SecretProtector secrets)
    {
        var settings = await db.CompanySettings.AsNoTracking().FirstOrDefaultAsync(s => s.CompanyId == companyId, request.HttpContext.RequestAborted);
        var query = request.Query.ToDictionary(q => q.Key, q => q.Value.ToString());
        var challenge = settings is null ? null : WhatsAppWebhook.Challenge(query, settings, secrets);
        return challenge is null
            ? TypedResults.Problem(statusCode: StatusCodes.Status403Forbidden, title: "Verification failed", detail: "hub.verify_token does not match this company's verify token.")
            : TypedResults.Text(challenge, "text/plain");
    }

    /// <summary>The request, or null when its body is longer than <see cref="MaxBodyBytes"/>.</summary>
    private static async Task<WebhookRequest?> ReadAsync(HttpContext context, WebhookOptions options)
    {
        var http = context.Request;
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await http.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxBodyBytes)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        buffer.Position = 0;
        using var reader = new StreamReader(buffer);
        var body = await reader.ReadToEndAsync(context.RequestAborted);
        var form = http.HasFormContentType
            ? QueryHelpers.ParseQuery(body).ToDictionary(p => p.Key, p => p.Value.ToString(), StringComparer.Ordinal)
            : [];
        var url = options.PublicBaseUrl is { Length: > 0 } publicBase
            ? new Uri(publicBase.TrimEnd('/') + http.PathBase + http.Path + http.QueryString)
            : new Uri(http.GetEncodedUrl());
        var headers = http.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase);
        return new WebhookRequest(url, body, headers, form);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused {Provider} webhook for company {CompanyId}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string provider, Guid companyId, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Provider} webhook for company {CompanyId} names unknown message {ProviderMessageId}; kept for audit")]
    private static partial void LogUnknownMessage(ILogger logger, string provider, Guid companyId, string providerMessageId);
}
