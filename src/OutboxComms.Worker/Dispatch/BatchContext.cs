using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// Everything the policies and renderer need for one claimed batch, loaded with one query per kind
/// of data instead of one per message.
/// </summary>
internal sealed class BatchContext
{
    private readonly Dictionary<Guid, Company> companies;
    private readonly Dictionary<(Guid CompanyId, string Key, Channel Channel, string Language), MessageTemplate> templates;
    private readonly ILookup<long, CommunicationAttachment> attachments;
    private readonly Dictionary<(Guid CustomerId, MessageType Type), ClaimedMessage?> firstReminderInBatch = [];
    private readonly Dictionary<(Guid CustomerId, MessageType Type), RecordedReminder> recordedReminders = [];
    private readonly ConcurrentDictionary<(Guid CompanyId, Channel Channel), Lazy<ProviderAccount>> accounts = new();
    private readonly Func<long[], CancellationToken, Task<Dictionary<long, byte[]>>> loadContent;
    private readonly Dictionary<Guid, HashSet<long>> resolvedReminders;

    /// <summary>The Content of an attachment whose bytes are stored but not loaded with the batch (see <see cref="Attachments"/>).</summary>
    private static readonly byte[] StoredNotLoaded = [];

    private BatchContext(
        IReadOnlyList<ClaimedMessage> batch, List<Company> companies, List<MessageTemplate> templates, List<CommunicationAttachment> attachments, ReminderGate gate,
        Func<long[], CancellationToken, Task<Dictionary<long, byte[]>>> loadContent, Dictionary<Guid, HashSet<long>> resolvedReminders)
    {
        this.loadContent = loadContent;
        this.resolvedReminders = resolvedReminders;
        this.companies = companies.ToDictionary(c => c.Id);
        // Languages match whatever their case; a company may hold the same tag in two cases (the
        // unique key compares them exactly): one of them, always the same, rather than a batch that
        // cannot load.
        this.templates = templates.GroupBy(t => (t.CompanyId, t.Key, t.Channel, t.Language.ToLowerInvariant()))
            .ToDictionary(g => g.Key, g => g.OrderBy(t => t.Language, StringComparer.Ordinal).First());
        this.attachments = attachments.ToLookup(a => a.MessageId);
        foreach (var message in batch)
        {
            if (message.Type.IsReminder() && message.Customer is { } customer && !firstReminderInBatch.ContainsKey((customer.Id, message.Type)))
            {
                // The first of the batch, unless another batch of this process is sending one (null: none may go).
                var entered = gate.TryEnter(customer.Id, message.Type, message.Id);
                firstReminderInBatch[(customer.Id, message.Type)] = entered ? message : null;
                if (entered)
                {
                    HeldReminders.Add((customer.Id, message.Type, message.Id));
                    if (gate.LastRecorded(customer.Id, message.Type) is { } recorded)
                    {
                        recordedReminders[(customer.Id, message.Type)] = recorded;
                    }
                }
            }
        }
    }

    private Func<ClaimedMessage, CancellationToken, Task<Core.Customers.Customer?>>? currentRecipient;

    /// <summary>The last moment a send of this batch may call its provider (see BatchProcessor); never, for a batch without a lease.</summary>
    public DateTimeOffset StartBy { get; set; } = DateTimeOffset.MaxValue;

    /// <summary>
    /// The batch's clock, set by its claim: the claim's time plus what the monotonic clock says has
    /// passed since. A wall clock set back or forward while the batch runs (NTP stepping it, a VM
    /// resumed) cannot then move its last start: the lease it wrote runs out by the other workers'
    /// clocks, not by this one's new idea of the time. Null (the wall clock) for a batch without a lease.
    /// </summary>
    public Func<DateTimeOffset>? Clock { get; set; }

    /// <summary>Now, by the batch's clock (<see cref="Clock"/>).</summary>
    public DateTimeOffset Now(TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        return Clock?.Invoke() ?? time.GetUtcNow();
    }

    /// <summary>The worker is stopping: a send not yet started is given back rather than started.</summary>
    public CancellationToken Stopping { get; set; }

    /// <summary>When the batch's recipients (customers, consent, preferences) were read; never, for a batch that cannot read them again.</summary>
    public DateTimeOffset RecipientsReadAt { get; private set; } = DateTimeOffset.MaxValue;

    /// <summary>Lets <see cref="CurrentRecipientAsync"/> read a recipient again, the batch's having been read at <paramref name="readAt"/>.</summary>
    public BatchContext ReadingRecipientsAgain(DateTimeOffset readAt, Func<ClaimedMessage, CancellationToken, Task<Core.Customers.Customer?>> current)
    {
        RecipientsReadAt = readAt;
        currentRecipient = current;
        return this;
    }

    /// <summary>The message's recipient as the database has it now, or null when this batch cannot read it again.</summary>
    public Task<Core.Customers.Customer?>? CurrentRecipientAsync(ClaimedMessage message, CancellationToken cancellationToken) =>
        currentRecipient?.Invoke(message, cancellationToken);

    /// <summary>The reminder slots this batch holds in the <see cref="ReminderGate"/>, to give back once its outcomes are recorded.</summary>
    public List<(Guid CustomerId, MessageType Type, long MessageId)> HeldReminders { get; } = [];

    /// <summary>The reminders this batch holds across worker processes (migration 0043), to give back once its outcomes are recorded.</summary>
    public List<(Guid CustomerId, MessageType Type)> ReservedReminders { get; } = [];

    /// <summary>
    /// What <see cref="OutboxStore.ReserveRemindersAsync"/> answered for <see cref="HeldReminders"/>:
    /// a reminder another process is sending lets none of this customer's of that type go from this
    /// batch (they are looked at again a lease later, as behind another batch of this process), and
    /// the last reminder times read with the entries taken count as this process's own records do.
    /// </summary>
    public void Reserved(IReadOnlyDictionary<(Guid CustomerId, MessageType Type), RecordedReminder?> taken)
    {
        ArgumentNullException.ThrowIfNull(taken);
        foreach (var (customerId, type, _) in HeldReminders)
        {
            if (!taken.TryGetValue((customerId, type), out var current))
            {
                firstReminderInBatch[(customerId, type)] = null;
                continue;
            }
            ReservedReminders.Add((customerId, type));
            if (current is not null && !(recordedReminders.TryGetValue((customerId, type), out var known) && known.SentAt >= current.SentAt))
            {
                recordedReminders[(customerId, type)] = current;
            }
        }
    }

    public Company? Company(Guid id) => companies.GetValueOrDefault(id);

    /// <summary>The company's reminders that the batch's digests list (<see cref="DigestReminders"/>) and that are no longer active (another company's are never looked at).</summary>
    public IReadOnlySet<long> ResolvedReminders(Guid companyId) => resolvedReminders.TryGetValue(companyId, out var ids) ? ids : NoReminders;

    private static readonly HashSet<long> NoReminders = [];

    /// <summary>
    /// A company's provider account for a channel, built (secrets decrypted) once per batch instead
    /// of once per message. A build failure (undecryptable secret) is cached too: every message of
    /// that company and channel fails the same way.
    /// </summary>
    public ProviderAccount Account(Guid companyId, Channel channel, Func<ProviderAccount> build) =>
        accounts.GetOrAdd((companyId, channel), _ => new Lazy<ProviderAccount>(build)).Value;

    public MessageTemplate? Template(Guid companyId, string key, Channel channel, string language) =>
        templates.GetValueOrDefault((companyId, key, channel, language.ToLowerInvariant()));

    /// <summary>The company's template for the key and channel in the first of <paramref name="languages"/> that has one.</summary>
    public MessageTemplate? Template(Guid companyId, string key, Channel channel, IEnumerable<string> languages) =>
        languages.Select(language => Template(companyId, key, channel, language)).FirstOrDefault(found => found is not null);

    /// <summary>
    /// The message's attachments as the checks see them: a stored file's bytes are not loaded with
    /// the batch (500 invoices with their PDFs, four batches at once, would hold gigabytes); its
    /// Content is an empty marker. <see cref="AttachmentsForSendAsync"/> loads them for the send.
    /// </summary>
    public IReadOnlyList<CommunicationAttachment> Attachments(long messageId) => [.. attachments[messageId]];

    /// <summary>The message's attachments with their stored bytes, loaded now: only the messages being sent hold theirs.</summary>
    public async Task<IReadOnlyList<CommunicationAttachment>> AttachmentsForSendAsync(long messageId, CancellationToken cancellationToken)
    {
        var listed = Attachments(messageId);
        if (!listed.Any(a => ReferenceEquals(a.Content, StoredNotLoaded)))
        {
            return listed;
        }
        var content = await loadContent([.. listed.Where(a => ReferenceEquals(a.Content, StoredNotLoaded)).Select(a => a.Id)], cancellationToken);
        return [.. listed.Select(a => ReferenceEquals(a.Content, StoredNotLoaded)
            ? new CommunicationAttachment
            {
                Id = a.Id, MessageId = a.MessageId, FileName = a.FileName, ContentType = a.ContentType, Url = a.Url, SizeBytes = a.SizeBytes,
                // Deleted since the claim (the message was too): what the URL gives, if any.
                Content = content.GetValueOrDefault(a.Id),
            }
            : a)];
    }

    /// <summary>
    /// Only one reminder of a type per customer goes out of one batch: the first in claim order
    /// (the one due longest), whatever order the concurrent sends happen to run in; and none while
    /// another batch of this process is sending one.
    /// </summary>
    public bool IsFirstReminderInBatch(Guid customerId, ClaimedMessage message) =>
        firstReminderInBatch.GetValueOrDefault((customerId, message.Type)) is { } first
        && (first.Id == message.Id || (first.IsTwinOf(message.CreatedAt, message.SplitFrom) && message.IsTwinOf(first.CreatedAt, first.SplitFrom)));

    /// <summary>
    /// When the customer last received a reminder of this message's type, and that message's
    /// created_at and pair id: what the claim read, or a send this process committed after that read
    /// (another batch that recorded it and left the gate before this one entered), whichever is later.
    /// </summary>
    public (DateTimeOffset? SentAt, DateTimeOffset? CreatedAt, long? PairId) LastReminder(Guid customerId, ClaimedMessage message) =>
        recordedReminders.GetValueOrDefault((customerId, message.Type)) is { } recorded && !(recorded.SentAt <= message.LastReminderSentAt)
            ? (recorded.SentAt, recorded.CreatedAt, recorded.PairId)
            : (message.LastReminderSentAt, message.LastReminderCreatedAt, message.LastReminderPairId);

    // Compiled once: building the LINQ expression and looking it up in EF's query cache on every
    // batch showed in the worker's profile. Npgsql sends each array as one parameter (= ANY).
    private static readonly Func<OutboxDbContext, Guid[], IAsyncEnumerable<Company>> CompaniesQuery =
        EF.CompileAsyncQuery((OutboxDbContext db, Guid[] ids) => db.Companies.AsNoTracking().Include(c => c.Settings).Where(c => ids.Contains(c.Id)));

    private static readonly Func<OutboxDbContext, Guid[], string[], IAsyncEnumerable<MessageTemplate>> TemplatesQuery =
        EF.CompileAsyncQuery((OutboxDbContext db, Guid[] companyIds, string[] keys) =>
            db.MessageTemplates.AsNoTracking().Where(t => companyIds.Contains(t.CompanyId) && keys.Contains(t.Key)));

    private sealed record InactiveReminder(Guid CompanyId, long Id);

    private static readonly Func<OutboxDbContext, long[], IAsyncEnumerable<InactiveReminder>> InactiveRemindersQuery =
        EF.CompileAsyncQuery((OutboxDbContext db, long[] ids) => db.Reminders.AsNoTracking().Where(r => ids.Contains(r.Id) && r.Status != ReminderStatus.Active)
            .Select(r => new InactiveReminder(r.CompanyId, r.Id)));

    private sealed record AttachmentInfo(long Id, long MessageId, Guid? CompanyId, string FileName, string ContentType, string? Url, long? SizeBytes, bool Stored, DateTimeOffset? PurgedAt);

    // A stored file's size is its length in the table (length(bytea) reads the value's header, not
    // its bytes), whatever size_bytes a producer wrote or left out: the attachment budget reserves it.
    private static readonly Func<OutboxDbContext, long[], IAsyncEnumerable<AttachmentInfo>> AttachmentsQuery =
        EF.CompileAsyncQuery((OutboxDbContext db, long[] messageIds) => db.CommunicationAttachments.AsNoTracking().Where(a => messageIds.Contains(a.MessageId)).OrderBy(a => a.Id)
            .Select(a => new AttachmentInfo(a.Id, a.MessageId, a.CompanyId, a.FileName, a.ContentType, a.Url, a.Content != null ? (long?)a.Content.Length : a.SizeBytes, a.Content != null, a.PurgedAt)));

    /// <summary>
    /// Loads the batch's companies (with settings), the templates its rows name, and the attachments
    /// of the rows that have any, without their stored bytes (<paramref name="loadContent"/> gives a
    /// message's, by attachment id, when it is sent).
    /// </summary>
    public static async Task<BatchContext> LoadAsync(
        OutboxDbContext db, IReadOnlyList<ClaimedMessage> batch, ReminderGate gate, Func<long[], CancellationToken, Task<Dictionary<long, byte[]>>> loadContent,
        CancellationToken cancellationToken)
    {
        var companyIds = batch.Select(m => m.CompanyId).Distinct().ToArray();
        var templateKeys = batch.Where(m => m.TemplateKey is not null).Select(m => m.TemplateKey!).Distinct().ToArray();
        var withAttachments = batch.Where(m => m.HasAttachments).Select(m => m.Id).ToArray();
        var listedReminders = batch.SelectMany(m => DigestReminders.Listed(m.TemplateData)).Distinct().ToArray();

        var companies = await CompaniesQuery(db, companyIds).ToListAsync(cancellationToken);
        var templates = templateKeys.Length == 0 ? [] : await TemplatesQuery(db, companyIds, templateKeys).ToListAsync(cancellationToken);
        // A message's own: one that names a company names the message's (migration 0031), so a row
        // given another company's id by a producer's COPY does not carry that company's files.
        var companyOf = batch.Where(m => m.HasAttachments).GroupBy(m => m.Id).ToDictionary(g => g.Key, g => g.First().CompanyId);
        var attachments = withAttachments.Length == 0 ? [] : await AttachmentsQuery(db, withAttachments)
            .Where(a => a.CompanyId is null || a.CompanyId == companyOf[a.MessageId])
            .Select(a => new CommunicationAttachment
            {
                Id = a.Id, MessageId = a.MessageId, FileName = a.FileName, ContentType = a.ContentType, Url = a.Url, SizeBytes = a.SizeBytes,
                Content = a.Stored ? StoredNotLoaded : null,
                PurgedAt = a.PurgedAt,
            })
            .ToListAsync(cancellationToken);
        var resolvedReminders = listedReminders.Length == 0 ? [] : (await InactiveRemindersQuery(db, listedReminders).ToListAsync(cancellationToken))
            .GroupBy(r => r.CompanyId).ToDictionary(g => g.Key, g => g.Select(r => r.Id).ToHashSet());
        return new BatchContext(batch, companies, templates, attachments, gate, loadContent, resolvedReminders);
    }
}
