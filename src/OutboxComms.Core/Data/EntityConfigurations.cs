using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Customers;
using OutboxComms.Core.Messages;
using OutboxComms.Core.Preferences;
using OutboxComms.Core.Templates;

namespace OutboxComms.Core.Data;

// One configuration per entity. Column names come from the snake_case convention; only what the
// convention cannot know (keys, generated values, relationships, a few renamed columns) is here.

internal sealed class CompanyConfiguration : IEntityTypeConfiguration<Company>
{
    public void Configure(EntityTypeBuilder<Company> builder)
    {
        builder.ToTable("companies");
        builder.Property(c => c.Id).HasDefaultValueSql("gen_random_uuid()");
        builder.Property(c => c.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(c => c.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasOne(c => c.Settings).WithOne().HasForeignKey<CompanySettings>(s => s.CompanyId);
    }
}

internal sealed class CompanySettingsConfiguration : IEntityTypeConfiguration<CompanySettings>
{
    public void Configure(EntityTypeBuilder<CompanySettings> builder)
    {
        builder.ToTable("company_settings");
        builder.HasKey(s => s.CompanyId);
        builder.Property(s => s.WhatsAppProvider).HasColumnName("whatsapp_provider");
        builder.Property(s => s.WhatsAppEnabled).HasColumnName("whatsapp_enabled");
        builder.Property(s => s.WhatsAppApiKeyEncrypted).HasColumnName("whatsapp_api_key_encrypted");
        builder.Property(s => s.WhatsAppPhoneId).HasColumnName("whatsapp_phone_id");
        builder.Property(s => s.WhatsAppAccountSid).HasColumnName("whatsapp_account_sid");
        builder.Property(s => s.WhatsAppFromNumber).HasColumnName("whatsapp_from_number");
        builder.Property(s => s.WhatsAppBaseUrl).HasColumnName("whatsapp_base_url");
        builder.Property(s => s.WhatsAppWebhookSecretEncrypted).HasColumnName("whatsapp_webhook_secret_encrypted");
        builder.Property(s => s.WhatsAppVerifyTokenEncrypted).HasColumnName("whatsapp_verify_token_encrypted");
        builder.Property(s => s.DefaultWhatsAppTemplateKey).HasColumnName("default_whatsapp_template_key");
        builder.Property(s => s.WhatsAppCost).HasColumnName("whatsapp_cost");
        builder.Property(s => s.UpdatedAt).HasDefaultValueSql("now()");
    }
}

internal sealed class ApiKeyConfiguration : IEntityTypeConfiguration<ApiKey>
{
    public void Configure(EntityTypeBuilder<ApiKey> builder)
    {
        builder.ToTable("api_keys");
        builder.Property(k => k.Id).HasDefaultValueSql("gen_random_uuid()");
        builder.Property(k => k.CreatedAt).HasDefaultValueSql("now()");
        builder.HasIndex(k => k.KeyHash).IsUnique();
        builder.HasOne<Company>().WithMany().HasForeignKey(k => k.CompanyId);
    }
}

internal sealed class CustomerConfiguration : IEntityTypeConfiguration<Customer>
{
    public void Configure(EntityTypeBuilder<Customer> builder)
    {
        builder.ToTable("customers");
        builder.Property(c => c.Id).HasDefaultValueSql("gen_random_uuid()");
        builder.Property(c => c.WhatsAppNumber).HasColumnName("whatsapp_number");
        builder.Property(c => c.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(c => c.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasOne(c => c.Preference).WithOne().HasForeignKey<CommunicationPreference>(p => p.CustomerId);
        builder.HasIndex(c => new { c.CompanyId, c.ExternalId }).IsUnique().HasFilter("external_id IS NOT NULL");
        builder.HasOne<Company>().WithMany().HasForeignKey(c => c.CompanyId);
    }
}

internal sealed class CommunicationPreferenceConfiguration : IEntityTypeConfiguration<CommunicationPreference>
{
    public void Configure(EntityTypeBuilder<CommunicationPreference> builder)
    {
        builder.ToTable("communication_preferences");
        builder.Property(p => p.Id).HasDefaultValueSql("gen_random_uuid()");
        builder.Property(p => p.WhatsAppOptIn).HasColumnName("whatsapp_opt_in");
        builder.Property(p => p.UpdatedAt).HasDefaultValueSql("now()");
        builder.PrimitiveCollection(p => p.GeneralUpdatesOptOutChannels)
            .ElementType(e => e.HasConversion<OutboxDbContext.WireNameConverter<Channel>>());
    }
}

internal sealed class ConsentRecordConfiguration : IEntityTypeConfiguration<ConsentRecord>
{
    public void Configure(EntityTypeBuilder<ConsentRecord> builder)
    {
        builder.ToTable("consent_records");
        builder.Property(r => r.RecordedAt).HasDefaultValueSql("now()");
        builder.HasOne<Customer>().WithMany().HasForeignKey(r => r.CustomerId);
    }
}

internal sealed class MessageTemplateConfiguration : IEntityTypeConfiguration<MessageTemplate>
{
    public void Configure(EntityTypeBuilder<MessageTemplate> builder)
    {
        builder.ToTable("message_templates");
        builder.Property(t => t.Id).HasDefaultValueSql("gen_random_uuid()");
        builder.Property(t => t.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(t => t.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasIndex(t => new { t.CompanyId, t.Key, t.Channel, t.Language }).IsUnique();
        builder.HasOne<Company>().WithMany().HasForeignKey(t => t.CompanyId);
    }
}

internal sealed class CommunicationLogConfiguration : IEntityTypeConfiguration<CommunicationLog>
{
    public void Configure(EntityTypeBuilder<CommunicationLog> builder)
    {
        builder.ToTable("communication_logs");
        // Keyed (company_id, id) in the database since migration 0011; ids come only from the identity sequence (GENERATED ALWAYS).
        builder.Property(m => m.Id).UseIdentityAlwaysColumn();
        builder.Property(m => m.Status).HasDefaultValue(DeliveryStatus.Pending).HasSentinel(DeliveryStatus.Pending);
        builder.Property(m => m.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(m => m.UpdatedAt).HasDefaultValueSql("now()");
        builder.Property(m => m.NextAttemptAt).HasDefaultValueSql("now()");
        builder.Property(m => m.Cost).HasPrecision(12, 6);
        // Neither relationship below is a database constraint any more (migrations 0010, 0011); nothing deletes messages or companies through EF.
        builder.HasMany(m => m.Attachments).WithOne().HasForeignKey(a => a.MessageId).OnDelete(DeleteBehavior.NoAction);
        builder.HasIndex(m => new { m.CompanyId, m.IdempotencyKey }).IsUnique().HasFilter("idempotency_key IS NOT NULL");
        builder.HasOne<Company>().WithMany().HasForeignKey(m => m.CompanyId).OnDelete(DeleteBehavior.NoAction);
    }
}

internal sealed class CommunicationAttachmentConfiguration : IEntityTypeConfiguration<CommunicationAttachment>
{
    public void Configure(EntityTypeBuilder<CommunicationAttachment> builder)
    {
        builder.ToTable("communication_attachments");
        builder.Property(a => a.Id).UseIdentityByDefaultColumn();
    }
}

internal sealed class MessageReplayRecordConfiguration : IEntityTypeConfiguration<MessageReplayRecord>
{
    public void Configure(EntityTypeBuilder<MessageReplayRecord> builder)
    {
        builder.ToTable("message_replays");
        builder.Property(r => r.Id).UseIdentityAlwaysColumn();
    }
}

internal sealed class CommunicationAttemptConfiguration : IEntityTypeConfiguration<CommunicationAttempt>
{
    public void Configure(EntityTypeBuilder<CommunicationAttempt> builder)
    {
        builder.ToTable("communication_attempts");
        builder.Property(a => a.Id).UseIdentityByDefaultColumn();
        builder.Property(a => a.AttemptedAt).HasDefaultValueSql("now()");
        builder.Property(a => a.Cost).HasPrecision(12, 6);
    }
}
