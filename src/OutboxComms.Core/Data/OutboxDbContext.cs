using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Templates;
using OutboxComms.Core.Workflows;

namespace OutboxComms.Core.Data;

/// <summary>
/// EF Core model over the schema in <c>migrations/</c>. The SQL files own the schema (business apps
/// insert by plain SQL against it); this model maps onto it and a test checks that they agree.
/// </summary>
public class OutboxDbContext(DbContextOptions<OutboxDbContext> options) : DbContext(options)
{
    public DbSet<Company> Companies => Set<Company>();
    public DbSet<CompanySettings> CompanySettings => Set<CompanySettings>();
    public DbSet<ApiKey> ApiKeys => Set<ApiKey>();
    public DbSet<Customer> Customers => Set<Customer>();
    public DbSet<CommunicationPreference> CommunicationPreferences => Set<CommunicationPreference>();
    public DbSet<ConsentRecord> ConsentRecords => Set<ConsentRecord>();
    public DbSet<MessageTemplate> MessageTemplates => Set<MessageTemplate>();
    public DbSet<CommunicationLog> CommunicationLogs => Set<CommunicationLog>();
    public DbSet<CommunicationAttachment> CommunicationAttachments => Set<CommunicationAttachment>();
    public DbSet<CommunicationAttempt> CommunicationAttempts => Set<CommunicationAttempt>();
    public DbSet<MessageReplayRecord> MessageReplays => Set<MessageReplayRecord>();
    public DbSet<Reminder> Reminders => Set<Reminder>();
    public DbSet<ReminderStep> ReminderSteps => Set<ReminderStep>();
    public DbSet<CompanySchedule> CompanySchedules => Set<CompanySchedule>();
    public DbSet<ScheduleRun> ScheduleRuns => Set<ScheduleRun>();
    public DbSet<ComplianceRuleOverride> ComplianceRuleOverrides => Set<ComplianceRuleOverride>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(OutboxDbContext).Assembly);

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        ArgumentNullException.ThrowIfNull(configurationBuilder);
        UseWireNames<MessageType>(configurationBuilder);
        UseWireNames<Channel>(configurationBuilder);
        UseWireNames<DeliveryStatus>(configurationBuilder);
        UseWireNames<AttemptOutcome>(configurationBuilder);
        UseWireNames<EmailProvider>(configurationBuilder);
        UseWireNames<WhatsAppProvider>(configurationBuilder);
        UseWireNames<SmsProvider>(configurationBuilder);
        UseWireNames<SmtpSecurity>(configurationBuilder);
        UseWireNames<ReminderFrequency>(configurationBuilder);
        UseWireNames<ReminderStatus>(configurationBuilder);
        UseWireNames<StepState>(configurationBuilder);
        UseWireNames<ScheduleAudience>(configurationBuilder);
        UseWireNames<ScheduleRunOutcome>(configurationBuilder);
        UseWireNames<DueDateRuleKind>(configurationBuilder);
        UseWireNames<ConsentScope>(configurationBuilder);
    }

    private static void UseWireNames<T>(ModelConfigurationBuilder builder) where T : struct, Enum =>
        builder.Properties<T>().HaveConversion<WireNameConverter<T>>();

    /// <summary>Stores an enum as its <see cref="WireName{T}"/>.</summary>
    internal sealed class WireNameConverter<T>() : ValueConverter<T, string>(v => WireName<T>.Of(v), s => WireName<T>.Parse(s))
        where T : struct, Enum;
}
