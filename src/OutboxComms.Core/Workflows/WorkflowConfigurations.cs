using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Customers;

namespace OutboxComms.Core.Workflows;

// EF mappings of migrations/0007_workflows.sql, in the style of Data/EntityConfigurations.cs.

internal sealed class ReminderConfiguration : IEntityTypeConfiguration<Reminder>
{
    public void Configure(EntityTypeBuilder<Reminder> builder)
    {
        builder.ToTable("reminders");
        builder.Property(r => r.Id).UseIdentityByDefaultColumn();
        builder.Property(r => r.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(r => r.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasMany(r => r.Steps).WithOne().HasForeignKey(s => s.ReminderId);
        builder.HasOne<Company>().WithMany().HasForeignKey(r => r.CompanyId);
        builder.HasOne<Customer>().WithMany().HasForeignKey(r => r.CustomerId);
        builder.HasIndex(r => new { r.CustomerId, r.CalendarKey, r.FinancialYear }).IsUnique().HasFilter("calendar_key IS NOT NULL");
    }
}

internal sealed class ReminderStepConfiguration : IEntityTypeConfiguration<ReminderStep>
{
    public void Configure(EntityTypeBuilder<ReminderStep> builder)
    {
        builder.ToTable("reminder_steps");
        builder.Property(s => s.Id).UseIdentityByDefaultColumn();
        builder.HasIndex(s => new { s.ReminderId, s.Position }).IsUnique();
    }
}

internal sealed class CompanyScheduleConfiguration : IEntityTypeConfiguration<CompanySchedule>
{
    public void Configure(EntityTypeBuilder<CompanySchedule> builder)
    {
        builder.ToTable("company_schedules");
        builder.HasKey(s => new { s.CompanyId, s.Key });
        builder.Property(s => s.CreatedAt).HasDefaultValueSql("now()");
        builder.Property(s => s.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasOne<Company>().WithMany().HasForeignKey(s => s.CompanyId);
    }
}

internal sealed class ScheduleRunConfiguration : IEntityTypeConfiguration<ScheduleRun>
{
    public void Configure(EntityTypeBuilder<ScheduleRun> builder)
    {
        builder.ToTable("schedule_runs");
        builder.HasKey(r => new { r.CompanyId, r.ScheduleKey, r.OccurrenceAt });
        builder.Property(r => r.RecordedAt).HasDefaultValueSql("now()");
    }
}

internal sealed class ComplianceRuleOverrideConfiguration : IEntityTypeConfiguration<ComplianceRuleOverride>
{
    public void Configure(EntityTypeBuilder<ComplianceRuleOverride> builder)
    {
        builder.ToTable("compliance_rule_overrides");
        builder.HasKey(o => new { o.CompanyId, o.FilingKey });
        builder.Property(o => o.Steps).HasColumnType("jsonb");
        builder.Property(o => o.UpdatedAt).HasDefaultValueSql("now()");
        builder.HasOne<Company>().WithMany().HasForeignKey(o => o.CompanyId);
    }
}
