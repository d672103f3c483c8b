using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using OutboxComms.Api.Auth;
using OutboxComms.Api.Common;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Observability;
using OutboxComms.Core.Providers;

namespace OutboxComms.Api.Messages;

/// <summary>
/// Sending messages (company keys), and reading, cancelling and replaying them (company keys, or
/// the admin key acting on one company via X-Company-Id). A message for a customer that does not
/// exist in the caller's company (or was deleted) is refused with 400 naming customerId or
/// customerExternalId — the same answer a bulk item gets — rather than 404, which here always means
/// "the message you addressed is not yours or does not exist".
/// </summary>
public static class MessageEndpoints
{
    public const string IdempotencyHeader = "Idempotency-Key";
    public const int MaxBulkMessages = 10_000;
    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 500;

    public sealed record MessageLinks(string Self, string Cancel, string Replay);

    public sealed record AcceptedMessage(long Id, DeliveryStatus Status, Channel Channel, Channel? RequestedChannel, MessageLinks Links);

    /// <summary>The rows one request became: one, or two for BOTH (EMAIL and WHATSAPP).</summary>
    public sealed record SendMessageResponse(IReadOnlyList<AcceptedMessage> Messages);

    public sealed record BulkSendRequest(IReadOnlyList<SendMessageRequest?>? Messages);

    /// <summary><c>items[i]</c> answers <c>messages[i]</c> of the request.</summary>
    public sealed record BulkSendResponse(int MessageCount, IReadOnlyList<SendMessageResponse> Items);

    public sealed record AttachmentView(long Id, string FileName, string ContentType, long? SizeBytes, string? Url);

    /// <summary>One provider call; <c>cost</c> is what that send cost (null when it failed, had no price, or was recorded before costs per send were kept).</summary>
    public sealed record AttemptView(int AttemptNo, DateTimeOffset AttemptedAt, Channel Channel, string? ProviderName, AttemptOutcome Outcome, string? Error, int? LatencyMs,
        decimal? Cost, string? Currency);

    public sealed record MessageView(
        long Id, Guid? CustomerId, string? CustomerExternalId, MessageType Type, Channel Channel, Channel? RequestedChannel, long? SplitFrom, DeliveryStatus Status,
        string? StatusReason, string? ErrorMessage, string? Subject, string? Content, string? TemplateKey, JsonElement TemplateData, string? TemplateUsed,
        JsonElement Metadata, int RetryCount, int MaxRetries, int AttemptCount, int OutageAttempts,
        DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt, DateTimeOffset? NextAttemptAt, DateTimeOffset? ExpiresAt,
        DateTimeOffset? SentAt, DateTimeOffset? DeliveredAt, DateTimeOffset? ReadAt, DateTimeOffset? ResponseAt, DateTimeOffset? FailedAt,
        string? ProviderName, string? ProviderMessageId, decimal? Cost, string? Currency,
        IReadOnlyList<AttachmentView> Attachments, IReadOnlyList<AttemptView> Attempts, IReadOnlyList<ReplayView> Replays,
        DateTimeOffset? ContentRedactedAt);

    public sealed record MessageSummary(
        long Id, Guid? CustomerId, string? CustomerExternalId, MessageType Type, Channel Channel, Channel? RequestedChannel, DeliveryStatus Status,
        string? StatusReason, string? Subject, int RetryCount, int AttemptCount, DateTimeOffset CreatedAt,
        DateTimeOffset? SentAt, DateTimeOffset? DeliveredAt, DateTimeOffset? ReadAt, DateTimeOffset? FailedAt, string? ProviderName, decimal? Cost, string? Currency);

    /// <summary>Newest first. Pass <see cref="NextAfter"/> as <c>after</c> for the next page; null means this is the last.</summary>
    public sealed record MessagePage(IReadOnlyList<MessageSummary> Items, long? NextAfter);

    /// <summary>Query string of GET /v1/messages; strings so that a bad value is answered naming its parameter.</summary>
    public sealed record ListQuery(string? Status, string? Channel, string? Type, string? CustomerId, string? CreatedFrom, string? CreatedTo, string? After, string? Limit,
        string? CustomerExternalId = null);

    /// <summary>
    /// createdFrom and createdTo: ISO 8601 instants (UTC without an offset), or plain dates, the whole
    /// day in the company's time zone (createdTo then including that day).
    /// </summary>
    public sealed record ReplayRequest(string? Status, string? Channel, string? Type, string? CreatedFrom, string? CreatedTo, string? ErrorContains, bool? DryRun);

    /// <summary>One replay of a message: when, by whom, and the status and error it had before.</summary>
    public sealed record ReplayView(DateTimeOffset ReplayedAt, string ReplayedBy, string PreviousStatus, string? PreviousError);

    /// <summary>A dry run (the default) only counts: <c>replayed</c> is 0.</summary>
    public sealed record ReplayResponse(bool DryRun, int Matched, int Replayed);

    public static IHostApplicationBuilder AddMessages(this IHostApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddSingleton<MessageStore>();
        builder.Services.AddSingleton<OutboxNotifier>();
        builder.Services.AddSingleton<MessageReplay>();
        return builder;
    }

    public static IEndpointRouteBuilder MapMessages(this IEndpointRouteBuilder endpoints)
    {
        // A message's 20 MB of attachments is about 27 MB as base64; a bulk request may carry several.
        var send = endpoints.MapGroup("/v1/messages").WithTags("Messages")
            .RequireAuthorization(AuthExtensions.CompanyPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .WithMetadata(new BodySizeLimit(32 * 1024 * 1024));
        var idempotency = new OpenApiHeader(IdempotencyHeader,
            "Optional, up to 255 printable ASCII characters: a retry with the same key and body answers what the first request answered and sends nothing twice; the same key with another body is a 409.");
        send.MapPost("/", Send).Accepts<SendMessageRequest>("application/json").WithMetadata(idempotency);
        send.MapPost("/bulk", SendBulk).Accepts<BulkSendRequest>("application/json").WithMetadata(new BodySizeLimit(128 * 1024 * 1024), idempotency);

        var ops = endpoints.MapGroup("/v1/messages").WithTags("Messages")
            .RequireAuthorization(AuthExtensions.CompanyOrAdminPolicy).RequireRateLimiting(AuthExtensions.PerCompanyRateLimit)
            .RequireTenant().WithMetadata(new BodySizeLimit(64 * 1024));
        ops.MapGet("/", List);
        ops.MapGet("/{id:long}", Get);
        ops.MapPost("/{id:long}/cancel", Cancel);
        ops.MapPost("/{id:long}/replay", Replay);
        ops.MapPost("/replay", ReplayMatching).Accepts<ReplayRequest>("application/json");
        return endpoints;
    }

    internal static async Task<Results<Accepted<SendMessageResponse>, ValidationProblem, ProblemHttpResult>> Send(
        HttpContext http, Tenant tenant, MessageStore store, IOptions<JsonOptions> json, TimeProvider time)
    {
        var (request, unreadable) = await JsonBody.ReadStrictAsync<SendMessageRequest>(http.Request, json.Value.SerializerOptions, http.RequestAborted);
        if (request is null)
        {
            return unreadable!;
        }
        var batch = new SendBatch<SendMessageResponse>("send", request, [request], Bulk: false, items => items[0], r => r.Messages[0].Links.Self);
        return await AcceptAsync(batch, http, tenant, store, json.Value.SerializerOptions, time.GetUtcNow());
    }

    /// <summary>All or nothing: every item is validated first, and one invalid item rejects the batch.</summary>
    internal static async Task<Results<Accepted<BulkSendResponse>, ValidationProblem, ProblemHttpResult>> SendBulk(
        HttpContext http, Tenant tenant, MessageStore store, IOptions<JsonOptions> json, TimeProvider time)
    {
        var (request, unreadable) = await JsonBody.ReadStrictAsync<BulkSendRequest>(http.Request, json.Value.SerializerOptions, http.RequestAborted);
        if (request is null)
        {
            return unreadable!;
        }
        if (request.Messages is not { Count: > 0 and <= MaxBulkMessages } messages)
        {
            return new Validation().Add("messages", $"messages holds 1 to {MaxBulkMessages} messages.").Problem();
        }
        var batch = new SendBatch<BulkSendResponse>("bulk", request, messages, Bulk: true,
            items => new BulkSendResponse(items.Sum(i => i.Messages.Count), items), _ => null);
        return await AcceptAsync(batch, http, tenant, store, json.Value.SerializerOptions, time.GetUtcNow());
    }

    internal static async Task<Results<Ok<MessagePage>, ValidationProblem>> List(
        [AsParameters] ListQuery query, Tenant tenant, OutboxDbContext db, NpgsqlDataSource dataSource, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var status = validation.WireNameOrNull<DeliveryStatus>(query.Status, "status");
        var channel = validation.WireNameOrNull<Channel>(query.Channel, "channel");
        var type = validation.WireNameOrNull<MessageType>(query.Type, "type");
        Guid? customerId = null;
        if (query.CustomerId is not null)
        {
            validation.When(!Guid.TryParse(query.CustomerId, out var parsed), "customerId", "customerId is a customer id (uuid).");
            customerId = parsed;
        }
        validation.Storable(("customerExternalId", query.CustomerExternalId));
        var zone = await ValidationParsing.DateZoneAsync(dataSource, tenant.CompanyId, cancellationToken, query.CreatedFrom, query.CreatedTo);
        var from = validation.RangeStartOrNull(query.CreatedFrom, "createdFrom", zone);
        var to = validation.RangeEndOrNull(query.CreatedTo, "createdTo", zone);
        long? after = null;
        if (query.After is not null)
        {
            validation.When(!long.TryParse(query.After, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) || parsed < 1, "after", "after is a message id from nextAfter.");
            after = parsed;
        }
        var limit = DefaultPageSize;
        if (query.Limit is not null)
        {
            validation.When(!int.TryParse(query.Limit, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxPageSize, "limit", $"limit is between 1 and {MaxPageSize}.");
        }
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        // Keyset pagination on the primary key (company_id, id), read backwards: no OFFSET, so a deep page
        // costs what the first one does.
        var messages = db.CommunicationLogs.AsNoTracking().Where(m => m.CompanyId == tenant.CompanyId);
        messages = after is { } before ? messages.Where(m => m.Id < before) : messages;
        messages = status is { } s ? messages.Where(m => m.Status == s) : messages;
        messages = channel is { } c ? messages.Where(m => m.Channel == c) : messages;
        messages = type is { } t ? messages.Where(m => m.Type == t) : messages;
        // A row a business app wrote by SQL may name its customer by external id only (customer_id
        // stays NULL): found by either.
        if (customerId is { } customer)
        {
            var externalId = db.Customers.Where(c => c.Id == customer && c.CompanyId == tenant.CompanyId).Select(c => c.ExternalId);
            messages = messages.Where(m => m.CustomerId == customer || (m.CustomerId == null && externalId.Contains(m.CustomerExternalId)));
        }
        if (query.CustomerExternalId is { } external)
        {
            var id = db.Customers.Where(c => c.ExternalId == external && c.CompanyId == tenant.CompanyId).Select(c => (Guid?)c.Id);
            messages = messages.Where(m => m.CustomerExternalId == external || id.Contains(m.CustomerId));
        }
        messages = from is { } f ? messages.Where(m => m.CreatedAt >= f) : messages;
        messages = to is { } until ? messages.Where(m => m.CreatedAt < until) : messages;
        var page = await messages.OrderByDescending(m => m.Id).Take(limit + 1)
            .Select(m => new MessageSummary(m.Id, m.CustomerId, m.CustomerExternalId, m.Type, m.Channel, m.RequestedChannel, m.Status, m.StatusReason, m.Subject,
                m.RetryCount, m.AttemptCount, m.CreatedAt, m.SentAt, m.DeliveredAt, m.ReadAt, m.FailedAt, m.ProviderName, m.Cost, m.CostCurrency))
            .ToListAsync(cancellationToken);
        var more = page.Count > limit;
        if (more)
        {
            page.RemoveAt(limit);
        }
        return TypedResults.Ok(new MessagePage(tenant.IsAdmin ? [.. page.Select(AsOperatorSees)] : page, more ? page[^1].Id : null));
    }

    private static readonly JsonElement NoData = JsonDocument.Parse("{}").RootElement.Clone();

    /// <summary>
    /// What the operator's admin key reads of a practice's message: its course (status, times,
    /// provider, cost, attempts) for ops, not its content — subject, body, template data, metadata
    /// and file links are left out and error texts have contact details masked. The operator runs
    /// the platform for the practices; their clients' messages are the practices' to read.
    /// </summary>
    private static MessageView AsOperatorSees(MessageView view) => view with
    {
        Subject = null, Content = null, TemplateData = NoData, Metadata = NoData,
        StatusReason = LogRedaction.Contacts(view.StatusReason), ErrorMessage = LogRedaction.Contacts(view.ErrorMessage),
        Attachments = [.. view.Attachments.Select(a => a with { Url = null })],
        Attempts = [.. view.Attempts.Select(a => a with { Error = LogRedaction.Contacts(a.Error) })],
        Replays = [.. view.Replays.Select(r => r with { PreviousError = LogRedaction.Contacts(r.PreviousError) })],
    };

    private static MessageSummary AsOperatorSees(MessageSummary summary) =>
        summary with { Subject = null, StatusReason = LogRedaction.Contacts(summary.StatusReason) };

    internal static async Task<Results<Ok<MessageView>, ProblemHttpResult>> Get(long id, Tenant tenant, OutboxDbContext db, CancellationToken cancellationToken) =>
        await LoadAsync(db, tenant, id, cancellationToken) is { } view ? TypedResults.Ok(view) : Problems.NotFound($"Message {id}");

    /// <summary>
    /// PENDING only. A row a worker has claimed (its lease is running) is being sent at this moment
    /// and cannot be cancelled any more: the worker would record the send, or the customer would get
    /// a message we report as cancelled.
    /// </summary>
    internal static async Task<Results<Ok<MessageView>, ProblemHttpResult>> Cancel(long id, Tenant tenant, OutboxDbContext db, TimeProvider time, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var reason = $"cancelled by {tenant.Actor}";
        var cancelled = await db.CommunicationLogs
            .Where(m => m.Id == id && m.CompanyId == tenant.CompanyId && m.Status == DeliveryStatus.Pending && (m.LockedUntil == null || m.LockedUntil <= now))
            .ExecuteUpdateAsync(set => set
                .SetProperty(m => m.Status, DeliveryStatus.Cancelled)
                .SetProperty(m => m.StatusReason, reason)
                .SetProperty(m => m.LockedBy, (string?)null)
                .SetProperty(m => m.LockedUntil, (DateTimeOffset?)null)
                .SetProperty(m => m.UpdatedAt, now), cancellationToken);
        var view = await LoadAsync(db, tenant, id, cancellationToken);
        return (cancelled, view) switch
        {
            (_, null) => Problems.NotFound($"Message {id}"),
            (> 0, _) => TypedResults.Ok(view),
            // A retried cancel (its first answer lost) finds what it asked for: the same answer, not a 409.
            (_, { Status: DeliveryStatus.Cancelled }) => TypedResults.Ok(view),
            (_, { Status: DeliveryStatus.Pending }) => Problems.Conflict($"Message {id} is being sent right now and can no longer be cancelled."),
            _ => Problems.Conflict($"Message {id} is {WireName<DeliveryStatus>.Of(view.Status)}; only PENDING messages can be cancelled."),
        };
    }

    /// <summary>FAILED, BOUNCED or SUPPRESSED only: back to PENDING with a fresh retry budget, due now.</summary>
    internal static async Task<Results<Ok<MessageView>, ProblemHttpResult>> Replay(long id, Tenant tenant, OutboxDbContext db, MessageReplay replay, TimeProvider time, CancellationToken cancellationToken)
    {
        var replayed = await replay.ReplayAsync(new ReplayFilter { CompanyId = tenant.CompanyId, MessageId = id }, tenant.Actor, cancellationToken);
        var view = await LoadAsync(db, tenant, id, cancellationToken);
        return (replayed, view) switch
        {
            (_, null) => Problems.NotFound($"Message {id}"),
            (> 0, _) => TypedResults.Ok(view),
            (_, { ExpiresAt: { } expired } expiredView) when expired <= time.GetUtcNow() && MessageReplay.Replayable.Contains(expiredView.Status) =>
                Problems.Conflict($"Message {id} expired at {expired.UtcDateTime:u}; an expired message is not replayed (send a new one)."),
            (_, { ContentRedactedAt: { } redacted } redactedView) when MessageReplay.Replayable.Contains(redactedView.Status) =>
                Problems.Conflict($"Message {id} had its content cleared at {redacted.UtcDateTime:u} (the company's content retention, or the customer's erasure); it cannot be sent again (send a new one)."),
            _ => Problems.Conflict($"Message {id} is {WireName<DeliveryStatus>.Of(view.Status)}; only FAILED, BOUNCED or SUPPRESSED messages can be replayed."),
        };
    }

    /// <summary>Replays every message of the company matching the filter, in one UPDATE. dryRun defaults to true: counting first is the safe habit.</summary>
    internal static async Task<Results<Ok<ReplayResponse>, ValidationProblem, ProblemHttpResult>> ReplayMatching(
        HttpContext http, Tenant tenant, MessageReplay replay, IOptions<JsonOptions> json, NpgsqlDataSource dataSource)
    {
        var (request, unreadable) = await JsonBody.ReadStrictAsync<ReplayRequest>(http.Request, json.Value.SerializerOptions, http.RequestAborted);
        if (request is null)
        {
            return unreadable!;
        }
        var validation = new Validation();
        var replayable = string.Join(", ", MessageReplay.Replayable.Select(WireName<DeliveryStatus>.Of));
        validation.When(!WireName<DeliveryStatus>.TryParse(request.Status, out var status) || !MessageReplay.Replayable.Contains(status),
            "status", $"status is required and one of {replayable}.");
        var channel = validation.WireNameOrNull<Channel>(request.Channel, "channel");
        var type = validation.WireNameOrNull<MessageType>(request.Type, "type");
        var zone = await ValidationParsing.DateZoneAsync(dataSource, tenant.CompanyId, http.RequestAborted, request.CreatedFrom, request.CreatedTo);
        var createdFrom = validation.RangeStartOrNull(request.CreatedFrom, "createdFrom", zone);
        var createdTo = validation.RangeEndOrNull(request.CreatedTo, "createdTo", zone);
        validation
            .When(createdFrom >= createdTo, "createdTo", "createdTo must be after createdFrom.")
            .When(request.ErrorContains is { Length: > 500 }, "errorContains", "errorContains is at most 500 characters.")
            .Storable(("errorContains", request.ErrorContains));
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var filter = new ReplayFilter
        {
            CompanyId = tenant.CompanyId, Status = status, Channel = channel, Type = type,
            CreatedFrom = createdFrom, CreatedTo = createdTo, ErrorContains = request.ErrorContains,
        };
        if (request.DryRun ?? true)
        {
            return TypedResults.Ok(new ReplayResponse(true, await replay.CountAsync(filter, http.RequestAborted), 0));
        }
        var replayed = await replay.ReplayAsync(filter, tenant.Actor, http.RequestAborted);
        return TypedResults.Ok(new ReplayResponse(false, replayed, replayed));
    }

    /// <summary>What a send request is, for the one code path that accepts single and bulk requests.</summary>
    private sealed record SendBatch<TResponse>(
        string Endpoint, object Request, IReadOnlyList<SendMessageRequest?> Items, bool Bulk,
        Func<IReadOnlyList<SendMessageResponse>, TResponse> Respond, Func<TResponse, string?> Location);

    /// <summary>
    /// Idempotency check, field validation, one database lookup (customers, templates, ids), then one
    /// transaction that claims the idempotency key and inserts every row.
    /// </summary>
    private static async Task<Results<Accepted<TResponse>, ValidationProblem, ProblemHttpResult>> AcceptAsync<TResponse>(
        SendBatch<TResponse> batch, HttpContext http, Tenant tenant, MessageStore store, JsonSerializerOptions json, DateTimeOffset now)
        where TResponse : class
    {
        var cancellationToken = http.RequestAborted;
        var validation = new Validation();
        var key = http.Request.Headers[IdempotencyHeader].ToString();
        validation.When(key.Length > 255 || key.Any(c => c is < '!' or > '~'), IdempotencyHeader, $"{IdempotencyHeader} is at most 255 printable ASCII characters without spaces.");
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        // A retry is answered from what was stored before anything else is checked: the request was
        // valid when first made, even if (say) its expiresAt has passed since.
        byte[]? hash = null;
        if (key.Length > 0)
        {
            hash = SHA256.HashData([.. Encoding.UTF8.GetBytes(batch.Endpoint + "\n"), .. JsonSerializer.SerializeToUtf8Bytes(batch.Request, json)]);
            if (await store.FindAsync(tenant.CompanyId, key, cancellationToken) is { } earlier)
            {
                return Answer(batch, earlier, key, hash, http, json);
            }
        }

        var privateLinks = http.RequestServices.GetRequiredService<IOptions<AttachmentOptions>>().Value.AllowPrivateNetworks;
        var drafts = ValidateItems(batch.Items, batch.Bulk, now, privateLinks, validation);
        var wellFormed = drafts.OfType<MessageDraft>().ToList();
        if (wellFormed.Count == 0)
        {
            return validation.Problem();
        }
        // One message, no idempotency key, no attachments (the common call of a business app): one
        // statement that inserts only if the customer and template exist. When it inserts nothing,
        // the lookup below says why.
        if (!batch.Bulk && hash is null && drafts[0] is { Attachments.Count: 0 } only
            && await store.InsertCheckedAsync(tenant.CompanyId, only, now, cancellationToken) is { } inserted)
        {
            var single = batch.Respond([new SendMessageResponse([.. inserted.Select(row =>
                new AcceptedMessage(row.Id, DeliveryStatus.Pending, row.Channel, only.RequestedChannel, Links(row.Id)))])]);
            return TypedResults.Accepted(batch.Location(single), single);
        }

        // The database checks run for every well-formed item even when others are not, so the client
        // gets all of a batch's problems in one answer. Ids are taken up front only when something
        // must refer to them before the rows exist (attachments, the stored idempotent answer) and the
        // batch will be inserted (or a BOTH request's rows are marked with the first one's id);
        // otherwise the INSERT assigns them, in request order.
        var preallocate = hash is not null || wellFormed.Any(d => d.Attachments.Count > 0 || d.Channels.Count > 1);
        var lookup = await store.LookupAsync(tenant.CompanyId, wellFormed, allocateIds: preallocate && validation.IsValid, cancellationToken);
        var customers = CheckAgainstDatabase(drafts, batch.Bulk, lookup, validation);
        if (!validation.IsValid)
        {
            return validation.Problem();
        }

        var rows = new List<MessageStore.NewMessage>();
        for (var i = 0; i < drafts.Length; i++)
        {
            var first = rows.Count;
            foreach (var channel in drafts[i]!.Channels)
            {
                rows.Add(new MessageStore.NewMessage(preallocate ? lookup.Ids[rows.Count] : 0, customers[i]!, channel, drafts[i]!,
                    drafts[i]!.Channels.Count > 1 ? lookup.Ids[first] : null));
            }
        }
        if (!preallocate)
        {
            var ids = await store.InsertAsync(tenant.CompanyId, rows, now, cancellationToken);
            var answer = batch.Respond(Responses(drafts, ids));
            return TypedResults.Accepted(batch.Location(answer), answer);
        }

        var response = batch.Respond(Responses(drafts, [.. rows.Select(r => r.Id)]));
        var claim = hash is null ? null : new MessageStore.IdempotencyClaim(key, hash, JsonSerializer.Serialize(response, json));
        if (await store.InsertAsync(tenant.CompanyId, rows, claim, now, cancellationToken) is { } concurrent)
        {
            // A twin request with the same key committed first; nothing of ours was inserted.
            return Answer(batch, concurrent, key, hash!, http, json);
        }
        return TypedResults.Accepted(batch.Location(response), response);
    }

    /// <summary>What the client is told about each item: its rows (one per channel) with their ids.</summary>
    private static List<SendMessageResponse> Responses(MessageDraft?[] drafts, IReadOnlyList<long> ids)
    {
        var items = new List<SendMessageResponse>(drafts.Length);
        var next = 0;
        foreach (var draft in drafts)
        {
            var accepted = new List<AcceptedMessage>(draft!.Channels.Count);
            foreach (var channel in draft.Channels)
            {
                var id = ids[next++];
                accepted.Add(new AcceptedMessage(id, DeliveryStatus.Pending, channel, draft.RequestedChannel, Links(id)));
            }
            items.Add(new SendMessageResponse(accepted));
        }
        return items;
    }

    /// <summary>Field checks of every item; a bulk item's errors are named <c>messages[i].field</c>.</summary>
    private static MessageDraft?[] ValidateItems(IReadOnlyList<SendMessageRequest?> items, bool bulk, DateTimeOffset now, bool privateLinks, Validation validation)
    {
        var drafts = new MessageDraft?[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            if (!bulk)
            {
                drafts[i] = MessageValidation.Validate(items[i]!, now, privateLinks, validation);
                continue;
            }
            var item = new Validation();
            if (items[i] is { } request)
            {
                drafts[i] = MessageValidation.Validate(request, now, privateLinks, item);
            }
            else
            {
                validation.Add($"messages[{i}]", "A message object is required.");
            }
            if (!item.IsValid)
            {
                validation.Merge($"messages[{i}]", item);
            }
        }
        return drafts;
    }

    /// <summary>The customer of each well-formed item (which must exist in the company) and its template.</summary>
    private static MessageStore.CustomerRef?[] CheckAgainstDatabase(MessageDraft?[] drafts, bool bulk, MessageStore.Lookup lookup, Validation validation)
    {
        // Error texts are built only for items that fail: a bulk request checks up to 10,000.
        var customers = new MessageStore.CustomerRef?[drafts.Length];
        for (var i = 0; i < drafts.Length; i++)
        {
            if (drafts[i] is not { } draft)
            {
                continue;
            }
            string Prefix() => bulk ? $"messages[{i}]." : "";
            customers[i] = ResolveCustomer(draft, lookup, Prefix, validation);
            if (draft.TemplateKey is not { } template)
            {
                continue;
            }
            if (!lookup.TemplateChannels.TryGetValue(template, out var has))
            {
                validation.Add(Prefix() + "templateKey", $"No template '{template}' exists in this company.");
            }
            else if (draft.Channels.Select(WireName<Channel>.Of).FirstOrDefault(c => c != "PREFERRED" && !has.Contains(c)) is { } missing)
            {
                // It would fail at the worker ("no template for this channel"); PREFERRED takes any.
                validation.Add(Prefix() + "templateKey",
                    $"Template '{template}' has no {missing} version (it has {string.Join(", ", has.Order(StringComparer.Ordinal))}): add one, or send on a channel it has.");
            }
        }
        return customers;
    }

    private static Results<Accepted<TResponse>, ValidationProblem, ProblemHttpResult> Answer<TResponse>(
        SendBatch<TResponse> batch, MessageStore.StoredResponse stored, string key, byte[] hash, HttpContext http, JsonSerializerOptions json)
        where TResponse : class
    {
        if (!CryptographicOperations.FixedTimeEquals(stored.RequestHash, hash))
        {
            return Problems.Conflict($"{IdempotencyHeader} '{key}' was already used for a different request. Use a new key for a new request.");
        }
        http.Response.Headers["Idempotent-Replayed"] = "true";
        var response = JsonSerializer.Deserialize<TResponse>(stored.Response, json)!;
        return TypedResults.Accepted(batch.Location(response), response);
    }

    private static MessageStore.CustomerRef? ResolveCustomer(MessageDraft draft, MessageStore.Lookup lookup, Func<string> prefix, Validation validation)
    {
        var found = draft.CustomerId is { } id ? lookup.ById.GetValueOrDefault(id) : lookup.ByExternalId.GetValueOrDefault(draft.CustomerExternalId!);
        if (found is { Deleted: false })
        {
            return found;
        }
        var (field, who) = draft.CustomerId is { } customerId
            ? ("customerId", customerId.ToString())
            : ("customerExternalId", $"with external id '{draft.CustomerExternalId}'");
        validation.Add(prefix() + field, found is null ? $"No customer {who} exists in this company." : $"Customer {who} was deleted.");
        return null;
    }

    private static MessageLinks Links(long id) => new($"/v1/messages/{id}", $"/v1/messages/{id}/cancel", $"/v1/messages/{id}/replay");

    private static async Task<MessageView?> LoadAsync(OutboxDbContext db, Tenant tenant, long id, CancellationToken cancellationToken)
    {
        var found = await db.CommunicationLogs.AsNoTracking()
            .Where(m => m.Id == id && m.CompanyId == tenant.CompanyId)
            .Select(m => new
            {
                Message = m,
                // Metadata only: the bytes of an attachment can be megabytes.
                Attachments = m.Attachments.Where(a => a.CompanyId == null || a.CompanyId == m.CompanyId).OrderBy(a => a.Id).Select(a => new AttachmentView(a.Id, a.FileName, a.ContentType, a.SizeBytes, a.Url)).ToList(),
            })
            .FirstOrDefaultAsync(cancellationToken);
        if (found is null)
        {
            return null;
        }
        var attempts = await db.CommunicationAttempts.AsNoTracking()
            .Where(a => a.MessageId == id && a.CompanyId == tenant.CompanyId)
            .OrderBy(a => a.AttemptNo).ThenBy(a => a.AttemptedAt).ThenBy(a => a.Id)
            .Select(a => new AttemptView(a.AttemptNo, a.AttemptedAt, a.Channel, a.ProviderName, a.Outcome, a.ErrorMessage, a.ProviderLatencyMs, a.Cost, a.CostCurrency))
            .ToListAsync(cancellationToken);
        var replays = await db.MessageReplays.AsNoTracking()
            .Where(r => r.CompanyId == tenant.CompanyId && r.MessageId == id)
            .OrderBy(r => r.Id)
            .Select(r => new ReplayView(r.ReplayedAt, r.ReplayedBy, r.PreviousStatus, r.PreviousError))
            .ToListAsync(cancellationToken);
        var m = found.Message;
        var view = new MessageView(
            m.Id, m.CustomerId, m.CustomerExternalId, m.Type, m.Channel, m.RequestedChannel, m.SplitFrom, m.Status,
            m.StatusReason, m.ErrorMessage, m.Subject, m.Content, m.TemplateKey, m.TemplateData.RootElement.Clone(), m.TemplateUsed,
            m.Metadata.RootElement.Clone(), m.RetryCount, m.MaxRetries, m.AttemptCount, m.OutageAttempts,
            m.CreatedAt, m.UpdatedAt, m.Status == DeliveryStatus.Pending ? m.NextAttemptAt : null, m.ExpiresAt,
            m.SentAt, m.DeliveredAt, m.ReadAt, m.ResponseAt, m.FailedAt,
            m.ProviderName, m.ProviderMessageId, m.Cost, m.CostCurrency,
            found.Attachments, attempts, replays, m.ContentRedactedAt);
        return tenant.IsAdmin ? AsOperatorSees(view) : view;
    }
}
