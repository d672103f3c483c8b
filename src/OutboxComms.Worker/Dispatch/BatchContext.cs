using System.Collections.Concurrent;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Data;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Providers;
using OutboxComms.Core.Templates;

namespace OutboxComms.Worker.Dispatch;

/// <summary>
/// Everything the policies and renderer need for one claimed batch, loaded with one query per kind
/// of data instead of one per message.
/// </summary>
internal sealed class BatchContext
{
    private readonly Dictionary<Guid, Customer> customersById;
    private readonly Dictionary<(Guid CompanyId, string ExternalId), Customer> customersByExternalId;
    private readonly Dictionary<Guid, Company> companies;
    private readonly Dictionary<(Guid CompanyId, string Key, Channel Channel, string Language), MessageTemplate> templates;
    private readonly ILookup<long, CommunicationAttachment> attachments;
    private readonly Dictionary<(Guid CustomerId, MessageType Type), DateTimeOffset> lastReminders;
    private readonly Dictionary<(Guid CustomerId, MessageType Type), long> firstReminderInBatch = [];
    private readonly ConcurrentDictionary<(Guid CompanyId, Channel Channel), Lazy<ProviderAccount>> accounts = new();

    private BatchContext(
        IReadOnlyList<ClaimedMessage> batch, List<Customer> customers, List<Company> companies, List<MessageTemplate> templates,
        List<CommunicationAttachment> attachments, Dictionary<(Guid, MessageType), DateTimeOffset> lastReminders)
    {
        customersById = customers.ToDictionary(c => c.Id);
        customersByExternalId = customers.Where(c => c.ExternalId is not null).ToDictionary(c => (c.CompanyId, c.ExternalId!));
        this.companies = companies.ToDictionary(c => c.Id);
        this.templates = templates.ToDictionary(t => (t.CompanyId, t.Key, t.Channel, t.Language));
        this.attachments = attachments.ToLookup(a => a.MessageId);
        this.lastReminders = lastReminders;
        foreach (var message in batch.Where(m => m.Type.IsReminder()))
        {
            if (Customer(message) is { } customer)
            {
                firstReminderInBatch.TryAdd((customer.Id, message.Type), message.Id);
            }
        }
    }

    public Customer? Customer(ClaimedMessage message) =>
        message.CustomerId is { } id
            ? customersById.GetValueOrDefault(id) is { } c && c.CompanyId == message.CompanyId ? c : null
            : customersByExternalId.GetValueOrDefault((message.CompanyId, message.CustomerExternalId!));

    public Company? Company(Guid id) => companies.GetValueOrDefault(id);

    /// <summary>
    /// A company's provider account for a channel, built (secrets decrypted) once per batch instead
    /// of once per message. A build failure (undecryptable secret) is cached too: every message of
    /// that company and channel fails the same way.
    /// </summary>
    public ProviderAccount Account(Guid companyId, Channel channel, Func<ProviderAccount> build) =>
        accounts.GetOrAdd((companyId, channel), _ => new Lazy<ProviderAccount>(build)).Value;

    public MessageTemplate? Template(Guid companyId, string key, Channel channel, string language) =>
        templates.GetValueOrDefault((companyId, key, channel, language));

    public IReadOnlyList<CommunicationAttachment> Attachments(long messageId) => [.. attachments[messageId]];

    public DateTimeOffset? LastReminder(Guid customerId, MessageType type) =>
        lastReminders.TryGetValue((customerId, type), out var at) ? at : null;

    /// <summary>
    /// Only one reminder of a type per customer goes out of one batch: the first in claim order
    /// (the one due longest), whatever order the concurrent sends happen to run in.
    /// </summary>
    public bool IsFirstReminderInBatch(Guid customerId, MessageType type, long messageId) =>
        firstReminderInBatch.GetValueOrDefault((customerId, type)) == messageId;

    public static async Task<BatchContext> LoadAsync(OutboxDbContext db, NpgsqlDataSource dataSource, IReadOnlyList<ClaimedMessage> batch, CancellationToken cancellationToken)
    {
        var companyIds = batch.Select(m => m.CompanyId).Distinct().ToList();
        var customerIds = batch.Where(m => m.CustomerId is not null).Select(m => m.CustomerId!.Value).Distinct().ToList();
        var externalIds = batch.Where(m => m.CustomerId is null).Select(m => m.CustomerExternalId!).Distinct().ToList();
        var templateKeys = batch.Where(m => m.TemplateKey is not null).Select(m => m.TemplateKey!).Distinct().ToList();
        var messageIds = batch.Select(m => m.Id).ToList();

        var customers = await db.Customers.AsNoTracking().Include(c => c.Preference)
            .Where(c => customerIds.Contains(c.Id) || (externalIds.Contains(c.ExternalId!) && companyIds.Contains(c.CompanyId)))
            .ToListAsync(cancellationToken);
        var companies = await db.Companies.AsNoTracking().Include(c => c.Settings)
            .Where(c => companyIds.Contains(c.Id))
            .ToListAsync(cancellationToken);
        var templates = templateKeys.Count == 0
            ? []
            : await db.MessageTemplates.AsNoTracking()
                .Where(t => companyIds.Contains(t.CompanyId) && templateKeys.Contains(t.Key))
                .ToListAsync(cancellationToken);
        var attachments = await db.CommunicationAttachments.AsNoTracking()
            .Where(a => messageIds.Contains(a.MessageId))
            .ToListAsync(cancellationToken);

        var reminderCustomers = customers.Select(c => c.Id).ToArray();
        var lastReminders = new Dictionary<(Guid, MessageType), DateTimeOffset>();
        if (batch.Any(m => m.Type.IsReminder()) && reminderCustomers.Length > 0)
        {
            await using var command = dataSource.CreateCommand("SELECT customer_id, type, last_sent_at FROM reminder_frequency_state WHERE customer_id = ANY($1)");
            command.Parameters.Add(new NpgsqlParameter<Guid[]> { TypedValue = reminderCustomers });
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                lastReminders[(reader.GetGuid(0), WireName<MessageType>.Parse(reader.GetString(1)))] = reader.GetFieldValue<DateTimeOffset>(2);
            }
        }

        return new BatchContext(batch, customers, companies, templates, attachments, lastReminders);
    }
}
